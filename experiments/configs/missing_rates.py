"""MILK over missing rates x settings x seeds on the default synthetic data.

Run:     python -m experiments.sweep --grid missing_rates
Expect:  36 runs in one compiled group, about 4-5 minutes on 2 CPU cores. Test
         Recall@20 on the 200 new items is about 0.57 at rate 0 and falls to
         0.45-0.49 at rates >= 0.3, mm below fm (random ranking: about 0.10).
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", max_epochs=100, eval_every=5, patience=3),
      axes=dict(missing_rate=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9],
                setting=["fm", "mm"], seed=[0, 1, 2]))
