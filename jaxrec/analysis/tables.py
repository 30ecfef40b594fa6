"""A layout's tables from records, rendered as Markdown, CSV and LaTeX (booktabs).

In every column (column group × metric) the best test mean is bold and the
second underlined; the compared row (best, or the layout's focus) carries `*`
when the paired t-test gives p < 0.05 against the other compared row and `†`
when the Wilcoxon signed-rank test does. The "gain %" row is the compared row's
mean over the other's.

A cell is flagged (jaxrec.analysis.evidence) `u` when runs of it were not stopped
by the stopping rule (under-trained), `e` when a chosen hyper-parameter is at the
edge of its searched range, `r` when it does not beat the reference scorers by
the margin; a comparison that involves such a cell (`u` anywhere in its column,
`r` in one of the two compared rows) or a model with missing runs carries no
significance marks. A layout with a focus row ends with one verdict per claim;
missing runs leave it undecided unless the focus row is significantly below a
model whose runs (and its own) are all in: no competitor still to come can undo that.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
from typing import Any, Mapping, Sequence

from jaxrec.analysis import evidence
from jaxrec.analysis.evidence import CellEvidence
from jaxrec.analysis.layouts import Layout
from jaxrec.analysis.select import (DEFAULT_METRIC, Selection, axis_name, axis_value, select,
                                    variation_sources, varies_within)
from jaxrec.analysis.significance import Comparison, compare
from jaxrec.analysis.stats import Interval

METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "hit": "Hit",
                "mrr": "MRR", "map": "MAP"}
GAIN_ROW = "gain %"
AXIS_NAMES = {"missing_rate": "rate", "penalty_weight": "β", "align_weight": "λ_align",
              "alpha": "α"}


@dataclasses.dataclass(frozen=True)
class Entry:
  stat: Interval
  rank: int | None          # 1 best, 2 second in its column; None otherwise
  marks: str                # "*" (paired t), "†" (Wilcoxon), both, or ""
  flags: str = ""           # "u" under-trained, "e" edge of the search, "r" reference level


@dataclasses.dataclass(frozen=True)
class Table:
  """One panel of a layout: `entries[(row, group, metric)]`, labels as shown."""
  title: str
  row_axis: str
  rows: tuple[str, ...]
  groups: tuple[str, ...]
  metrics: tuple[str, ...]
  entries: Mapping[tuple[str, str, str], Entry]
  comparisons: Mapping[tuple[str, str], Comparison]
  selections: tuple[Selection, ...]
  notes: tuple[str, ...]
  # (group, metric) -> why its significance marks are withheld (empty: not withheld)
  caveats: Mapping[tuple[str, str], tuple[str, ...]] = dataclasses.field(default_factory=dict)
  verdicts: tuple[str, ...] = ()


def metric_label(metric: str) -> str:
  """"ndcg@20" -> "NDCG@20"."""
  name, at, k = metric.partition("@")
  return METRIC_NAMES.get(name, name) + at + k


def axis_label(axis: str) -> str:
  return AXIS_NAMES.get(axis, axis)


def group_label(axes: Sequence[str], values: Sequence[Any]) -> str:
  """A column group's heading: names speak for themselves ("fm"), numbers get
  their axis ("rate=0.5")."""
  return " · ".join(value_label(a, v) if isinstance(v, str) else
                    f"{axis_label(a)}={value_label(a, v)}" for a, v in zip(axes, values))


def value_label(axis: str, value: Any) -> str:
  if value is None:
    return "paper" if axis == "missing_rate" else "-"
  if axis == "dataset":
    return os.path.basename(os.path.normpath(str(value)))
  return f"{value:g}" if isinstance(value, float) else str(value)


def _natural(value: Any) -> tuple:
  """Numbers before names, None last, each in its own order."""
  if value is None:
    return (2, 0, "")
  if isinstance(value, (int, float)):
    return (0, value, "")
  return (1, 0, str(value))


def _order(values: set, preferred: Sequence | None, last: Any = None) -> list:
  """`preferred` order where given, else sorted with `last` (the focus) at the end,
  the way papers put the proposed model in the last row."""
  if preferred:
    return [v for v in preferred if v in values]
  return sorted(values, key=lambda v: (v == last, _natural(v)))


def _ranks(means: Mapping[str, float]) -> dict[str, int]:
  finite = sorted((m, row) for row, m in means.items() if math.isfinite(m))[::-1]
  return {row: rank for rank, (_, row) in enumerate(finite[:2], 1)} if len(finite) > 1 else {}


def _where(panel: Mapping[str, Any]) -> str:
  return ", ".join(f"{axis_label(k)}={value_label(k, v)}" for k, v in panel.items())


def _panel_title(layout: Layout, panel: Mapping[str, Any]) -> str:
  where = _where(panel)
  return f"{layout.title} ({where})" if where else layout.title


def _cell_name(sel: Selection, axes: Sequence[str]) -> str:
  return "·".join(value_label(a, sel.cell[a]) for a in axes)


def _flag_notes(cells: Sequence[tuple[Selection, CellEvidence]], axes: Sequence[str],
                metrics: Sequence[str]) -> list[str]:
  """One note per kind of flag, naming its cells."""
  under = [f"{_cell_name(s, axes)} {e.n_under_trained} of {e.n_runs}" for s, e in cells
           if e.is_under_trained]
  edges = [f"{_cell_name(s, axes)} {'; '.join(e.edges)}" for s, e in cells if e.edges]
  refs = [f"{_cell_name(s, axes)} {metric_label(m)} {_number(s.test[m].mean)} vs "
          f"{e.references[m][0]} {_number(e.references[m][1])}" for s, e in cells
          for m in metrics if m in s.test and e.at_reference(m, s.test[m].mean)]
  notes = []
  if under:
    notes.append("<sup>u</sup> under-trained: runs the stopping rule did not stop (they "
                 "selected their last evaluation or reached the max-epochs ceiling): "
                 + ", ".join(under) + ".")
  if edges:
    notes.append("<sup>e</sup> chosen at the edge of its searched range (the best value "
                 "may lie outside it): " + ", ".join(edges) + ".")
  if refs:
    notes.append(f"<sup>r</sup> not above the strongest reference scorer by "
                 f"{100 * evidence.REFERENCE_MARGIN:.0f}% (random ranking, popularity): "
                 + ", ".join(refs) + "; no verdict rests on these cells.")
  return notes


def _notes(selections: Sequence[Selection], comparisons: Sequence[Comparison],
           metric: str, n_rows: int) -> tuple[str, ...]:
  sources = variation_sources(selections)
  seeds = sorted({len(s.runs) for s in selections})
  points = sorted({s.n_points for s in selections})
  ranks = ("**bold** best, <u>underlined</u> second; `*` paired t-test p < 0.05, `†` "
           "Wilcoxon signed-rank p < 0.05 (paired on seed and split seed) against the other "
           "compared row (on a row whose gain is negative: significantly worse)"
           if n_rows > 1 else "one row, nothing ranked")
  notes = [
      f"Hyper-parameters chosen per cell by the best mean {metric} over seeds "
      f"(points searched per cell: {'/'.join(map(str, points))}); no test metric is read "
      "while choosing.",
      f"Mean ± sample std over {'/'.join(map(str, seeds))} seeds at the chosen point; "
      f"{ranks}.",
      "Intervals cover " + ("; ".join(sources) if sources else "nothing (one run per cell)")
      + "."]
  if not varies_within(selections, "split_seed"):
    notes.append("All runs share one split: the intervals do not cover the split.")
  if any(c.paired.n < 6 for c in comparisons):
    notes.append("With fewer than 6 paired seeds the Wilcoxon test cannot reach p < 0.05.")
  diverged = sum(s.n_diverged for s in selections)
  if diverged:
    notes.append(f"{diverged} chosen run(s) diverged (kept their last finite state).")
  return tuple(notes)


def _caveats(cells: Mapping[Any, tuple[Selection, CellEvidence]], comp: Comparison,
             metric: str) -> tuple[str, ...]:
  """Why a comparison's significance is withheld and its claim undecided: a cell of
  the column under-trained, or one of the two compared cells at the reference level."""
  out = [f"{value} under-trained ({e.n_under_trained} of {e.n_runs} runs not stopped by the "
         "stopping rule)" for value, (_, e) in cells.items() if e.is_under_trained]
  for value in (comp.first, comp.second):
    sel, e = cells[value]
    if metric in sel.test and e.at_reference(metric, sel.test[metric].mean):
      name, ref = e.references[metric]
      out.append(f"{value} not above the {name} scorer by "
                 f"{100 * evidence.REFERENCE_MARGIN:.0f}% ({_number(sel.test[metric].mean)} "
                 f"vs {_number(ref)})")
  return tuple(out)


def _rows_are_models(cells: Mapping[Any, tuple[Selection, CellEvidence]]) -> bool:
  return all(s.cell.get("model") == value for value, (s, _) in cells.items())


def _pending(cells: Mapping[Any, tuple[Selection, CellEvidence]],
             missing: frozenset) -> tuple[str, ...]:
  """The models of the column with runs still missing; where the rows are models,
  every model of the grid with runs missing (one with no run here at all is a
  competitor not yet measured: a claim over "every other model" waits for it too)."""
  present = {s.cell.get("model") for s, _ in cells.values()}
  return tuple(map(str, sorted(missing if _rows_are_models(cells) else present & missing)))


def _verdict(claim: str, cells: Mapping[Any, tuple[Selection, CellEvidence]],
             comp: Comparison, caveats: tuple[str, ...], pending: tuple[str, ...]) -> str:
  """The claim's verdict. Runs still missing leave it undecided, except one way: a
  claim over every other model fails on one, so a deficit against a model whose
  runs are all here (the claimant's too) stands whatever the missing models score."""
  if (pending and _rows_are_models(cells) and comp.gain_pct < 0
      and not {str(comp.first), str(comp.second)} & set(pending)):
    return evidence.verdict(claim, comp, caveats, aside=(
        f"{_missing_caveat(pending)[0]}: they cannot turn a deficit into a lead"))
  return evidence.verdict(claim, comp, caveats + _missing_caveat(pending))


def _missing_caveat(pending: tuple[str, ...]) -> tuple[str, ...]:
  return (f"runs of {', '.join(pending)} missing",) if pending else ()


def _row_axis(layout: Layout, selections: Sequence[Selection]) -> tuple[str, bool]:
  """The layout's row axis; where it takes one value (a one-model sweep), the first
  other cell axis that varies, so the sweep gets one table, not one per value.
  Returns (axis, whether it is the layout's own)."""
  row_axis = axis_name(layout.rows)
  if len({s.cell[row_axis] for s in selections}) > 1:
    return row_axis, True
  shown = {row_axis, *layout.columns}
  varying = [a for a in map(axis_name, layout.cell_axes)
             if a not in shown and len({s.cell[a] for s in selections}) > 1]
  return (varying[0], False) if varying else (row_axis, True)


def build_tables(records: Sequence[dict], layout: Layout, *,
                 metric: str = DEFAULT_METRIC, missing: frozenset = frozenset()) -> list[Table]:
  """The layout's tables: one per combination of the varying non-displayed axes.

  `missing`: models with runs of their grid missing (their claims are undecided).
  """
  kept = [r for r in records if layout.keeps(r)]
  selections = select(kept, metric=metric, cell_axes=layout.cell_axes)
  by_cell: dict[tuple, list[dict]] = {}
  for rec in kept:
    by_cell.setdefault(tuple(axis_value(rec, a) for a in layout.cell_axes), []).append(rec)
  cell_key = lambda s: tuple(s.cell.values())
  evidences = {cell_key(s): evidence.cell_evidence(s, by_cell.get(cell_key(s), []))
               for s in selections}
  row_axis, own_rows = _row_axis(layout, selections)
  focus = layout.focus if own_rows else None
  shown = {row_axis, *layout.columns}
  panel_axes = [a for a in map(axis_name, layout.cell_axes)
                if a not in shown and len({s.cell[a] for s in selections}) > 1]
  fixed = {} if own_rows else {axis_name(layout.rows): selections[0].cell[axis_name(layout.rows)]}
  panels = sorted({tuple(s.cell[a] for a in panel_axes) for s in selections}, key=repr)
  preferred_rows = (getattr(layout.rows, "labels", None) or layout.where.get(row_axis)) \
      if own_rows else None
  tables = []
  for panel_values in panels:
    panel = dict(zip(panel_axes, panel_values))
    sels = [s for s in selections if all(s.cell[a] == v for a, v in panel.items())]
    rows = _order({s.cell[row_axis] for s in sels}, preferred_rows, focus)
    column_values = [_order({s.cell[a] for s in sels}, layout.where.get(a))
                     for a in layout.columns]
    groups = list(itertools.product(*column_values))
    heading = lambda g: group_label(layout.columns, g)
    label = lambda v: value_label(row_axis, v)
    entries, comparisons, caveats, verdicts = {}, {}, {}, []
    for group in groups:
      in_group = [s for s in sels if tuple(s.cell[a] for a in layout.columns) == group]
      cells = {s.cell[row_axis]: (s, evidences[cell_key(s)]) for s in in_group}
      pending = _pending(cells, missing)
      for m in layout.metrics:
        stats = {s.cell[row_axis]: s.test[m] for s in in_group if m in s.test}
        ranks = _ranks({label(v): st.mean for v, st in stats.items()})
        found = compare(in_group, metric=m, over=row_axis, focus=focus)
        comp = found[0] if found else None
        found_caveats = () if comp is None else _caveats(cells, comp, m)
        why = found_caveats + _missing_caveat(pending)   # read only where comp is not None
        for v, st in stats.items():
          e = cells[v][1]
          marks = ""
          if comp is not None and comp.first == v and not why:
            marks = "*" * comp.significant_t + "†" * comp.significant_w
          flags = ("u" * e.is_under_trained + "e" * bool(e.edges)
                   + "r" * e.at_reference(m, st.mean))
          entries[(label(v), heading(group), m)] = Entry(st, ranks.get(label(v)), marks, flags)
        if comp is None:
          continue
        comparisons[(heading(group), m)] = comp
        caveats[(heading(group), m)] = why
        if focus is not None:
          where = ", ".join(filter(None, [_where(panel), heading(group), metric_label(m)]))
          claim = f"{label(focus)} beats every other {axis_label(row_axis)} ({where})"
          verdicts.append(_verdict(claim, cells, comp, found_caveats, pending)
                          if comp.first == focus else
                          f"{claim}: undecided ({label(focus)} has no runs here)")
    named = [a for a in map(axis_name, layout.cell_axes)
             if a in shown and len({s.cell[a] for s in sels}) > 1]
    tables.append(Table(
        title=_panel_title(layout, {**fixed, **panel}), row_axis=row_axis,
        rows=tuple(map(label, rows)), groups=tuple(map(heading, groups)),
        metrics=tuple(layout.metrics), entries=entries, comparisons=comparisons,
        selections=tuple(sels),
        notes=_notes(sels, list(comparisons.values()), metric, len(rows)) + tuple(
            _flag_notes([(s, evidences[cell_key(s)]) for s in sels], named, layout.metrics)),
        caveats=caveats, verdicts=tuple(verdicts)))
  return tables


def _number(x: float) -> str:
  return f"{x:.4f}" if math.isfinite(x) else "nan"


def _cell_text(entry: Entry | None) -> str:
  if entry is None:
    return ""
  std = f" ± {_number(entry.stat.std)}" if entry.stat.n > 1 else ""
  return f"{_number(entry.stat.mean)}{std}"


def _gain_text(comp: Comparison | None) -> str:
  return "" if comp is None or not math.isfinite(comp.gain_pct) else f"{comp.gain_pct:+.1f}"


def _columns(table: Table) -> list[tuple[str, str]]:
  return [(g, m) for g in table.groups for m in table.metrics]


def gain_sentences(table: Table) -> list[str]:
  """"milk: +11.2% NDCG@20 over heater (fm; 10 paired seeds, t p=0.003, Wilcoxon p=0.004)"."""
  out = []
  for (group, m), c in table.comparisons.items():
    where = f"{group}; " if group else ""
    name = lambda v: group_label([table.row_axis], [v])
    why = table.caveats.get((group, m))
    withheld = f"; significance withheld: {'; '.join(why)}" if why else ""
    out.append(f"{name(c.first)}: {c.gain_pct:+.1f}% {metric_label(m)} "
               f"over {name(c.second)} ({where}{c.paired.n} paired "
               f"seeds, t p={c.paired.p_t:.3g}, Wilcoxon p={c.paired.p_w:.3g}{withheld})")
  return out


def to_markdown(table: Table) -> str:
  cols = _columns(table)
  header = [axis_label(table.row_axis)] + [f"{g} {metric_label(m)}".strip() for g, m in cols]
  lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
  for row in table.rows:
    cells = []
    for g, m in cols:
      entry = table.entries.get((row, g, m))
      text = _cell_text(entry)
      if entry is not None and entry.rank == 1:
        text = f"**{text}**"
      elif entry is not None and entry.rank == 2:
        text = f"<u>{text}</u>"
      # Escaped, so a mark after bold text does not read as more emphasis.
      if entry is not None:
        text += entry.marks.replace("*", r"\*")
        text += f"<sup>{','.join(entry.flags)}</sup>" if entry.flags else ""
      cells.append(text)
    lines.append("| " + " | ".join([row] + cells) + " |")
  if table.comparisons:
    lines.append("| " + " | ".join([GAIN_ROW] + [_gain_text(table.comparisons.get(c))
                                                  for c in cols]) + " |")
  lines += [""] + [f"- {s}" for s in gain_sentences(table)] + [f"- {n}" for n in table.notes]
  return "\n".join(lines) + "\n"


def verdicts_markdown(tables: Sequence[Table]) -> str:
  """The verdict lines of a layout's tables (empty where it has no focus row)."""
  lines = [v for t in tables for v in t.verdicts]
  return "### Verdicts\n\n" + "\n".join(f"- {v}" for v in lines) + "\n" if lines else ""


def to_csv(tables: Sequence[Table]) -> str:
  """Long format, one line per (table, row, column group, metric), every statistic."""
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["table", "row", "group", "metric", "mean", "std", "ci95_low", "ci95_high",
                   "n", "rank", "marks", "flags", "compared_with", "gain_pct", "p_t",
                   "p_wilcoxon"])
  for table in tables:
    for row in table.rows:
      for g, m in _columns(table):
        entry = table.entries.get((row, g, m))
        if entry is None:
          continue
        comp = table.comparisons.get((g, m))
        mine = comp is not None and value_label(table.row_axis, comp.first) == row
        s = entry.stat
        writer.writerow([table.title, row, g, m, s.mean, s.std, s.low, s.high, s.n,
                         entry.rank or "", entry.marks, entry.flags,
                         value_label(table.row_axis, comp.second) if mine else "",
                         comp.gain_pct if mine else "", comp.paired.p_t if mine else "",
                         comp.paired.p_w if mine else ""])
  return out.getvalue()


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "·": r"$\cdot$", "λ": r"$\lambda$",
                 "β": r"$\beta$", "α": r"$\alpha$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
  return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_cell(entry: Entry | None) -> str:
  if entry is None:
    return ""
  text = _number(entry.stat.mean) + (f"$\\pm${_number(entry.stat.std)}"
                                     if entry.stat.n > 1 else "")
  text = {1: f"\\textbf{{{text}}}", 2: f"\\underline{{{text}}}"}.get(entry.rank, text)
  marks = entry.marks.replace("†", r"\dagger")
  marks += f"\\mathrm{{{','.join(entry.flags)}}}" if entry.flags else ""
  return text + (f"$^{{{marks}}}$" if marks else "")


