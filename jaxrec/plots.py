"""PNG plots of a sweep: metrics against missing rate or a hyper-parameter, and curves."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Sequence

import matplotlib

matplotlib.use("Agg")   # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np

RATE_METRICS = ("recall@20", "ndcg@20")


def rate_of(record: dict) -> float:
  """The run's missing rate; None (paper fractions) is plotted at the new-item 0.5."""
  rate = record["config"]["missing_rate"]
  return 0.5 if rate is None else float(rate)


def plot_metrics_vs_rate(records: Sequence[dict], path: str, split: str = "test") -> str:
  """Test Recall@20 and NDCG@20 against missing rate: one line per (model, setting),
  mean over seeds with error bars of the sample std."""
  lines = defaultdict(lambda: defaultdict(list))
  for rec in records:
    label = f"{rec['config']['model']} / {rec['config']['setting']}"
    lines[label][rate_of(rec)].append(rec)
  fig, axes = plt.subplots(1, len(RATE_METRICS), figsize=(5.5 * len(RATE_METRICS), 4))
  for ax, metric in zip(np.atleast_1d(axes), RATE_METRICS):
    for label in sorted(lines):
      rates = sorted(lines[label])
      values = [[r[split][metric] for r in lines[label][x]] for x in rates]
      mean = [np.mean(v) for v in values]
      std = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
      ax.errorbar(rates, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xlabel("missing rate")
    ax.set_ylabel(f"{split} {metric}")
    ax.set_title(f"{split} {metric} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_curves(curves_path: str, path: str, labels: Sequence[str] | None = None) -> str:
  """Every named loss term of a group against epoch, one thin line per run; with
  one label per run (its coordinates) the figure has a legend."""
  with open(curves_path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  if not rows:
    return ""
  terms = [k for k in rows[0] if k != "epoch"]
  epochs = [r["epoch"] for r in rows]
  n_runs = len(rows[0][terms[0]]) if terms else 0
  labels = list(labels) if labels is not None and len(labels) == n_runs else None
  cols = min(3, len(terms))
  n_rows = -(-len(terms) // cols)
  legend_cols = min(4, len(labels)) if labels else 1
  legend_inches = 0.17 * -(-len(labels) // legend_cols) + 0.2 if labels else 0.0
  height = 3.2 * n_rows + legend_inches
  fig, axes = plt.subplots(n_rows, cols, figsize=(4.5 * cols, height), squeeze=False)
  for ax, term in zip(axes.ravel(), terms):
    values = np.array([r[term] for r in rows], dtype=float)      # (epochs, runs)
    lines = ax.plot(epochs, values, linewidth=0.8, alpha=0.8)
    ax.set_title(term)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  for ax in axes.ravel()[len(terms):]:
    ax.axis("off")
  fig.suptitle(os.path.basename(curves_path).replace(".jsonl", "") + " (one line per run)")
  fig.tight_layout(rect=(0, legend_inches / height, 1, 1))
  if labels:
    fig.legend(lines, labels, loc="lower center", ncol=legend_cols, fontsize=7,
               frameon=False)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_sensitivity(selections: Sequence, *, x_axis: str, metrics: Sequence[str],
                     path: str, title: str = "", x_label: str = "") -> str:
  """Test metrics against one cell axis (e.g. MILK's β) at validation-chosen points:
  mean over seeds with the 95% t-interval, one line per combination of the other
  cell axes that vary (e.g. setting). `selections` are `jaxrec.analysis.Selection`s."""
  others = [a for a in (selections[0].cell if selections else {}) if a != x_axis
            and len({s.cell[a] for s in selections}) > 1]
  lines = defaultdict(list)
  for sel in selections:
    lines[", ".join(f"{a}={sel.cell[a]}" for a in others) or "all"].append(sel)
  fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 3.8), squeeze=False)
  xs = [float(s.cell[x_axis]) for s in selections]
  for ax, metric in zip(axes.ravel(), metrics):
    for label in sorted(lines):
      sels = sorted(lines[label], key=lambda s: float(s.cell[x_axis]))
      stats = [s.test[metric] for s in sels]
      mean = np.array([st.mean for st in stats])
      # One seed has no interval: drawn without a bar rather than dropped.
      err = np.nan_to_num(np.array([[st.mean - st.low, st.high - st.mean] for st in stats]).T)
      ax.errorbar([float(s.cell[x_axis]) for s in sels], mean, yerr=err, marker="o",
                  capsize=3, label=label)
    if xs and min(xs) > 0 and max(xs) >= 10 * min(xs):
      ax.set_xscale("log")   # weights are searched on a log grid
    ax.set_xlabel(x_label or x_axis)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"test {metric} (mean, 95% interval over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
