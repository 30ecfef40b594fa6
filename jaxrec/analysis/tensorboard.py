"""Training curves as TensorBoard event files, one run directory per run.

Sources, all under WORKDIR: `curves/<group>.jsonl` (one line per epoch:
{"epoch": e, term: [value per run]}, written by the sweep), optionally
`eval_history/<group>.jsonl` (the same shape with validation metrics, one line
per evaluation), and `results.jsonl` (names each run; without eval history the
run's validation metrics at its selected epoch are written instead).

A group's per-run columns are its records in file order. A group cut into
memory chunks keeps only its last chunk's curves (the sweep truncates the file
when a chunk starts), so a shorter column list is matched to the group's last
records; a group still training has no records yet and its runs are named by
column index.

    tensorboard --logdir WORKDIR/tensorboard
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import struct
from collections import defaultdict
from typing import Iterator, Sequence

from jaxrec.analysis.select import field_value


def read_lines(path: str) -> list[dict]:
  """JSON lines; a torn last line (a writer killed mid-line) is dropped."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows


def run_name(record: dict) -> str:
  """"g000-milk/seed=0,setting=fm-3f2a9c1b": readable in TensorBoard, unique by run id."""
  coords = ",".join(f"{k}={field_value(record, k)}" for k in sorted(record.get("coords", {})))
  return f"{curves_name(record)}/{coords}-{record['run_id'][:8]}".replace(" ", "")


def curves_name(record: dict) -> str:
  """The stem of the record's curves file: its chunk's, else its group's."""
  return record.get("curves", record.get("group", "ungrouped"))


def _names(group: str, runs: Sequence[dict], n_columns: int) -> list[str]:
  if len(runs) >= n_columns:
    return [run_name(r) for r in runs[len(runs) - n_columns:]]
  return [f"{group}/run{r:03d}" for r in range(n_columns)]


def tag(prefix: str, name: str) -> str:
  """TensorBoard's tag alphabet: "val/ndcg@10" -> "val/ndcg_10" (as the writer would
  rename it, without its log line per tag)."""
  return re.sub(r"[^\w./-]", "_", f"{prefix}/{name}")


def series(rows: Sequence[dict], *, prefix: str) -> list[dict[str, list[tuple[int, float]]]]:
  """Per column (run): {prefix/term: [(epoch, value)]}, skipping non-finite values
  (a stopped run's NaN, a diverged run's inf)."""
  n = max((len(v) for r in rows for k, v in r.items() if k != "epoch"), default=0)
  out = [defaultdict(list) for _ in range(n)]
  for row in rows:
    for term, values in row.items():
      if term == "epoch":
        continue
      for r, value in enumerate(values):
        if value is not None and math.isfinite(value):
          out[r][tag(prefix, term)].append((int(row["epoch"]), float(value)))
  return out


def write_scalars(logdir: str, scalars: dict[str, list[tuple[int, float]]]) -> None:
  from tensorboardX import SummaryWriter   # only when curves are converted
  writer = SummaryWriter(logdir=logdir)
  for name in sorted(scalars):
    for step, value in scalars[name]:
      writer.add_scalar(name, value, global_step=step)
  writer.close()


def write_tensorboard(workdir: str, *, out: str | None = None) -> list[str]:
  """Rebuilds `out` (default WORKDIR/tensorboard) from the work directory; returns
  the run directories written. The folder is derived data and is replaced."""
  from jaxrec import results
  out = out or os.path.join(workdir, "tensorboard")
  shutil.rmtree(out, ignore_errors=True)
  runs = defaultdict(list)
  for rec in results.read_jsonl(os.path.join(workdir, "results.jsonl")):
    runs[curves_name(rec)].append(rec)
  groups = sorted({os.path.basename(p)[:-len(".jsonl")] for pattern in ("curves", "eval_history")
                   for p in glob.glob(os.path.join(workdir, pattern, "*.jsonl"))} | set(runs))
  written = []
  for group in groups:
    columns = defaultdict(lambda: defaultdict(list))
    for sub, prefix in (("curves", "train"), ("eval_history", "val")):
      per_run = series(read_lines(os.path.join(workdir, sub, f"{group}.jsonl")), prefix=prefix)
      for name, scalars in zip(_names(group, runs[group], len(per_run)), per_run):
        for key, points in scalars.items():
          columns[name][key] += points
    for rec in runs[group]:
      name = run_name(rec)
      if not any(key.startswith("val/") for key in columns[name]):
        columns[name].update({tag("val", m): [(rec.get("selected_epoch", 0), v)]
                              for m, v in rec.get("val", {}).items() if math.isfinite(v)})
    for name, scalars in sorted(columns.items()):
      write_scalars(os.path.join(out, name), scalars)
      written.append(os.path.join(out, name))
  return written


def _records(path: str) -> Iterator[bytes]:
  """The payloads of a TFRecord file (length, length CRC, data, data CRC)."""
  with open(path, "rb") as f:
    while header := f.read(12):
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      f.read(4)
      yield data


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)]} from the event files in `logdir` (one run directory)."""
  from tensorboardX.proto import event_pb2
  out = defaultdict(list)
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for data in _records(path):
      event = event_pb2.Event.FromString(data)
      for value in event.summary.value:
        out[value.tag].append((int(event.step), float(value.simple_value)))
  return dict(out)
