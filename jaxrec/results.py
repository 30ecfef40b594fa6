"""Results on disk: JSON lines per run, and the unranked table of every grid point."""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections import defaultdict
from typing import Iterable, NamedTuple, Sequence

from jaxrec.errors import InputError

SUMMARY_METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


TORN_SUFFIX = ".torn"


class Jsonl(NamedTuple):
  """The records of a JSON-lines file, and one line per problem that was skipped."""
  records: list[dict]
  problems: tuple[str, ...]


def _record(text: str) -> dict | None:
  try:
    value = json.loads(text)
  except json.JSONDecodeError:
    return None
  return value if isinstance(value, dict) else None


def _repair_tail(path: str) -> None:
  """Ends the file with a newline, so an append can never glue onto a torn line.

  A last line without its newline is a writer killed mid-line: if it is a
  whole record it gets its newline, else the fragment is moved to
  `<path>.torn` (appended there, never lost) and cut off.
  """
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    size = f.seek(0, os.SEEK_END)
    if size == 0:
      return
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    f.seek(0)
    data = f.read()
    start = data.rfind(b"\n") + 1
    if _record(data[start:].decode("utf-8", "replace")) is not None:
      f.write(b"\n")
    else:
      with open(path + TORN_SUFFIX, "ab") as aside:
        aside.write(data[start:] + b"\n")
        aside.flush()
        os.fsync(aside.fileno())
      f.truncate(start)
    f.flush()
    os.fsync(f.fileno())


def append_jsonl(path: str, records: Iterable[dict]) -> None:
  """Appends records and fsyncs, so a killed sweep never loses a finished run.

  A torn last line is repaired first (`_repair_tail`).
  """
  _repair_tail(path)
  with open(path, "a") as f:
    for record in records:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _glued(line: str) -> tuple[dict, int] | None:
  """(record, fragment length) if `line` is a torn fragment with a whole record
  appended onto it, as writers before `_repair_tail` left them."""
  for start in (k for k, c in enumerate(line) if c == "{" and k > 0):
    record = _record(line[start:])
    if record is not None:
      return record, start
  return None


def scan_jsonl(path: str) -> Jsonl:
  """Reads every record, naming what it skips.

  A torn last line (a killed writer; its run is not done) and a fragment glued
  before a record (the record is kept) are reported in `problems`; any other
  line that is not a record raises `InputError` with its line number.
  """
  if not os.path.exists(path):
    return Jsonl([], ())
  with open(path, encoding="utf-8", errors="replace") as f:
    text = f.read()
  lines = text.split("\n")
  records, problems = [], []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    record = _record(line)
    if record is not None:
      records.append(record)
    elif (glued := _glued(line)) is not None:
      records.append(glued[0])
      problems.append(f"{path}: line {number}: skipped a torn fragment of {glued[1]} "
                      "characters before a whole record (kept)")
    elif number == len(lines):      # no newline after it: the writer was killed
      problems.append(f"{path}: line {number}: a torn last record of {len(line)} "
                      "characters (a writer killed mid-line) was skipped; its run is "
                      "not done and will be trained again")
    else:
      raise InputError(f"{path}: line {number}: not a JSON record, got "
                       f"{line[:60]!r}; move that line out of the file to go on")
  return Jsonl(records, tuple(problems))


def read_jsonl(path: str) -> list[dict]:
  """The records of `scan_jsonl`; each of its problems is issued as a warning, for
  callers that do not print them themselves."""
  records, problems = scan_jsonl(path)
  for problem in problems:
    warnings.warn(problem, stacklevel=2)
  return records


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  n = len(values)
  mean = sum(values) / n
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
  return mean, std


def summarize(records: Sequence[dict], metrics: Sequence[str] = SUMMARY_METRICS,
              split: str = "test") -> tuple[list[str], list[list[str]]]:
  """Mean ± std (sample std over seeds) of `split` metrics per grid point, unranked.

  A grid point is a run's coordinates without its seed. Returns a header and
  rows of strings. Nothing is marked best: ranking every point by its test
  mean would choose on test; the report (jaxrec.analysis) chooses on
  validation. A "diverged" column counts runs that went non-finite, when there
  are any.
  """
  points: dict[tuple, list[dict]] = defaultdict(list)
  for rec in records:
    coords = {k: v for k, v in rec["coords"].items() if k != "seed"}
    points[tuple(sorted(coords.items()))].append(rec)
  coord_names = sorted({k for key in points for k, _ in key})
  metrics = [m for m in metrics if all(m in r.get(split, {}) for r in records)]
  show_diverged = any(r.get("diverged_epoch", 0) for r in records)
  header = ["model"] * ("model" not in coord_names) + coord_names + ["seeds"] + [
      "diverged"] * show_diverged + [f"{split} {m}" for m in metrics]
  rows = []
  for key in sorted(points, key=lambda k: [str(v) for _, v in k]):
    coords = dict(key)
    recs = points[key]
    row = [recs[0]["config"]["model"]] * ("model" not in coord_names) + [
        str(coords.get(c, "")) for c in coord_names] + [str(len(recs))]
    if show_diverged:
      row.append(str(sum(bool(r.get("diverged_epoch", 0)) for r in recs)))
    for m in metrics:
      mean, std = _mean_std([r[split][m] for r in recs])
      row.append(f"{mean:.4f} ± {std:.4f}")
    rows.append(row)
  return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def write_summary(workdir: str, records: Sequence[dict]) -> str:
  """Writes summary.md and summary.csv in `workdir`; returns the Markdown table."""
  header, rows = summarize(records)
  table = markdown_table(header, rows)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(table + "\n\nEvery grid point, unranked: ± is the sample std over seeds. "
            "Points are chosen on validation in report/README.md.\n")
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return table
