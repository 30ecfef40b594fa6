"""A sweep killed with SIGKILL mid-training resumes from its checkpoint and ends
with the same results as an uninterrupted sweep."""
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxrec import results
from tests.helpers import REPO

ARGS = ["--grid", "smoke", "--noprogress", "--set", "synthetic_users=800",
        "--set", "synthetic_items=600", "--set", "max_epochs=40", "--set", "eval_every=4",
        "--set", "patience=100", "--set", "batch_size=1024"]


def _cmd(workdir):
  return [sys.executable, "-m", "experiments.sweep", "--workdir", workdir] + ARGS


def _checkpointed_epochs(workdir):
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    return []
  return [int(step) for group in os.listdir(root)
          for step in os.listdir(os.path.join(root, group)) if step.isdigit()]


def _by_run(workdir):
  return {r["run_id"]: r for r in results.read_jsonl(os.path.join(workdir, "results.jsonl"))}


def test_sigkill_then_resume_gives_the_uninterrupted_results(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(_cmd(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  deadline = time.time() + 300
  while time.time() < deadline and not any(e >= 8 for e in _checkpointed_epochs(killed)):
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  stopped_at = max(_checkpointed_epochs(killed))
  assert 8 <= stopped_at < 40, "the sweep must be killed in the middle of training"
  assert not os.path.exists(os.path.join(killed, "results.jsonl"))

  resumed = subprocess.run(_cmd(killed), cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  clean = str(tmp_path / "clean")
  straight = subprocess.run(_cmd(clean), cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
  assert straight.returncode == 0, straight.stderr[-2000:]

  after_kill, uninterrupted = _by_run(killed), _by_run(clean)
  assert set(after_kill) == set(uninterrupted) and len(after_kill) == 4
  for run_id, rec in after_kill.items():
    ref = uninterrupted[run_id]
    assert rec["timing"]["resumed_from_epoch"] >= 8        # resumed, not retrained
    assert ref["timing"]["resumed_from_epoch"] == 0
    assert rec["selected_epoch"] == ref["selected_epoch"]
    assert rec["epochs_trained"] == ref["epochs_trained"] == 40
    assert rec["test"] == pytest.approx(ref["test"], abs=1e-7)
    assert rec["val"] == pytest.approx(ref["val"], abs=1e-7)
  assert not os.listdir(os.path.join(killed, "checkpoints"))   # cleaned up when done
  curves = os.listdir(os.path.join(killed, "curves"))
  lines = open(os.path.join(killed, "curves", curves[0])).read().splitlines()
  assert len(lines) == 40                                  # no epoch twice, none lost


def test_a_checkpoint_of_another_state_structure_is_refused_by_name(tmp_path):
  import jax.numpy as jnp
  from jaxrec.engine.checkpoint import GroupCheckpointer
  ckpt = GroupCheckpointer(str(tmp_path / "group"))
  ckpt.save(4, {"params": jnp.zeros(3)}, {"eval_history": []})
  with pytest.raises(ValueError, match=r"group \(epoch 4\) holds a training state of a "
                                       r"different structure"):
    ckpt.restore({"params": jnp.zeros(3), "best_aux": {"w": jnp.zeros(2)}})
  assert ckpt.restore({"params": jnp.ones(3)})[0] == 4      # the checkpoint is untouched
