"""The benchmark: throughput, evaluation time and memory of R runs, against the device's floors.

  python -m benchmarks.run --quick            # CPU, under 10 minutes
  python -m benchmarks.run                    # full: both shapes, R up to 1024 (a GPU)
  python -m benchmarks.run --shapes tiktok --models milk --runs 1,64 --json out.json
  python -m benchmarks.run --scaling          # time vs items and feature width (R = 1, 16)
  python -m benchmarks.run --feature_dtype bfloat16   # features stored in bf16
  python -m benchmarks.run --models all --quick       # every model, TikTok and MovieLens, R = 1, 5

For each (model, data shape, R): compile time of one epoch (`lower().compile()`),
training time per epoch -> run-epochs/s, evaluation time (full ranking, all test
users, all R runs), device bytes per run (XLA's buffer assignment, see
jaxrec/engine/memory.py), and the two floors of an epoch: counted FLOPs over the
measured matmul rate, and counted bytes over the measured memory bandwidth. The
last column is measured time / the larger floor. The floors of every model are
counted in benchmarks/floors.py. Data is synthetic with the real datasets' shapes
(TikTok: 9,308 users, 6,710 items, 2 x 128-d; Baby: 19,445 users, 7,050 items,
4,096-d + 384-d; MovieLens: 943 users, 1,682 items, 1,280-d + 384-d).

`--models all` (every registered model) defaults to the TikTok and MovieLens
shapes at R = 1 and 5, estimates memory once per model and shape, goes on past
a model that fails (its error is one line and a row), and ends with one row per
(model, shape): seconds per run-epoch at each R against the floors.
"""
from __future__ import annotations

import json

import jax
from absl import app, flags

from benchmarks.measure import (SHAPES, affine_bytes, measure_ceilings, run_point,
                                scaling_shapes)
from jaxrec.engine import memory
from jaxrec.models import REGISTRY

FLAGS = flags.FLAGS
flags.DEFINE_boolean("quick", False, "CPU-sized run: fewer R, one timed epoch.")
flags.DEFINE_string("shapes", None, "Comma list of data shapes (tiktok, baby).")
flags.DEFINE_string("models", None,
                    "Comma list of models, or 'all' (default milk,i3mrec; --quick: milk).")
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
  every_model = FLAGS.models == "all"
  shapes = (FLAGS.shapes or ("tiktok,movielens" if every_model else
                             "tiktok" if quick else "tiktok,baby")).split(",")
  runs = [int(r) for r in (FLAGS.runs or ("1,5" if every_model else "1,4,16,64" if quick
                                          else "1,4,16,64,256,1024")).split(",")]
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
  models = sorted(REGISTRY) if every_model else models.split(",")
  failed = []
  for model_name in models:
    for shape_name in shapes:
      points = []
      for n_runs in runs:
        try:
          row = run_point(model_name, shape_name, shape_table[shape_name], n_runs, epochs,
                          ceilings, FLAGS.feature_dtype)
        except Exception as err:  # pylint: disable=broad-except
          if not every_model:
            raise
          failed.append((model_name, shape_name, n_runs, f"{type(err).__name__}: {err}"))
          print(f"{model_name:7s} {shape_name:6s} R={n_runs:5d} FAILED: "
                f"{failed[-1][-1].splitlines()[0][:300]}", flush=True)
          break
        points.append(row)
        rows.append(row)
        # Memory is affine in R: two points give shared + R x per run (until the
        # second, all of the first point's bytes count as one run's: an upper bound).
        shared, per_run = (affine_bytes({p["runs"]: p["program_bytes"] for p in points})
                           if len(points) > 1 else (0, row["program_bytes"]))
        for p in points:
          p.update(bytes_per_run=per_run, shared_bytes=shared)
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
  if len(models) > 1:
    print("\n" + per_model_table(rows, runs))
  for model_name, shape_name, n_runs, error in failed:
    print(f"FAILED: {model_name} {shape_name} R={n_runs}: {error.splitlines()[0][:300]}")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"device": str(device), "ceilings": ceilings, "rows": rows,
                 "failed": failed}, f, indent=1)


def per_model_table(rows: list[dict], runs: list[int]) -> str:
  """One markdown row per (model, shape): compile, seconds per run-epoch at each R,
  evaluation (all test users, R = the first), memory per run, the floors of one
  run-epoch and measured / the larger floor at each R."""
  by_point = {(r["model"], r["shape"], r["runs"]): r for r in rows}
  cols = (["model", "shape", "compile s"] + [f"s/run-epoch R={n}" for n in runs]
          + ["eval s", "MiB/run", "FLOP floor s", "byte floor s"]
          + [f"× floor R={n}" for n in runs])
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for model_name, shape_name in dict.fromkeys((r["model"], r["shape"]) for r in rows):
    points = [by_point.get((model_name, shape_name, n)) for n in runs]
    first = next(p for p in points if p)
    cell = lambda p, key, fmt: format(p[key], fmt) if p else "—"
    lines.append("| " + " | ".join(
        [model_name, shape_name, f"{first['compile_s']:.1f}"]
        + [cell(p, "run_epoch_s", ".3g") for p in points]
        + [f"{first['eval_s']:.3g}", f"{first['bytes_per_run'] / 2**20:.1f}",
           f"{first['flop_floor_s'] / first['runs']:.3g}",
           f"{first['byte_floor_s'] / first['runs']:.3g}"]
        + [cell(p, "x_floor", ".1f") for p in points]) + " |")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
