"""The sweep command end to end on the tiny grid; resume; a changed grid is refused."""
import os
import subprocess
import sys

import pytest

from jaxrec import results
from jaxrec.config import make_config, parse_value
from jaxrec.sweep import plan_groups, run_sweep
from jaxrec.grid import Grid
from tests.helpers import REPO


def test_sweep_command_end_to_end(tmp_path):
  workdir = str(tmp_path / "wd")
  cmd = [sys.executable, "-m", "experiments.sweep", "--grid", "smoke", "--workdir",
         workdir, "--noprogress", "--axis", "setting=fm,mm", "--set", "max_epochs=4"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  records = results.read_jsonl(os.path.join(workdir, "results.jsonl"))
  assert len(records) == 8                            # 2 rates x 2 settings x 2 seeds
  for rec in records:
    assert set(rec["coords"]) == {"missing_rate", "seed", "setting"}
    assert rec["config"]["max_epochs"] == 4
    assert 0 < rec["selected_epoch"] <= 4
    assert set(rec["test"]) >= {"recall@20", "ndcg@20", "hr@20", "recall@50"}
    assert 0.0 <= rec["test"]["recall@20"] <= 1.0
  summary = open(os.path.join(workdir, "summary.md")).read()
  assert "test recall@20" in summary and summary.count("\n| milk |") == 4
  assert "## overview" in out.stdout          # the validation-selected report is printed
  # The same command again trains nothing and keeps the records.
  again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0 and "8 already done" in again.stdout
  assert len(results.read_jsonl(os.path.join(workdir, "results.jsonl"))) == 8


def test_bad_flags_give_clear_errors(tmp_path):
  cmd = [sys.executable, "-m", "experiments.sweep", "--grid", "smoke", "--workdir",
         str(tmp_path), "--set", "learning_rate=1"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "unknown config field 'learning_rate'" in out.stderr
  cmd = [sys.executable, "-m", "experiments.sweep", "--grid", "nope"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "unknown grid 'nope'" in out.stderr


def test_partial_results_resume_and_changed_grid_is_refused(tmp_path):
  base = dict(synthetic_users=150, synthetic_items=300, synthetic_dims=(8, 6),
              embed_dim=8, batch_size=128, max_epochs=2, eval_every=1)
  grid = Grid(base=base, axes=dict(seed=[0, 1, 2]))
  workdir = str(tmp_path)
  first = run_sweep(grid, workdir, progress=False)
  # Drop one finished run as if the sweep had been killed before writing it.
  path = os.path.join(workdir, "results.jsonl")
  lines = open(path).read().splitlines()
  open(path, "w").write("\n".join(lines[:2]) + "\n")
  resumed = run_sweep(grid, workdir, progress=False)
  assert len(resumed) == 3
  before = {r["run_id"]: r["test"] for r in first}
  after = {r["run_id"]: r["test"] for r in resumed}
  assert set(after) == set(before)
  for run_id, metrics in before.items():
    assert after[run_id] == pytest.approx(metrics, abs=1e-6)
  with pytest.raises(ValueError, match="holds a different sweep"):
    run_sweep(Grid(base=base, axes=dict(seed=[0, 1])), workdir, progress=False)


def test_grouping_by_shape():
  grid = Grid(base=dict(max_epochs=2),
              axes=dict(seed=[0, 1], lr=[1e-3, 1e-2], embed_dim=[8, 16]))
  groups = plan_groups(grid)
  assert [len(g) for g in groups] == [4, 4]
  assert {g[0][1].embed_dim for g in groups} == {8, 16}


def test_parse_value_types():
  assert parse_value("missing_rate", "none") is None
  assert parse_value("missing_rate", "0.3") == 0.3
  assert parse_value("synthetic_dims", "32,16") == (32, 16)
  assert parse_value("max_epochs", "7") == 7
  with pytest.raises(ValueError, match="unknown config field"):
    parse_value("nope", "1")
  assert make_config(seed=3).run_id != make_config(seed=4).run_id


def test_report_command_regenerates_tables_and_plots(tmp_path):
  base = dict(synthetic_users=150, synthetic_items=300, synthetic_dims=(8, 6),
              embed_dim=8, batch_size=128, max_epochs=2, eval_every=1)
  workdir = str(tmp_path)
  run_sweep(Grid(base=base, axes=dict(seed=[0, 1], missing_rate=[0.0, 0.5],
                                      setting=["fm", "mm"])), workdir, progress=False)
  for name in ("summary.md", "summary.csv"):
    os.remove(os.path.join(workdir, name))
  out = subprocess.run([sys.executable, "-m", "experiments.report", workdir], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "test recall@20" in open(os.path.join(workdir, "summary.md")).read()
  assert open(os.path.join(workdir, "summary.csv")).readline().startswith("model,")
  plots = os.listdir(os.path.join(workdir, "plots"))
  assert "metrics_vs_rate.png" in plots and any(p.startswith("curves-") for p in plots)
  for name in plots:
    with open(os.path.join(workdir, "plots", name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_per_model_fields_apply_to_their_model_only():
  grid = Grid(base=dict(max_epochs=2, align_weight=0.3),
              axes=dict(model=["milk", "heater"], seed=[0, 1]),
              per_model=dict(milk=dict(align_weight=0.5, penalty_weight=7.0)))
  by_model = {}
  for coords, cfg in grid.expand():
    by_model.setdefault(coords["model"], set()).add(
        (cfg.hp["align_weight"], cfg.hp.get("penalty_weight")))
  assert by_model["milk"] == {(0.5, 7.0)}
  assert by_model["heater"] == {(0.3, None)}          # HEATER has no penalty weight
  assert "per_model" in grid.to_json()
  assert "per_model" not in Grid(base={}, axes={}).to_json()   # old sweep.json still match


def test_model_qualified_set_flag():
  from absl import flags
  from experiments import sweep as cli
  argv = ["sweep", "--grid", "newitem_compare", "--set", "milk.align_weight=0.7",
          "--set", "heater.max_epochs=3", "--set", "penalty_weight=9"]
  flags.FLAGS(argv)
  try:
    grid = cli.grid_from_flags()
    flags.FLAGS(["sweep", "--set", "nomodel.lr=1"])
    with pytest.raises(Exception, match="unknown model 'nomodel'"):
      cli.grid_from_flags()
  finally:
    flags.FLAGS.unparse_flags()
  configs = {(c["model"], c["setting"], c["seed"]): cfg for c, cfg in grid.expand()}
  milk, heater = configs[("milk", "fm", 0)], configs[("heater", "fm", 0)]
  # A global --set wins over the grid's per-model value.
  assert milk.hp["align_weight"] == 0.7 and milk.hp["penalty_weight"] == 9.0
  assert heater.max_epochs == 3 and milk.max_epochs == 1000
  assert heater.hp["align_weight"] == make_config(model="heater").hp["align_weight"]
