"""A layout's tables from records, rendered as Markdown, CSV and LaTeX (booktabs).

In every column (column group × metric) the best test mean is bold and the
second underlined; the compared row (best, or the layout's focus) carries `*`
when the paired t-test gives p < 0.05 against the other compared row and `†`
when the Wilcoxon signed-rank test does. The "gain %" row is the compared row's
mean over the other's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
from typing import Any, Mapping, Sequence

from jaxrec.analysis.layouts import Layout
from jaxrec.analysis.select import (DEFAULT_METRIC, Selection, axis_name, select,
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


def _panel_title(layout: Layout, panel: Mapping[str, Any]) -> str:
  where = ", ".join(f"{axis_label(k)}={value_label(k, v)}" for k, v in panel.items())
  return f"{layout.title} ({where})" if where else layout.title


def _notes(selections: Sequence[Selection], comparisons: Sequence[Comparison],
           metric: str) -> tuple[str, ...]:
  sources = variation_sources(selections)
  seeds = sorted({len(s.runs) for s in selections})
  points = sorted({s.n_points for s in selections})
  notes = [
      f"Hyper-parameters chosen per cell by the best mean {metric} over seeds "
      f"(points searched per cell: {'/'.join(map(str, points))}); no test metric is read "
      "while choosing.",
      f"Mean ± sample std over {'/'.join(map(str, seeds))} seeds at the chosen point; "
      "**bold** best, <u>underlined</u> second; `*` paired t-test p < 0.05, `†` Wilcoxon "
      "signed-rank p < 0.05 (paired on seed and split seed) against the other compared row "
      "(on a row whose gain is negative: significantly worse).",
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


def build_tables(records: Sequence[dict], layout: Layout, *,
                 metric: str = DEFAULT_METRIC) -> list[Table]:
  """The layout's tables: one per combination of the varying non-displayed axes."""
  kept = [r for r in records if layout.keeps(r)]
  selections = select(kept, metric=metric, cell_axes=layout.cell_axes)
  row_axis = axis_name(layout.rows)
  shown = {row_axis, *layout.columns}
  panel_axes = [a for a in map(axis_name, layout.cell_axes)
                if a not in shown and len({s.cell[a] for s in selections}) > 1]
  panels = sorted({tuple(s.cell[a] for a in panel_axes) for s in selections}, key=repr)
  preferred_rows = getattr(layout.rows, "labels", None) or layout.where.get(row_axis)
  tables = []
  for panel_values in panels:
    panel = dict(zip(panel_axes, panel_values))
    sels = [s for s in selections if all(s.cell[a] == v for a, v in panel.items())]
    rows = _order({s.cell[row_axis] for s in sels}, preferred_rows, layout.focus)
    column_values = [_order({s.cell[a] for s in sels}, layout.where.get(a))
                     for a in layout.columns]
    groups = list(itertools.product(*column_values))
    heading = lambda g: group_label(layout.columns, g)
    label = lambda v: value_label(row_axis, v)
    entries, comparisons = {}, {}
    for group in groups:
      in_group = [s for s in sels if tuple(s.cell[a] for a in layout.columns) == group]
      for m in layout.metrics:
        stats = {s.cell[row_axis]: s.test[m] for s in in_group if m in s.test}
        ranks = _ranks({label(v): st.mean for v, st in stats.items()})
        found = compare(in_group, metric=m, over=row_axis, focus=layout.focus)
        comp = found[0] if found else None
        for v, st in stats.items():
          marks = ""
          if comp is not None and comp.first == v:
            marks = "*" * comp.significant_t + "†" * comp.significant_w
          entries[(label(v), heading(group), m)] = Entry(st, ranks.get(label(v)), marks)
        if comp is not None:
          comparisons[(heading(group), m)] = comp
    tables.append(Table(
        title=_panel_title(layout, panel), row_axis=row_axis,
        rows=tuple(map(label, rows)), groups=tuple(map(heading, groups)),
        metrics=tuple(layout.metrics), entries=entries, comparisons=comparisons,
        selections=tuple(sels), notes=_notes(sels, list(comparisons.values()), metric)))
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
    out.append(f"{name(c.first)}: {c.gain_pct:+.1f}% {metric_label(m)} "
               f"over {name(c.second)} ({where}{c.paired.n} paired "
               f"seeds, t p={c.paired.p_t:.3g}, Wilcoxon p={c.paired.p_w:.3g})")
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
      cells.append(text + (entry.marks.replace("*", r"\*") if entry is not None else ""))
    lines.append("| " + " | ".join([row] + cells) + " |")
  if table.comparisons:
    lines.append("| " + " | ".join([GAIN_ROW] + [_gain_text(table.comparisons.get(c))
                                                  for c in cols]) + " |")
  lines += [""] + [f"- {s}" for s in gain_sentences(table)] + [f"- {n}" for n in table.notes]
  return "\n".join(lines) + "\n"


def to_csv(tables: Sequence[Table]) -> str:
  """Long format, one line per (table, row, column group, metric), every statistic."""
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["table", "row", "group", "metric", "mean", "std", "ci95_low", "ci95_high",
                   "n", "rank", "marks", "compared_with", "gain_pct", "p_t", "p_wilcoxon"])
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
                         entry.rank or "", entry.marks,
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
