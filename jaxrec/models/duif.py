"""DUIF: Deep User-Image Features (Geng et al., ICCV 2015), as a new-item baseline.

An item is represented by its content only: the concatenated (filled) modality
features pass through one linear map into the user space; users are free
embeddings; trained with BPR. No per-item parameter exists, so a new item is
scored exactly like a warm one, from its features.

Decisions ([D]) where the paper leaves a choice or does not apply:
  [D] The paper learns a CNN on raw images; here the features are given, so the
      item tower is the paper's final linear embedding layer on the
      concatenation of all modalities (the setting MILK's paper compares with).
  [D] The map has no bias: `u·(Wx + b)` adds a per-user constant that cancels in
      every per-user ranking and every BPR difference, so a bias could only
      collect L2 penalty. Kernel init is PyTorch's `nn.Linear` default, as MILK.
  [D] Loss = BPR + reg · batch-mean squared norm of the user, positive and
      negative item embeddings (MF-BPR's and MILK's regulariser).
  [D] lr 1e-3 and reg 1e-4: the paper trains a CNN with SGD and reports no
      value that transfers; these are MILK's reference-code settings used for
      every baseline in its comparison.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import mf
from jaxrec.models.base import Batch, Hooks, Model, ModelInputs, ModelSpec, Run, State
from jaxrec.models.layers import (ONE_ID, UsersAndContent, dense, id_table, one_row_features,
                                  per_item)

# [D] Not given by the paper (see module docstring): MILK's shared settings.
HPARAMS = mf.HPARAMS


class DUIFNet(UsersAndContent):
  """Free user table and one linear map of the concatenated item features."""

  def setup(self):
    self.user_table = id_table(self.n_users, self.embed_dim)
    fan_in = sum(self.feature_dims)
    self.item_map = dense(self.embed_dim, fan_in, bias=False)

  def __call__(self, users, item_feats):
    return self.users(users), self.items(item_feats)

  def items(self, item_feats):
    """(N, D) `W [x^1; ...; x^M]` from per-modality (N, d_m) features."""
    return self.item_map(jnp.concatenate(item_feats, axis=-1))


def item_embeddings(net: DUIFNet, params, inputs: ModelInputs, items):
  """(N, D) content embeddings of `items` (missing modalities filled)."""
  return net.apply({"params": params}, inputs.item_features(items), method=DUIFNet.items)


def make(spec: ModelSpec) -> Hooks:
  net = DUIFNet(spec.n_users, spec.embed_dim, spec.feature_dims)

  def init(key, hp):
    return net.init(key, ONE_ID, one_row_features(spec.feature_dims))["params"]

  def loss(state: State, batch: Batch, run: Run):
    params = state.params
    users = net.apply({"params": params}, batch.users, method=DUIFNet.users)
    # One projection of both item sides: the map is shared, so this is one matmul.
    (both,) = per_item(lambda ids: item_embeddings(net, params, run.inputs, ids), spec.n_items,
                       jnp.concatenate([batch.pos, batch.neg]))
    pos, neg = jnp.split(both, 2)
    bpr = losses.bpr_risk(score_diff=jnp.sum(users * (pos - neg), -1), weights=batch.weights)
    l2 = losses.weighted_mean(jnp.sum(users ** 2 + pos ** 2 + neg ** 2, -1), batch.weights)
    return bpr + run.hp["reg"] * l2, {"bpr": bpr, "l2": l2}

  def embed(state: State, run: Run):
    users = net.apply({"params": state.params}, method=DUIFNet.all_users)
    return users, item_embeddings(net, state.params, run.inputs, jnp.arange(spec.n_items))
  return Hooks(init=init, loss=loss, embed=embed)


# No grid in the paper [D]: the learning rate a decade around MILK's and MMRec's BPR
# reg_weight grid (src/configs/model/BPR.yaml, commit 250d305) cut to its low end.
SEARCH_SPACE = {"lr": (1e-4, 1e-3, 1e-2), "reg": (1e-5, 1e-4, 1e-3)}
DUIF = Model(name="duif", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
