"""MILK's sensitivity to λ_align (the alignment weight): milk_beta's grid over it.

Run:     python -m experiments.sweep --grid milk_align --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_align.{md,tex,csv,png}. Not measured yet.
"""
from experiments.configs.milk_beta import sensitivity


def get_config():
  return sensitivity("align_weight", [0.0, 0.05, 0.5, 1.0, 5.0], "milk_align")
