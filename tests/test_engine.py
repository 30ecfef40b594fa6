"""The runs axis: a vmapped group equals its runs trained alone; early stopping."""
import dataclasses

import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.sweep import train_configs

TINY = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8),
            embed_dim=8, batch_size=128, max_epochs=4, eval_every=2, patience=5)


def _configs():
  return [make_config(**TINY, seed=0, setting="fm", lr=1e-3),
          make_config(**TINY, seed=1, setting="mm", missing_rate=0.7, lr=3e-3, alpha=1.0),
          make_config(**TINY, seed=2, setting="ff", fill="zero", penalty_weight=5.0,
                      random_mix=0.0, cyclic=0.0)]


@pytest.mark.parametrize("penalty", ["variance", "irm", "irm_split"])
def test_group_equals_runs_alone(penalty):
  configs = [dataclasses.replace(c, penalty=penalty) for c in _configs()]
  group = train_configs(configs)
  for r, cfg in enumerate(configs):
    alone = train_configs([cfg])
    for path, got in _leaves(group.best_params):
      want = dict(_leaves(alone.best_params))[path]
      np.testing.assert_allclose(got[r], want[0], rtol=2e-5, atol=2e-6, err_msg=path)
    for name in group.test:
      assert group.test[name][r] == pytest.approx(alone.test[name][0], abs=1e-5)
    assert group.selected_epoch[r] == alone.selected_epoch[0]


def _leaves(tree, prefix=""):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _leaves(v, f"{prefix}/{k}")
  else:
    yield prefix, np.asarray(tree)


def test_early_stopping_freezes_stopped_runs():
  # patience 1 with evaluation every epoch: runs stop at different epochs and a
  # stopped run's epoch counter (and everything else) no longer moves.
  configs = [make_config(**{**TINY, "max_epochs": 12, "eval_every": 1, "patience": 1},
                         seed=s, lr=lr) for s, lr in [(0, 0.05), (1, 1e-4)]]
  out = train_configs(configs)
  assert out.epochs_trained.max() <= 12
  for r in range(2):
    assert out.selected_epoch[r] <= out.epochs_trained[r]
    if out.epochs_trained[r] < 12:
      assert out.epochs_trained[r] == out.selected_epoch[r] + 1   # patience 1
  val_history = [h["ndcg@10"] for h in out.eval_history]
  best = [max(v[r] for v in val_history) for r in range(2)]
  np.testing.assert_allclose(out.val["ndcg@10"], best, rtol=1e-6)


def test_mixed_groups_are_refused():
  a = make_config(**TINY)
  b = make_config(**{**TINY, "embed_dim": 16})
  with pytest.raises(ValueError, match="split them into groups"):
    train_configs([a, b])


def test_diverged_run_is_frozen_and_others_are_untouched():
  healthy = [make_config(**TINY, seed=0), make_config(**TINY, seed=2, setting="mm")]
  absurd = make_config(**TINY, seed=1, lr=1e30)       # overflows to inf/NaN at once
  with_bad = train_configs([healthy[0], absurd, healthy[1]])
  without = train_configs(healthy)
  assert with_bad.diverged_epoch.tolist() == [0, 1, 0]
  assert with_bad.epochs_trained[1] == 0                # frozen before its bad epoch
  for name in without.test:
    np.testing.assert_allclose(with_bad.test[name][[0, 2]], without.test[name], atol=1e-6)
  for path, leaf in _leaves(with_bad.best_params):
    assert np.all(np.isfinite(leaf)), path
