"""I3-MRec against the warm multimodal baselines over training missing rates (mm; 50% of
test items miss one modality), 5 seeds, each model at its own defaults.

Run:     python -m experiments.sweep --grid i3mrec_rates --data ../shared/data/movielens100k-posters
Report:  WORKDIR/report/i3mrec_rates.{md,tex,csv}. Not measured yet.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="warm", setting="mm", max_epochs=200, eval_every=10, patience=3),
      axes=dict(model=["mf", "vbpr", "lightgcn", "milk", "i3mrec"],
                missing_rate=[0.1, 0.3, 0.5, 0.7], seed=list(range(5))),
      layouts=("i3mrec_rates",))
