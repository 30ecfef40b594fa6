"""Report layouts as data: which cell axes make a table's rows and columns.

A layout's cells are `cell_axes` (the default report axes plus its rows and
columns); the cell axes that are neither rows nor columns and take several
values split the table into panels, one per combination. Everything else in
a run's coordinates is a hyper-parameter tuned on validation.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from jaxrec.analysis.select import DEFAULT_CELL_AXES, Axis, Variants, axis_name, axis_value

PAPER_METRICS = ("recall@20", "ndcg@20")


@dataclasses.dataclass(frozen=True)
class Layout:
  """One table (and optionally a plot) of a report.

  Attributes:
    name: file stem under WORKDIR/report/ and the `--layout` value.
    title: caption.
    rows: the axis whose values are rows (bold/underline rank among them).
    columns: axes whose value combinations are column groups; () for one.
    metrics: test metrics, the columns inside each group.
    where: axis -> values kept, in display order (other runs are left out).
    requires: axes that must take at least two values, or the layout does not
      apply to a work directory (and is skipped unless named).
    focus: a row value compared against the strongest other row (the gain
      "over the strongest baseline"); None compares best against runner-up.
    plot: an axis drawn on x with 95% intervals (sensitivity), or None.
  """
  name: str
  title: str
  rows: Axis = "model"
  columns: tuple[str, ...] = ("setting",)
  metrics: tuple[str, ...] = PAPER_METRICS
  where: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
  requires: tuple[str, ...] = ()
  focus: Any = None
  plot: str | None = None

  @property
  def cell_axes(self) -> tuple[Axis, ...]:
    axes = [self.rows, *self.columns]
    names = {axis_name(a) for a in axes}
    return tuple(axes + [a for a in DEFAULT_CELL_AXES if a not in names])

  def keeps(self, record: dict) -> bool:
    return all(axis_value(record, axis) in values for axis, values in self.where.items())

  def why_not(self, records: Sequence[dict]) -> str | None:
    """Why the layout does not apply to `records`, or None if it does: runs must be
    left after `where`, the focus row must be there (a comparison "against
    I3-MRec" needs I3-MRec), the row axis must vary if required, and every other
    required axis must vary within one row (a "zero against mean fill" table
    needs a model run with both fills, not two models that default to each)."""
    kept = [r for r in records if self.keeps(r)]
    if not kept:
      return f"no runs with {dict(self.where)}"
    axes = {axis_name(a): a for a in self.cell_axes}
    rows = axis_name(self.rows)
    values = lambda name, runs: {axis_value(r, axes.get(name, name)) for r in runs} - {None}
    if self.focus is not None and self.focus not in values(rows, kept):
      return f"it compares {rows} {self.focus!r}, which has no runs here"
    by_row: dict = {}
    for rec in kept:
      by_row.setdefault(axis_value(rec, self.rows), []).append(rec)
    for name in self.requires:
      groups = [kept] if name == rows else list(by_row.values())
      if not any(len(values(name, runs)) > 1 for runs in groups):
        within = "" if name == rows else f" within one {rows}"
        return f"it needs several values of {name}{within}"
    return None

  def applies(self, records: Sequence[dict]) -> bool:
    return self.why_not(records) is None


def _ablation(name: str, *, full: str, switches: Mapping[str, float],
              drops: Mapping[str, tuple[str, ...]]) -> Variants:
  """The full model and each "w/o" row, with every switch given so rows never mix."""
  options = [(full, dict(switches))]
  options += [(label, {**switches, **{f: 0.0 for f in fields}})
              for label, fields in drops.items()]
  return Variants(name, tuple(options))


MILK_SWITCHES = dict(use_align=1.0, use_envs=1.0, use_uniform_env=1.0, cyclic=1.0,
                     random_mix=1.0)
MILK_ABLATION = _ablation("variant", full="MILK", switches=MILK_SWITCHES, drops={
    "w/o alignment": ("use_align",), "w/o environments": ("use_envs",),
    "w/o e=0": ("use_uniform_env",), "w/o cyclic shift": ("cyclic",),
    "w/o random mixing": ("random_mix",)})
# I3-MRec's ablation switches are weights: the penalty β, and the bottleneck's
# two terms (InfoNCE c_max, CLUB c_min). The full model ({}) keeps its tuned β.
I3MREC_ABLATION = Variants("variant", (
    ("I3-MRec", {}),
    ("w/o invariance penalty", {"penalty_weight": 0.0}),
    ("w/o information bottleneck", {"c_max": 0.0, "c_min": 0.0})))

NEW_ITEM_SETTINGS = ("ff", "fm", "mm")

OVERVIEW = Layout(
    name="overview", title="Test metrics at the validation-chosen point of each cell",
    rows="model", columns=("setting",), metrics=("recall@20", "ndcg@20", "recall@10",
                                                 "ndcg@10"))

LAYOUTS = {layout.name: layout for layout in (
    OVERVIEW,
    Layout(name="milk_main", title="MILK against the new-item baselines (ff / fm / mm)",
           rows="model", columns=("setting",), where={"setting": NEW_ITEM_SETTINGS},
           requires=("model",), focus="milk"),
    Layout(name="milk_ablation", title="MILK ablation", rows=MILK_ABLATION,
           columns=("setting",), where={"model": ("milk",)}, requires=("variant",),
           focus="MILK"),
    Layout(name="milk_fill", title="Filling missing modalities: zero against mean",
           rows="model", columns=("setting", "fill"), where={"fill": ("zero", "mean")},
           requires=("fill",)),
    Layout(name="milk_beta", title="MILK: sensitivity to the invariance weight β",
           rows="penalty_weight", where={"model": ("milk",)},
           requires=("penalty_weight",), plot="penalty_weight"),
    Layout(name="milk_align", title="MILK: sensitivity to the alignment weight λ_align",
           rows="align_weight", where={"model": ("milk",)},
           requires=("align_weight",), plot="align_weight"),
    Layout(name="milk_alpha", title="MILK: sensitivity to the Dirichlet concentration α",
           rows="alpha", where={"model": ("milk",)}, requires=("alpha",), plot="alpha"),
    Layout(name="i3mrec_rates", title="I3-MRec against the baselines over missing rates",
           rows="model", columns=("missing_rate",), requires=("model", "missing_rate"),
           focus="i3mrec"),
    Layout(name="i3mrec_main", title="I3-MRec against the warm multimodal recommenders",
           rows="model", columns=("setting",), requires=("model",), focus="i3mrec",
           metrics=("recall@10", "recall@20", "ndcg@10", "ndcg@20")),
    Layout(name="i3mrec_ablation", title="I3-MRec ablation", rows=I3MREC_ABLATION,
           columns=("setting",), where={"model": ("i3mrec",)}, requires=("variant",),
           focus="I3-MRec"),
)}
