"""The benchmark's measuring code runs, and its byte count follows the feature dtype."""
import math

from benchmarks import measure as bench

TINY = bench.Shape(users=200, items=150, dims=(16, 8), per_user=6.0)
CEILINGS = {"matmul_flops": 1e10, "bandwidth_bytes": 1e10}


def test_run_point_measures_and_counts_narrow_features():
  rows = {dtype: bench.run_point("milk", "tiny", TINY, n_runs=2, epochs=1,
                                 ceilings=CEILINGS, feature_dtype=dtype)
          for dtype in ("float32", "bfloat16")}
  for row in rows.values():
    for key in ("compile_s", "epoch_s", "eval_s", "flop_floor_s", "byte_floor_s", "x_floor"):
      assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["bytes_per_run"] > 0
  assert rows["bfloat16"]["flop_floor_s"] == rows["float32"]["flop_floor_s"]
  assert rows["bfloat16"]["byte_floor_s"] < rows["float32"]["byte_floor_s"]


def test_feature_bytes_halve_with_bfloat16():
  args = ("milk", bench.SHAPES["baby"], 129_000, 2048, 64, 0)
  _, wide = bench.epoch_counts(*args)
  _, narrow = bench.epoch_counts(*args, feature_bytes=2)
  shape = bench.SHAPES["baby"]
  n_batches = -(-129_000 // 2048)
  assert wide - narrow == n_batches * 2 * (2 * 2048) * sum(shape.dims)
