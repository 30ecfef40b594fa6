"""Regenerates a sweep's tables, plots and TensorBoard curves from its work directory.

  python -m experiments.report runs/missing_rates [--select val.ndcg@10] [--layout milk_main]
  python -m experiments.report runs/compare --also runs/compare_more   # one table of both
  python -m experiments.report runs/milk_main --save_to results/milk_main  # keep the records
  python -m experiments.report results/milk_main    # rebuild a committed table, no training

Works on a finished or a partial (interrupted, still running) sweep. Writes
report/ (every layout that applies: hyper-parameters chosen on validation,
test mean ± std and 95% intervals, paired tests, what each number rests on,
a verdict per paper claim; .md, .csv, .tex, .png), summary.md and summary.csv
(every grid point, unranked), plots/*.png and tensorboard/ (one run directory
per run). Prints the report's Markdown.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from jaxrec import cli
from jaxrec.analysis import DEFAULT_METRIC, LAYOUTS, write_reports
from jaxrec.errors import InputError
from jaxrec.workdir import RECORD_FILES, save_records

_SELECT = flags.DEFINE_string("select", DEFAULT_METRIC,
                              "validation metric that chooses each cell's hyper-parameters")
_LAYOUT = flags.DEFINE_list("layout", [], f"layouts to write (default: all that apply); "
                            f"known: {', '.join(LAYOUTS)}")
_ALSO = flags.DEFINE_list("also", [], "more work directories whose runs join this report "
                          "(e.g. models of one comparison swept separately); the report "
                          "is written to WORKDIR/report/")
_TENSORBOARD = flags.DEFINE_bool("tensorboard", True, "also write WORKDIR/tensorboard/")
_SAVE_TO = flags.DEFINE_string("save_to", None, "also copy the work directory's records "
                               f"({', '.join(RECORD_FILES)}) to this folder, e.g. "
                               "results/<table>/ in the repository (runs already there are "
                               "kept)")


def report(argv) -> None:
  if len(argv) != 2:
    raise InputError("usage: python -m experiments.report WORKDIR [--select val.ndcg@10] "
                     "[--layout NAME]")
  workdir = argv[1]
  if not os.path.isdir(workdir):
    raise InputError(f"{workdir}: not a directory")
  for other in _ALSO.value:
    if not os.path.isfile(os.path.join(other, "results.jsonl")):
      raise InputError(f"--also {other}: no results.jsonl there")
  print(write_reports(workdir, metric=_SELECT.value, layouts=_LAYOUT.value,
                      tensorboard=_TENSORBOARD.value, also=_ALSO.value))
  if _SAVE_TO.value:
    print(f"records: {', '.join(save_records(workdir, _SAVE_TO.value))}")
  print(f"per grid point: {workdir}/summary.md  report: {workdir}/report/  "
        f"plots: {workdir}/plots/  tensorboard --logdir {workdir}/tensorboard")


def main(argv):
  sys.exit(cli.run(lambda: report(argv)))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags_or_exit)
