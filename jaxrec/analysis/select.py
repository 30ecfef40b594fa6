"""Hyper-parameters chosen on validation: one selected point per report cell.

A *cell* is what a table shows in one place (model × setting × missing rate ×
dataset × protocol by default). Inside a cell, a *point* is a run's grid
coordinates without the seed axes and the cell axes, plus any config field that
varies among the cell's runs outside their coordinates (runs joined from several
work directories); its runs are its seeds.
The point with the best mean validation metric over its seeds is chosen, and
only then are the test metrics of that point's runs read.

Ties (equal mean validation metric) go to the point with more seeds, then to
the first point in sorted order of its coordinates, so a report is
reproducible. A diverged run (`diverged_epoch` > 0) kept its last finite state
and was evaluated at its validation-selected epoch before the divergence; it
counts like any other run (the point's instability shows in its mean), is
counted in `Selection.n_diverged`, and with `drop_diverged=True` a point with
any diverged seed is not eligible. A point whose mean is not finite is chosen
only where no point is finite.

A run whose model has a mechanism switched off (a field at its declared
`HParam.off`: MILK's β = 0, an ablation switch at 0) is an ablation variant,
never a point of its model's row: on the `model` axis it is its own row, named
after what is off ("milk (penalty_weight=0)"), unless a cell axis already shows
that field (an ablation layout's `Variants` row, a β sensitivity row).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from jaxrec.analysis.stats import Interval, interval
from jaxrec.config import SHARED_FIELDS
from jaxrec.errors import InputError
from jaxrec.models import REGISTRY

DEFAULT_METRIC = "val.ndcg@10"
DEFAULT_CELL_AXES = ("model", "setting", "missing_rate", "dataset", "protocol", "candidates")
SEED_AXES = ("seed", "split_seed")
# Report axis -> config field, where the names differ.
AXIS_FIELDS = {"dataset": "data"}


@dataclasses.dataclass(frozen=True)
class Variants:
  """A derived cell axis: named settings of config fields, e.g. ablation rows.

  `options` are (label, {field: value}) in display order. A run takes the most
  specific option whose fields all match its config (the first of equally
  specific ones; `{}` matches every run, so it names the full model), and runs
  that match none are left out of any report that uses this axis. The fields
  an option fixes are not hyper-parameters of a point; the others still are
  (the full model's penalty weight is tuned, the "w/o penalty" row's is 0).
  """
  name: str
  options: tuple[tuple[str, Mapping[str, Any]], ...]

  @property
  def labels(self) -> tuple[str, ...]:
    return tuple(label for label, _ in self.options)

  def match(self, record: dict) -> tuple[str, Mapping[str, Any]] | None:
    matching = [(label, values) for label, values in self.options
                if all(field_value(record, k) == v for k, v in values.items())]
    return max(matching, key=lambda o: len(o[1]), default=None)

  def of(self, record: dict) -> str | None:
    option = self.match(record)
    return option[0] if option else None


Axis = str | Variants


@dataclasses.dataclass(frozen=True)
class Selection:
  """The chosen point of one cell.

  `cell` and `point` map axis names to values; `runs` are the point's records
  sorted by seed; `val` is the selection metric over them; `test` has one
  interval per test metric (empty until `select` reads them).
  """
  cell: Mapping[str, Any]
  point: Mapping[str, Any]
  metric: str
  val: Interval
  n_points: int
  n_tied: int
  n_diverged: int
  runs: tuple[dict, ...]
  test: Mapping[str, Interval] = dataclasses.field(default_factory=dict)


def field_value(record: dict, name: str) -> Any:
  """A config field, the run's coordinates first (older records' configs agree).

  A shared field that a record written before the field existed lacks takes
  its default (what that run used), so old and new records of one point agree.
  """
  coords, config = record.get("coords", {}), record.get("config", {})
  if name in coords:
    return _frozen(coords[name])
  if name not in config and name in SHARED_FIELDS:
    return _frozen(SHARED_FIELDS[name].default)
  return _frozen(config.get(name))


def _frozen(value: Any) -> Any:
  """Lists (JSON tuples such as synthetic_dims) as tuples, so values can be keys."""
  return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def axis_value(record: dict, axis: Axis) -> Any:
  """The record's value on a cell axis (a config field, an alias or `Variants`)."""
  if isinstance(axis, Variants):
    return axis.of(record)
  return field_value(record, AXIS_FIELDS.get(axis, axis))


