"""Brings a work directory's run ids to this code's scheme (config.RUN_ID_SCHEME).

  python -m experiments.migrate WORKDIR [WORKDIR ...]

A run's id is a hash of its configuration; resuming, `--done`'s merges and the
report find finished runs by it. sweep.json records how the ids of its
results.jsonl were derived (`run_id_scheme`; absent = 1), and a sweep or report
refuses a directory of an older scheme, naming this command. For each directory
it:
  - copies sweep.json and results.jsonl to backup-run-id-scheme-N/ (N the old
    scheme), with renamed.json: every id and checkpoint it renamed;
  - rewrites each record's run_id (nothing else of a record changes): the id of
    the grid's run that had the old id, else the id of the record's config;
  - renames an interrupted group's checkpoint to its new name, so the group
    resumes where it stopped;
  - records the new scheme in sweep.json, last (a migration cut short is run
    again), and the command in commands.jsonl.
Within the current scheme, records whose configuration has gained a field since
they were written (a sweep refuses them: their ids no longer match) get the id
of their configuration with the new field at its default, the same way.
A record whose configuration this code cannot read stops the migration before
anything is written. Migrating by an explicit command rather than on open: it
rewrites results, which a sweep or report that only reads them should not do
behind the user's back, and the old scheme's hashing lives here only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

from jaxrec import cli, results
from jaxrec.config import RUN_ID_SCHEME, RunConfig, make_config
from jaxrec.errors import InputError
from jaxrec.grid import Grid
from jaxrec.workdir import SCHEME, WorkDir, stale_ids

# Scheme 1 (before 2026-12): every model's hyper-parameters shared one flat
# namespace, so a field the model does not read counted with the value it then
# held; fields added later were left out while at their defaults.
SCHEME1_UNREAD = {
    "penalty": "variance", "pretrain_epochs": 0,
    **{name: None for name in (
        "lr", "penalty_weight", "reg", "align_weight", "alpha", "use_uniform_env", "cyclic",
        "random_mix", "use_envs", "use_align", "c_max", "c_min", "dropout", "temperature",
        "aux_weight")}}
SCHEME1_OMITTED_AT = {"feature_dtype": "float32", "test_missing_rate": None,
                      "remap_users": False, "candidates": "all_new"}


def scheme1_run_id(cfg: RunConfig) -> str:
  """`cfg`'s id as scheme 1 derived it."""
  fields = {**SCHEME1_UNREAD, **cfg.to_dict()}
  fields = {k: v for k, v in fields.items()
            if not (k in SCHEME1_OMITTED_AT and v == SCHEME1_OMITTED_AT[k])}
  blob = json.dumps(fields, sort_keys=True, default=list)
  return hashlib.sha1(blob.encode()).hexdigest()[:12]


OLD_IDS = {1: scheme1_run_id}      # scheme -> how it derived a config's id


def backup_dir(workdir: str, scheme: int) -> str:
  return os.path.join(workdir, f"backup-run-id-scheme-{scheme}")


def new_ids(records: list[dict], groups: list[list[RunConfig]], old_id, path: str
            ) -> dict[str, str]:
  """{old id: new id} of every record (and of every run of the grid)."""
  renamed = {old_id(cfg): cfg.run_id for group in groups for cfg in group}
  for line, rec in enumerate(records, 1):
    if rec["run_id"] in renamed:
      continue
    try:
      renamed[rec["run_id"]] = make_config(**rec["config"]).run_id
    except (KeyError, TypeError, ValueError) as err:
      raise InputError(f"{path}: record {line} (run {rec.get('run_id')}): its configuration "
                       f"cannot be read by this code ({cli.one_line(err)}); nothing was "
                       "migrated") from None
  return renamed


def checkpoint_renames(work: WorkDir, groups: list[list[RunConfig]], done: set[str],
                       old_id) -> dict[str, str]:
  """{checkpoint folder: its new name} of the interrupted groups.

  A checkpoint is named by its chunk and a hash of its runs' ids; its runs are
  consecutive among the group's runs that were left when it started, and none of
  them is done, so they are consecutive among the group's runs not done now:
  each such slice is tried.
  """
  folder = os.path.join(work.path, "checkpoints")
  found = set(os.listdir(folder)) if os.path.isdir(folder) else set()
  out = {}
  for index, group in enumerate(groups):
    group_name = f"g{index:03d}-{group[0].model}"
    chunks = {name.rsplit("-", 1)[0] for name in found if name.startswith(group_name + "-")}
    left = [cfg for cfg in group if old_id(cfg) not in done]
    for chunk in chunks:
      for a in range(len(left)):
        for b in range(a + 1, len(left) + 1):
          old = work.checkpoint_dir(chunk, [old_id(c) for c in left[a:b]])
          if os.path.basename(old) in found:
            out[old] = work.checkpoint_dir(chunk, [c.run_id for c in left[a:b]])
  return out


