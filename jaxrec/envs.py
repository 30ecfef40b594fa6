"""Environment mixing weights: arrays `(E, M)` of rows on the simplex.

A model fuses its per-modality embeddings with one row per environment, and
evaluates every environment in one `vmap` over the rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_weights(n_modalities: int) -> jax.Array:
  """(M,) the inference-time fusion weights 1/M."""
  return jnp.full((n_modalities,), 1.0 / n_modalities, jnp.float32)


def cyclic_mixup(key: jax.Array, *, alpha: jax.Array, n_modalities: int,
                 cyclic: jax.Array = True) -> jax.Array:
  """MILK's M+1 environments: the uniform row, then λ ~ Dir(α·1) and its cyclic shifts.

  Row 0 is 1/M; row k+1 is `roll(λ, k)` for k = 0..M-1. With `cyclic=False`
  (the `w/o cs` ablation) rows 1..M are independent Dirichlet draws instead.
  For M = 2 and `cyclic=True` this is the reference code's
  `[[.5, .5], [λ1, λ2], [λ2, λ1]]`.

  Args:
    key: PRNG key of this draw (fix it across batches for `w/o random`).
    alpha: scalar Dirichlet concentration (may be traced, per run).
    n_modalities: M.
    cyclic: bool (may be traced); False gives the `w/o cs` ablation.
  Returns:
    (M + 1, M) float32 weights, every row summing to 1.
  """
  concentration = jnp.full((n_modalities,), alpha, jnp.float32)
  draws = jax.random.dirichlet(key, concentration, (n_modalities,))
  shifts = jnp.stack([jnp.roll(draws[0], k) for k in range(n_modalities)])
  mixed = jnp.where(cyclic, shifts, draws)
  return jnp.concatenate([uniform_weights(n_modalities)[None], mixed], axis=0)
