"""LATTICE: the item graph against the authors' dense formulas, the learned graph
moving on top of its kNN anchor, graph gradients at an epoch's first step
only (the runs axis, the fills and learning are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.engine.inputs import dataset_for, run_inputs, split_for
from jaxrec.models import lattice
from jaxrec.models.base import Batch, Run, State
from jaxrec.sweep import train_configs
from tests.helpers import WARM_TINY, one_run, step_context

TINY = WARM_TINY


def _dense_knn_laplacian(x, k):
  """The authors' build_sim → build_knn_neighbourhood → compute_normalized_laplacian."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  sim = x @ x.T
  a = np.zeros_like(sim)
  top = np.argsort(-sim, axis=1)[:, :k]
  np.put_along_axis(a, top, np.take_along_axis(sim, top, 1), axis=1)
  return a


def _normalise(a):
  d = a.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
  return inv[:, None] * a * inv[None, :]


def _setup(setting="mm", **kw):
  cfg = make_config(**{**TINY, **kw}, model="lattice", setting=setting)
  run = one_run(cfg)
  spec, data, hp, inputs = run.spec, run.data, run.hp, run.inputs
  hooks = lattice.make(spec)
  inputs = inputs.replace(prepared=hooks.prepare(inputs, hp))
  return cfg, spec, data, hp, inputs


def _dense_adjacency(params, inputs, hp, spec):
  k, n = spec.option(lattice.KNN_K), spec.n_items
  alpha = np.asarray(jax.nn.softmax(params["modal_weight"]), np.float64)
  feats = [np.asarray(x, np.float64) for x in inputs.item_features(jnp.arange(n))]
  proj = [f @ np.asarray(p["w"], np.float64) + np.asarray(p["b"], np.float64)
          for f, p in zip(feats, params["content"]["trs"])]
  learned = _normalise(sum(a * _dense_knn_laplacian(e, k) for a, e in zip(alpha, proj)))
  original = sum(a * _normalise(_dense_knn_laplacian(f, k)) for a, f in zip(alpha, feats))
  lam = float(hp["lambda_coeff"])
  return (1 - lam) * learned, lam * original


def _as_dense(neighbours, weights, n):
  out = np.zeros((n, n))
  np.add.at(out, (np.repeat(np.arange(n), neighbours.shape[1]), np.asarray(neighbours).ravel()),
            np.asarray(weights, np.float64).ravel())
  return out


