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


def test_one_direction_sums_are_the_dense_blocks():
  pairs = _pairs()
  graph = Graph.from_pairs(pairs, 7, 9)
  a = dense_adjacency(pairs, 7, 9)
  ones = (a > 0).astype(float)
  rng = np.random.default_rng(2)
  items, users = rng.standard_normal((9, 3)), rng.standard_normal((7, 3))
  for normalised, block in ((True, a), (False, ones)):
    np.testing.assert_allclose(graph.to_users(jnp.asarray(items, jnp.float32), normalised),
                               block[:7, 7:] @ items, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.to_items(jnp.asarray(users, jnp.float32), normalised),
                               block[7:, :7] @ users, rtol=1e-5, atol=1e-6)


def _dense_item_graph(neighbours, weights, n):
  a = np.zeros((n, n))
  for i in range(n):
    for j, w in zip(neighbours[i], weights[i]):
      a[i, j] += w                                   # a repeated neighbour's weights add
  return a


def test_item_graph_propagation_and_its_gradients_match_dense_float64():
  """`item_graph.propagate` and its own VJP (slot-wise scatters) against the
  dense float64 product and its closed-form gradients (d/dh = Aᵀ g, d/dw_ik =
  <g_i, h_{n_ik}>), on a graph with repeated neighbours and zero-weight
  slots, alone and under vmap."""
  import jax
  from jaxrec.models import item_graph
  rng = np.random.default_rng(3)
  n, k, d = 11, 4, 3
  neighbours = rng.integers(0, n, (n, k))
  neighbours[:, 1] = neighbours[:, 0]                 # repeats
  weights = rng.random((n, k)) * (rng.random((n, k)) > 0.2)
  h, cot = rng.standard_normal((n, d)), rng.standard_normal((n, d))
  a = _dense_item_graph(neighbours, weights, n)
  want_dw = np.einsum("id,ikd->ik", cot, h[neighbours])
  nb, f32 = jnp.asarray(neighbours, jnp.int32), lambda x: jnp.asarray(x, jnp.float32)
  out, pull = jax.vjp(lambda w, x: item_graph.propagate(nb, w, x), f32(weights), f32(h))
  dw, dh = pull(f32(cot))
  np.testing.assert_allclose(out, a @ h, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dh, a.T @ cot, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-6)
  dw2, dh2 = jax.vmap(jax.grad(lambda w, x: jnp.sum(item_graph.propagate(nb, w, x) * f32(cot)),
                               argnums=(0, 1)))(jnp.stack([f32(weights)] * 2),
                                                jnp.stack([f32(h), 2 * f32(h)]))
  np.testing.assert_allclose(dh2[1], a.T @ cot, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw2[1], 2 * want_dw, rtol=1e-5, atol=1e-6)


def test_edge_sum_and_its_gradients_match_segment_sum(monkeypatch):
  """`edge_sum` in chunks of 256 edges (600 edges: three chunks, the last
  padded) against `segment_sum` of the gathered rows and its autodiff, for the
  rows and the weights; repeated edges and empty targets included."""
  import jax
  from jaxrec import graph as graph_module
  rng = np.random.default_rng(5)
  n_in, n_out, n_edges = 30, 20, 600
  src, dst = rng.integers(0, n_in, n_edges), rng.integers(0, n_out - 3, n_edges)
  rows, w, cot = rng.standard_normal((n_in, 4)), rng.random(n_edges), rng.standard_normal((n_out, 4))
  monkeypatch.setattr(graph_module, "EDGE_CHUNK_BYTES", 4 * 4 * 256)
  assert graph_module._edge_chunk(4) == 256
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  src_j, dst_j = jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32)
  plain = lambda r, w: jax.ops.segment_sum(w[:, None] * r[src_j], dst_j, num_segments=n_out)
  chunked = lambda r, w: graph_module.edge_sum(r, src_j, dst_j, w, n_out)
  want = np.zeros((n_out, 4))
  np.add.at(want, dst, w[:, None] * rows[src])
  results = []
  for f in (plain, chunked):
    out, pull = jax.vjp(f, f32(rows), f32(w))
    results.append((out, *pull(f32(cot))))
  np.testing.assert_allclose(results[1][0], want, rtol=1e-5, atol=1e-5)
  for got, ref in zip(results[1], results[0]):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
