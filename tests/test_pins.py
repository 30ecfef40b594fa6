"""Every registered model's results pinned across refactors of the model interface.

One tiny two-run group per registered model (and per static variant), the same
groups as `test_every_model.py` (its `CASES`, `VARIANTS` and data), trained for
its two or three tiny epochs; the selected epoch, the validation and test
metrics and a fingerprint of the selected parameters (the sum of |x| over each
run's leaves) are compared with `fixtures/pins.json`, recorded on the code before
issue 28's hook redesign (commit in its `_about`). The groups are `test_every_model`'s own (its cached
`_trained_group`), so run beside that file this test compiles and trains nothing
more. A refactor that claims to
change no numbers must keep them within `RTOL` (relative; `ATOL` absolute for
metrics near 0). Regenerate only for an intended change of results, naming the models whose
results changed: `python -m tests.test_pins --write MODEL [MODEL ...]` (all
groups without a name).
"""
import json
import os
import sys

import jax
import numpy as np
import pytest

from jaxrec.sweep import train_configs
from tests.test_every_model import CASES, VARIANTS, _group_configs, _trained_group, _variant_id

PINS = os.path.join(os.path.dirname(__file__), "fixtures", "pins.json")
RTOL, ATOL = 1e-5, 1e-7
# Per-model tolerances where the default is too tight (none so far).
TOLERANCE = {}
GROUPS = [(name, {}) for name in sorted(CASES)] + VARIANTS


def _outcome_record(outcome) -> dict:
  leaves = jax.tree.leaves(outcome.best_params)
  return {
      "selected_epoch": outcome.selected_epoch.tolist(),
      "val": {k: np.asarray(v).tolist() for k, v in sorted(outcome.val.items())},
      "test": {k: np.asarray(v).tolist() for k, v in sorted(outcome.test.items())},
      "params_abs_sum": [float(sum(np.abs(np.asarray(x[r], np.float64)).sum() for x in leaves))
                         for r in range(outcome.selected_epoch.shape[0])],
  }


@pytest.fixture(scope="module")
def pins():
  with open(PINS) as f:
    return json.load(f)


@pytest.mark.parametrize("group", GROUPS, ids=[_variant_id(g) for g in GROUPS])
def test_results_are_pinned(group, pins):
  name, static = group
  want = pins[_variant_id(group)]
  got = _outcome_record(_trained_group(name, tuple(sorted(static.items())))[1])
  rtol = TOLERANCE.get(name, RTOL)
  assert got["selected_epoch"] == want["selected_epoch"]
  for split in ("val", "test"):
    assert set(got[split]) == set(want[split])
    for metric, values in want[split].items():
      np.testing.assert_allclose(got[split][metric], values, rtol=rtol, atol=ATOL,
                                 err_msg=f"{split} {metric}")
  np.testing.assert_allclose(got["params_abs_sum"], want["params_abs_sum"], rtol=rtol)


def _write(commit: str, names: list[str]) -> None:
  """Pins every group, or only the groups of the models in `names` (an intended
  change of those models' results), keeping the others' pins and noting it."""
  record = {"_about": f"tests/test_pins.py's groups trained at commit {commit} "
                      f"(jax {jax.__version__}, CPU)"}
  if names:
    with open(PINS) as f:
      record = json.load(f)
    record["_about"] += f"; {', '.join(names)} re-pinned at commit {commit}"
  for group in GROUPS:
    name, static = group
    if names and name not in names:
      continue
    record[_variant_id(group)] = _outcome_record(train_configs(_group_configs(name, static)))
    print(_variant_id(group), record[_variant_id(group)]["test"]["recall@20"], flush=True)
  with open(PINS, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write("\n")


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
  import subprocess
  _write(subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True, check=True).stdout.strip(), sys.argv[2:])
