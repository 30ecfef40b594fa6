"""GoRec: a pretrained MF-BPR first stage, frozen bit for bit while a CVAE
conditioned on content learns to generate its warm item embeddings (the runs
axis, the fills and learning are tests/test_every_model.py's)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.config import make_config
from jaxrec.models import gorec
from jaxrec.models.base import Batch, ModelSpec, Run, State
from tests.helpers import one_run, step_context

# 20 clusters, set: fewer than the default's one per 3.5 items (34 of 120), so clusters are
# large enough to hold warm and new items together.
TINY = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8),
            embed_dim=8, batch_size=128, setting="ff", protocol="new_item",
            pretrain_epochs=2, max_epochs=3, eval_every=1, patience=5, n_clusters=20)


@functools.lru_cache(maxsize=None)
def _single_run():
  """(model, spec, hp, prepared train inputs, batch, params, aux, split) of one TINY run."""
  run = one_run(make_config(**TINY, model="gorec"))
  model, spec, data, split = run.model, run.spec, run.data, run.split
  hooks = model.make(spec)
  hp, inputs = run.hp, run.inputs
  inputs = inputs.replace(prepared=hooks.prepare(inputs, hp))
  pairs = data.train_pairs[:128]
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1],
                weights=jnp.ones(128))
  params = hooks.init(jax.random.PRNGKey(0), hp)
  aux = hooks.init_aux(jax.random.PRNGKey(1), hp, params)
  return model, spec, hp, inputs, batch, params, aux, split


def _same(a, b) -> bool:
  return all(bool(jnp.all(x == y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_first_stage_trains_mf_and_the_second_freezes_it_bit_for_bit():
  model, spec, hp, inputs, batch, params, aux, _ = _single_run()
  hooks = model.make(spec)
  stage1 = TINY["pretrain_epochs"]

  @jax.jit
  def step(state, epoch, key):
    # The engine's step: aux_step, then the model's optimiser on the loss's gradient;
    # the loss's pass hands back the aux (loss_updates_aux).
    params, opt, aux = state
    k_aux, k_loss = jax.random.split(key)
    aux, _ = hooks.aux_step(State(params, aux), batch,
                            Run(inputs, hp, step_context(k_aux, epoch, stage1)))
    ctx = step_context(k_loss, epoch, stage1)
    (_, (terms, aux)), grads = jax.value_and_grad(
        lambda p: hooks.loss(State(p, aux), batch, Run(inputs, hp, ctx)), has_aux=True)(params)
    updates, opt = hooks.optimizer(hp, ctx).update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt, aux), terms

  state = (params, hooks.optimizer(hp, step_context(jax.random.PRNGKey(0))).init(params), aux)
  for s in range(5):
    state, _ = step(state, jnp.int32(stage1 - 1), jax.random.PRNGKey(10 + s))
  after_mf = state
  assert not _same(after_mf[0]["mf"], params["mf"])
  assert _same(after_mf[0]["gorec"], params["gorec"]) and _same(after_mf[2], aux)
  recs = []
  for s in range(40):
    state, terms = step(state, jnp.int32(stage1), jax.random.PRNGKey(100 + s))
    recs.append(float(terms["rec"]))
  # The MF tables are exactly those of stage 1; the CVAE and its statistics moved,
  # and its reconstruction of the frozen warm embeddings improved.
  assert _same(state[0]["mf"], after_mf[0]["mf"])
  assert not _same(state[0]["gorec"], after_mf[0]["gorec"])
  assert not _same(state[2]["stats"], aux["stats"])
  assert np.mean(recs[-5:]) < 0.8 * np.mean(recs[:5])


# Through the engine, the MF tables after stage 2 are bit-identical to stage 1's:
# tests/test_model_interface.py::test_pretrained_tables_are_bit_identical_after_the_second_stage.


def test_running_statistics_come_from_the_pass_the_loss_differentiates():
  model, spec, hp, inputs, batch, params, aux, _ = _single_run()
  hooks = model.make(spec)
  assert hooks.loss_updates_aux
  ctx = step_context(jax.random.PRNGKey(3), TINY["pretrain_epochs"], TINY["pretrain_epochs"])
  stepped = hooks.aux_step(State(params, aux), batch, Run(inputs, hp, ctx))[0]
  np.testing.assert_array_equal(stepped["noise"], ctx.key)
  assert _same(stepped["stats"], aux["stats"])
  # One pass: the loss's terms and the statistics it hands back are cvae_pass's.
  loss_key = jax.random.PRNGKey(4)
  loss_ctx = step_context(loss_key, TINY["pretrain_epochs"], TINY["pretrain_epochs"])
  _, (loss_terms, after) = hooks.loss(State(params, stepped), batch, Run(inputs, hp, loss_ctx))
  terms, stats = gorec.cvae_pass(params, aux["stats"], batch, inputs, hp, ctx.key, spec)
  np.testing.assert_array_equal(after["noise"], ctx.key)
  for x, y in zip(jax.tree.leaves(after["stats"]), jax.tree.leaves(stats)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  assert float(loss_terms["rec"]) == pytest.approx(float(terms["rec"]), rel=1e-5)
  # torch's momentum 0.1 on the encoder's batch mean over the distinct items.
  w = np.asarray(gorec.first_occurrence(batch.pos, batch.weights)) > 0
  content = gorec._content(inputs, batch.pos)
  h = jnp.concatenate([content, params["mf"]["items"][batch.pos]], -1)
  h = h @ params["gorec"]["enc_fc"]["kernel"]
  np.testing.assert_allclose(stats["enc_bn"]["mean"], 0.1 * np.asarray(h)[w].mean(0),
                             rtol=1e-4, atol=1e-6)
  # In the first stage the statistics wait for the MF tables.
  first = step_context(jax.random.PRNGKey(3), 0, TINY["pretrain_epochs"])
  assert _same(hooks.aux_step(State(params, aux), batch, Run(inputs, hp, first))[0], aux)
  assert _same(hooks.loss(State(params, aux), batch, Run(inputs, hp, first))[1][1], aux)


def test_new_items_are_generated_from_their_content_and_cluster():
  model, spec, hp, inputs, batch, params, aux, split = _single_run()
  hooks = model.make(spec)
  new = np.flatnonzero(split.eval_items)
  warm = inputs.warm_items(spec.n_items)
  assert not bool(warm[new].any())
  stats = hooks.embed_aux(aux)
  _, items = hooks.embed(State(params, stats), Run(inputs, hp))
  # The condition is the mean pretrained row of the item's cluster, new items'
  # rows counted as zeros (the authors' table has zero rows for cold items).
  labels = np.asarray(inputs.prepared["cluster"])
  table = np.asarray(params["mf"]["items"])
  warm_labels = set(labels[np.asarray(warm)])
  item = next(i for i in new if labels[i] in warm_labels)
  cluster = labels == labels[item]
  assert (cluster & ~np.asarray(warm)).sum() >= 1 and (cluster & np.asarray(warm)).sum() >= 1
  condition = gorec.cluster_means(params["mf"]["items"], inputs.prepared["cluster"], warm,
                                  spec.option(gorec.N_CLUSTERS))
  np.testing.assert_allclose(condition[item],
                             table[cluster & np.asarray(warm)].sum(0) / cluster.sum(),
                             rtol=1e-5, atol=1e-6)
  # A cluster of new items only is conditioned on the zero vector.
  lonely = gorec.cluster_means(params["mf"]["items"], jnp.asarray(np.where(warm, 0, 1)), warm, 2)
  np.testing.assert_array_equal(lonely[new], 0.0)
  # Changing a new item's content changes its generated embedding (and no other's).
  moved = inputs.replace(features=tuple(f.at[item].set(f[item][::-1]) for f in inputs.features))
  _, items_moved = hooks.embed(State(params, stats), Run(moved, hp))
  assert float(jnp.abs(items_moved[item] - items[item]).max()) > 1e-4
  others = np.setdiff1d(np.arange(spec.n_items), [item])
  np.testing.assert_allclose(items_moved[others], items[others], rtol=1e-5, atol=1e-6)
  # Its own (untrained) MF row plays no part; warm items keep their pretrained rows.
  shifted = {**params, "mf": {**params["mf"], "items": params["mf"]["items"].at[new].add(1.0)}}
  _, items_shifted = hooks.embed(State(shifted, stats), Run(inputs, hp))
  np.testing.assert_array_equal(items_shifted[new], items[new])
  np.testing.assert_array_equal(items[np.asarray(warm)], table[np.asarray(warm)])


def test_the_default_number_of_clusters_follows_the_catalogue():
  count = lambda n_items, n_clusters=0: gorec.cluster_count(ModelSpec(
      n_users=10, n_items=n_items, feature_dims=(4,), embed_dim=8,
      options=(("n_clusters", n_clusters), ("pretrain_epochs", 1))))
  # The authors' Baby file: 2000 clusters of 7050 items; MovieLens-100K, TikTok.
  assert count(7050) == 2000 and count(1682) == 477 and count(6710) == 1904
  assert count(1682, 2000) == 1682 and count(1682, 20) == 20 and count(2) == 1


def test_clusters_follow_content():
  model, spec, hp, inputs, *_ = _single_run()
  hooks = model.make(spec)
  labels = np.asarray(inputs.prepared["cluster"])
  assert labels.min() >= 0 and labels.max() < spec.option(gorec.N_CLUSTERS)
  assert len(np.unique(labels)) > 10
  # Two items with the same content share a cluster.
  copied = inputs.replace(features=tuple(f.at[1].set(f[0]) for f in inputs.features))
  relabelled = np.asarray(hooks.prepare(copied, hp)["cluster"])
  assert relabelled[0] == relabelled[1]


def test_kl_and_uniformity_are_the_codes():
  z = jnp.array([[0.3, -1.0, 2.0]])
  target = jnp.array([[0.5, -0.2, 0.0]])
  # torch 1.6 kl_div: target (log target − input) where target > 0, else 0.
  np.testing.assert_allclose(gorec.torch_kl_div(z, target),
                             [[0.5 * (np.log(0.5) - 0.3), 0.0, 0.0]], rtol=1e-6)
  grads = jax.grad(lambda t: jnp.sum(gorec.torch_kl_div(z, t)))(target)
  assert bool(jnp.all(jnp.isfinite(grads)))
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
  w = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
  unit = np.asarray(x / jnp.linalg.norm(x, axis=1, keepdims=True), np.float64)[np.asarray(w) > 0]
  d2 = [np.sum((unit[i] - unit[j]) ** 2) for i in range(5) for j in range(i + 1, 5)]
  assert float(gorec.uniformity(x, w)) == pytest.approx(np.log(np.mean(np.exp(-2 * np.array(d2)))),
                                                        rel=1e-5)
