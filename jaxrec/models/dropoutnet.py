"""DropoutNet (Volkovs et al., NeurIPS 2017) on a pretrained MF-BPR model.

Two stages inside one training run (jaxrec.models.pretrained):
  1. the first `pretrain_epochs` epochs: MF-BPR on the warm items' training
     pairs; the MF tables are `params["mf"]`.
  2. afterwards: the MF tables are frozen (their own Adam stops) and two towers
       f_U(U_u)  and  f_V([keep_v · V_v, x_v])
     are fitted so that `f_U · f_V` reproduces the pretrained scores `U_u · V_v`
     (MSE). `keep_v ~ Bernoulli(1 - dropout)` per sample: a dropped item's whole
     preference vector is zeroed (input dropout), so f_V learns to score from
     content alone. New items (no training interaction) are scored with their
     preference input dropped.

[D] Pairs: the MSE is taken on the batch's (user, positive) and (user,
    negative) pairs with a warm item (the paper samples observed and random
    items per user from the warm preference matrix; a new item has no
    pretrained vector to reproduce).
[D] Towers: one tanh hidden layer of `HIDDEN` units and a linear output of
    `embed_dim` (the paper uses [800, 400] with batch norm on CiteULike; no
    batch norm here, whose running statistics the pure-function interface
    has no place for); the user tower sees the MF user vector only (no user
    content in these data) and is never dropped (item cold start only).
[D] A dropped preference input is replaced by zeros (the paper's item
    cold-start transform), not by a mean of user vectors.
[D] Adam at the per-run `lr` for both stages (the paper: SGD with momentum),
    one Adam per stage (`pretrained.two_stage_optimizer`): the MF tables are
    bit-identical after stage 2, and the towers start with fresh moments.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import mf, pretrained
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate)
from jaxrec.models.pretrained import content_dim, frozen_mf, score_pairs, tower
from jaxrec.models.layers import per_item

# Dropout 0.5: the paper's item cold-start setting (CiteULike). lr 5e-3: the
# learning rate of the paper's SGD (momentum 0.9) used here with Adam [D], which
# also lets the short first stage fit MF-BPR on small data. reg: MF-BPR's.
HPARAMS = (
    learning_rate(5e-3, "DropoutNet paper's SGD rate, used with Adam [D]"),
    HParam("reg", 1e-4, "MF-BPR's (first stage)", low=0.0, help="L2 of the MF stage"),
    HParam("dropout", 0.5, "DropoutNet paper, item cold start (CiteULike)", low=0.0,
           high=1.0, off=0.0, help="probability of dropping an item's preference input"),
    pretrained.PRETRAIN_EPOCHS)


def init_params(key, spec: ModelSpec) -> dict:
  k_mf, k_user, k_item = jax.random.split(key, 3)
  d = spec.embed_dim
  return {"mf": mf.mf_params(k_mf, spec.n_users, spec.n_items, d),
          "user_tower": tower(spec).init(k_user, jnp.zeros((1, d)))["params"],
          "item_tower": tower(spec).init(
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
  return (tower(spec).apply({"params": params["user_tower"]}, user_pref),
          tower(spec).apply({"params": params["item_tower"]}, item_input))


def item_tower_by_parts(item_tower, preference: jax.Array, keep: jax.Array,
                        content_part: jax.Array) -> jax.Array:
  """f_V([keep · V_v, x_v]) from `content_part` = x_v W_x, the content's share of
  the first layer: that layer is linear, so [k V, x] W = k (V W_V) + x W_x, and
  x W_x, the costly half, is computed once per item (`layers.per_item`)."""
  hidden, out = item_tower["hidden"], item_tower["out"]
  d = preference.shape[-1]
  h = (preference * keep[:, None]) @ hidden["kernel"][:d] + content_part + hidden["bias"]
  return jnp.tanh(h) @ out["kernel"] + out["bias"]


def dropoutnet_terms(params, batch: Batch, inputs: ModelInputs, hp, key,
                     spec: ModelSpec) -> dict:
  """Stage-2 terms: `mse` of reproduced vs. pretrained scores, `dropped` fraction."""
  cf = frozen_mf(params)
  users, items, weights = score_pairs(batch)
  # The target is the pretrained score, which a new item (a sampled negative with
  # no training interaction) does not have: its MF row is the initialisation.
  weights = weights * inputs.warm_items(spec.n_items)[items]
  target = jnp.sum(cf["users"][users] * cf["items"][items], -1)
  keep = preference_keep(key, items.shape[0], hp["dropout"])
  content_kernel = params["item_tower"]["hidden"]["kernel"][spec.embed_dim:]
  (content_part,) = per_item(lambda ids: inputs.item_content(ids) @ content_kernel,
                             spec.n_items, items)
  u = tower(spec).apply({"params": params["user_tower"]}, cf["users"][users])
  v = item_tower_by_parts(params["item_tower"], cf["items"][items], keep, content_part)
  mse = losses.weighted_mean(jnp.square(jnp.sum(u * v, -1) - target), weights)
  return {"mse": mse, "dropped": losses.weighted_mean(1.0 - keep, weights)}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def own_loss(state: State, batch: Batch, run: Run):
    t = dropoutnet_terms(state.params, batch, run.inputs, run.hp, run.ctx.key, spec)
    return t["mse"], t

  def embed(state: State, run: Run):
    """Users f_U(U_u); warm items f_V([V_v, x_v]), new items f_V([0, x_v])."""
    cf, inputs = state.params["mf"], run.inputs
    all_items = jnp.arange(spec.n_items)
    keep = inputs.warm_items(spec.n_items).astype(jnp.float32)
    return towers(state.params, spec, cf["users"],
                  item_tower_input(cf["items"], inputs.item_content(all_items), keep))
  return Hooks(init=init, loss=pretrained.staged_loss(own_loss), embed=embed,
               optimizer=pretrained.two_stage_optimizer)


# The paper's study of the dropout rate (its item cold start) around 0.5 [D: our values].
# lr: the default 5e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"dropout": (0.3, 0.5, 0.7), "lr": (1e-3, 5e-3, 1e-2)}
DROPOUTNET = Model(name="dropoutnet", hparams=HPARAMS, make=make,
                   first_stage_epochs=pretrained.PRETRAIN_EPOCHS,
                   config_defaults={"fill": "mean"}, search_space=SEARCH_SPACE)
