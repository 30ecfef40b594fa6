"""The benchmark's measuring code runs, its floors are counted for every model, and
`--models` prints one row per model and shape."""
import math
import os
import subprocess
import sys
import types

import pytest

from benchmarks import floors
from benchmarks import measure as bench
from jaxrec.config import make_config
from jaxrec.engine.inputs import group_settings
from jaxrec.models import REGISTRY, get_model
from tests.helpers import REPO

TINY = bench.Shape(users=200, items=150, dims=(16, 8), per_user=6.0)
CEILINGS = {"matmul_flops": 1e10, "bandwidth_bytes": 1e10}


def test_run_point_measures_and_counts_narrow_features():
  rows = {dtype: bench.run_point("milk", "tiny", TINY, n_runs=2, epochs=1,
                                 ceilings=CEILINGS, feature_dtype=dtype)
          for dtype in ("float32", "bfloat16")}
  for row in rows.values():
    for key in ("compile_s", "epoch_s", "eval_s", "flop_floor_s", "byte_floor_s", "x_floor"):
      assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["run_epoch_s"] == row["epoch_s"] / 2 and row["program_bytes"] > 0
  # bf16 features: fewer device bytes, as the features are the group's largest array.
  assert rows["bfloat16"]["program_bytes"] < rows["float32"]["program_bytes"]
  assert rows["bfloat16"]["flop_floor_s"] == rows["float32"]["flop_floor_s"]
  assert rows["bfloat16"]["byte_floor_s"] < rows["float32"]["byte_floor_s"]


def test_affine_bytes_splits_shared_and_per_run():
  assert bench.affine_bytes({5: 100 + 5 * 30, 1: 100 + 30}) == (100, 30)
  assert bench.affine_bytes({1: 50, 2: 40}) == (49, 1)       # noise: at least a byte a run


def _counts(work, shape=bench.SHAPES["baby"], n_train=129_000, params=1_000_000, **kw):
  return floors.epoch_counts(work, users=shape.users, items=shape.items,
                             feature_dims=shape.dims, n_train=n_train, batch=2048, dim=64,
                             train_pairs=n_train, params=params, **kw)


def test_feature_bytes_halve_with_bfloat16():
  milk = floors.Work(feature_rows="batch", views=2)
  _, wide = _counts(milk)
  _, narrow = _counts(milk, feature_bytes=2)
  n_batches = -(-129_000 // 2048)
  assert wide - narrow == n_batches * 2 * (2 * 2048) * sum(bench.SHAPES["baby"].dims)


def test_propagation_and_rebuild_terms_are_counted_exactly():
  shape = bench.Shape(users=100, items=50, dims=(8,), per_user=5.0)
  base = floors.Work()
  graph = floors.Work(propagations=(floors.Propagation("ui", 2, 3),))
  rebuilt = floors.Work(rebuild_every=2, rebuild_graphs=1)
  kw = dict(shape=shape, n_train=400, params=10)
  (f0, b0), (f1, b1), (f2, b2) = (_counts(w, **kw) for w in (base, graph, rebuilt))
  nnz, nodes, n_batches = 2 * 400, 150, 1
  assert f1 - f0 == n_batches * 3 * 2 * 3 * 2 * nnz * 64
  assert b1 - b0 == n_batches * 4 * 3 * 2 * 3 * (nnz * 64 + nodes * 64)
  assert (f2 - f0, b2 - b0) == (2 * 50 * 50 * 64 / 2, 2 * 4 * 50 * 50 / 2)


def test_a_hidden_content_width_scales_only_the_projection_term():
  shape = bench.Shape(users=100, items=5000, dims=(8, 4), per_user=5.0)
  kw = dict(shape=shape, n_train=4096, params=10)
  f_d, b_d = _counts(floors.Work(feature_rows="batch"), **kw)
  f_h, b_h = _counts(floors.Work(feature_rows="batch", content_width=200), **kw)
  rows, n_batches = 2 * 2048, 2                  # 2B rows: the catalogue is larger
  assert f_h - f_d == n_batches * 3 * 2 * rows * 12 * (200 - 64)
  assert b_h == b_d
  assert floors.work_of("dropoutnet", types.SimpleNamespace(embed_dim=64)).content_width == 200


def test_per_row_terms_add_their_closed_forms():
  """In-batch similarity matrices, sampled logits and dense heads add exactly their
  counts; `positives` projects B rows where `batch` projects 2 B."""
  shape = bench.Shape(users=100, items=5000, dims=(8, 4), per_user=5.0)
  kw = dict(shape=shape, n_train=4096, params=10)
  base_f, base_b = _counts(floors.Work(feature_rows="batch"), **kw)
  b, d, n_batches = 2048, 64, 2
  f, by = _counts(floors.Work(feature_rows="batch", pair_matrices=3), **kw)
  assert (f - base_f, by - base_b) == (n_batches * 3 * 2 * 3 * b * b * d, 0)
  f, by = _counts(floors.Work(feature_rows="batch", sampled_logits=7), **kw)
  assert (f - base_f, by - base_b) == (n_batches * 3 * 2 * b * 7 * d,
                                       n_batches * 4 * 3 * b * 7 * d)
  f, by = _counts(floors.Work(feature_rows="batch", head_flops=1000), **kw)
  assert (f - base_f, by - base_b) == (n_batches * b * 1000, 0)
  f, by = _counts(floors.Work(feature_rows="batch", item_pair_matrices=2), **kw)
  assert (f - base_f, by - base_b) == (n_batches * 3 * 2 * 2 * 5000 * 5000 * d, 0)
  f, by = _counts(floors.Work(feature_rows="positives"), **kw)
  assert (base_f - f, base_b - by) == (n_batches * 3 * 2 * b * 12 * d, n_batches * 4 * b * 12)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_has_a_floor(name):
  """Every registered model has a work profile whose counts are positive; graph
  models count their layers (one more layer, more bytes)."""
  shape = bench.SHAPES["tiktok"]
  cfg = make_config(model=name, synthetic_users=shape.users, synthetic_items=shape.items,
                    synthetic_dims=shape.dims)
  spec, _ = group_settings(cfg)
  work = floors.work_of(name, spec)
  flops, bytes_ = _counts(work, shape=shape, n_train=59_541,
                          params=floors.n_params(get_model(name), spec))
  assert flops > 0 and bytes_ > 0
  if "n_ui_layers" in dict(spec.options):
    deeper = make_config(model=name, synthetic_users=shape.users,
                         synthetic_items=shape.items, synthetic_dims=shape.dims,
                         n_ui_layers=dict(spec.options)["n_ui_layers"] + 1)
    _, more = _counts(floors.work_of(name, group_settings(deeper)[0]), shape=shape,
                      n_train=59_541, params=floors.n_params(get_model(name), spec))
    assert more > bytes_


def test_models_command_prints_a_row_per_model_and_shape(tmp_path):
  out_json = str(tmp_path / "rows.json")
  cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--models", "mf,lightgcn",
         "--shapes", "tiny", "--runs", "1,2", "--json", out_json]
  out = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| model | shape | compile s | s/run-epoch R=1 | s/run-epoch R=2 |" in out.stdout
  table = out.stdout[out.stdout.index("| model | shape | compile s | s/run-epoch"):]
  for name in ("mf", "lightgcn"):
    row = next(line for line in table.splitlines() if line.startswith(f"| {name} | tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 11 and all(float(c) > 0 for c in cells[2:]), row
  assert os.path.exists(out_json)
