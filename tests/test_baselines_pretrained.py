"""DropoutNet, Heater and GAR: a pretrained MF-BPR first stage, then each
baseline's own mechanism; each learns under the new-item protocol and a
vmapped group equals its runs trained alone."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec import reference_scorers
from jaxrec.config import make_config
from jaxrec.eval import evaluate
from jaxrec.models import dropoutnet, gar, heater
from jaxrec.models.base import Batch
from jaxrec.sweep import dataset_for, group_data, split_for, train_configs
from tests.helpers import one_run

MODELS = ("dropoutnet", "heater", "gar")
LEARN = dict(synthetic_users=600, synthetic_items=500, synthetic_dims=(24, 16),
             embed_dim=32, batch_size=512, setting="ff", protocol="new_item",
             pretrain_epochs=20, max_epochs=30, eval_every=5, patience=3)
TINY = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8),
            embed_dim=8, batch_size=128, setting="ff", protocol="new_item",
            pretrain_epochs=2, max_epochs=3, eval_every=1, patience=5)


def _test_recall(cfg, scorer):
  dataset, split = dataset_for(cfg), split_for(cfg)
  users, items = scorer(dataset, split)
  res = evaluate(jnp.asarray(users), jnp.asarray(items), group_data(dataset, split).test)
  return float(res["recall@20"])


@pytest.fixture(scope="module")
def references():
  cfg = make_config(**LEARN)
  random = _test_recall(cfg, lambda d, s: reference_scorers.random_scorer(
      d.n_users, d.n_items))
  content_pop = _test_recall(cfg, lambda d, s: reference_scorers.content_popularity_scorer(
      d.features, s.train_pairs, s.train_items, d.n_users))
  return random, content_pop


@pytest.mark.parametrize("name", MODELS)
def test_learns_new_items(name, references):
  random, content_pop = references
  out = train_configs([make_config(**LEARN, model=name, seed=0)])
  got = float(out.test["recall@20"][0])
  print(f"{name} recall@20 {got:.3f} random {random:.3f} content-popularity "
        f"{content_pop:.3f}")
  assert out.selected_epoch[0] > LEARN["pretrain_epochs"]
  assert got > 2.0 * random
  assert got > 1.3 * content_pop


@pytest.mark.parametrize("name", MODELS)
def test_group_equals_runs_alone(name):
  configs = [make_config(**TINY, model=name, seed=0),
             make_config(**TINY, model=name, seed=1)]
  group = train_configs(configs)
  for r, cfg in enumerate(configs):
    alone = train_configs([cfg])
    for metric in group.test:
      assert group.test[metric][r] == pytest.approx(alone.test[metric][0], abs=1e-5), metric
    assert group.selected_epoch[r] == alone.selected_epoch[0]


def _single_run(name, **overrides):
  """(model, spec, hp in stage 2, inputs, batch, params) of one TINY run."""
  model, spec, settings, data, _, hp, inputs = one_run(
      make_config(**{**TINY, **overrides}, model=name))
  hp = {**hp, "epoch": jnp.float32(settings.pretrain_epochs),
        "pretrain_epochs": jnp.float32(settings.pretrain_epochs)}
  pairs = data.train_pairs[:128]
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1],
                weights=jnp.ones(128))
  params = model.init(jax.random.PRNGKey(0), spec, hp)
  return model, spec, hp, inputs, batch, params


def _max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", MODELS)
def test_first_stage_is_mf_bpr_and_second_freezes_mf(name):
  model, spec, hp, inputs, batch, params = _single_run(name)
  extra = ({"aux": model.init_aux(jax.random.PRNGKey(2), spec, hp, params)}
           if model.init_aux else {})
  grad = lambda hp: jax.grad(lambda p: model.loss(
      p, batch, inputs, hp, jax.random.PRNGKey(1), spec, **extra)[0])(params)
  first = grad({**hp, "epoch": hp["pretrain_epochs"] - 1})
  second = grad(hp)
  # Stage 1 moves only the MF tables; stage 2 everything but them.
  assert all(float(jnp.abs(g).max()) == 0.0
             for k, sub in first.items() if k != "mf" for g in jax.tree.leaves(sub))
  assert float(jnp.abs(first["mf"]["items"]).max()) > 0
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(second["mf"]))
  others = [g for k, sub in second.items() if k != "mf" for g in jax.tree.leaves(sub)]
  assert max(float(jnp.abs(g).max()) for g in others) > 0


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropoutnet_drops_preference_inputs_at_the_configured_rate(rate):
  model, spec, hp, inputs, batch, params = _single_run("dropoutnet", dropout=rate)
  assert float(hp["dropout"]) == pytest.approx(rate)
  n = 20000
  keep = dropoutnet.preference_keep(jax.random.PRNGKey(3), n, hp["dropout"])
  pref = jnp.ones((n, spec.embed_dim))
  x = dropoutnet.item_tower_input(pref, jnp.ones((n, 4)), keep)
  dropped = jnp.all(x[:, :spec.embed_dim] == 0, axis=1)
  assert float(jnp.mean(dropped)) == pytest.approx(rate, abs=0.015)
  assert bool(jnp.all(x[:, spec.embed_dim:] == 1))         # content is never dropped
  # The loss's own batch (2B samples) reports the same fraction.
  _, terms = model.loss(params, batch, inputs, hp, jax.random.PRNGKey(4), spec)
  assert float(terms["dropped"]) == pytest.approx(rate, abs=0.1)


def test_dropoutnet_scores_new_items_from_content_alone():
  model, spec, hp, inputs, batch, params = _single_run("dropoutnet")
  warm = np.asarray(dropoutnet.warm_items(inputs, spec.n_items))
  assert warm.any() and not warm.all()
  # Changing a new item's (untrained) MF row must not change its embedding.
  moved = {**params, "mf": {**params["mf"], "items": params["mf"]["items"] + 1.0}}
  _, items = model.embed(params, inputs, hp, spec)
  _, items_moved = model.embed(moved, inputs, hp, spec)
  np.testing.assert_array_equal(items[~warm], items_moved[~warm])
  assert float(jnp.abs(items[warm] - items_moved[warm]).max()) > 0


def test_heater_gates_sum_to_one_and_similarity_pulls_content_to_cf():
  model, spec, hp, inputs, batch, params = _single_run(
      "heater", dropout=0.0, align_weight=10.0)
  content = dropoutnet.item_content(inputs, jnp.arange(spec.n_items))
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
  grad_fn = jax.jit(jax.grad(lambda p: model.loss(p, batch, inputs, hp,
                                                  jax.random.PRNGKey(0), spec)[0]))
  trained = params
  for _ in range(30):
    updates, opt = tx.update(grad_fn(trained), opt, trained)
    trained = optax.apply_updates(trained, updates)
  assert distance(trained) < 0.5 * distance(params)


def test_gar_generator_and_recommender_alternate():
  model, spec, hp, inputs, batch, params = _single_run("gar")
  aux = model.init_aux(jax.random.PRNGKey(2), spec, hp, params)
  # The engine's step: aux_step (recommender) first, then the main update.
  new_aux = model.aux_step(params, aux, batch, inputs, hp, jax.random.PRNGKey(3), spec)
  assert _max_abs_diff(new_aux["disc"], aux["disc"]) > 0     # recommender moved
  grads = jax.grad(lambda p: model.loss(p, batch, inputs, hp, jax.random.PRNGKey(4),
                                        spec, new_aux)[0])(params)
  assert float(max(jnp.abs(g).max() for g in jax.tree.leaves(grads["generator"]))) > 0
  tx = optax.adam(1e-3)
  updates, _ = tx.update(grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  assert _max_abs_diff(new_params["generator"], params["generator"]) > 0
  # aux_step left the generator (and all params) alone: it returns only aux;
  # the generator's loss leaves the recommender alone: no gradient reaches it.
  disc_grads = jax.grad(lambda d: model.loss(
      params, batch, inputs, hp, jax.random.PRNGKey(4), spec,
      {**new_aux, "disc": d})[0])(new_aux["disc"])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(disc_grads))
  gen_grads = jax.grad(lambda p: gar.recommender_loss(
      new_aux["disc"], new_aux["stats"], p, batch, inputs, jax.random.PRNGKey(5), spec)[0])(
          params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(gen_grads))
  # In the first stage the recommender waits for the MF tables.
  first = {**hp, "epoch": hp["pretrain_epochs"] - 1}
  kept = model.aux_step(params, aux, batch, inputs, first, jax.random.PRNGKey(3), spec)
  assert _max_abs_diff(kept, aux) == 0.0


def test_gar_recommender_batch_norm_trains_on_batches_and_scores_with_running_averages():
  model, spec, hp, inputs, batch, params = _single_run("gar")
  aux = model.init_aux(jax.random.PRNGKey(2), spec, hp, params)
  stepped = model.aux_step(params, aux, batch, inputs, hp, jax.random.PRNGKey(3), spec)
  # The recommender's step updates the running averages (momentum 0.99) from its batch.
  mean_before = aux["stats"]["item"]["bn_in"]["mean"]
  mean_after = stepped["stats"]["item"]["bn_in"]["mean"]
  cf = params["mf"]
  items = jnp.concatenate([cf["items"][batch.pos], cf["items"][batch.neg],
                           gar.generate(params, dropoutnet.item_content(inputs, batch.pos),
                                        spec)])
  expected = gar.BN_MOMENTUM * mean_before + (1 - gar.BN_MOMENTUM) * items.mean(0)
  np.testing.assert_allclose(mean_after, expected, rtol=1e-5, atol=1e-6)
  # Inference mode (the generator's step, evaluation): a pair's score does not
  # depend on the rest of its batch, and the running averages do not move.
  users, pos = cf["users"][batch.users], cf["items"][batch.pos]
  full, kept = gar.recommender_scores(stepped["disc"], stepped["stats"], users, pos)
  part, _ = gar.recommender_scores(stepped["disc"], stepped["stats"], users[:7], pos[:7])
  np.testing.assert_allclose(part, full[:7], rtol=1e-5, atol=1e-6)
  assert _max_abs_diff(kept, stepped["stats"]) == 0.0
  # Training mode: batch statistics, so the same pair scores differently in another batch.
  train_full, _ = gar.recommender_scores(stepped["disc"], stepped["stats"], users, pos, True)
  train_part, _ = gar.recommender_scores(stepped["disc"], stepped["stats"], users[:7], pos[:7],
                                         True)
  assert float(jnp.abs(train_part - train_full[:7]).max()) > 1e-4
