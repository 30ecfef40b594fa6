"""Intervals over seeds and paired tests between two cells (scipy.stats)."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Interval:
  """Mean, sample std and a two-sided t-interval of `n` values (one per seed)."""
  mean: float
  std: float
  low: float
  high: float
  n: int


@dataclasses.dataclass(frozen=True)
class Paired:
  """Paired tests of `a - b` over `n` shared seeds; NaN where `n` is too small."""
  n: int
  mean_diff: float
  t: float
  p_t: float
  w: float
  p_w: float


def interval(values: Sequence[float], *, confidence: float = 0.95) -> Interval:
  """The t-interval `mean ± t_{n-1} · std / sqrt(n)`; one value has no width (NaN)."""
  x = np.asarray(values, np.float64)
  n = len(x)
  if n == 0:
    return Interval(math.nan, math.nan, math.nan, math.nan, 0)
  mean = float(x.mean())
  if n == 1:
    return Interval(mean, math.nan, math.nan, math.nan, 1)
  std = float(x.std(ddof=1))
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
  return Interval(mean, std, mean - half, mean + half, n)


def paired_tests(a: Sequence[float], b: Sequence[float]) -> Paired:
  """Two-sided paired t-test and Wilcoxon signed-rank test of `a` against `b`.

  `a[i]` and `b[i]` must come from the same seed. Wilcoxon uses scipy's default
  (exact for small `n` without ties), so with 5 pairs its smallest two-sided p
  is 0.0625: it can only reject from 6 seeds on. Identical samples give p = 1.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
  n = len(a)
  diff = a - b
  mean_diff = float(diff.mean()) if n else math.nan
  if n < 2:
    return Paired(n, mean_diff, math.nan, math.nan, math.nan, math.nan)
  if not np.any(diff):
    return Paired(n, 0.0, 0.0, 1.0, 0.0, 1.0)
  t = stats.ttest_rel(a, b)
  w = stats.wilcoxon(a, b)
  return Paired(n, mean_diff, float(t.statistic), float(t.pvalue), float(w.statistic),
                float(w.pvalue))


def relative_gain(new: float, reference: float) -> float:
  """`new` over `reference` in percent, as papers state it ("+11.2% NDCG@20")."""
  return 100.0 * (new - reference) / abs(reference) if reference else math.nan
