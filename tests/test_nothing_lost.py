"""Issue 14 end to end, through the sweep: no finished run lost, edited data and
bad ids refused by name before anything is built, damaged checkpoints survived."""
import os

import numpy as np
import pytest

from jaxrec import cli, results
from jaxrec.config import make_config
from jaxrec.data.synthetic import make_synthetic
from jaxrec.grid import Grid
from jaxrec.sweep import plan_groups, run_sweep, train_configs
from jaxrec.workdir import WorkDir

TRAIN = dict(embed_dim=8, batch_size=128, max_epochs=3, eval_every=1, patience=5)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))


def _data_folder(folder) -> str:
  """A pair-TSV folder (train/val/test.tsv, two *_feat.npy) from synthetic data."""
  data = make_synthetic(n_users=120, n_items=150, feature_dims=(8, 6),
                        interactions_per_user=12, seed=0)
  rng = np.random.default_rng(0)
  role = rng.choice(3, size=len(data.pairs), p=[0.8, 0.1, 0.1])
  os.makedirs(folder, exist_ok=True)
  for r, name in enumerate(("train", "val", "test")):
    with open(os.path.join(folder, f"{name}.tsv"), "w") as f:
      f.write("userID\titemID\n")
      f.writelines(f"{u}\t{i}\n" for u, i in data.pairs[role == r])
  for name, feats in zip(("image", "text"), data.features):
    np.save(os.path.join(folder, f"{name}_feat.npy"), feats)
  return str(folder)


def _grid(data: str) -> Grid:
  return Grid(base=dict(TRAIN, data=data, protocol="warm", setting="mm"),
              axes=dict(seed=[0, 1]))


def _sweep(capsys, grid, workdir):
  """(exit code, stderr) of the sweep through the CLI's error handling."""
  code = cli.run(lambda: run_sweep(grid, workdir, progress=False))
  return code, capsys.readouterr().err


def test_a_torn_last_line_loses_no_run_and_the_directory_keeps_working(tmp_path, capsys):
  grid = Grid(base=dict(TRAIN, synthetic_users=150, synthetic_items=200,
                        synthetic_dims=(8, 6)), axes=dict(seed=[0, 1, 2]))
  workdir = str(tmp_path / "work")
  first = run_sweep(grid, workdir, progress=False)
  path = os.path.join(workdir, "results.jsonl")
  text = open(path).read()
  open(path, "w").write(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])  # cut mid-line
  code, err = _sweep(capsys, grid, workdir)
  assert code == 0, err
  again = results.read_jsonl(path)
  assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in first)
  assert os.path.exists(path + ".torn")                 # the fragment kept aside
  assert "| 3 |" in open(os.path.join(workdir, "summary.md")).read()
  code, err = _sweep(capsys, grid, workdir)              # and later reruns still work
  assert code == 0 and len(results.read_jsonl(path)) == 3, err
  by_id = {r["run_id"]: r for r in first}
  for rec in again:
    assert rec["test"] == pytest.approx(by_id[rec["run_id"]]["test"], abs=1e-6)


