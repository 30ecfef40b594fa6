"""Filling a missing modality with zeros or with the training items' mean (MILK's paper),
MILK and DUIF, fm and mm, 10 seeds; TikTok hyper-parameters for MILK.

Run:     python -m experiments.sweep --grid milk_fill --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_fill.{md,tex,csv}. Not measured yet.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="new_item", missing_rate=None, max_epochs=1000, eval_every=10,
                patience=3),
      axes=dict(model=["duif", "milk"], fill=["zero", "mean"], setting=["fm", "mm"],
                seed=list(range(10))),
      per_model=dict(milk=dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)),
      layouts=("milk_fill",))
