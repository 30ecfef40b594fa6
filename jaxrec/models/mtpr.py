"""MTPR: Multi-Task Pairwise Ranking (Du et al., SIGIR 2020), a new-item baseline.

An item is `i = [i_p ; i_c]`: a free preference embedding `i_p` and a content
embedding `i_c = W [x^1; ...; x^M]` of its concatenated (filled) features. Its
counterfactual `i* = [0 ; i_c]` is the item as it would look with no
interactions, i.e. as a new item looks. Users are free embeddings of the full
width, and the score is `u · i`. The loss is the paper's multi-task pairwise
ranking: BPR over the four pairs (normal, normal), (counterfactual,
counterfactual), (normal, counterfactual) and (counterfactual, normal) of
(positive, negative), so that the content part alone ranks like the full item.
At inference, items without training interactions (the new items) are scored
with their counterfactual representation and warm items with the full one.

Decisions ([D]):
  [D] Width: `i_p` and `i_c` have embed_dim / 2 each and users embed_dim, so
      the scoring dimension equals every other model's (needs an even dim).
  [D] Score `u · [i_p; i_c]` as in the paper; the authors' code additionally
      multiplies both sides by learned (2d x d) projections, a linear
      reparameterisation of the same bilinear score, left out.
  [D] Each of the four BPR terms is a batch mean (`losses.bpr_risk`), summed
      (the code sums per-example losses; the scale only changes the effective
      step and the weight of `reg`).
  [D] One Adam for all parameters (the engine's), with `reg` on the batch-mean
      squared norms of users and of the normal positive and negative items
      (this covers both `i_p` and the content map through `i_c`); the code uses
      Adagrad for ID embeddings (lr 0.05, no decay) and Adam (lr 0.05, decay
      0.01) for the content map.
  [D] The content map has no bias and Glorot-uniform init, as in the code.
  [D] Which items are "new" is read from the training graph (no edges), the
      only split information `embed` sees; with no graph every item is scored
      with its counterfactual.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxrec import losses
from jaxrec.errors import InputError
from jaxrec.models.base import (Batch, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.layers import ONE_ID, UsersAndContent, dense, id_table, per_item

# lr: the authors' code (duxy-me/MTPR, mirrored by ColdRec) uses 0.05 for every
# parameter group; [D] with the engine's single Adam that is the default too.
# reg: [D] 1e-4, MF-BPR's / MILK's batch-mean L2 (the code's decays are on sums).
HPARAMS = (learning_rate(0.05, "authors' code (duxy-me/MTPR), every parameter group"),
           weight("reg", 1e-4, "MF-BPR's / MILK's batch-mean L2 [D]", "L2 on the batch's rows"))


class MTPRNet(UsersAndContent):
  """User table (D), preference table (D/2) and the linear content map (-> D/2)."""
  n_items: int = 0

  def setup(self):
    half = self.embed_dim // 2
    self.user_table = id_table(self.n_users, self.embed_dim)
    self.pref_table = id_table(self.n_items, half)
    self.content_map = dense(half, sum(self.feature_dims), "xavier_uniform", bias=False)

  def __call__(self, users, items, item_feats):
    return self.users(users), self.items(items, item_feats)

  def items(self, items, item_feats):
    """Normal (N, D) `[i_p; i_c]` and counterfactual (N, D) `[0; i_c]`."""
    pref = self.pref_table(items)
    content = self.content_map(jnp.concatenate(item_feats, axis=-1))
    normal = jnp.concatenate([pref, content], axis=-1)
    counterfactual = jnp.concatenate([jnp.zeros_like(pref), content], axis=-1)
    return normal, counterfactual


def item_representations(net: MTPRNet, params, inputs: ModelInputs, items):
  """(normal, counterfactual), each (N, D), of `items`."""
  return net.apply({"params": params}, items, inputs.item_features(items),
                   method=MTPRNet.items)


def mtpr_terms(*, users, pos, pos_cf, neg, neg_cf, weights) -> dict:
  """The four BPR risks of MTPR and the batch L2, all (B,)-weighted means.

  Args:
    users: (B, D); pos, neg: (B, D) normal items; pos_cf, neg_cf: (B, D)
      counterfactual items; weights: (B,) 0 on padded slots.
  """
  score = lambda a: jnp.sum(users * a, -1)
  risk = lambda p, n: losses.bpr_risk(score_diff=score(p) - score(n), weights=weights)
  return dict(
      bpr_nn=risk(pos, neg),          # the ordinary ranking task
      bpr_cc=risk(pos_cf, neg_cf),    # the cold-start task: content part alone
      bpr_nc=risk(pos, neg_cf),       # the two constraints that put normal and
      bpr_cn=risk(pos_cf, neg),       # counterfactual items on one scale
      l2=losses.weighted_mean(jnp.sum(users ** 2 + pos ** 2 + neg ** 2, -1), weights))


def make(spec: ModelSpec) -> Hooks:
  if spec.embed_dim % 2:
    raise InputError(f"mtpr: embed_dim={spec.embed_dim}: expected an even number (an item's "
                     "vector is its preference half and its content half)")
  net = MTPRNet.for_spec(spec)

  def init(key, hp):
    return net.init_params(key, ONE_ID, ONE_ID)

  def loss(state: State, batch: Batch, run: Run):
    users = net.apply({"params": state.params}, batch.users, method=MTPRNet.users)
    ((normal, cf),) = per_item(
        lambda ids: item_representations(net, state.params, run.inputs, ids), spec.n_items,
        jnp.concatenate([batch.pos, batch.neg]))
    (pos, neg), (pos_cf, neg_cf) = jnp.split(normal, 2), jnp.split(cf, 2)
    terms = mtpr_terms(users=users, pos=pos, pos_cf=pos_cf, neg=neg, neg_cf=neg_cf,
                       weights=batch.weights)
    ranking = terms["bpr_nn"] + terms["bpr_cc"] + terms["bpr_nc"] + terms["bpr_cn"]
    return ranking + run.hp["reg"] * terms["l2"], terms

  def embed(state: State, run: Run):
    """Users, and items: normal if they have training interactions, else counterfactual."""
    users = net.apply({"params": state.params}, method=MTPRNet.all_users)
    normal, cf = item_representations(net, state.params, run.inputs, jnp.arange(spec.n_items))
    items = jnp.where(run.inputs.warm_items(spec.n_items)[:, None], normal, cf)
    return users, items
  return Hooks(init=init, loss=loss, embed=embed)


# No grid in the paper or the code [D]: the authors' rate 0.05 and two below it, and
# MMRec's BPR reg_weight grid cut to its low end (src/configs/model/BPR.yaml, 250d305).
SEARCH_SPACE = {"lr": (1e-3, 1e-2, 0.05), "reg": (1e-5, 1e-4, 1e-3)}
MTPR = Model(name="mtpr", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
