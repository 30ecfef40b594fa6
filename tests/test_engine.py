"""The runs axis: early stopping, divergence, compaction, narrow features (that
a group equals its runs alone is tests/test_every_model.py's, per model)."""
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


# Runs that stop at different epochs (patience 1, evaluation every epoch).
STOPPING = [make_config(**{**TINY, "max_epochs": 12, "eval_every": 1, "patience": 1},
                        seed=s, lr=lr, setting=setting)
            for s, lr, setting in [(0, 0.05, "fm"), (1, 1e-4, "mm"), (2, 0.05, "mm"),
                                   (3, 0.02, "fm"), (4, 1e-4, "fm")]]


def _assert_same_outcome(got, want):
  assert got.selected_epoch.tolist() == want.selected_epoch.tolist()
  assert got.epochs_trained.tolist() == want.epochs_trained.tolist()
  for path, leaf in _leaves(got.best_params):
    np.testing.assert_allclose(leaf, dict(_leaves(want.best_params))[path],
                               rtol=2e-5, atol=2e-6, err_msg=path)
  for name in want.test:
    np.testing.assert_allclose(got.test[name], want.test[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(got.val[name], want.val[name], atol=1e-6, err_msg=name)
  assert [h["epoch"] for h in got.eval_history] == [h["epoch"] for h in want.eval_history]
  for g, w in zip(got.eval_history, want.eval_history):
    np.testing.assert_allclose(g["ndcg@10"], w["ndcg@10"], atol=1e-6)


def test_compacting_stopped_runs_matches_the_uncompacted_path(tmp_path):
  plain = train_configs(STOPPING, compact_at=0.0)
  stops = sorted(plain.epochs_trained.tolist())
  assert stops[0] < stops[-2], f"runs must stop at different epochs: {stops}"
  assert plain.compactions == []
  training = {}                       # what the progress bar shows after each validation
  compact = train_configs(STOPPING, compact_at=0.75, on_eval=training.__setitem__)
  assert compact.compactions, "a run stopped early, so the axis must have been compacted"
  epoch, left = compact.compactions[0]
  assert left == int((plain.epochs_trained > epoch).sum()) <= 0.75 * len(STOPPING)
  assert training == {e: int((plain.epochs_trained > e).sum())
                      for e in range(1, int(plain.epochs_trained.max()) + 1)}
  _assert_same_outcome(compact, plain)

  # Interrupted after the first compaction and resumed: the checkpoint holds every
  # run (parked ones included) and the resumed group keeps the compacted layout.
  ckpt = str(tmp_path / "ckpt")
  train_configs(STOPPING, checkpoint_dir=ckpt, max_epochs=epoch + 1)
  resumed = train_configs(STOPPING, checkpoint_dir=ckpt)
  assert resumed.resumed_from_epoch == epoch + 1
  assert resumed.compactions[0] == compact.compactions[0]
  _assert_same_outcome(resumed, plain)


def test_stopped_runs_report_no_training_loss():
  terms = []
  out = train_configs(STOPPING[:2], on_epoch=lambda e, t: terms.append(t["loss"]))
  for r in range(2):
    losses = np.array([t[r] for t in terms[:out.epochs_trained.max()]])
    trained = out.epochs_trained[r]
    assert np.all(np.isfinite(losses[:trained])) and np.all(np.isnan(losses[trained:]))


def test_an_unknown_feature_dtype_is_refused():
  with pytest.raises(ValueError, match="feature_dtype 'float16'"):
    make_config(feature_dtype="float16")


def test_bfloat16_features_equal_float32_training_on_rounded_features():
  import jax.numpy as jnp
  from jaxrec.engine.train import train_group
  from jaxrec.models import get_model
  from jaxrec.engine.inputs import dataset_for, group_data, group_settings, run_inputs, split_for
  configs = _configs()[:2]
  assert all(c.feature_dtype == "float32" for c in configs)      # off by default
  narrow = [dataclasses.replace(c, feature_dtype="bfloat16") for c in configs]
  model, dataset, split = get_model("milk"), dataset_for(configs[0]), split_for(configs[0])
  spec, settings = group_settings(configs[0])
  assert group_data(dataset, split, "bfloat16").features[0].dtype == jnp.bfloat16
  got = train_configs(narrow)
  # Reference: float32 storage of the same features rounded to bfloat16, i.e. the
  # option changes the stored features and nothing else (float32 arithmetic).
  wide = group_data(dataset, split)
  rounded = wide.replace(features=tuple(f.astype(jnp.bfloat16).astype(jnp.float32)
                                        for f in wide.features))
  assert any(bool((r != f).any()) for r, f in zip(rounded.features, wide.features))
  want = train_group(model, spec, settings, rounded, run_inputs(model, configs, dataset, split))
  for path, leaf in _leaves(got.best_params):
    np.testing.assert_allclose(leaf, dict(_leaves(want.best_params))[path],
                               rtol=2e-5, atol=2e-6, err_msg=path)
  for name in want.test:
    np.testing.assert_allclose(got.test[name], want.test[name], atol=1e-6, err_msg=name)


def test_a_run_whose_auxiliary_state_goes_non_finite_is_frozen_too():
  # The auxiliary state (CLUB nets, GAR's players, DGMRec's generated rows) is
  # trained by the model's own rule; a NaN there must freeze the run like a NaN
  # in its parameters, and its norm is measured.
  import jax.numpy as jnp
  from jaxrec.models import REGISTRY, get_model, register_model

  mf = get_model("mf")

  def aux_step(state, batch, run):
    nan_in_run_1 = jnp.where(run.hp["lr"] > 5e-3, jnp.nan, 1.0)
    return {"x": state.aux["x"] * nan_in_run_1}, {}

  def make(spec):
    return dataclasses.replace(mf.make(spec), aux_step=aux_step,
                               init_aux=lambda key, hp, params: {"x": jnp.ones(3)})

  model = dataclasses.replace(mf, name="mf_with_aux", make=make)
  register_model(model)
  try:
    small = {**TINY, "max_epochs": 2, "eval_every": 1}
    out = train_configs([make_config(**small, model="mf_with_aux", seed=0, lr=1e-3),
                         make_config(**small, model="mf_with_aux", seed=1, lr=1e-2)])
  finally:
    REGISTRY.pop("mf_with_aux")
  assert out.diverged_epoch.tolist() == [0, 1]
  assert out.epochs_trained.tolist() == [2, 0]

