"""Run-id schemes: sweep.json records its scheme, an old work directory is refused
with the migration command, and once migrated resumes to the same results."""
import hashlib
import json
import os
import shutil

import pytest

from experiments.migrate import backup_dir, migrate, scheme1_run_id
from jaxrec import results
from jaxrec.analysis.report import records_by_workdir
from jaxrec.config import RUN_ID_SCHEME, make_config
from jaxrec.errors import InputError
from jaxrec.grid import Grid
from jaxrec.sweep import plan_groups, run_sweep, train_configs
from jaxrec.workdir import SCHEME, WorkDir, save_records
from tests.helpers import REPO

TINY = dict(synthetic_users=150, synthetic_items=200, synthetic_dims=(8, 6), embed_dim=8,
            batch_size=128, max_epochs=4, eval_every=1)
COMMITTED = os.path.join(REPO, "results", "missing_rates")


def test_run_ids_are_pinned_in_each_scheme():
  # Scheme 1: ids recorded before `feature_dtype` existed (the ids of work
  # directories written then, which the migration maps from).
  assert scheme1_run_id(make_config()) == "0852e3e5f42e"
  assert scheme1_run_id(make_config(model="dropoutnet", data="x", seed=3)) == "bb1d6ffe5dd0"
  # GAR's id changed on purpose (2026-11-23: its default α went 0.5 -> 0.05).
  assert scheme1_run_id(make_config(model="gar", data="x", seed=3)) != "b274aa427c52"
  # Scheme 2: a hash of every field (a field added since changes it; the
  # migration renews such records' ids: 2026-12-07, `candidates`).
  assert RUN_ID_SCHEME == 2 and make_config().run_id == "9836163968ba"
  assert make_config(feature_dtype="bfloat16").run_id != make_config().run_id


def _as_scheme1(workdir, records):
  """`workdir` as code of scheme 1 left it: no scheme in sweep.json, old ids."""
  work = WorkDir(workdir)
  sweep = work.read_sweep_json()
  del sweep[SCHEME]
  work.write_sweep_json(sweep)
  results.append_jsonl(work.results, [
      {**r, "run_id": scheme1_run_id(make_config(**r["config"]))} for r in records])


def test_an_old_work_directory_is_refused_then_migrated_and_resumes_to_the_same_results(
    tmp_path):
  grid = Grid(base=TINY, axes=dict(seed=[0, 1, 2]))
  straight = run_sweep(grid, str(tmp_path / "straight"), progress=False)
  assert WorkDir(str(tmp_path / "straight")).read_sweep_json()[SCHEME] == RUN_ID_SCHEME
  # An old directory: seed 0 finished, seeds 1 and 2 stopped after epoch 2 (their
  # checkpoint named by the old ids).
  old = WorkDir(str(tmp_path / "old"))
  old.create(grid.to_json(), {"synthetic": {}})
  by_seed = {r["config"]["seed"]: r for r in straight}
  _as_scheme1(old.path, [by_seed[0]])
  left = [cfg for _, cfg in plan_groups(grid)[0]][1:]
  train_configs(left, checkpoint_dir=old.checkpoint_dir(
      "g000-milk", [scheme1_run_id(c) for c in left]), max_epochs=2)
  before = open(old.results).read()
  with pytest.raises(InputError, match=f"run `python -m experiments.migrate {old.path}` once"):
    run_sweep(grid, old.path, progress=False)
  with pytest.raises(InputError, match="experiments.migrate"):
    records_by_workdir([old.path])            # the report too

  said = migrate(old.path)
  assert "1 run ids and 1 checkpoint(s) migrated from scheme 1 to 2" in said
  backup = backup_dir(old.path, 1)
  assert open(os.path.join(backup, "results.jsonl")).read() == before
  renamed = json.load(open(os.path.join(backup, "renamed.json")))
  assert renamed["run_ids"] == {scheme1_run_id(make_config(**by_seed[0]["config"])):
                                by_seed[0]["run_id"]}
  assert os.listdir(os.path.join(old.path, "checkpoints")) == [
      os.path.basename(old.checkpoint_dir("g000-milk", [c.run_id for c in left]))]
  assert "nothing to do" in migrate(old.path)

  resumed = run_sweep(grid, old.path, progress=False)
  assert sorted(r["run_id"] for r in resumed) == sorted(r["run_id"] for r in straight)
  for rec in resumed:
    assert rec["test"] == pytest.approx(by_seed[rec["config"]["seed"]]["test"], abs=1e-6)
    if rec["config"]["seed"]:
      assert rec["timing"]["resumed_from_epoch"] == 2      # from the renamed checkpoint


