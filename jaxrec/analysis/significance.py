"""The best cell against the runner-up, paired over the seeds both ran.

Within a comparison (the selections that differ only on `over`, e.g. models
within one setting × missing rate), cells are ranked by the test mean of their
validation-chosen point; hyper-parameters were fixed before, so this ranks the
table's reported numbers and chooses nothing. Runs pair by `(seed, split_seed)`:
the same seed gives every model the same split and the same masks (protocol),
so a paired test removes the variation those share.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

from jaxrec.analysis.select import SEED_AXES, Selection, seed_key
from jaxrec.analysis.stats import Paired, paired_tests, relative_gain

ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`first` against `second` on test `metric` within the cells `within`.

  `gain_pct` compares the two reported means (all of each cell's seeds); the
  tests use only the `paired.n` seeds both cells ran.
  """
  within: Mapping[str, Any]
  over: str
  metric: str
  first: Any
  second: Any
  mean_first: float
  mean_second: float
  gain_pct: float
  paired: Paired

  @property
  def significant_t(self) -> bool:
    return self.paired.p_t < ALPHA

  @property
  def significant_w(self) -> bool:
    return self.paired.p_w < ALPHA


def _test_mean(sel: Selection, metric: str) -> float:
  stat = sel.test.get(metric)
  return stat.mean if stat is not None and math.isfinite(stat.mean) else -math.inf


def paired_values(a: Selection, b: Selection, *, metric: str,
                  seed_axes: Sequence[str] = SEED_AXES) -> tuple[list[float], list[float]]:
  """Test `metric` of the runs of `a` and `b` on their shared seeds, in seed order."""
  by_seed = lambda sel: {seed_key(r, seed_axes=seed_axes): r["test"].get(metric, math.nan)
                         for r in sel.runs}
  va, vb = by_seed(a), by_seed(b)
  shared = sorted(set(va) & set(vb), key=repr)
  return [va[s] for s in shared], [vb[s] for s in shared]


def compare(selections: Sequence[Selection], *, metric: str, over: str = "model",
            focus: Any = None, seed_axes: Sequence[str] = SEED_AXES) -> list[Comparison]:
  """One comparison per group of selections that differ only on `over`.

  Without `focus`: the best cell against the runner-up. With `focus` (e.g.
  "milk"), that cell against the strongest other one, so the gain reads "+x%
  over the strongest baseline" and is negative when the focus is not best.
  Groups with fewer than two cells are skipped.
  """
  groups: dict[tuple, list[Selection]] = defaultdict(list)
  for sel in selections:
    within = tuple((k, v) for k, v in sel.cell.items() if k != over)
    groups[within].append(sel)
  out = []
  for within, sels in groups.items():
    if len(sels) < 2:
      continue
    ranked = sorted(sels, key=lambda s: -_test_mean(s, metric))
    first = next((s for s in ranked if s.cell[over] == focus), ranked[0])
    second = next(s for s in ranked if s is not first)
    mean_a, mean_b = (s.test[metric].mean if metric in s.test else math.nan
                      for s in (first, second))
    out.append(Comparison(
        within=dict(within), over=over, metric=metric, first=first.cell[over],
        second=second.cell[over], mean_first=mean_a, mean_second=mean_b,
        gain_pct=relative_gain(mean_a, mean_b),
        paired=paired_tests(*paired_values(first, second, metric=metric,
                                           seed_axes=seed_axes))))
  return out
