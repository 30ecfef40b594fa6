"""MILK's sensitivity to α (the Dirichlet concentration; the paper's grid): milk_beta's
grid over it.

Run:     python -m experiments.sweep --grid milk_alpha --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_alpha.{md,tex,csv,png}. Not measured yet.
"""
from experiments.configs.milk_beta import sensitivity


def get_config():
  return sensitivity("alpha", [0.01, 0.1, 1.0, 10.0, 100.0], "milk_alpha")
