"""LGMRec: hyperedge assignments, the global hypergraph embedding, the
hypergraph contrastive loss between modality views (the runs axis, the fills
and learning are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import make_config
from jaxrec.models import lgmrec
from jaxrec.models.base import Batch, Run, State
from jaxrec.graph import Graph
from tests.helpers import WARM_TINY, one_run, step_context

TINY = WARM_TINY


def _setup(**kw):
  cfg = make_config(model="lgmrec", **{**TINY, **kw})
  run = one_run(cfg)
  model, spec, hp, inputs = run.model, run.spec, run.hp, run.inputs
  hooks = model.make(spec)
  return hooks.init(jax.random.PRNGKey(1), hp), spec, hp, inputs


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _views(params, inputs, hp, spec):
  """(c (U + I, D), the noise-free hypergraph views), compiled."""
  def run(params, inputs, hp):
    c = lgmrec.collaborative(params, inputs, spec)
    return c, lgmrec.hypergraph_views(params, inputs, hp, spec, c[spec.n_users:])
  return jax.jit(run)(params, inputs, hp)


def test_hyperedge_assignments_are_a_softmax_over_hyperedges_per_node():
  params, spec, hp, inputs = _setup(setting="mm")
  hyper = spec.option(lgmrec.HYPER_NUM)
  feats = [np.asarray(x, np.float64) for x in inputs.item_features(jnp.arange(spec.n_items))]
  a = np.zeros((spec.n_users, spec.n_items))
  n = inputs.graph.src.shape[0] // 2
  a[np.asarray(inputs.graph.src[:n]), np.asarray(inputs.graph.dst[:n]) - spec.n_users] = 1.0
  clean = jax.jit(lambda p, i: lgmrec.assignments(p, i, spec))(params, inputs)
  noisy = jax.jit(lambda p, i, k: lgmrec.assignments(p, i, spec, k))(
      params, inputs, jax.random.PRNGKey(0))
  for m, ((items, users), (n_items, n_users)) in enumerate(zip(clean, noisy)):
    assert items.shape == (spec.n_items, hyper) and users.shape == (spec.n_users, hyper)
    # Noise-free: softmax over the H hyperedges of the item's logits x_m W_m / τ,
    # and of the user's summed item logits A x_m W_m / τ.
    z = feats[m] @ np.asarray(params["hyper"][m], np.float64)
    np.testing.assert_allclose(items, _softmax(z / lgmrec.TAU), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(users, _softmax(a @ z / lgmrec.TAU), rtol=1e-4, atol=1e-6)
    # Gumbel: still a distribution over hyperedges per row, but not the clean one.
    for got in (n_items, n_users):
      assert (np.asarray(got) >= 0).all()
      np.testing.assert_allclose(np.asarray(got).sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(n_items, items, atol=1e-3)
    # The rows are spread over the hyperedges, not one fixed hyperedge.
    assert len(np.unique(np.argmax(np.asarray(items), -1))) > 1


def test_the_global_embedding_follows_the_hyperedge_parameters_only():
  params, spec, hp, inputs = _setup()
  c, views = _views(params, inputs, hp, spec)
  # A one-layer hypergraph view is H Hᵀ c_i for items and H^u Hᵀ c_i for users.
  h_items, h_users = jax.jit(lambda p, i: lgmrec.assignments(p, i, spec))(params, inputs)[0]
  ci = np.asarray(c[spec.n_users:])
  np.testing.assert_allclose(views[0][1], h_items @ (h_items.T @ ci), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(views[0][0], h_users @ (h_items.T @ ci), rtol=1e-4, atol=1e-6)
  # Moving one modality's hyperedge parameters moves the final embeddings through
  # the global part only (the local part does not read them).
  forward = jax.jit(lambda p, i, h: lgmrec.forward(p, i, h, spec))
  final, _ = forward(params, inputs, hp)
  moved = {**params, "hyper": [params["hyper"][0] + 0.5 * jax.random.normal(
      jax.random.PRNGKey(3), params["hyper"][0].shape)] + params["hyper"][1:]}
  final_moved, views_moved = forward(moved, inputs, hp)
  assert float(jnp.abs(final_moved - final).max()) > 1e-3
  assert float(jnp.abs(views_moved[0][1] - views[0][1]).max()) > 1e-3
  np.testing.assert_allclose(views_moved[1][1], views[1][1], rtol=1e-6)
  no_global = {**hp, "alpha": jnp.float32(0.0)}
  np.testing.assert_allclose(forward(moved, inputs, no_global)[0],
                             forward(params, inputs, no_global)[0], rtol=1e-6)


def test_hypergraph_contrastive_loss_is_between_the_modality_views():
  params, spec, hp, inputs = _setup()
  c, views = _views(params, inputs, hp, spec)
  batch = Batch(users=jnp.array([0, 3, 5, 3]), pos=jnp.array([1, 2, 9, 4]),
                neg=jnp.array([7, 8, 0, 0]), weights=jnp.array([1.0, 1.0, 1.0, 0.0]))
  got = jax.jit(lgmrec.hypergraph_contrastive)(views, batch)

  def ssl(e1, e2, everything):
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    e1, e2, everything = unit(e1), unit(e2), unit(everything)
    pos = np.exp((e1 * e2).sum(1) / lgmrec.TAU)
    total = np.exp(e1 @ everything.T / lgmrec.TAU).sum(1)
    return -np.log(pos / total).sum()
  (u_a, i_a), (u_b, i_b) = [tuple(np.asarray(x, np.float64) for x in v) for v in views]
  valid = np.asarray(batch.weights) > 0
  users, pos = np.asarray(batch.users)[valid], np.asarray(batch.pos)[valid]
  want = ssl(u_a[users], u_b[users], u_b) + ssl(i_a[pos], i_b[pos], i_b)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  # Two identical views would be a different (smaller) loss: the term really
  # contrasts the two modalities' hypergraphs.
  same = jax.jit(lgmrec.hypergraph_contrastive)([views[0], views[0]], batch)
  assert float(same) < float(got)
  # Its gradient reaches both modalities' hyperedge parameters.
  def hcl(hyper):
    v = lgmrec.hypergraph_views({**params, "hyper": hyper}, inputs, hp, spec,
                                c[spec.n_users:])
    return lgmrec.hypergraph_contrastive(v, batch)
  grads = jax.jit(jax.grad(hcl))(params["hyper"])
  assert all(float(jnp.abs(g).max()) > 0 for g in grads)


def test_an_item_without_training_edges_keeps_the_gradient_finite():
  # Its modality local embedding is an all-zero row, normalised as F.normalize.
  params, spec, hp, inputs = _setup()
  hooks = lgmrec.make(spec)
  n = inputs.graph.src.shape[0] // 2
  users = np.asarray(inputs.graph.src[:n])
  items = np.asarray(inputs.graph.dst[:n]) - spec.n_users
  keep = items != 0
  graph = Graph.from_pairs(np.stack([users[keep], items[keep]], 1), spec.n_users, spec.n_items)
  inputs = inputs.replace(graph=graph)
  assert float(jnp.abs(lgmrec.modality_local(params, inputs, spec)[0][spec.n_users]).max()) == 0
  batch = Batch(users=jnp.array([0, 1, 2]), pos=jnp.array([0, 3, 4]), neg=jnp.array([5, 6, 0]),
                weights=jnp.ones(3))
  ctx = step_context(jax.random.PRNGKey(0))
  loss = lambda p: hooks.loss(State(p, {}), batch, Run(inputs, hp, ctx))[0]
  grads = jax.jit(jax.grad(loss))(params)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
