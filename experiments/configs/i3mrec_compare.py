"""I3-MRec's comparison: every warm multimodal recommender in jaxrec against I3-MRec,
mm setting, training missing rate 0.3, 50% of the test items missing one modality
(the authors' protocol), 5 seeds, each model at its own reference defaults.

Run:     python -m experiments.sweep --grid i3mrec_compare --data ../shared/data/movielens100k-posters
Size:    12 models x 5 seeds = 60 runs in 12 groups (one per model).
Report:  WORKDIR/report/i3mrec_main.{md,tex,csv}: test Recall/NDCG@10/20 at each run's
         validation-chosen epoch, mean ± std over seeds, I3-MRec against the strongest other
         model (paired tests). Measured tables: BUILD_NOTES.md, "I3-MRec's comparison".
"""
from jaxrec.grid import Grid

# The models of I3-MRec's table that jaxrec has (MMRec's and DGMRec's), then MILK and
# I3-MRec itself.
WARM_MODELS = ["mf", "vbpr", "lightgcn", "mmgcn", "lattice", "freedom", "bm3", "mgcn",
               "lgmrec", "dgmrec", "milk", "i3mrec"]


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="warm", setting="mm", missing_rate=0.3, max_epochs=1000,
                eval_every=10, patience=3),
      axes=dict(model=WARM_MODELS, seed=list(range(5))),
      layouts=("i3mrec_main", "overview"))
