"""I3-MRec's ablation: the full model, w/o the invariance penalty, w/o the information
bottleneck (jaxrec.analysis.layouts.I3MREC_ABLATION); warm, ff / fm / mm, training missing
rate 0.3 where it applies, 5 seeds.

Run:     python -m experiments.sweep --grid i3mrec_ablation --data ../shared/data/movielens100k-posters
Report:  WORKDIR/report/i3mrec_ablation.{md,tex,csv}. Not measured yet.
"""
from jaxrec.analysis.layouts import I3MREC_ABLATION
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="i3mrec", protocol="warm", max_epochs=1000, eval_every=10, patience=3),
      axes=dict(setting=["fm", "mm"], seed=list(range(5))),
      variants={I3MREC_ABLATION.name: I3MREC_ABLATION.options},
      layouts=("i3mrec_ablation",))
