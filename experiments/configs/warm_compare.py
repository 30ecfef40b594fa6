"""MILK and I3-MRec side by side under the warm protocol: mm, training missing rate
0.3 (50% of test items miss one modality), 5 seeds. Each model uses its own
reference defaults (I3-MRec: the authors' Baby settings; MILK: its code's).

Run:     python -m experiments.sweep --grid warm_compare --data ../shared/data/movielens100k-posters
Expect:  2 groups (one per model) of 5 runs; see BUILD_NOTES.md for measured numbers.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="warm", setting="mm", missing_rate=0.3, max_epochs=1000,
                eval_every=10, patience=3),
      axes=dict(model=["milk", "i3mrec"], seed=[0, 1, 2, 3, 4]))
