"""DropoutNet (Volkovs et al., NeurIPS 2017) on a pretrained MF-BPR model.

Two stages inside one training run (and one vmapped sweep):
  1. while `hp["epoch"] < hp["pretrain_epochs"]`: MF-BPR (`mf.mf_terms`) on the
     warm items' training pairs; the MF tables are `params["mf"]`.
  2. afterwards: the MF tables are frozen (`stop_gradient`) and two towers
       f_U(U_u)  and  f_V([keep_v · V_v, x_v])
     are fitted so that `f_U · f_V` reproduces the pretrained scores `U_u · V_v`
     (MSE). `keep_v ~ Bernoulli(1 - dropout)` per sample: a dropped item's whole
     preference vector is zeroed (input dropout), so f_V learns to score from
     content alone. New items (no training interaction) are scored with their
     preference input dropped.
`staged` runs only the current stage's loss (`lax.cond` on the group's epoch,
which every run of a group shares); the engine only evaluates after stage 1.

[D] Pairs: the MSE is taken on the batch's (user, positive) and (user,
    negative) pairs (the paper samples observed and random items per user).
[D] Towers: one tanh hidden layer of `HIDDEN` units and a linear output of
    `embed_dim` (the paper uses [800, 400] with batch norm on CiteULike; no
    batch norm here, whose running statistics the pure-function interface
    has no place for); the user tower sees the MF user vector only (no user
    content in these data) and is never dropped (item cold start only).
[D] A dropped preference input is replaced by zeros (the paper's item
    cold-start transform), not by a mean of user vectors.
[D] Adam at the per-run `lr` for both stages (the paper: SGD with momentum).
    After the switch Adam's first moment keeps moving the frozen MF tables
    for a few steps (a geometric tail, at most ~10·lr per coordinate); no
    stage-2 loss term pushes them.

Shared with Heater and GAR: `staged`, `mf_stage_loss`, `frozen_mf`,
`item_content`, `warm_items`, `score_pairs`, `Tower`.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import mf
from jaxrec.models.base import Batch, Model, ModelInputs, ModelSpec

HIDDEN = 200

# Dropout 0.5: the paper's item cold-start setting (CiteULike). lr 5e-3: the
# learning rate of the paper's SGD (momentum 0.9) used here with Adam [D], which
# also lets the short first stage fit MF-BPR on small data. reg: MF-BPR's.
DEFAULT_HPARAMS = dict(lr=5e-3, reg=1e-4, dropout=0.5)
# A first stage of 20 epochs suits the small data of tests and examples [D].
CONFIG_DEFAULTS = {"pretrain_epochs": 20, "fill": "mean"}


class Tower(nn.Module):
  """`Dense(out) ∘ tanh ∘ Dense(hidden)`: one side of a two-tower scorer."""
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out, name="out")(jnp.tanh(nn.Dense(self.hidden, name="hidden")(x)))


# --- pieces shared by the pretrained-CF baselines ----------------------------
def staged(hp, params, batch: Batch, own: Callable[[], tuple[jax.Array, dict]]):
  """(loss, terms): MF-BPR's in the first stage, `own()`'s afterwards.

  Only the stage's branch runs: the stage is the group's (`hp["epoch"]` is not
  batched), so `lax.cond` stays a branch under the engine's vmap. The other
  branch's terms are reported as 0.
  """
  mf_part = lambda: mf_stage_loss(params, batch, hp)
  mf_terms, own_terms = jax.eval_shape(lambda: (mf_part()[1], own()[1]))
  zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)

  def with_zeros(part, other_terms):
    value, terms = part()
    return value, {**zeros(other_terms), **terms}
  return jax.lax.cond(in_first_stage(hp), lambda: with_zeros(mf_part, own_terms),
                      lambda: with_zeros(own, mf_terms))


def in_first_stage(hp) -> jax.Array:
  return hp["epoch"] < hp["pretrain_epochs"]


def mf_stage_loss(params, batch: Batch, hp) -> tuple[jax.Array, dict]:
  """MF-BPR total `bpr + reg·l2` on `params["mf"]` and its terms."""
  terms = mf.mf_terms(params["mf"], batch)
  return terms["bpr"] + hp["reg"] * terms["l2"], terms


def frozen_mf(params) -> dict:
  """The pretrained MF tables, with no gradient into them (stage 2)."""
  return jax.lax.stop_gradient(params["mf"])


def item_content(inputs: ModelInputs, items: jax.Array) -> jax.Array:
  """(N, Σ d_m) concatenated (filled) modality features of `items`."""
  return jnp.concatenate(inputs.item_features(items), axis=-1)


def warm_items(inputs: ModelInputs, n_items: int) -> jax.Array:
  """(I,) bool: items with at least one training interaction (their MF row is
  trained). Read from the training graph; without one, every item is new."""
  graph = inputs.graph
  if graph is None:
    return jnp.zeros((n_items,), bool)
  degree = jax.ops.segment_sum(jnp.ones_like(graph.weight), graph.src,
                               num_segments=graph.n_nodes)
  return degree[graph.n_users:graph.n_users + n_items] > 0


def score_pairs(batch: Batch):
  """The batch's (user, pos) and (user, neg) pairs as (2B,) users, items, weights."""
  users = jnp.concatenate([batch.users, batch.users])
  items = jnp.concatenate([batch.pos, batch.neg])
  weights = jnp.concatenate([batch.weights, batch.weights])
  return users, items, weights


