"""Bad flags and values: one line on stderr naming the field, exit code 2, checked
before anything is built, and no work directory left behind."""
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxrec import cli
from jaxrec.errors import InputError
from jaxrec.grid import Grid, apply_overrides
from jaxrec.sweep import run_sweep
from tests.helpers import REPO

TINY = dict(synthetic_users=150, synthetic_items=200, synthetic_dims=(8, 6), embed_dim=8,
            batch_size=128, max_epochs=2, eval_every=1)


def _refused(capsys, tmp_path, *, sets=(), axes=(), seeds=None, base=None, **grid_kw):
  """Runs a tiny sweep with the overrides through the CLI's error handling."""
  workdir = str(tmp_path / "work")

  def command():
    grid = apply_overrides(Grid(base=dict(base or TINY), axes=dict(seed=[0]), **grid_kw),
                           sets=sets, axes=axes, seeds=seeds)
    run_sweep(grid, workdir, progress=False)
  code = cli.run(command)
  err = capsys.readouterr().err
  assert code == cli.USAGE_ERROR, err
  assert len(err.strip().splitlines()) <= 3, err
  assert not os.path.exists(workdir), "a refused start left a work directory"
  return err


@pytest.mark.parametrize("assignment, named", [
    ("batch_size=0", "batch_size=0: expected >= 1"),
    ("eval_every=0", "eval_every=0: expected >= 1"),
    ("new_fraction=1.5", "new_fraction=1.5: expected < 1.0"),
    ("new_fraction=0", "new_fraction=0.0: expected > 0.0"),
    ("max_epochs=0", "max_epochs=0: expected >= 1"),
    ("lr=-1", "lr=-1.0: expected > 0"),
    ("embed_dim=0", "embed_dim=0: expected >= 1"),
    ("lr=abc", "lr='abc': expected float"),
    ("setting=xx", "unknown setting 'xx'; expected one of"),
    ("fill=median", "unknown fill 'median'; expected one of"),
    ("missing_rate=1.5", "missing_rate=1.5: expected <= 1.0"),
    ("alpha=0", "alpha=0.0: expected > 0"),
    ("learning_rate=1", "unknown config field 'learning_rate'"),
    ("milk.temperature=1", "model 'milk' has no field 'temperature'"),
    ("nomodel.lr=1", "unknown model 'nomodel'"),
    ("synthetic_dims=0,4", "synthetic_dims=(0, 4): expected one or more positive integers"),
])
def test_each_bad_value_is_one_line_naming_the_field(assignment, named, capsys, tmp_path):
  assert named in _refused(capsys, tmp_path, sets=[assignment])


def test_no_seeds_and_repeated_axis_values_are_refused(capsys, tmp_path):
  assert "--seeds 0: expected at least 1" in _refused(capsys, tmp_path, seeds=0)
  assert "repeated values" in _refused(capsys, tmp_path, axes=["lr=0.1,0.1"])


def test_a_swept_value_that_changes_nothing_is_refused(capsys, tmp_path):
  # Warm protocol, setting fm: the test items' share is test_missing_rate, so an
  # axis over missing_rate would train the same run twice.
  err = _refused(capsys, tmp_path, sets=["protocol=warm"], axes=["missing_rate=0,0.5"])
  assert "would be the same run" in err and "test_missing_rate" in err
  err = _refused(capsys, tmp_path, sets=["setting=ff"], axes=["missing_rate=0.2,0.5"])
  assert "fixed fractions" in err
  err = _refused(capsys, tmp_path, sets=["test_missing_rate=0.3"])
  assert "test_missing_rate=0.3: it applies to the warm protocol" in err
  err = _refused(capsys, tmp_path, sets=["protocol=warm", "candidates=own_half"])
  assert "candidates='own_half': the warm protocol ranks every item" in err


def test_the_test_missing_rate_is_a_field_of_its_own():
  from jaxrec.config import make_config
  from jaxrec.engine.inputs import dataset_for, run_masks, split_for
  cfgs = [make_config(**TINY, protocol="warm", setting="fm", test_missing_rate=r)
          for r in (0.2, 0.8)]
  dataset, split = dataset_for(cfgs[0]), split_for(cfgs[0])
  hidden = [int((~run_masks(c, dataset, split)[1]).sum()) for c in cfgs]
  assert hidden[1] > 3 * hidden[0] > 0
  assert cfgs[0].run_id != cfgs[1].run_id


def test_own_half_candidates_reach_the_evaluations():
  """`candidates=own_half`: validation ranks the validation half's items, test the
  test half's, the same training data; a run of its own (its own id)."""
  from jaxrec.config import make_config
  from jaxrec.engine.inputs import dataset_for, group_data, split_for
  every, own = (make_config(**TINY, candidates=c) for c in ("all_new", "own_half"))
  dataset = dataset_for(own)
  every_data = group_data(dataset, split_for(every))
  own_split = split_for(own)
  own_data = group_data(dataset, own_split)
  np.testing.assert_array_equal(own_data.val.items, np.flatnonzero(own_split.val_candidates))
  np.testing.assert_array_equal(own_data.test.items, np.flatnonzero(own_split.test_candidates))
  assert len(own_data.val.items) + len(own_data.test.items) == len(every_data.test.items)
  np.testing.assert_array_equal(own_data.train_pairs, every_data.train_pairs)
  assert every.run_id != own.run_id


