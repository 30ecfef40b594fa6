"""DropoutNet, Heater and GAR: a pretrained MF-BPR first stage, then each
baseline's own mechanism (the runs axis, the fills and learning are
tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.config import make_config
from jaxrec.models import dropoutnet, gar, heater
from jaxrec.models.base import Batch, Run, State
from jaxrec.sweep import train_configs
from tests.helpers import one_run, step_context

MODELS = ("dropoutnet", "heater", "gar")
TINY = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8),
            embed_dim=8, batch_size=128, setting="ff", protocol="new_item",
            pretrain_epochs=2, max_epochs=3, eval_every=1, patience=5)


def _single_run(name, **overrides):
  """(model, spec, hp, inputs, batch, params) of one TINY run."""
  run = one_run(make_config(**{**TINY, **overrides}, model=name))
  model, spec, hp, inputs = run.model, run.spec, run.hp, run.inputs
  hooks = model.make(spec)
  pairs = run.data.train_pairs[:128]
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1],
                weights=jnp.ones(128))
  params = hooks.init(jax.random.PRNGKey(0), hp)
  return model, spec, hp, inputs, batch, params


def _max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _stage(key, first: bool):
  """The step context of the last first-stage epoch, or of the first second-stage one."""
  stage1 = TINY["pretrain_epochs"]
  return step_context(key, epoch=stage1 - 1 if first else stage1, first_stage_epochs=stage1)


@pytest.mark.parametrize("name", MODELS)
def test_first_stage_is_mf_bpr_and_second_freezes_mf(name):
  model, spec, hp, inputs, batch, params = _single_run(name)
  hooks = model.make(spec)
  aux = hooks.init_aux(jax.random.PRNGKey(2), hp, params)
  grad = lambda first_stage: jax.grad(lambda p: hooks.loss(
      State(p, aux), batch, Run(inputs, hp, _stage(jax.random.PRNGKey(1), first_stage)))[0])(params)
  first = grad(True)
  second = grad(False)
  # Stage 1 moves only the MF tables; stage 2 everything but them.
  assert all(float(jnp.abs(g).max()) == 0.0
             for k, sub in first.items() if k != "mf" for g in jax.tree.leaves(sub))
  assert float(jnp.abs(first["mf"]["items"]).max()) > 0
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(second["mf"]))
  others = [g for k, sub in second.items() if k != "mf" for g in jax.tree.leaves(sub)]
  if name == "gar":   # its players are in aux (test_gar_generator_and_recommender_alternate)
    assert others == []
  else:
    assert max(float(jnp.abs(g).max()) for g in others) > 0


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropoutnet_drops_preference_inputs_at_the_configured_rate(rate):
  model, spec, hp, inputs, batch, params = _single_run("dropoutnet", dropout=rate)
  hooks = model.make(spec)
  assert float(hp["dropout"]) == pytest.approx(rate)
  n = 20000
  keep = dropoutnet.preference_keep(jax.random.PRNGKey(3), n, hp["dropout"])
  pref = jnp.ones((n, spec.embed_dim))
  x = dropoutnet.item_tower_input(pref, jnp.ones((n, 4)), keep)
  dropped = jnp.all(x[:, :spec.embed_dim] == 0, axis=1)
  assert float(jnp.mean(dropped)) == pytest.approx(rate, abs=0.015)
  assert bool(jnp.all(x[:, spec.embed_dim:] == 1))         # content is never dropped
  # The loss's own batch (2B samples) reports the same fraction.
  _, terms = hooks.loss(State(params, {}), batch,
                        Run(inputs, hp, _stage(jax.random.PRNGKey(4), False)))
  assert float(terms["dropped"]) == pytest.approx(rate, abs=0.1)


def test_dropoutnet_scores_new_items_from_content_alone():
  model, spec, hp, inputs, batch, params = _single_run("dropoutnet")
  hooks = model.make(spec)
  warm = np.asarray(inputs.warm_items(spec.n_items))
  assert warm.any() and not warm.all()
  # Changing a new item's (untrained) MF row must not change its embedding.
  moved = {**params, "mf": {**params["mf"], "items": params["mf"]["items"] + 1.0}}
  _, items = hooks.embed(State(params, {}), Run(inputs, hp))
  _, items_moved = hooks.embed(State(moved, {}), Run(inputs, hp))
  np.testing.assert_array_equal(items[~warm], items_moved[~warm])
  assert float(jnp.abs(items[warm] - items_moved[warm]).max()) > 0


def test_dropoutnet_item_tower_by_parts_is_the_tower_on_the_joined_input():
  model, spec, hp, inputs, batch, params = _single_run("dropoutnet")
  items = jnp.concatenate([batch.pos, batch.neg])
  pref = params["mf"]["items"][items]
  content = inputs.item_content(items)
  keep = dropoutnet.preference_keep(jax.random.PRNGKey(5), items.shape[0], 0.5)
  assert 0 < float(keep.mean()) < 1
  _, joined = dropoutnet.towers(params, spec, params["mf"]["users"][batch.users],
                                dropoutnet.item_tower_input(pref, content, keep))
  content_part = content @ params["item_tower"]["hidden"]["kernel"][spec.embed_dim:]
  by_parts = dropoutnet.item_tower_by_parts(params["item_tower"], pref, keep, content_part)
  np.testing.assert_allclose(by_parts, joined, rtol=1e-5, atol=1e-6)


def test_heater_gates_sum_to_one_and_similarity_pulls_content_to_cf():
  model, spec, hp, inputs, batch, params = _single_run(
      "heater", dropout=0.0, align_weight=10.0)
  hooks = model.make(spec)
  content = inputs.item_content(jnp.arange(spec.n_items))
  gates = heater.gate_weights(params, content, spec)
  assert gates.shape == (spec.n_items, heater.N_EXPERTS)
  np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-5)
  assert float(gates.min()) >= 0.0

  # With p = 0 the score reconstruction never sees Ψ: only the similarity
  # constraint moves the experts, and it brings Ψ of warm items to their Q.
  def distance(p):
    return float(heater.heater_terms(p, batch, inputs, hp, jax.random.PRNGKey(0),
                                     spec)["similarity"])

  tx = optax.adam(1e-2)
  opt = tx.init(params)
  ctx = _stage(jax.random.PRNGKey(0), False)
  grad_fn = jax.jit(jax.grad(lambda p: hooks.loss(State(p, {}), batch, Run(inputs, hp, ctx))[0]))
  trained = params
  for _ in range(30):
    updates, opt = tx.update(grad_fn(trained), opt, trained)
    trained = optax.apply_updates(trained, updates)
  assert distance(trained) < 0.5 * distance(params)


def _gar_step_inputs():
  model, spec, hp, inputs, batch, params = _single_run("gar")
  hooks = model.make(spec)
  aux = hooks.init_aux(jax.random.PRNGKey(2), hp, params)
  return model, spec, hp, inputs, batch, params, aux, gar.players_batch(params, batch, inputs)


def test_gar_generator_and_recommender_alternate():
  model, spec, hp, inputs, batch, params, aux, b = _gar_step_inputs()
  hooks = model.make(spec)
  key = jax.random.PRNGKey(3)
  stepped = hooks.aux_step(State(params, aux), batch, Run(inputs, hp, _stage(key, False)))[0]
  assert _max_abs_diff(stepped["recommender"], aux["recommender"]) > 0
  assert _max_abs_diff(stepped["generator"], aux["generator"]) > 0
  # The order of the code (train_d, then train_g on the same batch): the
  # recommender steps against the generator as it was, the generator against
  # the recommender as it is after its step.
  k_d, k_g = jax.random.split(key)
  d_first = gar.recommender_step(aux, b, k_d, spec)
  # (1e-5: aux_step runs under lax.cond, which XLA fuses differently.)
  assert _max_abs_diff(stepped["recommender"], d_first["recommender"]) < 1e-5
  assert _max_abs_diff(stepped["generator"],
                       gar.generator_step(d_first, b, k_g, spec, hp)["generator"]) < 1e-5
  against_old = gar.generator_step(aux, b, k_g, spec, hp)["generator"]
  assert _max_abs_diff(stepped["generator"]["params"], against_old["params"]) > 1e-4
  # Each player's step moves only that player.
  assert _max_abs_diff(d_first["generator"], aux["generator"]) == 0.0
  g_only = gar.generator_step(aux, b, k_g, spec, hp)
  assert _max_abs_diff(g_only["recommender"], aux["recommender"]) == 0.0
  # The main loss has no gradient in stage 2 (the MF tables are fixed; the
  # players move in aux_step only) and reports the generator's loss.
  ctx = _stage(jax.random.PRNGKey(4), False)
  value, terms = hooks.loss(State(params, stepped), batch, Run(inputs, hp, ctx))
  assert float(value) == pytest.approx(float(stepped["last"]["generator_loss"]))
  assert float(terms["adversarial"]) > 0 and float(terms["recommender_loss"]) > 0
  grads = jax.grad(lambda p: hooks.loss(State(p, stepped), batch, Run(inputs, hp, ctx))[0])(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
  # In the first stage the players wait for the MF tables.
  first = _stage(key, True)
  waited, _ = hooks.aux_step(State(params, aux), batch, Run(inputs, hp, first))
  assert _max_abs_diff(waited, aux) == 0.0


def test_gar_players_batch_norm_train_on_batches_and_infer_with_running_averages():
  model, spec, hp, inputs, batch, params, aux, b = _gar_step_inputs()
  key = jax.random.PRNGKey(3)
  # The recommender's step: running averages (momentum 0.99) from its one pass
  # over [real; negative; generated (generator in inference mode)].
  d_step = gar.recommender_step(aux, b, key, spec)
  fake, _ = gar.generate(aux["generator"], b.content, spec)
  items = jnp.concatenate([b.real, b.neg, fake])
  mean_before = aux["recommender"]["stats"]["item"]["bn_in"]["mean"]
  expected = gar.BN_MOMENTUM * mean_before + (1 - gar.BN_MOMENTUM) * items.mean(0)
  np.testing.assert_allclose(d_step["recommender"]["stats"]["item"]["bn_in"]["mean"],
                             expected, rtol=1e-5, atol=1e-6)
  # The generator's step: its own running averages move, from its hidden layer's batch.
  g_step = gar.generator_step(aux, b, key, spec, hp)
  hidden = b.content @ aux["generator"]["params"]["hidden"]["kernel"]
  g_before = aux["generator"]["stats"]["bn_hidden"]["mean"]
  np.testing.assert_allclose(g_step["generator"]["stats"]["bn_hidden"]["mean"],
                             gar.BN_MOMENTUM * g_before + (1 - gar.BN_MOMENTUM) * hidden.mean(0),
                             rtol=1e-5, atol=1e-6)
  # Inference mode (the other player's step, evaluation): a pair's score does
  # not depend on the rest of its batch, and the running averages do not move.
  rec = d_step["recommender"]
  full, kept = gar.recommender_scores(rec, b.users, b.real)
  part, _ = gar.recommender_scores(rec, b.users[:7], b.real[:7])
  np.testing.assert_allclose(part, full[:7], rtol=1e-5, atol=1e-6)
  assert _max_abs_diff(kept, rec["stats"]) == 0.0
  # Training mode: batch statistics, so the same pair scores differently in another batch.
  train_full, _ = gar.recommender_scores(rec, b.users, b.real, True)
  train_part, _ = gar.recommender_scores(rec, b.users[:7], b.real[:7], True)
  assert float(jnp.abs(train_part - train_full[:7]).max()) > 1e-4


def test_gar_scores_users_and_items_through_the_recommender():
  model, spec, hp, inputs, batch, params, aux, b = _gar_step_inputs()
  hooks = model.make(spec)
  aux, _ = hooks.aux_step(State(params, aux), batch,
                          Run(inputs, hp, _stage(jax.random.PRNGKey(3), False)))
  users, items = hooks.embed(State(params, hooks.embed_aux(aux)), Run(inputs, hp))
  # Warm items enter the recommender as e_i, new items as G(x_i): scores are
  # R(u, i) in inference mode.
  warm = inputs.warm_items(spec.n_items)
  content = inputs.item_content(jnp.arange(spec.n_items))
  item_in = jnp.where(warm[:, None], params["mf"]["items"],
                      gar.generate(aux["generator"], content, spec)[0])
  u = jnp.repeat(jnp.arange(5), spec.n_items)
  i = jnp.tile(jnp.arange(spec.n_items), 5)
  want, _ = gar.recommender_scores(aux["recommender"], params["mf"]["users"][u], item_in[i])
  np.testing.assert_allclose(jnp.sum(users[u] * items[i], -1), want, rtol=1e-4, atol=1e-5)
  assert bool(warm.any()) and not bool(warm.all())


def test_gar_selected_recommender_is_that_of_the_selected_epoch(tmp_path):
  # Evaluation every epoch with patience: the run trains past its selected
  # epoch, so the final recommender differs from the selected one.
  cfg = dict(TINY, max_epochs=12, patience=2, lr=0.05, model="gar")
  configs = [make_config(**cfg, seed=0), make_config(**cfg, seed=1)]
  full = train_configs(configs)
  assert (full.selected_epoch < full.epochs_trained).any()
  # A group stopped at a run's selected epoch selects that same epoch and state.
  for r, cfg_r in enumerate(configs):
    cut = train_configs([cfg_r], max_epochs=int(full.selected_epoch[r]))
    assert cut.selected_epoch[0] == full.selected_epoch[r]
    assert _max_abs_diff(cut.best_aux, jax.tree.map(lambda x: x[r:r + 1], full.best_aux)) < 1e-5
    for name in full.test:   # scored with the selected params and recommender
      assert cut.test[name][0] == pytest.approx(full.test[name][r], abs=1e-5), name
  # Interrupted after an evaluation and resumed from its checkpoint: the same.
  ckpt = str(tmp_path / "ckpt")
  train_configs(configs, checkpoint_dir=ckpt, max_epochs=3)
  resumed = train_configs(configs, checkpoint_dir=ckpt)
  assert resumed.resumed_from_epoch == 3
  assert resumed.selected_epoch.tolist() == full.selected_epoch.tolist()
  assert _max_abs_diff(resumed.best_aux, full.best_aux) < 1e-5
  for name in full.test:
    np.testing.assert_allclose(resumed.test[name], full.test[name], atol=1e-6)


@pytest.mark.parametrize("name,terms_of,term_names", [
    ("heater", lambda: heater.heater_terms, ("mse", "similarity")),
    ("dropoutnet", lambda: dropoutnet.dropoutnet_terms, ("mse",))])
def test_stage_two_terms_ignore_new_item_negatives(name, terms_of, term_names):
  """Heater's similarity and MSE terms and DropoutNet's MSE fit the pretrained
  Q_i, which only warm items have: replacing the new items' features and MF rows
  changes none of them."""
  model, spec, hp, inputs, batch, params = _single_run(name)
  new = np.flatnonzero(~np.asarray(inputs.warm_items(spec.n_items)))
  assert new.size > 0
  batch = batch.replace(neg=jnp.asarray(np.resize(new, batch.neg.shape[0]), jnp.int32))
  rng = np.random.default_rng(0)

  def replaced(x):
    out = np.array(x)
    out[new] = rng.normal(size=(new.size,) + out.shape[1:])
    return jnp.asarray(out, x.dtype)
  moved = {**params, "mf": {**params["mf"], "items": replaced(params["mf"]["items"])}}
  moved_inputs = inputs.replace(features=tuple(map(replaced, inputs.features)))
  terms = lambda p, i: terms_of()(p, batch, i, hp, jax.random.PRNGKey(0), spec)
  before, after = terms(params, inputs), terms(moved, moved_inputs)
  for term in term_names:
    assert float(before[term]) > 0
    assert float(after[term]) == float(before[term]), term
