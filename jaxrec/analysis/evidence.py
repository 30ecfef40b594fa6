"""What a reported number rests on: training that stopped by the rule, a search
that brackets its choice, a margin over the reference scorers, the whole grid.

A table cell is a validation-chosen point (`Selection`); this module reads its
runs' records and says, per cell, what would make its number provisional:

- under-trained runs: the stopping rule (evaluate every `eval_every` epochs,
  stop after `patience` evaluations without improvement) did not stop them;
  they selected their last evaluation or ran into the `max_epochs` ceiling;
- a chosen hyper-parameter at the edge of the range searched for it;
- a test mean within `REFERENCE_MARGIN` of the strongest reference scorer
  (a random ranking, item or content popularity; `reference` in the records,
  written by the sweep with `jaxrec.reference_scorers.reference_metrics`).

It also names the runs of a work directory's grid that are not in it, and
the budgets and protocols in which joined work directories differ.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

from jaxrec.analysis.select import Selection, field_value
from jaxrec.analysis.significance import ALPHA, Comparison

# A cell must beat the strongest reference scorer by this fraction of its score.
REFERENCE_MARGIN = 0.10
# The fields that make a training budget, and those that make a protocol: runs
# joined from several work directories that differ in them are said to.
BUDGET_FIELDS = ("max_epochs", "eval_every", "patience", "pretrain_epochs")
PROTOCOL_FIELDS = ("data", "protocol", "new_fraction", "candidates", "test_missing_rate",
                   "min_rating")
# How many missing runs a report names per model before it only counts them.
NAMED_MISSING = 4


def under_trained(record: dict) -> bool:
  """True if the stopping rule did not stop the run: it stopped at `max_epochs`
  fewer than `patience` evaluations after its selected epoch (so also when it
  selected its last evaluation). A diverged run is counted apart, not here."""
  config = record.get("config", {})
  trained, selected = record.get("epochs_trained"), record.get("selected_epoch")
  if trained is None or selected is None or record.get("diverged_epoch", 0):
    return False
  ceiling = config.get("max_epochs", math.inf)
  rule = config.get("patience", 1) * config.get("eval_every", 1)
  return trained >= ceiling and trained - selected < rule


def _budget(record: dict) -> tuple:
  return tuple(field_value(record, f) for f in ("eval_every", "patience", "max_epochs"))


def budget_line(records: Sequence[dict]) -> str:
  """The training budgets of `records`, naming a ceiling that acted as a cap."""
  by_budget: dict[tuple, list[dict]] = defaultdict(list)
  for rec in records:
    by_budget[_budget(rec)].append(rec)
  parts = []
  for (every, patience, ceiling), runs in sorted(by_budget.items(), key=repr):
    if None in (every, patience, ceiling):
      parts.append(f"{len(runs)} run(s) without a recorded budget")
      continue
    capped = sum(under_trained(r) for r in runs)
    text = (f"{len(runs)} run(s) evaluated every {every} epochs, stopped after {patience} "
            f"evaluations without improvement or at {ceiling} epochs")
    if capped:
      text += (f" ({capped} of them stopped at {ceiling} epochs before the rule could stop "
               f"them: {ceiling} epochs was their cap)")
    parts.append(text)
  return "Training: " + "; ".join(parts) + "." if parts else ""


@dataclasses.dataclass(frozen=True)
class CellEvidence:
  """What one cell's number rests on.

  `references[metric]` is (scorer, test mean over the cell's runs) of the
  strongest reference scorer, absent where the records carry none. `edges` are
  "field=value" of chosen hyper-parameters at an edge of their searched range.
  """
  n_runs: int
  n_under_trained: int
  edges: tuple[str, ...]
  references: Mapping[str, tuple[str, float]]

  @property
  def is_under_trained(self) -> bool:
    return self.n_under_trained > 0

  def at_reference(self, metric: str, mean: float) -> bool:
    """True if `mean` does not beat the strongest reference by the margin."""
    if metric not in self.references:
      return False
    return not mean > (1.0 + REFERENCE_MARGIN) * self.references[metric][1]


def _references(runs: Sequence[dict]) -> dict[str, tuple[str, float]]:
  """Per test metric, the strongest reference scorer's mean over `runs`."""
  if not runs or not all(r.get("reference") for r in runs):
    return {}
  scorers = set.intersection(*(set(r["reference"]) for r in runs))
  out = {}
  for metric in set.intersection(*(set(r["reference"][s]) for r in runs for s in scorers)):
    means = {s: sum(r["reference"][s][metric] for r in runs) / len(runs) for s in scorers}
    best = max(sorted(means), key=means.get)
    out[metric] = (best, means[best])
  return out


def _number(value: Any) -> float | None:
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
      else None


def edge_choices(selection: Selection, cell_runs: Sequence[dict]) -> tuple[str, ...]:
  """The chosen point's numeric grid coordinates that lie at an edge of the values
  searched in the cell (`cell_runs`: every run of the cell, all its points); a
  search of two values always chooses an edge."""
  out = []
  coords = set().union(*(r.get("coords", {}) for r in selection.runs)) if selection.runs \
      else set()
  for name, value in selection.point.items():
    chosen = _number(value)
    if name not in coords or chosen is None:
      continue
    searched = {v for v in (_number(field_value(r, name)) for r in cell_runs) if v is not None}
    if len(searched) > 1 and chosen in (min(searched), max(searched)):
      out.append(f"{name}={value:g} of {min(searched):g}..{max(searched):g}")
  return tuple(out)


def cell_evidence(selection: Selection, cell_runs: Sequence[dict]) -> CellEvidence:
  return CellEvidence(
      n_runs=len(selection.runs),
      n_under_trained=sum(under_trained(r) for r in selection.runs),
      edges=edge_choices(selection, cell_runs),
      references=_references(selection.runs))


def unreferenced_line(records: Sequence[dict]) -> str:
  n = sum(not r.get("reference") for r in records)
  if not n:
    return ""
  return (f"{n} of {len(records)} runs carry no reference-scorer metrics (written before "
          "the sweep recorded them): their cells are not checked against a random ranking "
          "or popularity.")


# --- the work directory's grid ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Missing:
  """Runs of a work directory's grid that are not in its records, by model."""
  expected: Mapping[str, int]
  missing: Mapping[str, tuple[dict, ...]]
  problem: str = ""           # why the grid could not be read back, if it could not

  def lines(self, workdir: str) -> list[str]:
    if self.problem:
      return [f"{workdir}: {self.problem}; runs missing from it are not counted."]
    out = []
    for model, runs in sorted(self.missing.items()):
      named = "; ".join(", ".join(f"{k}={v}" for k, v in sorted(c.items()) if k != "model")
                        for c in runs[:NAMED_MISSING])
      more = f"; and {len(runs) - NAMED_MISSING} more" if len(runs) > NAMED_MISSING else ""
      out.append(f"{workdir}: {len(runs)} of {self.expected[model]} runs of {model} "
                 f"missing ({named}{more}).")
    return out

  def models(self) -> set[str]:
    return {m for m, runs in self.missing.items() if runs}


def missing_runs(workdir: str, records: Sequence[dict]) -> Missing:
  """The runs of the grid in WORKDIR/sweep.json whose ids are not in `records`."""
  from jaxrec.grid import Grid    # the models' registry only when a grid is read back
  path = os.path.join(workdir, "sweep.json")
  if not os.path.exists(path):
    return Missing({}, {}, "no sweep.json (the grid it ran is unknown)")
  try:
    with open(path) as f:
      saved = json.load(f)
    runs = Grid.from_json(saved).expand()
  except (OSError, ValueError, KeyError, TypeError) as err:
    return Missing({}, {}, f"its sweep.json could not be expanded into runs ({err})")
  done = {r["run_id"] for r in records}
  expected, missing = Counter(), defaultdict(list)
  for coords, cfg in runs:
    expected[cfg.model] += 1
    if cfg.run_id not in done:
      missing[cfg.model].append(coords)
  return Missing(dict(expected), {m: tuple(c) for m, c in missing.items()})


def joined_differences(records_by_dir: Mapping[str, Sequence[dict]]) -> list[str]:
  """One line per budget or protocol field whose values differ between work
  directories joined into one report."""
  if len(records_by_dir) < 2:
    return []
  out = []
  for kind, fields in (("budget", BUDGET_FIELDS), ("protocol", PROTOCOL_FIELDS)):
    for name in fields:
      values = {d: sorted({json.dumps(field_value(r, name), default=str) for r in recs})
                for d, recs in records_by_dir.items() if recs}
      if len({tuple(v) for v in values.values()}) > 1:
        said = "; ".join(f"{d}: {', '.join(v)}" for d, v in values.items())
        out.append(f"The joined work directories differ in {name} ({kind}): {said}. "
                   "Their cells are compared as they are.")
  return out


# --- verdicts -------------------------------------------------------------------------------

def verdict(claim: str, comparison: Comparison, caveats: Sequence[str], *,
            aside: str = "") -> str:
  """One line: does `claim` (the compared row beats the strongest other) hold?

  holds: a positive gain and the paired t-test rejects equality (p < ALPHA);
  does not hold: a negative gain that the test rejects; undecided otherwise,
  and whenever a caveat applies (under-trained or reference-level cells,
  missing runs), with the reason. `aside` is said after the test (why a caveat
  that would leave the claim undecided does not).
  """
  c, p = comparison, comparison.paired
  if caveats:
    return f"{claim}: undecided ({'; '.join(caveats)})"
  if p.n < 2 or not math.isfinite(p.p_t):
    return f"{claim}: undecided (only {p.n} paired seed(s), no test)"
  said = (f"{c.first} {c.gain_pct:+.1f}% against {c.second}, t p={p.p_t:.3g} over {p.n} "
          "paired seeds" + (f"; {aside}" if aside else ""))
  if p.p_t >= ALPHA:
    return f"{claim}: undecided (within seed noise: {said})"
  return f"{claim}: {'holds' if c.gain_pct > 0 else 'does not hold'} ({said})"
