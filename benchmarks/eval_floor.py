"""Full-ranking evaluation against its matmul floor, on TikTok-shaped data.

  python -m benchmarks.eval_floor                         # R = 1, 64; new-item and warm
  python -m benchmarks.eval_floor --runs 1,64,256 --json eval.json
  python -m benchmarks.eval_floor --users 300 --items 200 --runs 1,4 --reps 1   # smoke

Evaluation alone, without a model: each of R runs gets random (U, D) user and
(I, D) item embeddings, and `jaxrec.eval.evaluate` is vmapped over them as the
engine does (users in chunks of `--budget_elements` / (R x candidates)). Per
(protocol, R) it prints the seconds of one evaluation of all R runs (median of
`--reps` after the compiling call), seconds per run, the matmul FLOP floor per
run (2 x evaluated users x candidates x D FLOPs at the measured matmul rate of
`benchmarks.measure`) and measured / floor. New-item ranks the fifth of the items
that are new (1,342 on TikTok), warm ranks all 6,710 and masks each user's
training items.
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.measure import measure_ceilings
from jaxrec.data import protocol
from jaxrec.data.synthetic import make_synthetic
from jaxrec.eval import EvalSplit, evaluate, make_eval_split

FLAGS = flags.FLAGS
flags.DEFINE_integer("users", 9308, "Users (TikTok: 9,308).")
flags.DEFINE_integer("items", 6710, "Items (TikTok: 6,710; new-item ranks a fifth).")
flags.DEFINE_float("per_user", 7.4, "Interactions per user (TikTok: 7.4).")
flags.DEFINE_integer("dim", 64, "Embedding width D.")
flags.DEFINE_string("runs", "1,64", "Comma list of group sizes R.")
flags.DEFINE_string("protocols", "new_item,warm", "Comma list of new_item, warm.")
flags.DEFINE_string("ks", "10,20,50", "Cut-offs, as the engine's default.")
flags.DEFINE_integer("reps", 3, "Timed evaluations per point (median).")
# The engine's default (EVAL_BUDGET_ELEMENTS): scores held per device at once.
flags.DEFINE_integer("budget_elements", 1 << 25, "Scores per evaluation chunk, all runs.")
flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")


def tiktok_like_split(name: str, users: int, items: int, per_user: float) -> EvalSplit:
  """The test split of synthetic data with TikTok's sizes under one protocol."""
  data = make_synthetic(n_users=users, n_items=items, feature_dims=(8,),
                        interactions_per_user=per_user, seed=0)
  if name == "new_item":
    split = protocol.new_item_split(data, seed=0)
  else:
    split = protocol.warm_split(data, protocol.random_pair_split(data, seed=0))
  return make_eval_split(eval_pairs=split.test_pairs, train_pairs=split.train_pairs,
                         candidates=split.test_candidates, n_users=users, n_items=items)


def time_point(split: EvalSplit, n_runs: int, users: int, items: int, dim: int,
               ks: tuple[int, ...], reps: int, budget: int) -> float:
  """Median seconds of one evaluation of `n_runs` runs (compiled beforehand)."""
  n_candidates = int(split.items.shape[0])
  chunk = max(8, budget // (n_runs * n_candidates))
  keys = jax.random.split(jax.random.PRNGKey(n_runs), 2)
  user_emb = jax.random.normal(keys[0], (n_runs, users, dim))
  item_emb = jax.random.normal(keys[1], (n_runs, items, dim))
  run = jax.jit(jax.vmap(lambda u, i, s: evaluate(u, i, s, ks=ks, chunk_size=chunk),
                         in_axes=(0, 0, None)))
  jax.block_until_ready(run(user_emb, item_emb, split))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(run(user_emb, item_emb, split))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv):
  del argv
  ks = tuple(int(k) for k in FLAGS.ks.split(","))
  rate = measure_ceilings()["matmul_flops"]
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}); jax {jax.__version__}; "
        f"measured matmul {rate / 1e9:.1f} GFLOP/s", flush=True)
  rows = []
  for name in FLAGS.protocols.split(","):
    split = tiktok_like_split(name, FLAGS.users, FLAGS.items, FLAGS.per_user)
    n_eval, n_truth = split.truth.shape
    n_candidates = int(split.items.shape[0])
    floor = 2.0 * n_eval * n_candidates * FLAGS.dim / rate
    for n_runs in (int(r) for r in FLAGS.runs.split(",")):
      seconds = time_point(split, n_runs, FLAGS.users, FLAGS.items, FLAGS.dim, ks,
                           FLAGS.reps, FLAGS.budget_elements)
      row = dict(protocol=name, runs=n_runs, users=n_eval, candidates=n_candidates,
                 truth_width=n_truth, seen_width=int(split.seen.shape[1]), dim=FLAGS.dim,
                 eval_s=seconds, eval_s_per_run=seconds / n_runs, floor_s_per_run=floor,
                 x_floor=seconds / n_runs / floor)
      rows.append(row)
      print(f"{name:8s} R={n_runs:5d} eval {seconds:.3g}s  per run {seconds / n_runs:.3g}s  "
            f"floor {floor:.3g}s  x{row['x_floor']:.1f}", flush=True)
  print("\n| protocol | users | candidates | T | R | eval s (all R) | s per run | "
        "FLOP floor s per run | × floor |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['protocol']} | {r['users']} | {r['candidates']} | {r['truth_width']} | "
          f"{r['runs']} | {r['eval_s']:.3g} | {r['eval_s_per_run']:.3g} | "
          f"{r['floor_s_per_run']:.3g} | {r['x_floor']:.1f} |")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"device": str(device), "jax": jax.__version__, "matmul_flops": rate,
                 "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