def to_latex(table: Table) -> str:
  """A booktabs `tabular` (needs \\usepackage{booktabs}), one column per group × metric."""
  n = len(table.metrics)
  cols = _columns(table)
  lines = [f"% {latex_escape(table.title)}",
           "\\begin{tabular}{l" + "c" * len(cols) + "}", "\\toprule"]
  if any(table.groups):
    lines.append(" & ".join([""] + [f"\\multicolumn{{{n}}}{{c}}{{{latex_escape(g)}}}"
                                     for g in table.groups]) + " \\\\")
    lines.append(" ".join(f"\\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}"
                          for i in range(len(table.groups))))
  lines.append(" & ".join([latex_escape(axis_label(table.row_axis))]
                          + [latex_escape(metric_label(m)) for _, m in cols]) + " \\\\")
  lines.append("\\midrule")
  for row in table.rows:
    lines.append(" & ".join([latex_escape(row)]
                            + [_latex_cell(table.entries.get((row, g, m))) for g, m in cols])
                 + " \\\\")
  if table.comparisons:
    lines.append("\\midrule")
    lines.append(" & ".join([latex_escape(GAIN_ROW)]
                            + [latex_escape(_gain_text(table.comparisons.get(c)))
                               for c in cols]) + " \\\\")
  lines += ["\\bottomrule", "\\end{tabular}"]
  return "\n".join(lines) + "\n"


