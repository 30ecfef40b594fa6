"""Conclusions from a sweep's records: validation-chosen points, paired tests over
seeds, the papers' tables (Markdown, CSV, LaTeX), plots and TensorBoard curves.

    python -m experiments.report WORKDIR [--select val.ndcg@10] [--layout NAME]
"""
from jaxrec.analysis.layouts import LAYOUTS, Layout
from jaxrec.analysis.report import write_reports
from jaxrec.analysis.select import (DEFAULT_CELL_AXES, DEFAULT_METRIC, SEED_AXES, Selection,
                                    Variants, choose, select, variation_sources)
from jaxrec.analysis.significance import Comparison, compare
from jaxrec.analysis.stats import Interval, Paired, interval, paired_tests, relative_gain
from jaxrec.analysis.tables import Table, build_tables, to_csv, to_latex, to_markdown
from jaxrec.analysis.tensorboard import read_scalars, write_tensorboard

__all__ = [
    "LAYOUTS", "Layout", "write_reports", "DEFAULT_CELL_AXES", "DEFAULT_METRIC", "SEED_AXES",
    "Selection", "Variants", "choose", "select", "variation_sources", "Comparison", "compare",
    "Interval", "Paired", "interval", "paired_tests", "relative_gain", "Table",
    "build_tables", "to_csv", "to_latex", "to_markdown", "read_scalars", "write_tensorboard"]
