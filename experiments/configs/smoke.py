"""A tiny grid for tests and a first look: 4 runs, seconds on a laptop.

Run:     python -m experiments.sweep --grid smoke
Expect:  a results table with test Recall@20 well above random (about 0.2).
"""
from jaxrec.sweep import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", synthetic_users=300, synthetic_items=200,
                synthetic_dims=(16, 12), embed_dim=16, batch_size=256,
                max_epochs=6, eval_every=2, patience=3),
      axes=dict(missing_rate=[0.0, 0.5], seed=[0, 1]))
