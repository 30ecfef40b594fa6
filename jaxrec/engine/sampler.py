"""On-device negative sampling: uniform over all items, rejecting training positives."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec.positives import PositiveIndex


def sample_negatives(key: jax.Array, users: jax.Array, positives: PositiveIndex,
                     n_items: int, max_rounds: int = 64) -> jax.Array:
  """(B,) items drawn uniformly from all items, redrawn while a user's positive.

  Redraws stop after `max_rounds`, which only matters for a user who has
  interacted with nearly every item.
  """
  def not_done(carry):
    _, _, bad, rounds = carry
    return jnp.any(bad) & (rounds < max_rounds)

  def redraw(carry):
    key, neg, bad, rounds = carry
    key, sub = jax.random.split(key)
    cand = jax.random.randint(sub, users.shape, 0, n_items, jnp.int32)
    neg = jnp.where(bad, cand, neg)
    return key, neg, bad & positives.contains(users, neg), rounds + 1

  start = (key, jnp.zeros_like(users), jnp.ones(users.shape, bool), jnp.int32(0))
  return jax.lax.while_loop(not_done, redraw, start)[1]
