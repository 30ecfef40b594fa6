"""Every applicable layout of a work directory, written to WORKDIR/report/.

Per layout: `<name>.md`, `<name>.csv`, `<name>.tex` (and `<name>.png` for a
sensitivity layout); `README.md` holds all the Markdown. Works on records as
the sweep writes them today, finished or partial.
"""
from __future__ import annotations

import os
from typing import Sequence

from jaxrec import results
from jaxrec.analysis.layouts import LAYOUTS, Layout
from jaxrec.analysis.select import DEFAULT_METRIC, split_metric
from jaxrec.analysis.tables import (axis_label, build_tables, selection_markdown, to_csv,
                                    to_latex, to_markdown)


def _check_metric(records: Sequence[dict], metric: str) -> None:
  name = split_metric(metric, split="val")
  known = sorted({m for r in records for m in r.get("val", {})})
  if records and name not in known:
    raise ValueError(f"selection metric {metric!r}: the records have val metrics {known}")


def layouts_for(records: Sequence[dict], names: Sequence[str] | None = None) -> list[Layout]:
  """The named layouts, or every layout that applies to the records."""
  if names:
    unknown = [n for n in names if n not in LAYOUTS]
    if unknown:
      raise ValueError(f"unknown layouts {unknown}; known: {sorted(LAYOUTS)}")
    return [LAYOUTS[n] for n in names]
  return [layout for layout in LAYOUTS.values() if layout.applies(list(records))]


def write_layout(records: Sequence[dict], layout: Layout, out: str, *,
                 metric: str = DEFAULT_METRIC) -> str:
  """Writes one layout's files into `out`; returns its Markdown."""
  tables = build_tables(records, layout, metric=metric)
  markdown = "\n".join(to_markdown(t) for t in tables)
  stem = os.path.join(out, layout.name)
  with open(stem + ".md", "w") as f:
    f.write(markdown)
  with open(stem + ".csv", "w", newline="") as f:
    f.write(to_csv(tables))
  with open(stem + ".tex", "w") as f:
    f.write("\n".join(to_latex(t) for t in tables))
  if layout.plot and tables:
    from jaxrec import plots   # matplotlib only when a plot is drawn
    plots.plot_sensitivity([s for t in tables for s in t.selections], x_axis=layout.plot,
                           metrics=layout.metrics, path=stem + ".png", title=layout.title,
                           x_label=f"{axis_label(layout.plot)} ({layout.plot})")
  return f"## {layout.name}\n\n{markdown}\n{selection_markdown(tables)}"


def combined_records(workdirs: Sequence[str]) -> list[dict]:
  """The finished runs of several work directories, e.g. one comparison whose
  models were swept separately. A run (same run id) in more than one directory
  is taken once, from the first; the same id with different results is refused."""
  by_id: dict[str, dict] = {}
  for workdir in workdirs:
    for record in results.read_jsonl(os.path.join(workdir, "results.jsonl")):
      first = by_id.setdefault(record["run_id"], record)
      if first is not record and first["test"] != record["test"]:
        raise ValueError(f"{workdir}: run {record['run_id']} is also in an earlier work "
                         f"directory with other results; report them separately")
  return list(by_id.values())


def write_reports(workdir: str, *, metric: str = DEFAULT_METRIC,
                  layouts: Sequence[str] | None = None, tensorboard: bool = True,
                  also: Sequence[str] = ()) -> str:
  """Rebuilds WORKDIR/report/ (and WORKDIR/tensorboard/); returns the Markdown.

  `also`: further work directories whose runs join this report (not its
  TensorBoard curves).

  Example (what the end of a sweep can call):
    >>> write_reports("runs/milk_paper")
  """
  records = combined_records([workdir, *also])
  _check_metric(records, metric)
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  sources = f" (with the runs of {', '.join(also)})" if also else ""
  parts = [f"# Report: {workdir}{sources}\n\n{len(records)} runs; hyper-parameters "
           f"selected by `{metric}`.\n"]
  parts += [write_layout(records, layout, out, metric=metric)
            for layout in (layouts_for(records, layouts) if records else [])]
  markdown = "\n".join(parts)
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(markdown)
  if tensorboard:
    from jaxrec.analysis.tensorboard import write_tensorboard
    write_tensorboard(workdir)
  return markdown
