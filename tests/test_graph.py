"""The edge-list graph against dense NumPy: normalised adjacency and propagation."""
import jax.numpy as jnp
import numpy as np

from jaxrec.graph import Graph


def dense_adjacency(pairs, n_users, n_items):
  a = np.zeros((n_users + n_items,) * 2)
  for u, i in pairs:
    a[u, n_users + i] = a[n_users + i, u] = 1.0
  degree = a.sum(1)
  inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
  return inv[:, None] * a * inv[None, :]


def _pairs():
  rng = np.random.default_rng(0)
  pairs = np.stack([rng.integers(0, 7, 40), rng.integers(0, 9, 40)], 1)
  return np.concatenate([pairs, pairs[:5]])          # duplicates must not double edges


def test_adjacency_matches_dense():
  pairs = _pairs()
  graph = Graph.from_pairs(pairs, 7, 9)
  got = np.zeros((16, 16))
  np.add.at(got, (np.asarray(graph.dst), np.asarray(graph.src)), np.asarray(graph.weight))
  np.testing.assert_allclose(got, dense_adjacency(pairs, 7, 9), rtol=1e-6)


def test_propagation_and_layer_mean_match_dense():
  pairs = _pairs()
  graph = Graph.from_pairs(pairs, 7, 9)
  a = dense_adjacency(pairs, 7, 9)
  h0 = np.random.default_rng(1).standard_normal((16, 5))
  np.testing.assert_allclose(graph.propagate(jnp.asarray(h0, jnp.float32)), a @ h0,
                             rtol=1e-5, atol=1e-6)
  expected = (h0 + a @ h0 + a @ a @ h0 + a @ a @ a @ h0) / 4
  np.testing.assert_allclose(graph.layer_mean(jnp.asarray(h0, jnp.float32), 3), expected,
                             rtol=1e-5, atol=1e-6)


def test_isolated_item_keeps_a_content_embedding():
  graph = Graph.from_pairs(np.array([[0, 0], [1, 1]]), 2, 3)    # item 2 has no edge
  h0 = jnp.ones((5, 4))
  np.testing.assert_allclose(graph.layer_mean(h0, 3)[4], 0.25 * np.ones(4))
