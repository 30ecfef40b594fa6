"""Warm baselines (MF-BPR, VBPR, LightGCN): their mechanisms (the runs axis, the
fills and learning are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.graph import Graph
from jaxrec.models import lightgcn, vbpr
from jaxrec.models.base import Batch, ModelInputs, ModelSpec, Run, State


def _inputs(spec: ModelSpec, rng, graph=None) -> ModelInputs:
  feats = tuple(jnp.asarray(rng.standard_normal((spec.n_items, d)), jnp.float32)
                for d in spec.feature_dims)
  return ModelInputs(features=feats,
                     available=jnp.ones((spec.n_items, spec.n_modalities), jnp.float32),
                     fill=tuple(jnp.zeros(d) for d in spec.feature_dims), graph=graph)


def test_vbpr_visual_part_follows_only_the_items_features():
  spec = ModelSpec(n_users=5, n_items=7, feature_dims=(4, 3), embed_dim=6)
  hooks = vbpr.make(spec)
  rng = np.random.default_rng(0)
  inputs = _inputs(spec, rng)
  params = hooks.init(jax.random.PRNGKey(0), {})
  params["visual_bias"] = jnp.asarray(rng.standard_normal(7), jnp.float32)
  params["item_bias"] = jnp.asarray(rng.standard_normal(7), jnp.float32)
  items = jnp.arange(spec.n_items)
  item_parts = jax.jit(vbpr.item_parts)     # one compile instead of op by op
  gamma, visual, bias = item_parts(params, inputs, items)

  # The embeddings' inner product is the paper's x̂_ui.
  users, item_emb = hooks.embed(State(params, {}), Run(inputs, {}))
  f = np.concatenate([np.asarray(x) for x in inputs.features], axis=1)
  want = (np.asarray(params["mf"]["users"]) @ np.asarray(params["mf"]["items"]).T
          + np.asarray(params["theta"]) @ (f @ np.asarray(params["E"])).T
          + (np.asarray(params["item_bias"]) + f @ np.asarray(params["visual_bias"]))[None])
  np.testing.assert_allclose(users @ item_emb.T, want, rtol=1e-5, atol=1e-5)

  # New features for item 3 in one modality: only item 3's visual part and
  # bias move; every ID factor stays.
  changed = list(inputs.features)
  changed[1] = changed[1].at[3].set(jnp.asarray(rng.standard_normal(3), jnp.float32))
  gamma2, visual2, bias2 = item_parts(
      params, inputs.replace(features=tuple(changed)), items)
  np.testing.assert_array_equal(gamma2, gamma)
  others = np.arange(spec.n_items) != 3
  np.testing.assert_array_equal(visual2[others], visual[others])
  np.testing.assert_array_equal(bias2[others], bias[others])
  assert float(jnp.abs(visual2[3] - visual[3]).max()) > 1e-3
  assert abs(float(bias2[3] - bias[3])) > 1e-4

  # A missing modality is replaced by the run's fill before E sees it.
  missing = inputs.replace(available=inputs.available.at[3, 0].set(0.0),
                           fill=(jnp.full(4, 0.5), inputs.fill[1]))
  f3 = np.concatenate([np.full(4, 0.5), np.asarray(inputs.features[1][3])])
  _, visual3, _ = item_parts(params, missing, items)
  np.testing.assert_allclose(visual3[3], f3 @ np.asarray(params["E"]), rtol=1e-5, atol=1e-6)


def test_lightgcn_embeddings_are_the_dense_layer_mean():
  n_users, n_items = 6, 8
  rng = np.random.default_rng(1)
  pairs = np.stack([rng.integers(0, n_users, 25), rng.integers(0, n_items, 25)], 1)
  spec = ModelSpec(n_users=n_users, n_items=n_items, feature_dims=(3,), embed_dim=5)
  hooks = lightgcn.make(spec)
  graph = Graph.from_pairs(pairs, n_users, n_items)
  inputs = _inputs(spec, rng, graph)
  params = hooks.init(jax.random.PRNGKey(2), {})

  a = np.zeros((n_users + n_items,) * 2)
  for u, i in pairs:
    a[u, n_users + i] = a[n_users + i, u] = 1.0
  degree = a.sum(1)
  inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
  norm = inv[:, None] * a * inv[None, :]
  h0 = np.concatenate([params["mf"]["users"], params["mf"]["items"]]).astype(np.float64)
  layers = [h0]
  for _ in range(3):
    layers.append(norm @ layers[-1])
  want = np.mean(layers, axis=0)
  users, items = hooks.embed(State(params, {}), Run(inputs, {}))
  np.testing.assert_allclose(users, want[:n_users], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(items, want[n_users:], rtol=1e-5, atol=1e-6)

  # BPR on the propagated embeddings; L2 on the batch's layer-0 rows (½ Σ ‖·‖²).
  batch = Batch(users=jnp.array([0, 1, 2]), pos=jnp.array([1, 2, 3]),
                neg=jnp.array([4, 5, 6]), weights=jnp.array([1.0, 1.0, 0.0]))
  terms = lightgcn.lightgcn_terms(params, batch, inputs, spec)
  u, p, n = want[[0, 1]], want[n_users + np.array([1, 2])], want[n_users + np.array([4, 5])]
  bpr = np.mean(np.log1p(np.exp(-np.sum(u * (p - n), 1))))
  l2 = 0.5 * np.mean([np.sum(h0[k] ** 2) + np.sum(h0[n_users + i] ** 2)
                      + np.sum(h0[n_users + j] ** 2) for k, i, j in [(0, 1, 4), (1, 2, 5)]])
  assert float(terms["bpr"]) == pytest.approx(bpr, rel=1e-5)
  assert float(terms["l2"]) == pytest.approx(l2, rel=1e-5)