def _interval_text(stat: Interval | None) -> str:
  if stat is None or not math.isfinite(stat.low):
    return ""
  return f"[{_number(stat.low)}, {_number(stat.high)}]"


def selection_markdown(tables: Sequence[Table]) -> str:
  """What was chosen in every cell: the point, how many points and seeds, the
  validation mean, and the 95% t-interval of each test metric."""
  lines = []
  for table in tables:
    sels = table.selections
    if not sels:
      continue
    axes = list(sels[0].cell)
    header = axes + ["chosen", "points", "seeds", "diverged", f"{sels[0].metric} mean"] + [
        f"test {metric_label(m)} 95% CI" for m in table.metrics]
    lines += [f"### Chosen points: {table.title}", "", "| " + " | ".join(header) + " |",
              "|" + "|".join("---" for _ in header) + "|"]
    for s in sels:
      point = ", ".join(f"{k}={value_label(k, v)}" for k, v in s.point.items()) or "(no search)"
      tie = f" (tied with {s.n_tied})" if s.n_tied else ""
      lines.append("| " + " | ".join(
          [value_label(a, s.cell[a]) for a in axes]
          + [point + tie, str(s.n_points), str(len(s.runs)), str(s.n_diverged),
             _number(s.val.mean)] + [_interval_text(s.test.get(m)) for m in table.metrics])
          + " |")
    lines.append("")
  return "\n".join(lines)