def axis_name(axis: Axis) -> str:
  return axis.name if isinstance(axis, Variants) else axis


def _fixed_fields(record: dict, axes: Sequence[Axis]) -> set[str]:
  """Config fields the record's cell fixes: not hyper-parameters of its point."""
  out = set()
  for axis in axes:
    if isinstance(axis, Variants):
      option = axis.match(record)
      out |= set(option[1]) if option else set()
    else:
      out.add(AXIS_FIELDS.get(axis, axis))
  return out


def switched_off(record: dict, shown: set[str] = frozenset()) -> tuple[tuple[str, Any], ...]:
  """(field, value) of each mechanism the record's model runs with switched off
  (`HParam.off`), in declaration order, leaving out the `shown` fields; () for a
  model the registry does not know."""
  model = REGISTRY.get(field_value(record, "model"))
  if model is None:
    return ()
  values = ((h, field_value(record, h.name)) for h in model.hparams if h.name not in shown)
  return tuple((h.name, value) for h, value in values if h.is_off(value))


def variant_name(model: str, off: Sequence[tuple[str, Any]]) -> str:
  """"milk (penalty_weight=0)": the row of a model's runs with mechanisms off."""
  text = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
  return f"{model} ({', '.join(f'{name}={text(v)}' for name, v in off)})"


def _as_variant(record: dict, axes: Sequence[Axis], cell: tuple) -> tuple[tuple, set[str]]:
  """The record's cell with its `model` value renamed to its ablation variant, and
  the fields that variant fixes (empty where nothing is off outside the cell's axes)."""
  if "model" not in axes:
    return cell, set()
  off = switched_off(record, _fixed_fields(record, axes))
  if not off:
    return cell, set()
  i = list(axes).index("model")
  return cell[:i] + (variant_name(cell[i], off),) + cell[i + 1:], {name for name, _ in off}


def seed_key(record: dict, *, seed_axes: Sequence[str] = SEED_AXES) -> tuple:
  """What pairs runs across cells: the same seed and split seed."""
  return tuple(field_value(record, s) for s in seed_axes)


def split_metric(metric: str, *, split: str) -> str:
  """"val.ndcg@10" -> "ndcg@10"; refuses another split, so no test metric selects."""
  prefix, _, name = metric.partition(".")
  if prefix != split or not name:
    raise InputError(f"selection metric {metric!r}: expected '{split}.<metric>', "
                     f"e.g. '{split}.ndcg@10'")
  return name


def _sort_key(value: Any) -> str:
  return json.dumps(value, sort_keys=True, default=str)


def _unique_runs(records: Iterable[dict]) -> list[dict]:
  """One record per run id (the last written), in first-seen order."""
  by_id = {}
  for rec in records:
    by_id[rec["run_id"]] = rec
  return list(by_id.values())


def _point_stats(runs: list[dict], name: str) -> Interval:
  return interval([r["val"].get(name, math.nan) for r in runs])


def _rank(item: tuple[tuple, Interval, list[dict]]) -> tuple:
  point, val, runs = item
  finite = math.isfinite(val.mean)
  return (not finite, -val.mean if finite else 0.0, -len(runs), _sort_key(point))


