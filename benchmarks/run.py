"""The benchmark: throughput, evaluation time and memory of R runs, against the device's floors.

  python -m benchmarks.run --quick            # CPU, under 10 minutes
  python -m benchmarks.run                    # full: both shapes, R up to 1024 (a GPU)
  python -m benchmarks.run --shapes tiktok --models milk --runs 1,64 --json out.json
  python -m benchmarks.run --scaling          # time vs items and feature width (R = 1, 16)
  python -m benchmarks.run --feature_dtype bfloat16   # features stored in bf16

For each (model, data shape, R): compile time of one epoch (`lower().compile()`),
training time per epoch -> run-epochs/s, evaluation time (full ranking, all test
users, all R runs), device bytes per run (XLA's buffer assignment, see
jaxrec/engine/memory.py), and the two floors of an epoch: counted FLOPs over the
measured matmul rate, and counted bytes over the measured memory bandwidth. The
last column is measured time / the larger floor. Data is synthetic with the
real datasets' shapes (TikTok: 9,308 users, 6,710 items, 2 x 128-d; Baby: 19,445
users, 7,050 items, 4,096-d + 384-d).
"""
from __future__ import annotations

import json

import jax
from absl import app, flags

from benchmarks.measure import SHAPES, measure_ceilings, run_point, scaling_shapes
from jaxrec.engine import memory

FLAGS = flags.FLAGS
flags.DEFINE_boolean("quick", False, "CPU-sized run: fewer R, one timed epoch.")
flags.DEFINE_string("shapes", None, "Comma list of data shapes (tiktok, baby).")
flags.DEFINE_string("models", None,
                    "Comma list of models (default milk,i3mrec; --quick: milk).")
flags.DEFINE_string("runs", None, "Comma list of group sizes R (default by mode).")
flags.DEFINE_integer("epochs", None, "Timed epochs per point (default 3, quick 1).")
flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
flags.DEFINE_enum("feature_dtype", "float32", ["float32", "bfloat16"],
                  "Storage of item features (arithmetic stays float32).")
flags.DEFINE_boolean("scaling", False,
                     "Scaling study instead: MILK on the TikTok shape with the number of "
                     "items and the feature width varied, at R = 1 and 16 (or --runs).")


def main(argv):
  del argv
  quick = FLAGS.quick
  shapes = (FLAGS.shapes or ("tiktok" if quick else "tiktok,baby")).split(",")
  runs = [int(r) for r in (FLAGS.runs or ("1,4,16,64" if quick else
                                          "1,4,16,64,256,1024")).split(",")]
  shape_table = SHAPES
  if FLAGS.scaling:
    shape_table = scaling_shapes()
    shapes = FLAGS.shapes.split(",") if FLAGS.shapes else list(shape_table)
    runs = [int(r) for r in (FLAGS.runs or "1,16").split(",")]
  epochs = FLAGS.epochs or (1 if quick else 3)
  device = jax.devices()[0]
  ceilings = measure_ceilings()
  budget = memory.device_budget_bytes() or memory.host_memory_bytes()
  print(f"device: {len(jax.devices())} x {device.platform} ({device.device_kind}); "
        f"measured matmul {ceilings['matmul_flops'] / 1e9:.1f} GFLOP/s, bandwidth "
        f"{ceilings['bandwidth_bytes'] / 1e9:.1f} GB/s; memory budget {budget / 2**30:.1f} GiB; "
        f"features stored as {FLAGS.feature_dtype}",
        flush=True)
  rows = []
  models = FLAGS.models or ("milk" if quick or FLAGS.scaling else "milk,i3mrec")
  for model_name in models.split(","):
    for shape_name in shapes:
      for n_runs in runs:
        row = run_point(model_name, shape_name, shape_table[shape_name], n_runs, epochs,
                        ceilings, FLAGS.feature_dtype)
        rows.append(row)
        fits = int((memory.MARGIN * budget - row["shared_bytes"]) // row["bytes_per_run"])
        row["runs_that_fit"] = fits
        print(f"{model_name:7s} {shape_name:6s} R={n_runs:5d} compile {row['compile_s']:6.1f}s "
              f"epoch {row['epoch_s']:8.3f}s {row['run_epochs_per_s']:8.2f} run-epochs/s "
              f"eval {row['eval_s']:7.3f}s mem/run {row['bytes_per_run'] / 2**20:7.1f} MiB "
              f"floor {max(row['flop_floor_s'], row['byte_floor_s']):.3f}s "
              f"x{row['x_floor']:.1f}", flush=True)
        if n_runs * 2 > fits:
          break                                # the next R would not fit
  print("\n| model | shape | R | compile s | epoch s | run-epochs/s | × R=1 | eval s | "
        "MiB/run | runs fit | FLOP floor s | byte floor s | × floor |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  base = {}
  for r in rows:
    key = (r["model"], r["shape"])
    base.setdefault(key, r["run_epochs_per_s"])
    print(f"| {r['model']} | {r['shape']} | {r['runs']} | {r['compile_s']:.1f} | "
          f"{r['epoch_s']:.3f} | {r['run_epochs_per_s']:.2f} | "
          f"{r['run_epochs_per_s'] / base[key]:.2f} | {r['eval_s']:.3f} | "
          f"{r['bytes_per_run'] / 2**20:.1f} | {r['runs_that_fit']} | "
          f"{r['flop_floor_s']:.3f} | {r['byte_floor_s']:.3f} | {r['x_floor']:.1f} |")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"device": str(device), "ceilings": ceilings, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
