"""MILK's sensitivity to λ_align (the alignment weight) on fm, 10 seeds, the other
hyper-parameters at TikTok's values; the report plots test metrics with 95% intervals.

Run:     python -m experiments.sweep --grid milk_align --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_align.{md,tex,csv,png}. Not measured yet.
"""
from jaxrec.grid import Grid

TIKTOK = dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)


def get_config() -> Grid:
  base = {k: v for k, v in TIKTOK.items() if k != "align_weight"}
  return Grid(
      base=dict(base, model="milk", protocol="new_item", setting="fm", missing_rate=None,
                max_epochs=1000, eval_every=10, patience=3),
      axes=dict(align_weight=[0.0, 0.05, 0.5, 1.0, 5.0], seed=list(range(10))),
      layouts=("milk_align",))
