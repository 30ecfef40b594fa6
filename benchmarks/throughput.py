"""Training throughput (run-epochs/s) and evaluation time for groups of R runs.

  python -m benchmarks.throughput                      # default synthetic data, R = 1 4 16 64
  python -m benchmarks.throughput --runs 1,4 --users 9308 --items 6710 --dims 128,128

Compile time is measured separately (`jit(...).lower().compile()`), then each
group trains `--epochs` timed epochs after one warm-up epoch. Prints a table and,
with --json, writes the numbers.
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

from jaxrec.config import make_config
from jaxrec.engine import sharding
from jaxrec.engine.train import GroupTrainer
from jaxrec.models import get_model
from jaxrec import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "1,4,16,64", "Comma list of group sizes R.")
flags.DEFINE_integer("users", 1200, "Synthetic users.")
flags.DEFINE_integer("items", 1000, "Synthetic items.")
flags.DEFINE_string("dims", "48,32", "Synthetic modality widths.")
flags.DEFINE_integer("batch_size", 2048, "Mini-batch size.")
flags.DEFINE_integer("epochs", 3, "Timed epochs per R.")
flags.DEFINE_string("json", None, "Write the results to this JSON file.")


def measure(n_runs: int) -> dict:
  dims = tuple(int(d) for d in FLAGS.dims.split(","))
  configs = [make_config(synthetic_users=FLAGS.users, synthetic_items=FLAGS.items,
                         synthetic_dims=dims, batch_size=FLAGS.batch_size, seed=s,
                         setting=("fm", "mm")[s % 2], missing_rate=0.5)
             for s in range(n_runs)]
  model = get_model("milk")
  dataset = sweep.dataset_for(configs[0])
  split = sweep.split_for(configs[0])
  spec, settings = sweep.group_settings(configs[0])
  mesh = sharding.runs_mesh()
  data = jax.device_put(sweep.group_data(dataset, split), sharding.replicated(mesh))
  runs = sweep.run_inputs(model, configs, dataset, split)
  runs = sharding.pad_runs(runs, n_runs, sharding.padded_size(n_runs, mesh))
  runs = jax.device_put(runs, sharding.runs_sharding(mesh))
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  state = trainer.init(runs)

  t0 = time.perf_counter()
  compiled = trainer.epoch.lower(state, runs, data).compile()
  compile_s = time.perf_counter() - t0
  state, terms = compiled(state, runs, data)
  jax.block_until_ready(terms)
  t0 = time.perf_counter()
  for _ in range(FLAGS.epochs):
    state, terms = compiled(state, runs, data)
  jax.block_until_ready(terms)
  epoch_s = (time.perf_counter() - t0) / FLAGS.epochs

  trainer.run_eval(state.params, runs, data, data.test)     # compile
  t0 = time.perf_counter()
  jax.block_until_ready(trainer.run_eval(state.params, runs, data, data.test))
  eval_s = time.perf_counter() - t0
  return dict(runs=n_runs, compile_s=compile_s, epoch_s=epoch_s,
              run_epochs_per_s=n_runs / epoch_s, eval_s=eval_s,
              batches_per_epoch=trainer.n_batches,
              test_users=int(data.test.users.shape[0]))


def main(argv):
  del argv
  device = jax.devices()[0]
  print(f"device: {len(jax.devices())} x {device.platform} ({device.device_kind}); "
        f"data: {FLAGS.users} users, {FLAGS.items} items, dims {FLAGS.dims}; "
        f"batch {FLAGS.batch_size}")
  rows = []
  for n_runs in (int(r) for r in FLAGS.runs.split(",")):
    rows.append(measure(n_runs))
    r = rows[-1]
    print(f"R={r['runs']:5d}  compile {r['compile_s']:6.1f} s  epoch {r['epoch_s']:7.3f} s  "
          f"{r['run_epochs_per_s']:8.2f} run-epochs/s  eval (all R, {r['test_users']} users) "
          f"{r['eval_s']:6.3f} s", flush=True)
  base = rows[0]["run_epochs_per_s"]
  print("\n| R | compile s | epoch s | run-epochs/s | × R=first | eval s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['runs']} | {r['compile_s']:.1f} | {r['epoch_s']:.3f} | "
          f"{r['run_epochs_per_s']:.2f} | {r['run_epochs_per_s'] / base:.2f} | {r['eval_s']:.3f} |")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"device": str(device), "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
