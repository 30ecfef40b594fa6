"""CCFCRec: Contrastive Collaborative Filtering for Cold-Start Item
Recommendation (Zhou et al., WWW 2023).

Read from the authors' code, github.com/zzhin/CCFCRec at commit
73a2bbf5998c05ff21d3ae59c72066169cc1acc9 ("Amazon VG/model.py", the `train`
loop and `CCFCRec.forward`; "Amazon VG/support.py", `RatingDataset.__getitem__`,
the sampler; "Amazon VG/myargs.py", the defaults), with ColdRec's port as a
second reading (github.com/YuanchenBei/ColdRec at 18efd24ec79b0ac2b5b7b10ebc8703274fc117d1,
model/CCFCRec.py and util/utils.py `next_batch_pairwise_CCFCRec`).

Two encoders of an item v: the collaborative one is a free embedding e_v
(trained with the users' e_u), the content one
  q_v = W2 · LeakyReLU(W1 · [P_1 x_v1, …, P_M x_vM] + b1) + b2
(one projection P_m per modality, as the code's image projection). For each
training pair (u, v) of the batch:
  * co-occurrence contrast: `n_pos` items j drawn with replacement from u's
    training items (items that co-occur with v in u's history, v included,
    as the code samples them) are positives for q_v, each against `n_neg`
    items u never interacted with:
      -log e^{cos(q_v, e_j)/τ} / (e^{cos(q_v, e_j)/τ} + Σ_n e^{cos(q_v, e_n)/τ}),
    summed over the batch and averaged over the positives;
  * self contrast: q_v against its own e_v, with `n_self_neg` such negatives;
  * ranking: a negative *user* k who never interacted with v, BPR on
    e_u·e_v − e_k·e_v and on e_u·q_v − e_k·q_v (both summed);
  loss = λ (contrast + self) + (1 − λ)(rank_cf + rank_content),
minimised with Adam plus a coupled L2 `weight_decay` on every parameter (the
code's `torch.optim.Adam(weight_decay=0.1)`). At test warm items use e_v, new
items q_v (the code ranks with q_v only; new items are all it ranks).

The samplers read a per-run index built in `prepare` from the training graph
(on device, no host loop): every user's training items sorted (a
`jaxrec.positives.PositiveIndex`, as the engine's sampler uses), so a user's positives are a
uniform draw from its row and "u never interacted with i" is its binary search.

Deviations ([D]):
  [D] Content: the code's attribute attention (a learned embedding per
      categorical attribute, masked softmax over the item's attributes) has no
      counterpart for dense multimodal features; every modality gets the
      code's image treatment, a bias-free linear projection, and the
      projections are concatenated (ColdRec instead generalises the attention
      to continuous content dimensions). Projection and hidden widths are
      `embed_dim` (the code's attr_present_dim = implicit_dim =
      cat_implicit_dim, all equal; ColdRec sets all three to its embedding size).
  [D] Negative items come from the training items (the code's `item_set`, the
      training set's items), drawn uniformly; a draw that is one of u's own
      items is dropped from the denominator instead of redrawn (the code draws
      from the complement directly), so a row has at most `n_neg` negatives.
  [D] The negative user is the first of `NEG_USER_DRAWS` uniform draws over
      users with training interactions who never interacted with v (ColdRec
      redraws until one is found; the Amazon code reads one precomputed per
      row); a row with none is left out of the ranking terms.
  [D] ID tables start from N(0, 0.1²) as the repo's other models (the code:
      Xavier normal); the content layers' kernels are Xavier normal as the
      code's (torch's untruncated `xavier_normal_`), their biases PyTorch's
      nn.Linear default.
  [D] Sums run over the engine's batch (the code's batch size is 1024).
  [D] lr 1e-3, ColdRec's (its CCFCRec trains at its global --lr 1e-3, without
      weight decay), not the Amazon code's 1e-4: at 1e-4 one TikTok fm run is
      at random level after 30 epochs (test Recall@20 0.014, selected at epoch
      10), at 1e-3 it reaches 0.034; on the test's synthetic data 0.22 against
      0.54. The weight decay stays the authors' 0.1.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                adam_at, learning_rate, weight)
from jaxrec.models.layers import (ONE_ID, UsersAndContent, dense, id_table, l2_normalise_rows,
                                  per_item)
from jaxrec.positives import PositiveIndex

SOURCE = "authors' code, Amazon VG/myargs.py"
N_POS = HParam("n_pos", 5, SOURCE + " (positive_number)", kind=int, per_run=False, low=1,
               help="co-occurring positives per training pair")
N_NEG = HParam("n_neg", 40, SOURCE + " (negative_number)", kind=int, per_run=False, low=1,
               help="negative items per co-occurring positive")
N_SELF_NEG = HParam("n_self_neg", 40, SOURCE + " (self negative_number)", kind=int,
                    per_run=False, low=1, help="negative items of the self contrast")
HPARAMS = (
    learning_rate(1e-3, "ColdRec main.py --lr, at which its CCFCRec runs [D]"),
    weight("weight_decay", 0.1, "authors' code, Amazon VG/model.py (Adam weight_decay)",
           "coupled L2 on every parameter, added to the gradient before Adam"),
    HParam("tau", 0.1, SOURCE, low=0.0, low_open=True, help="contrast temperature τ"),
    HParam("lambda1", 0.6, SOURCE, low=0.0, high=1.0, off=0.0,
           help="λ: the contrast terms' share against the ranking terms'"),
    N_POS, N_NEG, N_SELF_NEG)
NEG_USER_DRAWS = 4


class CCFCRecNet(UsersAndContent):
  """User and item ID tables and the content encoder q(x)."""
  n_items: int = 0

  def setup(self):
    self.user_table = id_table(self.n_users, self.embed_dim)
    self.item_table = id_table(self.n_items, self.embed_dim)
    self.projections = [dense(self.embed_dim, d, "xavier_normal", bias=False)
                        for d in self.feature_dims]
    fan_in = self.embed_dim * len(self.feature_dims)
    self.gen1 = dense(self.embed_dim, fan_in, "xavier_normal")
    self.gen2 = dense(self.embed_dim, self.embed_dim, "xavier_normal")

  def __call__(self, users, items, item_feats):
    return self.users(users), self.item_table(items), self.content(item_feats)

  def content(self, item_feats):
    """(N, D) q from per-modality (N, d_m) features."""
    projected = jnp.concatenate([p(x) for p, x in zip(self.projections, item_feats)], -1)
    return self.gen2(nn.leaky_relu(self.gen1(projected)))


def user_histories(inputs: ModelInputs, spec: ModelSpec) -> dict:
  """The training interactions as each user's sorted items (on device).

  Returns {"history": a `PositiveIndex` (the engine sampler's CSR, binary
  search), "degree": (U,), "warm": (I,) training items first, "n_warm",
  "active": (U,) users with training items first, "n_active"}.
  """
  g = inputs.graph
  n_edges = g.src.shape[0] // 2          # the graph holds each pair in both directions
  is_user_edge = g.src < g.n_users
  users = jnp.where(is_user_edge, g.src, g.n_users)
  items = jnp.where(is_user_edge, g.dst - g.n_users, 0)
  order = jnp.lexsort((items, users))[:n_edges]
  degree = jax.ops.segment_sum(jnp.ones(n_edges, jnp.int32), users[order],
                               num_segments=spec.n_users)
  history = PositiveIndex(
      indptr=jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(degree)]),
      indices=items[order], search_steps=int(math.ceil(math.log2(n_edges + 1))) + 1)
  warm = inputs.warm_items(spec.n_items)
  return {"history": history, "degree": degree,
          "warm": jnp.argsort(~warm, stable=True), "n_warm": jnp.sum(warm),
          "active": jnp.argsort(degree == 0, stable=True), "n_active": jnp.sum(degree > 0)}


def interacted(index: dict, users: jax.Array, items: jax.Array) -> jax.Array:
  """bool, the shape of `users`/`items`: `items` is in `users`' training items."""
  shape = users.shape
  return index["history"].contains(users.ravel(), items.ravel()).reshape(shape)


