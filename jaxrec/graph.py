"""The normalised user-item graph as an edge list, propagated with segment sums.

`Â = D^-1/2 A D^-1/2` over n_users + n_items nodes (users first), built once
from the training pairs and shared by every run of a group: never a dense
(U + I)^2 matrix, and never copied per run (it enters `vmap` with in_axes=None).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Graph:
  """Directed edge list of the symmetric bipartite graph, no self-loops.

  Attributes:
    src, dst: (2N,) int32 node ids (item node = n_users + item).
    weight: (2N,) float32 `1 / sqrt(deg(src) deg(dst))`.
    n_users, n_nodes: static sizes.
  """
  src: jax.Array
  dst: jax.Array
  weight: jax.Array
  n_users: int = flax.struct.field(pytree_node=False, default=0)
  n_nodes: int = flax.struct.field(pytree_node=False, default=0)

  @classmethod
  def from_pairs(cls, pairs: np.ndarray, n_users: int, n_items: int) -> "Graph":
    pairs = np.unique(np.asarray(pairs, np.int64), axis=0)
    users, items = pairs[:, 0], pairs[:, 1] + n_users
    src = np.concatenate([users, items])
    dst = np.concatenate([items, users])
    degree = np.bincount(src, minlength=n_users + n_items).astype(np.float64)
    weight = 1.0 / np.sqrt(degree[src] * degree[dst])
    return cls(src=jnp.asarray(src, jnp.int32), dst=jnp.asarray(dst, jnp.int32),
               weight=jnp.asarray(weight, jnp.float32), n_users=n_users,
               n_nodes=n_users + n_items)

  def propagate(self, h: jax.Array) -> jax.Array:
    """`Â h` for node features h of shape (n_nodes, D)."""
    messages = self.weight[:, None] * h[self.src]
    return jax.ops.segment_sum(messages, self.dst, num_segments=self.n_nodes)

  def layer_mean(self, h0: jax.Array, n_layers: int) -> jax.Array:
    """LightGCN's `mean(H0, ÂH0, …, Â^L H0)`."""
    total, h = h0, h0
    for _ in range(n_layers):
      h = self.propagate(h)
      total = total + h
    return total / (n_layers + 1)
