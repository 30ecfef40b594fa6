"""MILK's main comparison: every new-item baseline and MILK, ff / fm / mm, tuned.

Each model is searched over its declared space (`--tune`, the search spaces in the model
files with their sources); the report chooses each model's point per setting on validation
NDCG@10 and compares MILK with the strongest baseline (paired tests over the 10 seeds).

Run:     python -m experiments.sweep --grid milk_main --tune --data ../shared/data/tiktok-diffmm
Size:    with --tune, 138 points x 3 settings x 10 seeds = 4,140 runs in 7 groups: an
         accelerator grid (on 2 CPU cores, days). `--seeds 3` and a smaller `--axis
         MODEL.FIELD=...` cut it; not measured in full yet.
Report:  WORKDIR/report/milk_main.{md,tex,csv}.
"""
from jaxrec.grid import Grid

MODELS = ["duif", "dropoutnet", "mtpr", "heater", "clcrec", "gar", "milk"]


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="new_item", missing_rate=None, max_epochs=1000, eval_every=10,
                patience=3),
      axes=dict(model=MODELS, setting=["ff", "fm", "mm"], seed=list(range(10))),
      # The authors' GAR validates every epoch, patience 10 (main.py).
      per_model=dict(gar=dict(eval_every=1, patience=10)),
      layouts=("milk_main", "overview"))
