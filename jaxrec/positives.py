"""Each user's training positives as a CSR index with a vectorised membership test.

Shared by the engine's negative sampler and by models that sample from a user's
own history (CCFCRec), so no model imports the engine.
"""
from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class PositiveIndex:
  """CSR of each user's training positives, items sorted within a row.

  Attributes:
    indptr: (U + 1,) int32 row offsets.
    indices: (N,) int32 item ids.
  """
  indptr: jax.Array
  indices: jax.Array
  search_steps: int = flax.struct.field(pytree_node=False, default=1)

  @classmethod
  def from_pairs(cls, pairs: np.ndarray, n_users: int) -> "PositiveIndex":
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    indptr = np.searchsorted(pairs[:, 0], np.arange(n_users + 1)).astype(np.int32)
    max_degree = int(np.diff(indptr).max(initial=0))
    return cls(indptr=jnp.asarray(indptr),
               indices=jnp.asarray(pairs[:, 1].astype(np.int32)),
               search_steps=max(1, math.ceil(math.log2(max_degree + 1)) + 1))

  def contains(self, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Whether each (rows[b], cols[b]) is a positive: a vectorised binary search."""
    lo, hi = self.indptr[rows], self.indptr[rows + 1]
    last = max(self.indices.shape[0] - 1, 0)

    def halve(_, bounds):
      lo, hi = bounds
      mid = (lo + hi) // 2
      right = self.indices[jnp.minimum(mid, last)] < cols
      open_ = lo < hi
      return (jnp.where(open_ & right, mid + 1, lo), jnp.where(open_ & ~right, mid, hi))

    lo, _ = jax.lax.fori_loop(0, self.search_steps, halve, (lo, hi))
    end = self.indptr[rows + 1]
    return (lo < end) & (self.indices[jnp.minimum(lo, last)] == cols)
