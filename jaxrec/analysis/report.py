"""The one report of a work directory: WORKDIR/report/, summary, plots, TensorBoard.

Per layout that applies: `<name>.md`, `<name>.csv`, `<name>.tex` (and
`<name>.png` for a sensitivity layout); `README.md` holds all the Markdown,
opening with what the numbers rest on (training budgets, missing runs, joined
directories) and ending each paper-claim layout with its verdicts. Works on
records as the sweep writes them, finished or partial.
"""
from __future__ import annotations

import glob
import os
from typing import Mapping, Sequence

from jaxrec import results
from jaxrec.analysis import evidence
from jaxrec.analysis.layouts import LAYOUTS, OVERVIEW, Layout
from jaxrec.analysis.select import DEFAULT_METRIC, SEED_AXES, split_metric
from jaxrec.analysis.tables import (axis_label, build_tables, group_label, selection_markdown,
                                    to_csv, to_latex, to_markdown, verdicts_markdown)
from jaxrec.analysis.tensorboard import curves_name
from jaxrec.errors import InputError
from jaxrec.workdir import check_run_ids


def _check_metric(records: Sequence[dict], metric: str) -> None:
  name = split_metric(metric, split="val")
  known = sorted({m for r in records for m in r.get("val", {})})
  if records and name not in known:
    raise InputError(f"selection metric {metric!r}: the records have val metrics {known}")


def layouts_for(records: Sequence[dict],
                names: Sequence[str] | None = None) -> tuple[list[Layout], list[str]]:
  """The layouts to write and one line per named layout that does not apply.

  Without names, every layout that applies. A named layout (the grid's, or
  `--layout`) is written only where it applies; where none does, the overview.
  """
  if not names:
    return [layout for layout in LAYOUTS.values() if layout.applies(records)], []
  unknown = [n for n in names if n not in LAYOUTS]
  if unknown:
    raise InputError(f"unknown layouts {unknown}; known: {sorted(LAYOUTS)}")
  reasons = {n: LAYOUTS[n].why_not(records) for n in names}
  chosen = [LAYOUTS[n] for n in names if reasons[n] is None]
  skipped = [f"Layout {n} not written: {why}." for n, why in reasons.items() if why]
  return chosen or [OVERVIEW], skipped


def write_layout(records: Sequence[dict], layout: Layout, out: str, *,
                 metric: str = DEFAULT_METRIC, missing: frozenset = frozenset()) -> str:
  """Writes one layout's files into `out`; returns its Markdown (tables, verdicts,
  chosen points)."""
  tables = build_tables(records, layout, metric=metric, missing=missing)
  markdown = "\n".join(to_markdown(t) for t in tables)
  verdicts = verdicts_markdown(tables)
  stem = os.path.join(out, layout.name)
  with open(stem + ".md", "w") as f:
    f.write(markdown + ("\n" + verdicts if verdicts else ""))
  with open(stem + ".csv", "w", newline="") as f:
    f.write(to_csv(tables))
  with open(stem + ".tex", "w") as f:
    f.write("\n".join(to_latex(t) for t in tables))
  if layout.plot and tables:
    from jaxrec import plots   # matplotlib only when a plot is drawn
    plots.plot_sensitivity([s for t in tables for s in t.selections], x_axis=layout.plot,
                           metrics=layout.metrics, path=stem + ".png", title=layout.title,
                           x_label=f"{axis_label(layout.plot)} ({layout.plot})")
  return "\n".join(filter(None, [f"## {layout.name}\n\n{markdown}", verdicts,
                                 selection_markdown(tables)]))


def records_by_workdir(workdirs: Sequence[str]) -> dict[str, list[dict]]:
  """The finished runs of each work directory, each run once: a run (same run id)
  in more than one directory is taken from the first; the same id with other
  results is refused."""
  by_id: dict[str, dict] = {}
  out: dict[str, list[dict]] = {}
  for workdir in workdirs:
    check_run_ids(workdir)       # ids are compared here and with sweep.json's grid
    out.setdefault(workdir, [])
    for record in results.read_jsonl(os.path.join(workdir, "results.jsonl")):
      first = by_id.setdefault(record["run_id"], record)
      if first is not record and first["test"] != record["test"]:
        raise InputError(f"{workdir}: run {record['run_id']} is also in an earlier work "
                         f"directory with other results; report them separately")
      if first is record:
        out[workdir].append(record)
  return out


