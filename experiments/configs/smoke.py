"""A tiny grid for tests and a first look: 4 runs, seconds on a laptop.

Run:     python -m experiments.sweep --grid smoke
Expect:  a results table in about 15 s; test Recall@20 on the 80 new items well
         above the 0.25 of a random ranking.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", synthetic_users=300, synthetic_items=400,
                synthetic_dims=(16, 12), embed_dim=16, batch_size=256,
                max_epochs=6, eval_every=2, patience=3),
      axes=dict(missing_rate=[0.0, 0.5], seed=[0, 1]))
