"""Compacting stopped runs: one group trained with and without it, on real data.

  python -m benchmarks.compaction --model mtpr --data ../shared/data/tiktok-diffmm

Trains the group (seeds x settings, the new-item protocol) twice -- the runs axis
left at full size (`compact_at=0`), then compacted as training runs stop (the
default) -- and prints both training times, the compactions, and the largest
difference in any test metric (float tolerance expected: the runs are
independent, compaction only changes which rows XLA computes).
"""
from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from jaxrec.config import make_config
from jaxrec.engine.train import TrainSettings
from jaxrec.sweep import train_configs

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mtpr", "Model of the group.")
flags.DEFINE_string("data", "synthetic", "Dataset folder (or synthetic).")
flags.DEFINE_string("settings", "fm,mm", "Comma list of missing-modality settings.")
flags.DEFINE_integer("seeds", 5, "Seeds 0..N-1 per setting.")
flags.DEFINE_integer("epochs", 200, "Maximum epochs (early stopping as in the sweep).")
flags.DEFINE_float("compact_at", TrainSettings.compact_at, "Compaction threshold to time.")


def main(argv):
  del argv
  configs = [make_config(model=FLAGS.model, data=FLAGS.data, protocol="new_item",
                         setting=setting, seed=seed, max_epochs=FLAGS.epochs)
             for setting in FLAGS.settings.split(",") for seed in range(FLAGS.seeds)]
  rows = {}
  for name, at in (("full axis", 0.0), (f"compact_at={FLAGS.compact_at}", FLAGS.compact_at)):
    out = train_configs(configs, compact_at=at)
    rows[name] = out
    print(f"{name:>18}: train {out.train_seconds:8.1f} s + compiling epochs "
          f"{out.first_epoch_seconds:6.1f} s, eval {out.eval_seconds:6.1f} s; "
          f"epochs trained {sorted(out.epochs_trained.tolist())}; "
          f"compactions (epoch, runs left) {out.compactions}", flush=True)
  full, compact = rows.values()
  diff = max(float(np.abs(compact.test[k] - full.test[k]).max()) for k in full.test)
  total = lambda o: o.train_seconds + o.first_epoch_seconds
  print(json.dumps({"model": FLAGS.model, "data": FLAGS.data, "runs": len(configs),
                    "full_s": round(total(full), 1), "compact_s": round(total(compact), 1),
                    "speedup": round(total(full) / total(compact), 3),
                    "same_epochs": full.epochs_trained.tolist() == compact.epochs_trained.tolist(),
                    "max_test_metric_diff": diff}))


if __name__ == "__main__":
  app.run(main)
