"""8 fake CPU devices: the sharded (and compacted) group gives the same results as one device."""
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
# 5 runs on 4 devices: padded to 8 rows. Patience 1 with evaluation every epoch:
# runs stop at different epochs, so the group is also compacted (8 rows -> 4 once
# no more than 4 runs train).
tiny = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8), embed_dim=8,
            batch_size=128, max_epochs=12, eval_every=1, patience=1)
configs = [make_config(**tiny, seed=s, lr=lr)
           for s, lr in enumerate([0.05, 1e-4, 0.05, 0.02, 1e-4])]
sharded = train_configs(configs, devices=jax.devices()[:4])
single = train_configs(configs, devices=jax.devices()[:1], compact_at=0.0)
print(json.dumps({"sharded": {k: v.tolist() for k, v in sharded.test.items()},
                  "single": {k: v.tolist() for k, v in single.test.items()},
                  "epochs": [sharded.epochs_trained.tolist(), single.epochs_trained.tolist()],
                  "compactions": sharded.compactions,
                  "kernel_diff": float(np.abs(
                      sharded.best_params["extractor_0"]["kernel"]
                      - single.best_params["extractor_0"]["kernel"]).max())}))
"""


def test_sharded_padded_and_compacted_group_equals_single_device():
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
  assert res["epochs"][0] == res["epochs"][1]
  assert len(set(res["epochs"][1])) > 1, "runs must stop at different epochs"
  assert res["compactions"] and res["compactions"][0][1] <= 4, res["compactions"]
