"""MILK over missing rates x settings x seeds on small synthetic data, trained to convergence.

Run:     python -m experiments.sweep --grid missing_rates     (or: bash scripts/sweep.sh)
Expect:  36 runs in one compiled group, each stopped by the stopping rule (evaluate every
         10 epochs, stop after 3 evaluations without improvement; 1000 epochs is only a
         ceiling): runs stop after about 150-300 epochs. Time: see README ("The default
         sweep"), measured on one core. Test Recall@20 on the new items falls from rate 0
         to rate 0.9, mm below fm (the report prints the reference scorers' floor).
"""
from jaxrec.grid import Grid

# Small enough that the default sweep converges in minutes on one CPU core.
SMALL_SYNTHETIC = dict(synthetic_users=600, synthetic_items=500, synthetic_dims=(24, 16),
                       embed_dim=32, batch_size=512)


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", max_epochs=1000, eval_every=10, patience=3, **SMALL_SYNTHETIC),
      axes=dict(missing_rate=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9],
                setting=["fm", "mm"], seed=[0, 1, 2]))