def test_data_edited_in_place_is_refused_by_name_on_resume(tmp_path, capsys):
  data = _data_folder(tmp_path / "data")
  workdir = str(tmp_path / "work")
  code, err = _sweep(capsys, _grid(data), workdir)
  assert code == 0, err
  kept = open(os.path.join(workdir, "results.jsonl")).read()
  lines = open(os.path.join(data, "train.tsv")).read().splitlines()
  open(os.path.join(data, "train.tsv"), "w").write("\n".join(lines[:len(lines) // 2]) + "\n")
  code, err = _sweep(capsys, _grid(data), workdir)
  assert code == cli.USAGE_ERROR and "train.tsv" in err and "changed" in err, err
  assert len(err.strip().splitlines()) <= 3
  assert open(os.path.join(workdir, "results.jsonl")).read() == kept    # nothing mixed in


def test_a_stray_large_id_is_refused_before_any_work_directory(tmp_path, capsys):
  data = _data_folder(tmp_path / "data")
  with open(os.path.join(data, "test.tsv"), "a") as f:
    f.write("30000000\t10\n")
  workdir = str(tmp_path / "work")
  code, err = _sweep(capsys, _grid(data), workdir)
  assert code == cli.USAGE_ERROR, err
  assert "test.tsv: line" in err and "30000000" in err and "remap_users" in err
  assert len(err.strip().splitlines()) <= 3 and not os.path.exists(workdir)
  # The remedy it names works: the id is renumbered, and the sweep says so.
  grid = Grid(base={**_grid(data).base, "remap_users": True}, axes=dict(seed=[0]))
  code = cli.run(lambda: run_sweep(grid, workdir, progress=False))
  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert "remapped user ids" in captured.err          # a data warning: on stderr
  record = results.read_jsonl(os.path.join(workdir, "results.jsonl"))[0]
  assert any("remapped user ids" in w for w in record["data_warnings"])


def test_dropped_evaluation_users_are_counted_once_in_output_and_records(tmp_path, capsys):
  data = _data_folder(tmp_path / "data")
  with open(os.path.join(data, "test.tsv"), "a") as f:
    f.write("119\t3\n")      # make sure user 119 has test pairs ...
  train = [l for l in open(os.path.join(data, "train.tsv")).read().splitlines()
           if not l.startswith("119\t")]
  open(os.path.join(data, "train.tsv"), "w").write("\n".join(train) + "\n")   # ... and none in train
  workdir = str(tmp_path / "work")
  run_sweep(_grid(data), workdir, progress=False)
  out = capsys.readouterr().err
  notes = [l for l in out.splitlines() if l.startswith("data:")]
  assert notes and any("without training" in l or "no training" in l for l in notes), out
  for rec in results.read_jsonl(os.path.join(workdir, "results.jsonl")):
    assert rec["data_warnings"] == [n.split(": ", 2)[2] for n in notes]


def test_a_damaged_checkpoint_falls_back_and_the_result_is_that_of_an_uninterrupted_run(
    tmp_path, capsys):
  grid = Grid(base=dict(TRAIN, max_epochs=6, synthetic_users=150, synthetic_items=200,
                        synthetic_dims=(8, 6)), axes=dict(seed=[0, 1]))
  configs = [cfg for _, cfg in plan_groups(grid)[0]]
  full = train_configs(configs)
  # Interrupted after epoch 4 (two checkpoints kept: 3 and 4), then the latest damaged.
  work = WorkDir(str(tmp_path / "work"))
  ckpt = work.checkpoint_dir("g000-milk", [c.run_id for c in configs])
  train_configs(configs, checkpoint_dir=ckpt, max_epochs=4)
  latest = os.path.join(ckpt, "4")
  for root, _, files in os.walk(latest):
    for name in files:
      if name.endswith(".json") or "metadata" in name:
        open(os.path.join(root, name), "w").write("{ torn")
  code, err = _sweep(capsys, grid, work.path)
  out = capsys.readouterr().out
  assert code == 0, err
  records = results.read_jsonl(work.results)
  assert len(records) == 2
  for rec, r in zip(sorted(records, key=lambda x: x["config"]["seed"]), range(2)):
    assert rec["timing"]["resumed_from_epoch"] == 3, out
    assert rec["selected_epoch"] == int(full.selected_epoch[r])
    assert rec["test"]["ndcg@10"] == pytest.approx(float(full.test["ndcg@10"][r]), abs=1e-6)


def test_a_refused_start_leaves_no_sweep_json_that_blocks_the_corrected_command(
    tmp_path, capsys):
  workdir = str(tmp_path / "work")
  bad = Grid(base=dict(TRAIN, synthetic_dims=(8,)), axes=dict(seed=[0]))   # MILK needs 2
  code, err = _sweep(capsys, bad, workdir)
  assert code == cli.USAGE_ERROR and not os.path.exists(workdir), err
  good = Grid(base=dict(TRAIN, synthetic_users=150, synthetic_items=200), axes=dict(seed=[0]))
  code, err = _sweep(capsys, good, workdir)
  assert code == 0, err
  assert make_config(**good.base).run_id in {r["run_id"] for r in results.read_jsonl(
      os.path.join(workdir, "results.jsonl"))}


# ------------------------------------------------ issue 27: machine faults ---

TENSORSTORE_ENOSPC = ('RESOURCE_EXHAUSTED: Error writing "p/0" in OCDBT database at local file '
                      '"{dir}/": Failed to write 979325 bytes to file 14: No space left on '
                      "device [os_error_code='28']")


def _tiny_grid(**base) -> Grid:
  return Grid(base=dict(TRAIN, synthetic_users=150, synthetic_items=200, synthetic_dims=(8, 6),
                        **base), axes=dict(seed=[0, 1]))


@pytest.mark.parametrize("full_at_save", [1, 2])
def test_a_full_disk_is_one_line_no_retry_nothing_half_written_and_it_resumes(
    tmp_path, capsys, monkeypatch, full_at_save):
  import orbax.checkpoint as ocp
  real_save, saves = ocp.CheckpointManager.save, []

  def fills_up(self, step, *args, **kwargs):
    saves.append(step)
    if len(saves) < full_at_save:
      return real_save(self, step, *args, **kwargs)
    partial = os.path.join(str(self.directory), f"{step}.orbax-checkpoint-tmp")
    os.makedirs(os.path.join(partial, "state"))          # as TensorStore leaves it
    raise ValueError(TENSORSTORE_ENOSPC.format(dir=partial))
  monkeypatch.setattr(ocp.CheckpointManager, "save", fills_up)
  grid, workdir = _tiny_grid(), str(tmp_path / "work")
  code, err = _sweep(capsys, grid, workdir)
  out = capsys.readouterr().out
  assert code == cli.USAGE_ERROR, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "the disk is full" in lines[0] and "epoch" in lines[0], err
  assert os.path.join(workdir, "checkpoints") in lines[0]         # the directory, named
  assert "did not fit" not in out + err and len(saves) == full_at_save   # no retraining
  left = os.listdir(os.path.join(workdir, "checkpoints"))
  if full_at_save == 1:
    assert left == []                  # no complete checkpoint: the group's directory is gone
  else:
    (group,) = left
    assert os.listdir(os.path.join(workdir, "checkpoints", group)) == ["1"]   # no partial one
  monkeypatch.undo()                                                   # space freed
  code, err = _sweep(capsys, grid, workdir)
  assert code == 0, err
  records = results.read_jsonl(os.path.join(workdir, "results.jsonl"))
  assert len(records) == 2
  assert {r["timing"]["resumed_from_epoch"] for r in records} == {full_at_save - 1}
  assert os.listdir(os.path.join(workdir, "checkpoints")) == []


def test_no_room_for_the_checkpoints_is_refused_before_the_group_trains(
    tmp_path, capsys, monkeypatch):
  from jaxrec import errors
  monkeypatch.setattr(errors, "free_bytes", lambda path: 2**20)
  workdir = str(tmp_path / "work")
  code, err = _sweep(capsys, _tiny_grid(), workdir)
  assert code == cli.USAGE_ERROR, err
  (line,) = err.strip().splitlines()
  assert "1.0 MiB free on its disk" in line and "checkpoints need about" in line, line
  assert os.path.join(workdir, "checkpoints") in line and "--workdir" in line
  assert os.listdir(os.path.join(workdir, "checkpoints")) == []         # nothing left behind
  assert not os.path.exists(os.path.join(workdir, "curves", "g000-milk.jsonl"))


def test_every_checkpoint_damaged_is_one_line_without_orbax_noise(tmp_path, capfd):
  grid = _tiny_grid(max_epochs=6)
  configs = [cfg for _, cfg in plan_groups(grid)[0]]
  work = WorkDir(str(tmp_path / "work"))
  ckpt = work.checkpoint_dir("g000-milk", [c.run_id for c in configs])
  train_configs(configs, checkpoint_dir=ckpt, max_epochs=4)
  for root, _, files in os.walk(ckpt):
    for name in files:                   # every file of every checkpoint cut in half
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(root, name)) // 2)
  capfd.readouterr()
  code = cli.run(lambda: run_sweep(grid, work.path))          # with its progress bar
  import gc
  gc.collect()                  # orbax's abandoned reads, collected here, print nothing
  err = capfd.readouterr().err
  assert code == cli.USAGE_ERROR, err
  assert len(err.strip().split("\n")) <= 3, err         # as a terminal shows it (\r redraws)
  assert "no checkpoint can be read" in err and "delete that directory" in err
  assert "Traceback" not in err and "Exception ignored" not in err


def _read_only_command(folder: str, command: list[str]) -> list[str]:
  """`command` with `folder` mounted read-only for it alone (a private mount
  namespace: nothing outside the command sees the change)."""
  import shlex
  q = shlex.quote(folder)
  return ["unshare", "-m", "sh", "-c",
          f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && exec "
          + " ".join(shlex.quote(c) for c in command)]


def _can_mount_read_only(tmp_path) -> bool:
  import shutil
  import subprocess
  if shutil.which("unshare") is None:
    return False
  (tmp_path / "probe").mkdir()
  probe = _read_only_command(str(tmp_path / "probe"), ["touch", str(tmp_path / "probe" / "x")])
  done = subprocess.run(probe, capture_output=True, text=True)
  return "Read-only" in done.stderr


def test_a_finished_read_only_work_directory_prints_its_summary(tmp_path):
  import subprocess
  import sys
  from experiments import configs
  from jaxrec.grid import apply_overrides
  from tests.helpers import REPO
  if not _can_mount_read_only(tmp_path):
    pytest.skip("needs unshare and mount (a private read-only bind mount)")
  workdir = str(tmp_path / "work")
  grid = apply_overrides(configs.get_grid("smoke"), models=[""], seeds=1, epochs=1,
                         data=None, sets=[], axes=[], tune=False)
  run_sweep(grid, workdir, progress=False)
  before = sorted(os.listdir(workdir))
  done = subprocess.run(
      _read_only_command(workdir, [sys.executable, "-m", "experiments.sweep", "--grid", "smoke",
                                   "--seeds", "1", "--epochs", "1", "--workdir", workdir]),
      cwd=REPO, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
      timeout=300)
  assert done.returncode == 0, done.stderr
  assert "already done" in done.stdout and "| milk |" in done.stdout, done.stdout
  (note,) = [l for l in done.stderr.splitlines() if l.strip()]
  assert f"{workdir} cannot be written (Read-only file system)" in note, note
  assert "printed above" in note and "experiments.report" in note
  assert sorted(os.listdir(workdir)) == before
