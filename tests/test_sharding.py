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


def test_sharded_over_eight_devices_equals_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  for name, values in res["sharded"].items():
    assert len(values) == 5
    for a, b in zip(values, res["single"][name]):
      assert abs(a - b) < 1e-5, name
  assert res["kernel_diff"] < 1e-5
