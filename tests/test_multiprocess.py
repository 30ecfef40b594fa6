"""Two local CPU processes (jax.distributed) run one sweep: same metrics as one process,
and only process 0 writes results."""
import os
import socket
import subprocess
import sys

import pytest

from jaxrec import results
from tests.helpers import REPO

ARGS = ["--grid", "smoke", "--noprogress", "--seeds", "3", "--set", "max_epochs=4"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  base_env = dict(os.environ, JAX_PLATFORMS="cpu",
                  XLA_FLAGS="--xla_force_host_platform_device_count=2")
  multi = str(tmp_path / "multi")
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "experiments.sweep", "--workdir", multi,
       "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
       "--process_id", str(pid)] + ARGS, cwd=REPO, env=base_env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "Recall@20" in outs[0][0] and "Recall@20" not in outs[1][0]   # the report: process 0
  assert "devices: 4 x cpu" in outs[0][0]             # 2 processes x 2 devices

  single = str(tmp_path / "single")
  out = subprocess.run([sys.executable, "-m", "experiments.sweep", "--workdir", single]
                       + ARGS, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  a = {r["run_id"]: r for r in results.read_jsonl(os.path.join(multi, "results.jsonl"))}
  b = {r["run_id"]: r for r in results.read_jsonl(os.path.join(single, "results.jsonl"))}
  assert set(a) == set(b) and len(a) == 6
  for run_id in a:
    assert a[run_id]["test"] == pytest.approx(b[run_id]["test"], abs=1e-5)
    assert a[run_id]["selected_epoch"] == b[run_id]["selected_epoch"]
