"""CLCRec: Contrastive Learning for Cold-start Recommendation (Wei et al., MM 2021).

Every item has a free collaborative (ID) embedding `v_i` and a content
embedding `c_i = f(x_i)` from an encoder of its concatenated (filled) features,
`f = Linear(256) -> LeakyReLU -> Linear(D)` as in the authors' code. Two
contrastive (InfoNCE) terms, both with temperature `temperature`:
  R-E (representation-embedding): each positive item's `v_i` against its own
    `c_i`, the other items' content embeddings as negatives; maximises the
    mutual information between collaborative and content representations.
  U-I (user-item): each user against its positive item, where the item's input
    is `c_i` instead of `v_i` with probability RHO, so users learn to rank
    content embeddings like collaborative ones.
Loss = aux_weight · R-E + (1 - aux_weight) · U-I + reg · (mean ||u|| + mean ||v||) / 2
(the code's `lr_lambda` is `aux_weight`, its `reg_weight` is `reg`). At test
time new items (no training interactions) use `c_i`, warm items `v_i`.

Decisions ([D]):
  [D] Both terms use `losses.info_nce`: cosine similarity and in-batch
      negatives (the batch's other positives, B - 1 per row) instead of the
      code's `num_neg` sampled negatives. For R-E this is the code's form (it
      normalises both sides); for U-I the code uses raw dot products.
  [D] Because U-I is trained on cosine similarity, `embed` L2-normalises users
      and items, so test scores are the trained scores.
  [D] R-E counts each distinct positive item of the batch once, so a repeated
      item is never its own negative (`milk.first_occurrence`).
  [D] The ID-to-content swap is a Bernoulli(RHO) draw per row (the code draws
      RHO · N indices with replacement, i.e. about 39 % distinct rows at 0.5).
  [D] Embeddings start from N(0, 0.1²) as the repo's other models (the code
      uses Glorot init); the encoder uses PyTorch's `nn.Linear` default init.
  [D] New items are those without edges in the training graph, the only
      split information `embed` sees (see ModelInputs.warm_items).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.layers import (ONE_ID, UsersAndContent, dense, first_occurrence, id_table,
                                  l2_normalise_rows, per_item)

# The authors' README command for MovieLens (three modalities, the multimodal
# setting closest to ours), github.com/weiyinwei/CLCRec:
#   --l_r 0.001 --reg_weight 0.1 --lr_lambda 0.5 --temp_value 2.0 --num_sample 0.5
SOURCE = "authors' README, MovieLens command"
HPARAMS = (learning_rate(1e-3, SOURCE),
           weight("reg", 0.1, SOURCE, "the code's reg_weight (norm regulariser)"),
           HParam("aux_weight", 0.5, SOURCE, low=0.0, high=1.0, off=0.0,
                  help="the code's lr_lambda: R-E's share against U-I's"),
           HParam("temperature", 2.0, SOURCE, low=0.0, low_open=True,
                  help="InfoNCE temperature of both terms"))
# `num_sample` (ρ): share of positive items whose ID embedding is replaced by the
# content embedding in U-I; a module constant (the README's value).
RHO = 0.5
ENCODER_HIDDEN = 256   # the authors' encoder width


class CLCRecNet(UsersAndContent):
  """User and item ID tables and the two-layer content encoder."""
  n_items: int = 0

  def setup(self):
    self.user_table = id_table(self.n_users, self.embed_dim)
    self.item_table = id_table(self.n_items, self.embed_dim)
    fan_in = sum(self.feature_dims)
    self.hidden = dense(ENCODER_HIDDEN, fan_in)
    self.out = dense(self.embed_dim, ENCODER_HIDDEN)

  def __call__(self, users, items, item_feats):
    return self.users(users), self.items(items), self.content(item_feats)

  def items(self, items):
    return self.item_table(items)

  def all_items(self):
    return self.item_table.embedding

  def content(self, item_feats):
    """(N, D) content embeddings from per-modality (N, d_m) features."""
    h = nn.leaky_relu(self.hidden(jnp.concatenate(item_feats, axis=-1)))
    return self.out(h)


def content_embeddings(net: CLCRecNet, params, inputs: ModelInputs, items):
  """(N, D) content-encoder output for `items` (missing modalities filled)."""
  return net.apply({"params": params}, inputs.item_features(items), method=CLCRecNet.content)


def clcrec_terms(*, users, item_ids, item_content, swap, weights, item_weights,
                 temperature) -> dict:
  """The two contrastive terms and the norm regulariser of one batch.

  Args:
    users: (B, D) user ID embeddings; item_ids, item_content: (B, D) ID and
      content embeddings of the positive items.
    swap: (B,) 1 where U-I uses the content embedding instead of the ID one.
    weights: (B,) 0 on padded slots; item_weights: (B,) R-E row weights.
  """
  item_input = jnp.where(swap[:, None] > 0, item_content, item_ids)
  user_item = losses.info_nce(anchors=users, positives=item_input, weights=weights,
                              temperature=temperature)
  rep_emb = losses.info_nce(anchors=item_ids, positives=item_content,
                            weights=item_weights, temperature=temperature)
  norm = lambda x: jnp.sqrt(jnp.sum(x ** 2, -1) + 1e-12)
  reg = (losses.weighted_mean(norm(users), weights)
         + losses.weighted_mean(norm(item_ids), weights)) / 2.0
  return dict(user_item=user_item, rep_emb=rep_emb, norm=reg)


def make(spec: ModelSpec) -> Hooks:
  net = CLCRecNet.for_spec(spec)

  def init(key, hp):
    return net.init_params(key, ONE_ID, ONE_ID)

  def loss(state: State, batch: Batch, run: Run):
    params, hp = state.params, run.hp
    variables = {"params": params}
    users = net.apply(variables, batch.users, method=CLCRecNet.users)
    item_ids = net.apply(variables, batch.pos, method=CLCRecNet.items)
    (item_content,) = per_item(lambda ids: content_embeddings(net, params, run.inputs, ids),
                               spec.n_items, batch.pos)
    swap = jax.random.bernoulli(run.ctx.key, RHO, batch.pos.shape).astype(jnp.float32)
    terms = clcrec_terms(users=users, item_ids=item_ids, item_content=item_content,
                         swap=swap, weights=batch.weights,
                         item_weights=first_occurrence(batch.pos, batch.weights),
                         temperature=hp["temperature"])
    total = (hp["aux_weight"] * terms["rep_emb"]
             + (1.0 - hp["aux_weight"]) * terms["user_item"] + hp["reg"] * terms["norm"])
    return total, terms

  def embed(state: State, run: Run):
    """Unit-norm users and items: ID embeddings for warm items, content for new ones."""
    variables = {"params": state.params}
    content = content_embeddings(net, state.params, run.inputs, jnp.arange(spec.n_items))
    ids = net.apply(variables, method=CLCRecNet.all_items)
    items = jnp.where(run.inputs.warm_items(spec.n_items)[:, None], ids, content)
    return (l2_normalise_rows(net.apply(variables, method=CLCRecNet.all_users)),
            l2_normalise_rows(items))
  return Hooks(init=init, loss=loss, embed=embed)


# The paper's sensitivity study varies λ (lr_lambda) and τ (temp_value); our grid
# spans the README's values (0.5, 2.0) [D].
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "aux_weight": (0.1, 0.5, 0.9),
                "temperature": (0.2, 1.0, 2.0)}
CLCREC = Model(name="clcrec", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