def _uniform_pick(key, pool: jax.Array, count: jax.Array, shape) -> jax.Array:
  """`shape` draws, uniform with replacement, from the first `count` of `pool`."""
  slot = jnp.floor(jax.random.uniform(key, shape) * count).astype(jnp.int32)
  return pool[jnp.minimum(slot, jnp.maximum(count - 1, 0))]


def contrast_samples(index: dict, users: jax.Array, items: jax.Array, key,
                     spec: ModelSpec) -> dict:
  """The sampler of the authors' `RatingDataset.__getitem__`, for (B,) pairs.

  Returns {"pos": (B, P) co-occurring items (drawn from each user's training
  items), "neg": (B, P, N) and "self_neg": (B, S) training items the user never
  interacted with, with 0/1 masks "neg_ok", "self_neg_ok" (0 where a draw hit
  one of the user's items), "neg_user": (B,) a user who never interacted with
  the item, "neg_user_ok": (B,) 0 where none was found}.
  """
  n_pos, n_neg, n_self = spec.option(N_POS), spec.option(N_NEG), spec.option(N_SELF_NEG)
  k_pos, k_neg, k_self, k_user = jax.random.split(key, 4)
  b = users.shape[0]
  slot = jnp.floor(jax.random.uniform(k_pos, (b, n_pos)) * index["degree"][users][:, None])
  history = index["history"]
  pos = history.indices[history.indptr[users][:, None] + slot.astype(jnp.int32)]

  def negatives(k, shape):
    drawn = _uniform_pick(k, index["warm"], index["n_warm"], shape)
    row_users = jnp.broadcast_to(users.reshape((b,) + (1,) * (len(shape) - 1)), shape)
    return drawn, (~interacted(index, row_users, drawn)).astype(jnp.float32)
  neg, neg_ok = negatives(k_neg, (b, n_pos, n_neg))
  self_neg, self_neg_ok = negatives(k_self, (b, n_self))
  candidates = _uniform_pick(k_user, index["active"], index["n_active"], (b, NEG_USER_DRAWS))
  free = ~interacted(index, candidates, jnp.broadcast_to(items[:, None], candidates.shape))
  first = jnp.argmax(free, axis=1)
  return {"pos": pos, "neg": neg, "neg_ok": neg_ok, "self_neg": self_neg,
          "self_neg_ok": self_neg_ok,
          "neg_user": jnp.take_along_axis(candidates, first[:, None], 1)[:, 0],
          "neg_user_ok": jnp.any(free, axis=1).astype(jnp.float32)}