def migrate(workdir: str) -> str:
  """Migrates `workdir` (see the module's docstring); returns what it did, in a line."""
  from jaxrec.sweep import plan_groups     # the models' registry only when a grid is read
  work = WorkDir(workdir)
  sweep = work.read_sweep_json()
  if sweep is None:
    raise InputError(f"{workdir}: no sweep.json, so not a work directory")
  scheme = sweep.get(SCHEME, 1)
  records = results.scan_jsonl(work.results).records
  if scheme == RUN_ID_SCHEME:
    return refresh_stale_ids(work, sweep, records)
  if scheme not in OLD_IDS:
    raise InputError(f"{workdir}: run-id scheme {scheme} is unknown to this code (it knows "
                     f"{sorted(OLD_IDS)} and {RUN_ID_SCHEME})")
  old_id = OLD_IDS[scheme]
  groups = [[cfg for _, cfg in group] for group in plan_groups(Grid.from_json(sweep))]
  renamed = new_ids(records, groups, old_id, work.results)
  checkpoints = checkpoint_renames(work, groups, {r["run_id"] for r in records}, old_id)
  backup = rewrite(work, sweep, records, renamed, checkpoints, backup_dir(workdir, scheme))
  return (f"{workdir}: {len(records)} run ids and {len(checkpoints)} checkpoint(s) migrated "
          f"from scheme {scheme} to {RUN_ID_SCHEME}; the old files are in {backup}")


def refresh_stale_ids(work: WorkDir, sweep: dict, records: list[dict]) -> str:
  """Within this scheme: the records whose configuration gained a field since they
  were written get the id of their configuration as read now (its new fields at
  their defaults). An interrupted group's checkpoint cannot be renamed (its runs'
  old ids are in no record), so that group starts again; finished runs are kept."""
  stale = stale_ids(records)
  if not stale:
    return f"{work.path}: run ids already of scheme {RUN_ID_SCHEME}; nothing to do"
  renamed = new_ids(records, [], old_id=None, path=work.results)   # from configs only
  stamp = len([d for d in os.listdir(work.path) if d.startswith("backup-stale-ids")])
  backup = rewrite(work, sweep, records, renamed, {},
                   os.path.join(work.path, f"backup-stale-ids-{stamp}"))
  return (f"{work.path}: {len(stale)} of {len(records)} run ids renewed from their "
          f"configurations; the old files are in {backup}")


def rewrite(work: WorkDir, sweep: dict, records: list[dict], renamed: dict[str, str],
            checkpoints: dict[str, str], backup: str) -> str:
  """Backs up, renames the checkpoints, rewrites the ids, records the scheme last."""
  if not os.path.exists(backup):     # a migration run again keeps the first backup
    os.makedirs(backup)
    for name in ("sweep.json", "results.jsonl"):
      if os.path.exists(os.path.join(work.path, name)):
        shutil.copy2(os.path.join(work.path, name), os.path.join(backup, name))
    with open(os.path.join(backup, "renamed.json"), "w") as f:
      json.dump({"run_ids": {r["run_id"]: renamed[r["run_id"]] for r in records},
                 "checkpoints": {os.path.basename(k): os.path.basename(v)
                                 for k, v in checkpoints.items()}}, f, indent=1)
  for old, new in checkpoints.items():
    os.replace(old, new)
  if records:
    tmp = work.results + ".tmp"
    if os.path.exists(tmp):
      os.remove(tmp)                 # left by a migration cut short
    results.append_jsonl(tmp, [{**r, "run_id": renamed[r["run_id"]]} for r in records])
    os.replace(tmp, work.results)
  work.write_sweep_json({**sweep, SCHEME: RUN_ID_SCHEME})
  work.log_command()
  return backup


def main(argv: list[str]) -> int:
  def command():
    if len(argv) < 2 or any(a.startswith("-") for a in argv[1:]):
      raise InputError("usage: python -m experiments.migrate WORKDIR [WORKDIR ...]")
    for workdir in argv[1:]:
      print(migrate(workdir))
  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
