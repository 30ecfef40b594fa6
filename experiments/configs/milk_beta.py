"""MILK's sensitivity to β (the invariance weight) on fm, 10 seeds, the other
hyper-parameters at TikTok's values; the report plots test metrics with 95% intervals.

Run:     python -m experiments.sweep --grid milk_beta --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_beta.{md,tex,csv,png}. Not measured yet.
(milk_align and milk_alpha are the same grid over λ_align and α.)
"""
from jaxrec.grid import Grid

TIKTOK = dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)


def sensitivity(field: str, values: list, layout: str) -> Grid:
  """MILK over `values` of `field` (the others at TikTok's), fm, 10 seeds."""
  base = {k: v for k, v in TIKTOK.items() if k != field}
  return Grid(
      base=dict(base, model="milk", protocol="new_item", setting="fm", missing_rate=None,
                max_epochs=1000, eval_every=10, patience=3),
      axes={field: list(values), "seed": list(range(10))}, layouts=(layout,))


def get_config() -> Grid:
  return sensitivity("penalty_weight", [1.0, 10.0, 50.0, 100.0, 1000.0], "milk_beta")