def test_a_model_that_needs_more_modalities_than_the_data_has(capsys, tmp_path):
  err = _refused(capsys, tmp_path, base=dict(TINY, synthetic_dims=(8,)))
  assert "model 'milk' needs at least 2 modalities" in err


@pytest.mark.parametrize("model", ["freedom", "mmgcn"])
def test_a_modality_option_names_one_of_the_data_s_modalities(model, capsys, tmp_path):
  err = _refused(capsys, tmp_path, base=dict(TINY, model=model),
                 sets=[f"{model}.image_modality=imgae"])
  assert (f"{model}.image_modality='imgae': expected one of the data's modalities "
          "(image, text)") in err


def test_a_spec_the_model_refuses_is_one_line_before_anything_compiles(capsys, tmp_path):
  err = _refused(capsys, tmp_path, base=dict(TINY, model="mtpr", embed_dim=7))
  assert "mtpr: embed_dim=7: expected an even number" in err


@pytest.mark.parametrize("model", ["freedom", "mmgcn"])
def test_a_model_that_needs_an_image_modality_says_so(model, capsys, tmp_path):
  from tests.test_readers import _tsvs
  (tmp_path / "data").mkdir()
  folder = _tsvs(tmp_path / "data")      # image and text features; only text selected
  err = _refused(capsys, tmp_path, base=dict(data=folder, model=model, protocol="warm",
                                             max_epochs=1), sets=["modalities=text"])
  assert (f"model {model!r} needs a modality named 'image'" in err
          and "the data's modalities are text" in err
          and f"--set {model}.image_modality=NAME" in err), err


def test_flag_errors_are_one_line_with_exit_code_2(tmp_path):
  for argv, named in ((["--seeds", "abc"], "--seeds"), (["--nope"], "nope"),
                      (["--grid", "nope"], "unknown grid 'nope'"),
                      (["stray"], "unexpected arguments")):
    out = subprocess.run([sys.executable, "-m", "experiments.sweep", *argv, "--workdir",
                          str(tmp_path / "w")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == cli.USAGE_ERROR, (argv, out.stderr)
    assert named in out.stderr and len(out.stderr.strip().splitlines()) <= 3, out.stderr
    assert "Traceback" not in out.stderr and not os.path.exists(tmp_path / "w")


def test_verbose_prints_the_traceback_of_a_user_error(capsys):
  def bad():
    raise InputError("boom")
  assert cli.run(bad) == cli.USAGE_ERROR
  assert capsys.readouterr().err == "error: boom\n"
  assert cli.run(bad, verbose=True) == cli.USAGE_ERROR
  assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [lambda: {}["lr"], lambda: int("x"), lambda: 1 / 0])
def test_a_bug_is_a_crash_with_its_traceback_not_a_user_mistake(bug, capsys):
  # A KeyError or ValueError from inside a command is not the user's: it is not
  # reported as "error: ..." with exit code 2, and its traceback is shown.
  assert cli.run(bug) == cli.CRASH
  err = capsys.readouterr().err
  assert "Traceback" in err and err.strip().splitlines()[-1].startswith("crash (")
  assert "error:" not in err


def test_a_key_error_in_a_sweep_is_a_crash(capsys, tmp_path, monkeypatch):
  import jaxrec.sweep
  monkeypatch.setattr(jaxrec.sweep, "check_data", lambda groups: {}["data"])
  code = cli.run(lambda: run_sweep(Grid(base=dict(TINY), axes=dict(seed=[0])),
                                   str(tmp_path / "w"), progress=False))
  err = capsys.readouterr().err
  assert code == cli.CRASH and "Traceback" in err and "crash (KeyError): 'data'" in err


def test_fields_lists_every_model_field_with_its_source():
  text = cli.describe_fields()
  assert "gar (--set gar.FIELD=V):" in text and "alpha = 0.05" in text
  assert "authors' code, main.py" in text
  assert "batch_size = 2048  [per group; [1, ∞)]" in text
  # An open bound is shown open: new_fraction = 1 would leave no warm items.
  assert "new_fraction = 0.2  [per group; (0, 1)]" in text


def test_importing_the_cli_and_planning_a_grid_start_no_jax_backend():
  # jax.distributed.initialize (multi-process sweeps) must come before any backend.
  code = ("from jax._src import xla_bridge\n"
          "import experiments.sweep\n"
          "from experiments import configs\n"
          "from jaxrec.grid import apply_overrides\n"
          "apply_overrides(configs.get_grid('newitem_compare'), tune=True).expand()\n"
          "assert not xla_bridge._backends, 'a JAX backend was started'\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-2000:]
