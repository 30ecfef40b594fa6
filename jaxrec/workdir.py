"""A sweep's work directory: what is on disk, and the only code that writes it.

  sweep.json        the grid it was started with (a different grid is refused)
  commands.jsonl    each command that ran the sweep here, with the code's commit
  results.jsonl     one line per finished run, appended as groups finish
  curves/NAME.jsonl per-epoch loss terms and norms of each group (line-buffered)
  eval_history/NAME.jsonl  each validation of the group (epoch, metric per run)
  checkpoints/      the running group's state at every evaluation
  summary.{md,csv}, plots/, report/  the report, rebuilt at the end of every sweep

It is created only after the grid and the data were checked, so a refused
start leaves nothing behind.

Results that outlive a machine: `save_records` copies the small files
(sweep.json, commands.jsonl, results.jsonl) to e.g. results/<table>/ in the
repository; `python -m experiments.report results/<table>` rebuilds the table
from them, and a sweep run with `--done results/<table>` takes the runs found
there instead of training them again (`import_finished`), so a table too long
for one session is finished over several, on any machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Sequence

import jax
import numpy as np

from jaxrec import results
from jaxrec.config import RUN_ID_SCHEME, RunConfig, make_config
from jaxrec.data import loading
from jaxrec.errors import InputError

# The files of a work directory that hold its results (no data, no checkpoints).
RECORD_FILES = ("sweep.json", "commands.jsonl", "results.jsonl")
# The key of sweep.json that holds {data folder: {file: sha256}} of the data the
# sweep started on (absent in work directories from before it existed).
DATA_FILES = "data_files"
# The key of sweep.json that holds how results.jsonl's run ids are derived
# (config.RUN_ID_SCHEME); absent in work directories of scheme 1.
SCHEME = "run_id_scheme"
MIGRATE = "python -m experiments.migrate"


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
    """Raises InputError if the directory holds a different sweep, run ids of
    another scheme, or if a data file it was started on has changed since (named)."""
    found = self.read_sweep_json()
    if found is None:
      return
    wanted = json.loads(json.dumps(grid_json, default=list))
    check_scheme(self.path, found.pop(SCHEME, 1))
    check_ids_match_configs(self.path, self.records())
    started_on = found.pop(DATA_FILES, None)
    if found != wanted:
      raise InputError(
          f"{self.path} holds a different sweep (see {self.sweep_json}); resume it with the "
          "same grid and flags, or pass a new --workdir")
    for data, old in (started_on or {}).items():
      changed = loading.fingerprint_changes(old, (data_files or {}).get(data, {}))
      if changed:
        raise InputError(f"{data}: {changed} (or pass a new --workdir)")

  def read_sweep_json(self) -> dict | None:
    """sweep.json's content, or None if there is none yet."""
    if not os.path.exists(self.sweep_json):
      return None
    try:
      with open(self.sweep_json) as f:
        return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
      raise InputError(f"{self.sweep_json}: not readable ({err}); restore it or pass a new "
                       "--workdir") from None

  def create(self, grid_json: dict, data_files: dict | None = None) -> None:
    """Writes sweep.json (once; the grid, the data files' hashes and the run-id
    scheme) and the folders, on the writing process only."""
    if not is_writer() or os.path.exists(self.sweep_json):
      return
    os.makedirs(os.path.join(self.path, "curves"), exist_ok=True)
    self.write_sweep_json({**json.loads(json.dumps(grid_json, default=list)),
                           DATA_FILES: data_files or {}, SCHEME: RUN_ID_SCHEME})

  def write_sweep_json(self, content: dict) -> None:
    tmp = self.sweep_json + ".tmp"
    with open(tmp, "w") as f:
      json.dump(content, f, indent=1)
    os.replace(tmp, self.sweep_json)       # whole or absent, never torn

  def log_command(self, argv: Sequence[str] | None = None) -> None:
    """Appends the command that is running the sweep and the code's commit."""
    if is_writer():
      results.append_jsonl(os.path.join(self.path, "commands.jsonl"), [{
          "command": command_line(argv if argv is not None else sys.argv),
          "commit": code_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])

  def import_finished(self, sources: Sequence[str], runs: Sequence[tuple[dict, RunConfig]],
                      data_files: dict) -> int:
    """Appends the records of `sources` (work directories, e.g. results/<table>/)
    that are runs of `runs` ((coordinates, config) of this grid) not done here;
    returns how many.

    A record is the same run if its configuration equals the run's wherever the
    data lives: the data folder's path may differ, the files' hashes (sweep.json
    of the source) may not. The imported record takes this run's id, data path
    and coordinates in this grid (a source swept over fewer axes names fewer),
    and names its source.
    """
    done, todo = self.done_ids(), {}
    for coords, cfg in runs:
      if cfg.run_id not in done:
        todo[portable_id(cfg.to_dict(), data_files.get(data_key(cfg)))] = coords, cfg
    imported = []
    for source in sources:
      path = os.path.join(source, "results.jsonl")
      if not os.path.isfile(path):
        raise InputError(f"--done {source}: no results.jsonl there")
      source_files = _sweep_data_files(source)
      for rec in results.scan_jsonl(path).records:
        try:
          key = portable_id(rec["config"], source_files.get(data_key(rec["config"])))
        except (KeyError, TypeError, ValueError):
          continue            # a record of a configuration this code cannot read
        coords, cfg = todo.pop(key, (None, None))
        if cfg is not None:
          imported.append({**rec, "run_id": cfg.run_id, "config": cfg.to_dict(),
                           "coords": coords, "imported_from": source})
    self.append(imported)
    return len(imported)

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


def check_scheme(workdir: str, scheme: int) -> None:
  """Refuses run ids of another scheme than this code's (`scheme` from sweep.json)."""
  if scheme < RUN_ID_SCHEME:
    raise InputError(f"{workdir}: its run ids are of scheme {scheme}, this code's are of scheme "
                     f"{RUN_ID_SCHEME}; run `{MIGRATE} {workdir}` once (it keeps a backup), "
                     "then this command again")
  if scheme > RUN_ID_SCHEME:
    raise InputError(f"{workdir}: its run ids are of scheme {scheme}, newer than this code's "
                     f"({RUN_ID_SCHEME}); use the code that wrote it")


def check_run_ids(workdir: str) -> None:
  """Refuses a work directory whose sweep.json records another run-id scheme (a
  directory without sweep.json has nothing to compare ids with)."""
  work = WorkDir(workdir)
  found = work.read_sweep_json()
  if found is not None:
    check_scheme(workdir, found.get(SCHEME, 1))
    check_ids_match_configs(workdir, work.records())


def stale_ids(records: Sequence[dict]) -> dict[str, str]:
  """{recorded id: the id this code gives the record's configuration} of every
  record whose two differ: a field was added to the configuration (or a model's
  hyper-parameters) since it was written, so a sweep would not find it done."""
  stale = {}
  for rec in records:
    try:
      now = make_config(**rec["config"]).run_id
    except (KeyError, TypeError, ValueError):
      continue        # unreadable configurations are named where they are read
    if now != rec["run_id"]:
      stale[rec["run_id"]] = now
  return stale


def check_ids_match_configs(workdir: str, records: Sequence[dict]) -> None:
  """Refuses records whose ids this code no longer derives from their configurations
  (`stale_ids`): resuming would retrain them and a report would count them twice."""
  stale = stale_ids(records)
  if stale:
    raise InputError(f"{workdir}: {len(stale)} of {len(records)} run ids in results.jsonl no "
                     "longer match their configurations (the configuration's fields changed "
                     f"since they were written); run `{MIGRATE} {workdir}` once (it keeps a "
                     "backup), then this command again")


def data_key(cfg) -> str:
  """The data a run reads, as sweep.json names it: the folder, and its modalities
  (`cfg` a RunConfig or a record's config dict)."""
  get = cfg.get if isinstance(cfg, dict) else lambda name: getattr(cfg, name)
  return get("data") if not get("modalities") else f"{get('data')} [{get('modalities')}]"


def portable_id(config: dict, data_files: dict | None) -> str:
  """A run's id with its data folder replaced by the hashes of the data's files,
  so the same run on the same data has the same id on any machine. Synthetic
  data (no files) keeps its name; a folder whose hashes are unknown keeps its
  path."""
  if data_files:
    blob = json.dumps(sorted(data_files.items())).encode()
    config = {**config, "data": "sha1:" + hashlib.sha1(blob).hexdigest()}
  return make_config(**config).run_id


def _sweep_data_files(workdir: str) -> dict:
  try:
    with open(os.path.join(workdir, "sweep.json")) as f:
      return json.load(f).get(DATA_FILES, {})
  except (OSError, json.JSONDecodeError):
    return {}


def command_line(argv: Sequence[str]) -> str:
  """The command as typed: a module run with `python -m` shows as such."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  first = os.path.abspath(argv[0]) if argv else ""
  if first.startswith(root + os.sep) and first.endswith(".py"):
    module = os.path.relpath(first, root)[:-len(".py")].replace(os.sep, ".")
    argv = ["python", "-m", module, *argv[1:]]
  return " ".join(argv)


def code_commit() -> str | None:
  """The commit of the checkout jaxrec runs from ("+dirty" with local changes), or
  None outside a git checkout."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ("+dirty" if dirty else "")


def save_records(workdir: str, dest: str) -> list[str]:
  """Copies the work directory's record files (RECORD_FILES) to `dest`, e.g.
  results/<table>/ in the repository, merging results.jsonl with what `dest`
  already holds (each run once); returns the files written."""
  for folder in (workdir, dest):   # merged by run id: both of this code's scheme
    check_run_ids(folder)
  os.makedirs(dest, exist_ok=True)
  written = []
  for name in RECORD_FILES:
    src, out = os.path.join(workdir, name), os.path.join(dest, name)
    if not os.path.exists(src):
      continue
    if name == "sweep.json":
      shutil.copyfile(src, out)
    else:
      have = results.scan_jsonl(out).records
      seen = {json.dumps(r, sort_keys=True) for r in have}
      new = [r for r in results.scan_jsonl(src).records
             if json.dumps(r, sort_keys=True) not in seen]
      if name == "results.jsonl":
        ids = {r["run_id"] for r in have}
        new = [r for r in new if r["run_id"] not in ids]
      results.append_jsonl(out, new)
    written.append(out)
  return written


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
