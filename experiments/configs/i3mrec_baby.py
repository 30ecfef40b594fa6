"""I3-MRec with the authors' Amazon Baby settings on any data: warm protocol,
settings ff / fm / mm, training missing rate 0.3, 50% of the test items missing
one modality (fm, mm), lr 1e-3, reg 1e-3, β 300, c_max 1e-3, c_min 1e-5, 5 seeds.

Run:     python -m experiments.sweep --grid i3mrec_baby --data PATH/TO/baby
Expect:  on Amazon Baby (mm), a re-run of the authors' code reported Recall@20
         0.0830 ± 0.0028, NDCG@20 0.0363 ± 0.0015 (I3MRec.md).
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="i3mrec", protocol="warm", missing_rate=0.3, fill="zero",
                lr=1e-3, reg=1e-3, penalty_weight=300.0, c_max=1e-3, c_min=1e-5,
                max_epochs=1000, eval_every=10, patience=3),
      axes=dict(setting=["ff", "fm", "mm"], seed=[0, 1, 2, 3, 4]))