def test_a_record_this_code_cannot_read_stops_the_migration_before_any_write(tmp_path):
  grid = Grid(base=TINY, axes=dict(seed=[0]))
  work = WorkDir(str(tmp_path))
  work.create(grid.to_json(), {"synthetic": {}})
  config = {**make_config(**TINY).to_dict(), "seed": 7, "no_such_field": 1}
  _as_scheme1(work.path, [])
  results.append_jsonl(work.results, [{"run_id": "x", "config": config, "test": {}}])
  before = open(work.results).read()
  with pytest.raises(InputError, match=r"results.jsonl: record 1 \(run x\).*nothing was migrated"):
    migrate(work.path)
  assert open(work.results).read() == before and not os.path.exists(backup_dir(work.path, 1))
  assert SCHEME not in work.read_sweep_json()


def test_records_are_not_merged_into_a_table_of_another_scheme(tmp_path):
  grid = Grid(base=TINY, axes=dict(seed=[0]))
  for name in ("new", "table"):
    WorkDir(str(tmp_path / name)).create(grid.to_json(), {"synthetic": {}})
  _as_scheme1(str(tmp_path / "table"), [])
  with pytest.raises(InputError, match="experiments.migrate"):
    save_records(str(tmp_path / "new"), str(tmp_path / "table"))


def test_the_committed_table_is_of_this_scheme_and_its_runs_are_taken(tmp_path):
  sweep = WorkDir(COMMITTED).read_sweep_json()
  assert sweep[SCHEME] == RUN_ID_SCHEME
  runs = Grid.from_json(sweep).expand()
  records = results.read_jsonl(os.path.join(COMMITTED, "results.jsonl"))
  assert sorted(r["run_id"] for r in records) == sorted(c.run_id for _, c in runs)
  work = WorkDir(str(tmp_path / "w"))
  os.makedirs(work.path)
  assert work.import_finished([COMMITTED], runs, {"synthetic": {}}) == len(runs)  # --done


def test_the_committed_table_migrated_from_its_backup_is_what_is_committed(tmp_path):
  # The committed table's scheme-1 form (ids mapped back) migrates to the committed files.
  copy = str(tmp_path / "table")
  shutil.copytree(COMMITTED, copy)
  records = results.read_jsonl(os.path.join(copy, "results.jsonl"))
  os.remove(os.path.join(copy, "results.jsonl"))
  _as_scheme1(copy, records)
  migrate(copy)
  assert (results.read_jsonl(os.path.join(copy, "results.jsonl"))
          == results.read_jsonl(os.path.join(COMMITTED, "results.jsonl")))


def test_a_field_added_since_the_records_were_written_is_refused_then_renewed(tmp_path):
  """Scheme 2 hashes every field, so a field added to the code later changes every
  id: the sweep refuses (it would retrain the runs and a report would count them
  twice) and the migration gives each record the id of its configuration as read
  now; the sweep then finds them done."""
  grid = Grid(base=TINY, axes=dict(seed=[0, 1]))
  workdir = str(tmp_path / "wd")
  records = run_sweep(grid, workdir, progress=False)
  work = WorkDir(workdir)
  # As code without `remap_users` wrote it: the field absent, the id hashed without it.
  old = []
  for rec in records:
    config = {k: v for k, v in rec["config"].items() if k != "remap_users"}
    blob = json.dumps(config, sort_keys=True, default=list)
    old.append({**rec, "config": config,
                "run_id": hashlib.sha1(blob.encode()).hexdigest()[:12]})
  os.remove(work.results)
  results.append_jsonl(work.results, old)
  with pytest.raises(InputError, match=r"2 of 2 run ids .* no longer match .*experiments\.migrate"):
    run_sweep(grid, workdir, progress=False)
  with pytest.raises(InputError, match="no longer match"):
    records_by_workdir([workdir])
  assert "2 of 2 run ids renewed" in migrate(workdir)
  assert "nothing to do" in migrate(workdir)
  again = run_sweep(grid, workdir, progress=False)              # nothing retrained
  assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in records)
  assert [r["test"] for r in again] == [r["test"] for r in old]