def _contrast(pos_logit: jax.Array, neg_logits: jax.Array, neg_ok: jax.Array) -> jax.Array:
  """-log e^pos / (e^pos + Σ_ok e^neg), elementwise over the leading axes."""
  logits = jnp.concatenate([pos_logit[..., None], neg_logits], -1)
  keep = jnp.concatenate([jnp.ones_like(pos_logit)[..., None], neg_ok], -1)
  return jax.nn.logsumexp(jnp.where(keep > 0, logits, -jnp.inf), axis=-1) - pos_logit


def ccfcrec_terms(params, batch: Batch, inputs: ModelInputs, hp, key,
                  spec: ModelSpec) -> dict:
  """The four summed terms of one batch (positive pairs (users, pos) only)."""
  net, variables = CCFCRecNet.for_spec(spec), {"params": params}
  s = contrast_samples(inputs.prepared, batch.users, batch.pos, key, spec)
  item_ids = params["item_table"]["embedding"]
  user_ids = params["user_table"]["embedding"]
  (q,) = per_item(lambda ids: net.apply(variables, inputs.item_features(ids),
                                        method=CCFCRecNet.content), spec.n_items, batch.pos)
  # cos(q_v, e_i)/τ against every item once, then the sampled columns.
  sims = l2_normalise_rows(q) @ l2_normalise_rows(item_ids).T / hp["tau"]    # (B, I)
  pick = lambda cols: jnp.take_along_axis(sims, cols.reshape(cols.shape[0], -1), 1
                                          ).reshape(cols.shape)
  co = _contrast(pick(s["pos"]), pick(s["neg"]), s["neg_ok"])
  own = _contrast(pick(batch.pos[:, None])[:, 0], pick(s["self_neg"]), s["self_neg_ok"])
  w = batch.weights
  u, k, e = user_ids[batch.users], user_ids[s["neg_user"]], item_ids[batch.pos]
  rank_w = w * s["neg_user_ok"]
  rank = lambda v: jnp.sum(rank_w * jax.nn.softplus(-jnp.sum((u - k) * v, -1)))
  return {"contrast": jnp.sum(w * jnp.mean(co, -1)), "self_contrast": jnp.sum(w * own),
          "rank_cf": rank(e), "rank_content": rank(q)}


def content_embeddings(params, inputs: ModelInputs, items, spec: ModelSpec) -> jax.Array:
  """(N, D) q of `items` (missing modalities filled)."""
  return CCFCRecNet.for_spec(spec).apply({"params": params}, inputs.item_features(items),
                                         method=CCFCRecNet.content)


def optimizer(hp, ctx) -> optax.GradientTransformation:
  """torch's Adam(lr, weight_decay): the L2 term joins the gradient before Adam
  (both rates held in the optimiser's state, as `base.adam_at`; `ctx` unused)."""
  decay = optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=hp["weight_decay"])
  return optax.chain(decay, adam_at(hp["lr"]))


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return CCFCRecNet.for_spec(spec).init_params(key, ONE_ID, ONE_ID)

  def prepare(inputs: ModelInputs, hp):
    return user_histories(inputs, spec)

  def loss(state: State, batch: Batch, run: Run):
    hp = run.hp
    t = ccfcrec_terms(state.params, batch, run.inputs, hp, run.ctx.key, spec)
    lam = hp["lambda1"]
    total = (lam * (t["contrast"] + t["self_contrast"])
             + (1.0 - lam) * (t["rank_cf"] + t["rank_content"]))
    return total, t

  def embed(state: State, run: Run):
    """Users e_u; warm items e_v, new items q_v (raw dot-product scores, as the code)."""
    params, inputs = state.params, run.inputs
    q = content_embeddings(params, inputs, jnp.arange(spec.n_items), spec)
    items = jnp.where(inputs.warm_items(spec.n_items)[:, None],
                      params["item_table"]["embedding"], q)
    return params["user_table"]["embedding"], items
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare, optimizer=optimizer)


# λ of the authors' two data sets (myargs.py: Amazon VG 0.6, ML-20M 0.5) and the
# rates of the Amazon code and ColdRec.
SEARCH_SPACE = {"lambda1": (0.5, 0.6), "lr": (1e-4, 1e-3)}
CCFCREC = Model(name="ccfcrec", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
