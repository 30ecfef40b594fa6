"""A sweep's work directory: what is on disk, and the only code that writes it.

  sweep.json        the grid it was started with (a different grid is refused)
  results.jsonl     one line per finished run, appended as groups finish
  curves/NAME.jsonl per-epoch loss terms and norms of each group (line-buffered)
  eval_history/NAME.jsonl  each validation of the group (epoch, metric per run)
  checkpoints/      the running group's state at every evaluation
  summary.{md,csv}, plots/  the report, rebuilt at the end of every sweep

It is created only after the grid and the data were checked, so a refused
start leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Sequence

import jax
import numpy as np

from jaxrec import results
from jaxrec.data import loading
from jaxrec.errors import InputError

# The key of sweep.json that holds {data folder: {file: sha256}} of the data the
# sweep started on (absent in work directories from before it existed).
DATA_FILES = "data_files"


def is_writer() -> bool:
  """Only process 0 writes results; every process trains its share of the runs."""
  return jax.process_index() == 0


class WorkDir:
  """Paths and reads/writes of one work directory."""

  def __init__(self, path: str):
    self.path = path
    self.sweep_json = os.path.join(path, "sweep.json")
    self.results = os.path.join(path, "results.jsonl")

  def check(self, grid_json: dict, data_files: dict | None = None) -> None:
    """Raises ValueError if the directory holds a different sweep, or InputError
    if a data file it was started on has changed since (named)."""
    if not os.path.exists(self.sweep_json):
      return
    wanted = json.loads(json.dumps(grid_json, default=list))
    try:
      with open(self.sweep_json) as f:
        found = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
      raise InputError(f"{self.sweep_json}: not readable ({err}); restore it or pass a new "
                       "--workdir") from None
    started_on = found.pop(DATA_FILES, None)
    if found != wanted:
      raise ValueError(
          f"{self.path} holds a different sweep (see {self.sweep_json}); resume it with the "
          "same grid and flags, or pass a new --workdir")
    for data, old in (started_on or {}).items():
      changed = loading.fingerprint_changes(old, (data_files or {}).get(data, {}))
      if changed:
        raise InputError(f"{data}: {changed} (or pass a new --workdir)")

  def create(self, grid_json: dict, data_files: dict | None = None) -> None:
    """Writes sweep.json (once; the grid and the data files' hashes) and the
    folders, on the writing process only."""
    if not is_writer() or os.path.exists(self.sweep_json):
      return
    os.makedirs(os.path.join(self.path, "curves"), exist_ok=True)
    content = {**json.loads(json.dumps(grid_json, default=list)), DATA_FILES: data_files or {}}
    tmp = self.sweep_json + ".tmp"
    with open(tmp, "w") as f:
      json.dump(content, f, indent=1)
    os.replace(tmp, self.sweep_json)       # whole or absent, never torn

  def done_ids(self) -> set[str]:
    """Ids of the finished runs; prints once what was skipped as unfinished."""
    scanned = results.scan_jsonl(self.results)
    for problem in scanned.problems:
      print(f"results: {problem}")
    return {rec["run_id"] for rec in scanned.records}

  def records(self) -> list[dict]:
    return results.scan_jsonl(self.results).records

  def append(self, records: Sequence[dict]) -> None:
    if is_writer():
      results.append_jsonl(self.results, records)

  def curves_path(self, group_name: str) -> str:
    return os.path.join(self.path, "curves", f"{group_name}.jsonl")

  def open_curves(self, group_name: str, after_epoch: int):
    """The group's curve file for appending, cut to the lines up to `after_epoch`
    (a resumed group re-runs the rest); None on processes that do not write."""
    if not is_writer():
      return None
    path = self.curves_path(group_name)
    truncate_curves(path, after_epoch)
    # Line-buffered, so a running sweep can be inspected with `tail -f`.
    return open(path, "a", buffering=1)

  def write_eval_history(self, group_name: str, history: Sequence[dict]) -> None:
    """The group's validation metrics at every evaluation, one JSON line each."""
    if not is_writer():
      return
    path = os.path.join(self.path, "eval_history", f"{group_name}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in history)

  def checkpoint_dir(self, group_name: str, run_ids: Sequence[str]) -> str:
    runs_hash = hashlib.sha1("".join(run_ids).encode()).hexdigest()[:10]
    return os.path.join(self.path, "checkpoints", f"{group_name}-{runs_hash}")

  def drop_checkpoint(self, directory: str) -> None:
    if is_writer():
      shutil.rmtree(directory, ignore_errors=True)


def curve_line(epoch: int, terms: dict) -> str:
  """One JSON line of a group's curves: the epoch and each term's per-run values."""
  return json.dumps({"epoch": epoch, **{k: np.asarray(v).tolist()
                                        for k, v in terms.items()}}) + "\n"


def truncate_curves(path: str, epoch: int) -> None:
  """Keeps the curve lines up to `epoch`."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f.read().splitlines() if l.strip()]
  kept = []
  for line in lines:
    try:
      if json.loads(line)["epoch"] <= epoch:
        kept.append(line)
    except json.JSONDecodeError:
      break                     # a torn last line from a killed writer
  with open(path, "w") as f:
    f.write("".join(l + "\n" for l in kept))
