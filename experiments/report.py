"""Regenerates a sweep's tables and plots from its work directory.

  python -m experiments.report runs/missing_rates

Works on a finished or a partial (interrupted, still running) sweep: it reads
results.jsonl and curves/, and writes summary.md, summary.csv and plots/*.png.
"""
from __future__ import annotations

import os

from absl import app

from jaxrec import results


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m experiments.report WORKDIR")
  workdir = argv[1]
  if not os.path.isdir(workdir):
    raise app.UsageError(f"{workdir}: not a directory")
  print(results.write_report(workdir))
  print(f"tables: {workdir}/summary.md, summary.csv  plots: {workdir}/plots/")


if __name__ == "__main__":
  app.run(main)