def test_item_graph_equals_the_authors_dense_construction():
  # ff: no two items share a filled row, so no ties in the top-k.
  cfg, spec, _, hp, inputs = _setup(setting="ff")
  hooks = lattice.make(spec)
  params = hooks.init(jax.random.PRNGKey(0), hp)
  params["modal_weight"] = jnp.array([0.3, -0.4])
  learned_nb = lattice.learned_neighbours(params, inputs, spec)
  nb, w = lattice.adjacency(params, learned_nb, inputs, hp, spec)
  want_learned, want_original = _dense_adjacency(params, inputs, hp, spec)
  width = spec.n_modalities * spec.option(lattice.KNN_K)
  n = spec.n_items
  np.testing.assert_allclose(_as_dense(nb[:, :width], w[:, :width], n), want_learned,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(_as_dense(nb[:, width:], w[:, width:], n), want_original,
                             rtol=1e-4, atol=1e-6)


def test_the_learned_graph_moves_and_stays_anchored_on_the_knn_graph():
  cfg, spec, data, hp, inputs = _setup(max_epochs=6, eval_every=6)
  hooks = lattice.make(spec)
  # The engine's initial parameters of this run (its init key, as `_init_one`).
  run = run_inputs(lattice.LATTICE, [cfg], dataset_for(cfg), split_for(cfg))
  start = hooks.init(jax.random.split(jnp.asarray(run.key[0]), 3)[0], hp)
  out = train_configs([cfg])
  trained = jax.tree.map(lambda x: jnp.asarray(x[0]), out.best_params)
  width = spec.n_modalities * spec.option(lattice.KNN_K)
  before = lattice.adjacency(start, lattice.learned_neighbours(start, inputs, spec), inputs,
                             hp, spec)
  after = lattice.adjacency(trained, lattice.learned_neighbours(trained, inputs, spec), inputs,
                            hp, spec)
  n = spec.n_items
  moved = np.abs(_as_dense(after[0][:, :width], after[1][:, :width], n)
                 - _as_dense(before[0][:, :width], before[1][:, :width], n))
  assert moved.max() > 1e-3                                         # the learned part moves
  assert (np.asarray(after[0][:, :width]) != np.asarray(before[0][:, :width])).any()
  # The anchor is the run's kNN graph from `prepare`, scaled by λ·α_m only.
  alpha = jax.nn.softmax(trained["modal_weight"])
  k = spec.option(lattice.KNN_K)
  for m in range(spec.n_modalities):
    cols = slice(width + m * k, width + (m + 1) * k)
    np.testing.assert_array_equal(after[0][:, cols], inputs.prepared["neighbours"][m])
    np.testing.assert_allclose(after[1][:, cols], hp["lambda_coeff"] * alpha[m]
                               * inputs.prepared["weights"][m], rtol=1e-6)
  # λ = 1: only the anchor is left (the learned part has weight 0).
  anchored = lattice.adjacency(trained, lattice.learned_neighbours(trained, inputs, spec),
                               inputs, {**hp, "lambda_coeff": jnp.float32(1.0)}, spec)
  assert float(jnp.abs(anchored[1][:, :width]).max()) == 0.0


def test_the_graph_learns_only_at_an_epochs_first_step():
  cfg, spec, _, hp, inputs = _setup()
  hooks = lattice.make(spec)
  params = hooks.init(jax.random.PRNGKey(1), hp)
  ctx = step_context(jax.random.PRNGKey(2))
  aux, _ = hooks.pre_epoch(State(params, hooks.init_aux(None, hp, params)), Run(inputs, hp, ctx))
  batch = Batch(users=jnp.arange(8), pos=jnp.arange(8), neg=jnp.arange(8, 16),
                weights=jnp.ones(8))
  # The step index as the engine's scan gives it: unbatched, traced.
  loss_at = jax.jit(lambda p, step: hooks.loss(State(p, aux), batch,
                                               Run(inputs, hp, ctx.replace(step=step)))[0])
  grads = {step: jax.grad(loss_at)(params, jnp.int32(step)) for step in range(2)}
  graph_only = lambda g: max(float(jnp.abs(x).max()) for x in jax.tree.leaves(
      (g["content"], g["modal_weight"])))
  assert graph_only(grads[0]) > 0 and graph_only(grads[1]) == 0.0
  assert float(jnp.abs(grads[1]["items"]).max()) > 0               # ids learn every step
  # The forward value is the epoch's graph at every step.
  assert float(loss_at(params, jnp.int32(0))) == pytest.approx(
      float(loss_at(params, jnp.int32(1))), rel=1e-6)
  # The projection of every item's features runs at the first step only: a
  # lax.cond on the unbatched step, kept a cond under the group's vmap.
  grouped = jax.vmap(lambda p: jax.grad(loss_at)(p, jnp.int32(1)))
  text = jax.jit(grouped).lower(jax.tree.map(lambda x: x[None], params)).as_text()
  assert "conditional" in text or "case" in text, "the graph's branch became a select"


def test_the_knn_anchor_of_a_run_follows_its_own_mask():
  _, spec, _, hp, full = _setup(setting="ff")
  hooks = lattice.make(spec)
  masked = full.replace(available=full.available.at[:40, 0].set(False))
  before = hooks.prepare(full, hp)["neighbours"]
  after = hooks.prepare(masked, hp)["neighbours"]
  assert (np.asarray(before[0]) != np.asarray(after[0])).any()
  np.testing.assert_array_equal(before[1], after[1])               # the other modality stays
