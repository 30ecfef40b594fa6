"""BM3: no negatives in the loss, a stop-gradient target branch, dropout views,
and the authors' scoring (the runs axis, the fills and learning are
tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.models import bm3
from jaxrec.models.base import Batch, Run, State
from tests.helpers import WARM_TINY, one_run, step_context

TINY = WARM_TINY


def _setup(setting="mm", **kw):
  cfg = make_config(**{**TINY, **kw}, model="bm3", setting=setting)
  run = one_run(cfg)
  spec, hp, inputs = run.spec, run.hp, run.inputs
  hooks = bm3.make(spec)
  params = hooks.init(jax.random.PRNGKey(0), hp)
  # Move the fine-tuned offsets off zero so their gradients are generic.
  params["content"]["delta"] = [0.05 * jax.random.normal(jax.random.PRNGKey(m), d.shape)
                                for m, d in enumerate(params["content"]["delta"])]
  return spec, hp, inputs, params


def _batch(spec, key, size=32):
  k_u, k_p, k_n = jax.random.split(key, 3)
  return Batch(users=jax.random.randint(k_u, (size,), 0, spec.n_users),
               pos=jax.random.randint(k_p, (size,), 0, spec.n_items),
               neg=jax.random.randint(k_n, (size,), 0, spec.n_items),
               weights=jnp.ones(size).at[-3:].set(0.0))


def test_loss_never_reads_the_negative_items():
  spec, hp, inputs, params = _setup()
  hooks = bm3.make(spec)
  batch = _batch(spec, jax.random.PRNGKey(1))
  ctx = step_context(jax.random.PRNGKey(2))
  value_and_grad = jax.jit(jax.value_and_grad(
      lambda p, b: hooks.loss(State(p, {}), b, Run(inputs, hp, ctx))[0]))
  value, grads = value_and_grad(params, batch)
  for other in (batch.replace(neg=batch.neg[::-1]),
                batch.replace(neg=(batch.neg + 17) % spec.n_items),
                batch.replace(neg=batch.pos)):
    v, g = value_and_grad(params, other)
    assert float(v) == float(value)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(g)):
      np.testing.assert_array_equal(a, b)
  # The positives do matter (the test above could not pass by a constant loss).
  moved = batch.replace(pos=(batch.pos + 17) % spec.n_items)
  assert abs(float(value_and_grad(params, moved)[0]) - float(value)) > 1e-4


def test_the_target_branch_is_stop_gradient(monkeypatch):
  spec, hp, inputs, params = _setup()
  batch = _batch(spec, jax.random.PRNGKey(3))
  key = jax.random.PRNGKey(4)
  frozen = jax.tree.map(jnp.array, bm3.forward(params, inputs, spec))

  def full(p):            # the model's loss: the target views come from p as well
    views = bm3.forward(p, inputs, spec)
    t = bm3.bm3_terms(p, views, views, batch, hp, key)
    return t["ui"] + t["iu"] + hp["reg_weight"] * t["reg"] + hp["cl_weight"] * t["align"]

  def constant_target(p):  # the target views a constant of the parameters
    t = bm3.bm3_terms(p, bm3.forward(p, inputs, spec), frozen, batch, hp, key)
    return t["ui"] + t["iu"] + hp["reg_weight"] * t["reg"] + hp["cl_weight"] * t["align"]

  assert float(full(params)) == pytest.approx(float(constant_target(params)), rel=1e-6)
  got, want = jax.grad(full)(params), jax.grad(constant_target)(params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  # Without the stop-gradient the two differ: the target path carries a gradient.
  def leaky(views, key, rate):
    leaves, tree = jax.tree.flatten(views)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [bm3.inverted_dropout(x, rate, k)
                                     for x, k in zip(leaves, keys)])
  monkeypatch.setattr(bm3, "targets", leaky)
  leaked = jax.grad(full)(params)
  assert max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(leaked), jax.tree.leaves(want))) > 1e-4


def test_targets_are_dropout_views_of_the_online_views():
  spec, hp, inputs, params = _setup()
  views = bm3.forward(params, inputs, spec)
  rate = 0.5
  tgt = bm3.targets(views, jax.random.PRNGKey(5), rate)
  for x, t in zip(jax.tree.leaves(views), jax.tree.leaves(tgt)):
    x, t = np.asarray(x), np.asarray(t)
    kept = t != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(t[kept], x[kept] / (1 - rate), rtol=1e-6)
  # A new step, a new draw; no dropout: the online views themselves.
  other = bm3.targets(views, jax.random.PRNGKey(6), rate)
  assert (np.asarray(other["users"]) != np.asarray(tgt["users"])).any()
  same = bm3.targets(views, jax.random.PRNGKey(5), 0.0)
  np.testing.assert_array_equal(same["items"], views["items"])


def test_scores_are_the_predictor_on_the_propagated_views():
  spec, hp, inputs, params = _setup()
  hooks = bm3.make(spec)
  users, items = hooks.embed(State(params, {}), Run(inputs, hp))
  views = bm3.forward(params, inputs, spec)
  w, b = params["predictor"]["w"], params["predictor"]["b"]
  np.testing.assert_allclose(users, views["users"] @ w + b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(items, views["items"] @ w + b, rtol=1e-5, atol=1e-6)
  # Items carry their ID row twice: the layer mean plus E_i (the authors' forward).
  ego = jnp.concatenate([params["users"], params["items"]])
  mean = inputs.graph.layer_mean(ego, spec.option(bm3.N_LAYERS))
  np.testing.assert_allclose(views["items"], mean[spec.n_users:] + params["items"],
                             rtol=1e-5, atol=1e-6)