def choose(records: Sequence[dict], *, metric: str = DEFAULT_METRIC,
           cell_axes: Sequence[Axis] = DEFAULT_CELL_AXES,
           seed_axes: Sequence[str] = SEED_AXES,
           drop_diverged: bool = False) -> list[Selection]:
  """Chooses each cell's point by mean validation `metric` over seeds.

  Reads only `coords`, `config`, `val` and `diverged_epoch` of the records (the
  returned selections have no test intervals). Cells whose `Variants` axis
  matches no option are left out. Cells come in sorted order of their values.
  """
  name = split_metric(metric, split="val")
  by_cell: dict[tuple, list[dict]] = defaultdict(list)
  variant_fields: dict[str, set[str]] = {}
  for rec in _unique_runs(records):
    cell = tuple(axis_value(rec, a) for a in cell_axes)
    if any(isinstance(a, Variants) and v is None for a, v in zip(cell_axes, cell)):
      continue
    cell, variant_fields[rec["run_id"]] = _as_variant(rec, cell_axes, cell)
    by_cell[cell].append(rec)
  cells: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
  for cell, recs in by_cell.items():
    # Runs joined from several work directories (`report --also`) can differ in
    # a field that is in none of their coordinates (one directory ran with
    # patience 12): such a field is part of the point too, so those runs are
    # other points, not more seeds of the same one.
    config_keys = set().union(*(r.get("config", {}) for r in recs))
    varying = {k for k in config_keys
               if len({_sort_key(field_value(r, k)) for r in recs}) > 1}
    for rec in recs:
      not_point = (set(seed_axes) | _fixed_fields(rec, cell_axes)
                   | variant_fields[rec["run_id"]])
      # A field searched per model is named by its coordinate (`milk.lr`), not
      # again by the config field it sets (`lr`).
      per_model = {k.split(".", 1)[1] for k in rec["coords"] if "." in k}
      keys = (set(rec["coords"]) | (varying - per_model)) - not_point
      point = tuple(sorted((k, field_value(rec, k)) for k in keys))
      cells[cell][point].append(rec)
  out = []
  for cell in sorted(cells, key=_sort_key):
    scored = [(p, _point_stats(runs, name), runs) for p, runs in cells[cell].items()]
    eligible = [s for s in scored
                if not (drop_diverged and any(r.get("diverged_epoch", 0) for r in s[2]))]
    point, val, runs = min(eligible or scored, key=_rank)
    out.append(Selection(
        cell=dict(zip(map(axis_name, cell_axes), cell)), point=dict(point), metric=metric,
        val=val, n_points=len(scored),
        n_tied=sum(s[1].mean == val.mean for s in scored) - 1,
        n_diverged=sum(bool(r.get("diverged_epoch", 0)) for r in runs),
        runs=tuple(sorted(runs, key=lambda r: _sort_key(seed_key(r, seed_axes=seed_axes))))))
  return out


def _blind(record: dict) -> dict:
  """The record without its test metrics: what `choose` is allowed to see."""
  return {k: v for k, v in record.items() if k != "test"}


def select(records: Sequence[dict], *, metric: str = DEFAULT_METRIC,
           cell_axes: Sequence[Axis] = DEFAULT_CELL_AXES,
           seed_axes: Sequence[str] = SEED_AXES,
           drop_diverged: bool = False) -> list[Selection]:
  """`choose` on records stripped of their test metrics, then the chosen runs' test
  metrics: mean, sample std and 95% t-interval over seeds per metric.

  Example:
    >>> sels = select(read_jsonl("runs/x/results.jsonl"), metric="val.recall@20")
    >>> sels[0].cell, sels[0].point, sels[0].test["ndcg@20"].mean
  """
  full = {r["run_id"]: r for r in records}
  chosen = choose([_blind(r) for r in records], metric=metric, cell_axes=cell_axes,
                  seed_axes=seed_axes, drop_diverged=drop_diverged)
  out = []
  for sel in chosen:
    runs = tuple(full[r["run_id"]] for r in sel.runs)
    names = sorted({m for r in runs for m in r.get("test", {})})
    test = {m: interval([r["test"].get(m, math.nan) for r in runs]) for m in names}
    out.append(dataclasses.replace(sel, runs=runs, test=test))
  return out


def varies_within(selections: Sequence[Selection], field: str) -> bool:
  """True if `field` takes several values among the runs of some selection."""
  return any(len({field_value(r, field) for r in s.runs}) > 1 for s in selections)


def variation_sources(selections: Sequence[Selection]) -> list[str]:
  """Which sources of variation the intervals cover, read from the chosen runs."""
  varies = lambda field: varies_within(selections, field)
  out = []
  if varies("seed"):
    out.append("initialisation, negative sampling and mini-batch order, and the "
               "missing-modality masks (`seed`)")
  if varies("split_seed"):
    out.append("the train/validation/test split (`split_seed`)")
  return out
