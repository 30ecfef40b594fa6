"""The one interface between models and the engine.

A model is three pure functions of arrays, so the engine can `jit`, `vmap` over
runs and shard them without knowing anything about the model:

  init(key, spec, hp)                   -> params
  loss(params, batch, inputs, hp, key, spec) -> (scalar, {term_name: scalar})
  embed(params, inputs, hp, spec)        -> (user_emb (U, D), item_emb (I, D))

`spec` is the group's static `ModelSpec` (shapes and shape-changing options);
`hp` is a dict of this run's scalar hyper-parameters (traced, one per run).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static description shared by every run of a group (hashable)."""
  n_users: int
  n_items: int
  feature_dims: tuple[int, ...]
  embed_dim: int = 64
  penalty: str = "variance"

  @property
  def n_modalities(self) -> int:
    return len(self.feature_dims)


@flax.struct.dataclass
class Batch:
  """One mini-batch of BPR triples; `weights` is 0 on padded slots. Shapes (B,)."""
  users: jax.Array
  pos: jax.Array
  neg: jax.Array
  weights: jax.Array


@flax.struct.dataclass
class ModelInputs:
  """Item content as one run sees it.

  Attributes:
    features: per modality (I, d_m) L2-normalised features (shared by runs).
    available: (I, M) bool observed for this run (natural and simulated).
    fill: per modality (d_m,) vector that replaces a missing row for this run.
  """
  features: tuple[jax.Array, ...]
  available: jax.Array
  fill: tuple[jax.Array, ...]

  def item_features(self, items: jax.Array) -> tuple[jax.Array, ...]:
    """Per modality (N, d_m) rows of `items` with missing rows filled."""
    out = []
    for m, (feats, fill) in enumerate(zip(self.features, self.fill)):
      observed = self.available[items, m][:, None] > 0
      out.append(jnp.where(observed, feats[items], fill[None, :]))
    return tuple(out)


class Model(NamedTuple):
  """A model as three pure functions (see module docstring)."""
  name: str
  init: Callable[..., Any]
  loss: Callable[..., tuple[jax.Array, dict]]
  embed: Callable[..., tuple[jax.Array, jax.Array]]
  default_hparams: dict
