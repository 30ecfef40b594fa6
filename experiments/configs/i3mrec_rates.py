"""I3-MRec against the warm multimodal baselines over training missing rates (mm; 50% of
test items miss one modality), 5 seeds, each model at its own defaults: every warm model
of `i3mrec_compare` (12 models x 4 rates x 5 seeds = 240 runs in 12 groups).

Run:     python -m experiments.sweep --grid i3mrec_rates --data ../shared/data/movielens100k-posters
Report:  WORKDIR/report/i3mrec_rates.{md,tex,csv}. Not measured yet.
"""
from experiments.configs.i3mrec_compare import WARM_MODELS
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="warm", setting="mm", max_epochs=1000, eval_every=10, patience=3),
      axes=dict(model=WARM_MODELS,
                missing_rate=[0.1, 0.3, 0.5, 0.7], seed=list(range(5))),
      layouts=("i3mrec_rates",))