def combined_records(workdirs: Sequence[str]) -> list[dict]:
  """The finished runs of several work directories, e.g. one comparison whose
  models were swept separately (see `records_by_workdir`)."""
  return [r for recs in records_by_workdir(workdirs).values() for r in recs]


def grounds(by_dir: Mapping[str, Sequence[dict]],
            missing: Mapping[str, evidence.Missing]) -> list[str]:
  """What every number of the report rests on: the training budgets, the runs of
  each grid that are missing, what joined directories differ in, and whether
  the runs carry reference scores."""
  records = [r for recs in by_dir.values() for r in recs]
  lines = [evidence.budget_line(records)]
  for workdir, found in missing.items():
    lines += found.lines(workdir) or [
        f"{workdir}: all {sum(found.expected.values())} runs of its grid are here."]
  lines += evidence.joined_differences(by_dir)
  lines.append(evidence.unreferenced_line(records))
  return [line for line in lines if line]


def write_reports(workdir: str, *, metric: str = DEFAULT_METRIC,
                  layouts: Sequence[str] | None = None, tensorboard: bool = True,
                  also: Sequence[str] = ()) -> str:
  """The one report writer: rebuilds WORKDIR/report/ (every layout that applies),
  WORKDIR/summary.{md,csv} (every grid point, unranked), WORKDIR/plots/ and
  WORKDIR/tensorboard/ from the work directory's records; returns the Markdown.

  `also`: further work directories whose runs join this report (not its
  summary, plots or TensorBoard curves).

  Example (what the end of a sweep calls):
    >>> write_reports("runs/milk_paper")
  """
  by_dir = records_by_workdir([workdir, *also])
  records = [r for recs in by_dir.values() for r in recs]
  _check_metric(records, metric)
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  missing = {d: evidence.missing_runs(d, recs) for d, recs in by_dir.items()}
  missing_models = frozenset().union(*(m.models() for m in missing.values()))
  chosen, skipped = layouts_for(records, layouts) if records else ([], [])
  sources = f" (with the runs of {', '.join(also)})" if also else ""
  parts = [f"# Report: {workdir}{sources}\n\n{len(records)} runs; hyper-parameters "
           f"selected by `{metric}`.\n",
           "## What the numbers rest on\n\n" + "".join(
               f"- {line}\n" for line in grounds(by_dir, missing) + skipped)]
  parts += [write_layout(records, layout, out, metric=metric, missing=missing_models)
            for layout in chosen]
  markdown = "\n".join(parts)
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(markdown)
  results.write_summary(workdir, by_dir[workdir])
  write_plots(workdir, by_dir[workdir])
  if tensorboard:
    from jaxrec.analysis.tensorboard import write_tensorboard
    write_tensorboard(workdir)
  return markdown


def write_plots(workdir: str, records: Sequence[dict]) -> list[str]:
  """WORKDIR/plots/: test metrics against the missing rate where it varies, and
  each group's loss curves, one labelled line per run."""
  from jaxrec import plots   # matplotlib only when a report is made
  out = os.path.join(workdir, "plots")
  os.makedirs(out, exist_ok=True)
  written = []
  if len({plots.rate_of(r) for r in records}) > 1:
    written.append(plots.plot_metrics_vs_rate(records, os.path.join(out, "metrics_vs_rate.png")))
  by_curves: dict[str, list[dict]] = {}
  for rec in records:
    by_curves.setdefault(curves_name(rec), []).append(rec)
  for path in sorted(glob.glob(os.path.join(workdir, "curves", "*.jsonl"))):
    name = os.path.basename(path)[:-len(".jsonl")]
    written.append(plots.plot_curves(path, os.path.join(out, f"curves-{name}.png"),
                                     labels=run_labels(by_curves.get(name, []))))
  return [w for w in written if w]


def run_labels(runs: Sequence[dict]) -> list[str]:
  """Each run's coordinates that vary among `runs` ("rate=0.3 · fm · seed=1")."""
  names = sorted({k for r in runs for k in r.get("coords", {})},
                 key=lambda k: (k in SEED_AXES, k))          # seeds last
  varying = [k for k in names if len({str(r["coords"].get(k)) for r in runs}) > 1]
  return [group_label(varying, [r["coords"].get(k) for k in varying]) or r["run_id"]
          for r in runs]
