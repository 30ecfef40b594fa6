"""The one interface between models and the engine.

A model is three pure functions of arrays, so the engine can `jit`, `vmap` over
runs and shard them without knowing anything about the model:

  init(key, spec, hp)                   -> params
  loss(params, batch, inputs, hp, key, spec) -> (scalar, {term_name: scalar})
  embed(params, inputs, hp, spec)        -> (user_emb (U, D), item_emb (I, D))

A model with parameters that the main optimiser must not touch (I3-MRec's CLUB
networks, a GAN's discriminator) keeps them in an auxiliary state with its own
update rule:

  init_aux(key, spec, hp, params)       -> aux
  pre_epoch(params, aux, inputs, hp, key, spec) -> aux         (once per epoch)
  aux_step(params, aux, batch, inputs, hp, key, spec) -> aux   (every step,
                                                     before the main update)

and then receives it as `loss(..., spec, aux)`. `aux` is stored, stacked and
sharded with the rest of the run's state. A model that also scores with part
of it (GAR's recommender) names that part:

  embed_aux(aux) -> tree                and is called `embed(..., spec, aux=tree)`;

the engine then keeps that tree of the selected epoch with the selected params.

During training `hp` also holds `epoch` (epochs completed before this one) and
`pretrain_epochs` (the group's first stage, see `TrainSettings`): a two-stage
model switches its loss on them; selection only starts after the first stage.
Both are the same for every run of a group and not batched, so a model can
branch on them with `lax.cond` and skip the other stage's work.

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
    features: per modality (I, d_m) L2-normalised features (shared by runs),
      float32 or bfloat16 (`RunConfig.feature_dtype`).
    available: (I, M) bool observed for this run (natural and simulated).
    fill: per modality (d_m,) vector that replaces a missing row for this run.
    graph: the normalised training user-item graph (shared by runs).
  """
  features: tuple[jax.Array, ...]
  available: jax.Array
  fill: tuple[jax.Array, ...]
  graph: Any = None

  def item_features(self, items: jax.Array) -> tuple[jax.Array, ...]:
    """Per modality (N, d_m) float32 rows of `items` with missing rows filled.

    Features stored in bfloat16 are widened here, right after the gather, so
    only their reads are narrow and all arithmetic stays float32.
    """
    out = []
    for m, (feats, fill) in enumerate(zip(self.features, self.fill)):
      observed = self.available[items, m][:, None] > 0
      out.append(jnp.where(observed, feats[items].astype(fill.dtype), fill[None, :]))
    return tuple(out)


def dropout(x: jax.Array, rate, key: jax.Array | None) -> jax.Array:
  """Inverted dropout of `x` at `rate` with `key`; the identity without a key."""
  if key is None:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class Model(NamedTuple):
  """A model as pure functions (see module docstring).

  `default_hparams` names the per-run hyper-parameters the model reads from
  `hp` and their defaults; `config_defaults` other `RunConfig` fields it
  changes the default of (e.g. the fill).
  """
  name: str
  init: Callable[..., Any]
  loss: Callable[..., tuple[jax.Array, dict]]
  embed: Callable[..., tuple[jax.Array, jax.Array]]
  default_hparams: dict
  config_defaults: dict = {}
  init_aux: Callable[..., Any] | None = None
  pre_epoch: Callable[..., Any] | None = None
  aux_step: Callable[..., Any] | None = None
  embed_aux: Callable[[Any], Any] | None = None
