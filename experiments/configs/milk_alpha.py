"""MILK's sensitivity to α (the Dirichlet concentration; the paper's grid) on fm, 10 seeds, the other
hyper-parameters at TikTok's values; the report plots test metrics with 95% intervals.

Run:     python -m experiments.sweep --grid milk_alpha --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_alpha.{md,tex,csv,png}. Not measured yet.
"""
from jaxrec.grid import Grid

TIKTOK = dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)


def get_config() -> Grid:
  base = {k: v for k, v in TIKTOK.items() if k != "alpha"}
  return Grid(
      base=dict(base, model="milk", protocol="new_item", setting="fm", missing_rate=None,
                max_epochs=1000, eval_every=10, patience=3),
      axes=dict(alpha=[0.01, 0.1, 1.0, 10.0, 100.0], seed=list(range(10))),
      layouts=("milk_alpha",))
