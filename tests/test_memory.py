"""Memory planning: XLA-based estimate, chunks that fit a budget, a clear error."""
import pytest

from jaxrec.config import make_config
from jaxrec.engine import memory, sharding
from jaxrec.errors import InputError
from jaxrec.engine.train import GroupTrainer
from jaxrec.models import get_model
from jaxrec.engine.inputs import (dataset_for, group_data, group_settings, run_inputs,
                                  split_for)
from jaxrec.grid import Grid
from jaxrec.sweep import run_sweep

TINY = dict(synthetic_users=300, synthetic_items=250, synthetic_dims=(24, 16), embed_dim=16,
            batch_size=256, max_epochs=2, eval_every=1)


def _group(n_runs, **kw):
  configs = [make_config(**{**TINY, **kw}, seed=s) for s in range(n_runs)]
  model = get_model(configs[0].model)
  dataset, split = dataset_for(configs[0]), split_for(configs[0])
  spec, settings = group_settings(configs[0])
  return model, spec, settings, group_data(dataset, split), run_inputs(
      model, configs, dataset, split)


@pytest.mark.parametrize("model_name", ["milk", "i3mrec"])
def test_estimate_is_affine_and_predicts_a_larger_group(model_name):
  kw = {"model": model_name}
  model, spec, settings, data, runs = _group(1, **kw)
  est = memory.estimate(model, spec, settings, data, runs)
  assert est.per_run_bytes > 0 and est.shared_bytes > 0
  # Compile R = 6 for real and compare with the extrapolation.
  _, _, _, _, runs6 = _group(6, **kw)
  mesh = sharding.runs_mesh(None)
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  import jax
  abstract = jax.eval_shape(trainer.prepare, memory._abstract(runs6), memory._abstract(data))
  state = jax.eval_shape(trainer.init, abstract)
  compiled = trainer.epoch.lower(state, abstract, memory._abstract(data),
                                  memory.EPOCH).compile()
  actual = memory._program_bytes(compiled)
  assert actual <= est.bytes_for(6) * 1.25


def test_chunks_fit_the_budget():
  est = memory.MemoryEstimate(shared_bytes=100, per_run_bytes=10)
  size = memory.runs_per_chunk(est, n_runs=50, budget_bytes=200, margin=1.0)
  assert size == 10 and est.bytes_for(size) <= 200 < est.bytes_for(size + 1)
  assert memory.runs_per_chunk(est, n_runs=50, budget_bytes=200, n_devices=4,
                               margin=1.0) == 40
  chunks = memory.chunk(list(range(23)), 10)
  assert [len(c) for c in chunks] == [8, 7, 8] and sum(chunks, []) == list(range(23))
  with pytest.raises(InputError, match="one run needs about"):
    memory.runs_per_chunk(est, n_runs=5, budget_bytes=105, margin=1.0)


def test_sweep_chunks_a_group_and_gets_the_same_results(tmp_path, capsys):
  grid = Grid(base=TINY, axes=dict(seed=[0, 1, 2, 3]))
  whole = run_sweep(grid, str(tmp_path / "whole"), progress=False)
  model, spec, settings, data, runs = _group(1)
  est = memory.estimate(model, spec, settings, data, runs)
  budget = int((est.bytes_for(2) + est.per_run_bytes // 2) / memory.MARGIN)
  chunked = run_sweep(grid, str(tmp_path / "chunked"), progress=False,
                      memory_budget_bytes=budget)
  assert "in 2 chunks of <= 2 runs" in capsys.readouterr().out
  assert len({r["group"] for r in chunked}) == 1
  assert sorted(r["timing"]["group_runs"] for r in chunked) == [2, 2, 2, 2]
  by_id = {r["run_id"]: r["test"] for r in whole}
  for rec in chunked:
    assert rec["test"] == pytest.approx(by_id[rec["run_id"]], abs=1e-6)
  with pytest.raises(InputError, match="one run needs about"):
    run_sweep(grid, str(tmp_path / "tiny"), progress=False, memory_budget_bytes=1000)


def test_a_chunk_that_runs_out_of_memory_is_halved_and_nothing_is_lost(tmp_path, monkeypatch):
  # The plan is an estimate: a chunk that still does not fit (XLA's
  # RESOURCE_EXHAUSTED) is split in two and retrained, down to single runs.
  from jaxrec import sweep
  real = sweep.train_inputs
  sizes, trained = [], []

  def at_most_two(inputs, **kwargs):
    sizes.append(inputs.n_runs)
    if inputs.n_runs > 2:
      raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
    trained.append(inputs.n_runs)
    return real(inputs, **kwargs)
  monkeypatch.setattr(sweep, "train_inputs", at_most_two)
  grid = Grid(base=dict(TINY, max_epochs=2, eval_every=1), axes=dict(seed=[0, 1, 2, 3, 4]))
  records = run_sweep(grid, str(tmp_path), progress=False)
  assert sorted(r["config"]["seed"] for r in records) == [0, 1, 2, 3, 4]
  assert sizes == [5, 2, 3, 1, 2] and sum(trained) == 5     # 5 -> 2 + 3 -> 2 + 1 + 2
  monkeypatch.setattr(sweep, "train_inputs", lambda inputs, **kw: 1 / 0)
  with pytest.raises(ZeroDivisionError):          # any other failure is not retried
    run_sweep(Grid(base=dict(TINY, max_epochs=2), axes=dict(seed=[7])), str(tmp_path / "b"),
              progress=False)
