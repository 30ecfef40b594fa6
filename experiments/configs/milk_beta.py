"""MILK's sensitivity to β (the invariance weight) on fm, 10 seeds, the other
hyper-parameters at TikTok's values; the report plots test metrics with 95% intervals.

Run:     python -m experiments.sweep --grid milk_beta --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_beta.{md,tex,csv,png}. Not measured yet.
"""
from jaxrec.grid import Grid

TIKTOK = dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)


def get_config() -> Grid:
  base = {k: v for k, v in TIKTOK.items() if k != "penalty_weight"}
  return Grid(
      base=dict(base, model="milk", protocol="new_item", setting="fm", missing_rate=None,
                max_epochs=1000, eval_every=10, patience=3),
      axes=dict(penalty_weight=[1.0, 10.0, 50.0, 100.0, 1000.0], seed=list(range(10))),
      layouts=("milk_beta",))
