"""8 fake CPU devices: the sharded group gives the same results as one device."""
import json
import os
import subprocess
import sys

from tests.helpers import REPO

SCRIPT = r"""
import json, jax, numpy as np
from jaxrec.config import make_config
from jaxrec.sweep import train_configs
assert len(jax.devices()) == 8, jax.devices()
tiny = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8), embed_dim=8,
            batch_size=128, max_epochs=4, eval_every=2)
configs = [make_config(**tiny, seed=s, setting=("fm", "mm")[s % 2], lr=1e-3 * (1 + s))
           for s in range(5)]                      # 5 runs on 8 devices: padded
sharded = train_configs(configs)
single = train_configs(configs, devices=jax.devices()[:1])
print(json.dumps({"sharded": {k: v.tolist() for k, v in sharded.test.items()},
                  "single": {k: v.tolist() for k, v in single.test.items()},
                  "kernel_diff": float(np.abs(
                      sharded.best_params["extractor_0"]["kernel"]
                      - single.best_params["extractor_0"]["kernel"]).max())}))
"""


def _run_on_eight_devices(script: str) -> dict:
  """Runs `script` in a process with 8 fake CPU devices; its last line as JSON."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_eight_devices_equals_single_device():
  res = _run_on_eight_devices(SCRIPT)
  for name, values in res["sharded"].items():
    assert len(values) == 5
    for a, b in zip(values, res["single"][name]):
      assert abs(a - b) < 1e-5, name
  assert res["kernel_diff"] < 1e-5


COMPACT_SCRIPT = r"""
import json, jax, numpy as np
from jaxrec.config import make_config
from jaxrec.sweep import train_configs
tiny = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8), embed_dim=8,
            batch_size=128, max_epochs=12, eval_every=1, patience=1)
configs = [make_config(**tiny, seed=s, lr=lr) for s, lr in
           [(0, 0.05), (1, 1e-4), (2, 0.05), (3, 0.02), (4, 1e-4)]]
sharded = train_configs(configs, devices=jax.devices()[:4])   # 5 runs on 4 devices: 8 rows
single = train_configs(configs, devices=jax.devices()[:1], compact_at=0.0)
print(json.dumps({"compactions": sharded.compactions,
                  "epochs": [sharded.epochs_trained.tolist(), single.epochs_trained.tolist()],
                  "test_diff": max(float(np.abs(sharded.test[k] - single.test[k]).max())
                                   for k in single.test)}))
"""


def test_compacting_a_sharded_padded_group_equals_one_device():
  res = _run_on_eight_devices(COMPACT_SCRIPT)
  assert res["compactions"], res        # 8 rows -> 4 once no more than 4 runs train
  assert res["epochs"][0] == res["epochs"][1]
  assert res["test_diff"] < 1e-5