def content_dim(spec: ModelSpec) -> int:
  return int(sum(spec.feature_dims))


# --- DropoutNet --------------------------------------------------------------
def _tower(spec: ModelSpec) -> Tower:
  return Tower(HIDDEN, spec.embed_dim)


def init(key, spec: ModelSpec, hp):
  del hp
  k_mf, k_user, k_item = jax.random.split(key, 3)
  d = spec.embed_dim
  return {"mf": mf.mf_params(k_mf, spec.n_users, spec.n_items, d),
          "user_tower": _tower(spec).init(k_user, jnp.zeros((1, d)))["params"],
          "item_tower": _tower(spec).init(
              k_item, jnp.zeros((1, d + content_dim(spec))))["params"]}


def preference_keep(key, n: int, rate) -> jax.Array:
  """(n,) 0/1: 0 where the sample's preference input is dropped (prob. `rate`)."""
  return jax.random.bernoulli(key, 1.0 - rate, (n,)).astype(jnp.float32)


def item_tower_input(preference: jax.Array, content: jax.Array,
                     keep: jax.Array) -> jax.Array:
  """(N, D + Σ d_m) `[keep · V_v, x_v]`: the item tower's input."""
  return jnp.concatenate([preference * keep[:, None], content], axis=-1)


def towers(params, spec: ModelSpec, user_pref, item_input):
  """(f_U(user_pref), f_V(item_input))."""
  return (_tower(spec).apply({"params": params["user_tower"]}, user_pref),
          _tower(spec).apply({"params": params["item_tower"]}, item_input))


def dropoutnet_terms(params, batch: Batch, inputs: ModelInputs, hp, key,
                     spec: ModelSpec) -> dict:
  """Stage-2 terms: `mse` of reproduced vs. pretrained scores, `dropped` fraction."""
  cf = frozen_mf(params)
  users, items, weights = score_pairs(batch)
  target = jnp.sum(cf["users"][users] * cf["items"][items], -1)
  keep = preference_keep(key, items.shape[0], hp["dropout"])
  u, v = towers(params, spec, cf["users"][users],
                item_tower_input(cf["items"][items], item_content(inputs, items), keep))
  mse = losses.weighted_mean(jnp.square(jnp.sum(u * v, -1) - target), weights)
  return {"mse": mse, "dropped": losses.weighted_mean(1.0 - keep, weights)}


def loss(params, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec):
  def own():
    t = dropoutnet_terms(params, batch, inputs, hp, key, spec)
    return t["mse"], t
  return staged(hp, params, batch, own)


def embed(params, inputs: ModelInputs, hp, spec: ModelSpec):
  """Users f_U(U_u); warm items f_V([V_v, x_v]), new items f_V([0, x_v])."""
  del hp
  cf = params["mf"]
  all_items = jnp.arange(spec.n_items)
  keep = warm_items(inputs, spec.n_items).astype(jnp.float32)
  return towers(params, spec, cf["users"],
                item_tower_input(cf["items"], item_content(inputs, all_items), keep))


DROPOUTNET = Model(name="dropoutnet", init=init, loss=loss, embed=embed,
                   default_hparams=DEFAULT_HPARAMS, config_defaults=CONFIG_DEFAULTS)
