"""LGMRec (Guo et al., AAAI 2024): local graph embeddings (collaborative and
per-modality) and global hypergraph embeddings with learnable hyperedges.

Read from the authors' code (our own implementation, none of theirs copied):
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/lgmrec.py,
    src/configs/model/LGMRec.yaml, src/configs/overall.yaml, src/common/trainer.py;
  georgeguo-cn/LGMRec @ 457f39c546245def15df664d4e416697296ebd61, models/lgmrec.py
    (the same model as MMRec's) and configs/model/LGMREC.yaml (the full grids,
    commented out there).

The model (E = [E_u; E_i] free id tables, x_m the run's filled, frozen features,
Â the normalised training graph, A its 0/1 user-item block, d_u user degrees):
  c     = mean(E, Â E, …, Â^L_ui E)                          collaborative (LightGCN)
  f_m   = x_m T_m,  g_m = Â^L_mm [A f_m / d_u; f_m]           modality local graph
  local = c + Σ_m norm(g_m)
  Z_m   = x_m W_m (I, H),  Z^u_m = A Z_m (U, H)               hyperedge logits
  H_m   = gumbel_softmax(Z_m, τ),  H^u_m = gumbel_softmax(Z^u_m, τ)   (rows over H)
  i_m   = (H_m H_mᵀ)^L_h c_i,  u_m = H^u_m H_mᵀ (H_m H_mᵀ)^{L_h−1} c_i   (hypergraph)
          with H_m, H^u_m under dropout (keep_rate) in training
  final = local + α · norm(Σ_m [u_m; i_m])
  loss  = BPR(final) + cl_weight · HCL + reg_weight · (‖u‖ + ‖i⁺‖ + ‖i⁻‖) / B
  HCL   = Σ_{a<b} ssl(u_a[batch users], u_b[batch users], u_b)
                 + ssl(i_a[batch pos], i_b[batch pos], i_b),
  ssl(e1, e2, all) = −Σ_rows log(exp(cos(e1, e2)/τ) / Σ_j exp(cos(e1, all_j)/τ))

τ = 0.2 in both the Gumbel-softmax and the HCL (the authors' self.tau). The
Gumbel noise and the dropout are drawn anew at every step (the step key), as
the authors' `forward` in training. The norms of the reg term are Frobenius
norms of the batch matrices (torch.norm, not squared).

Missing modalities: f_m and the hyperedge logits read the run's filled
features (`inputs.item_features`); nothing of them is a parameter.

[D] Evaluation uses the noise-free assignments softmax(Z/τ) and no dropout
    (the authors' `full_sort_predict` calls `forward` in eval mode: dropout off,
    but `F.gumbel_softmax` still draws fresh noise, so their scores are random).
[D] M modalities: the authors' code has image and text (one HCL pair, which the
    sum over pairs a < b is for M = 2); with one modality there is no HCL term
    (their code falls back to the collaborative embedding alone; we keep the
    modality local graph and the one hypergraph view).
[D] feat_embed_dim is the run's embed_dim (both 64 in the yaml; the sum c + g_m
    needs them equal).
[D] Batch means and the reg term's B count only the batch's valid slots; the
    HCL sums over valid slots, as the authors' `.sum()`.
[D] A user's modality feature divides by d_u + 1e-7 with d_u from the training
    graph (the authors': the same, from the interaction matrix).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.layers import dropout, l2_normalise_rows, xavier_table

YAML = "MMRec src/configs/model/LGMRec.yaml"
N_UI_LAYERS = HParam("n_ui_layers", 2, YAML, kind=int, per_run=False, low=0,
                     help="LightGCN layers of the collaborative embedding")
N_MM_LAYERS = HParam("n_mm_layers", 2, YAML, kind=int, per_run=False, low=0,
                     help="propagations of the modality local graph embedding")
N_HYPER_LAYER = HParam("n_hyper_layer", 1, YAML, kind=int, per_run=False, low=1,
                       help="hypergraph convolution layers")
HYPER_NUM = HParam("hyper_num", 4, YAML, kind=int, per_run=False, low=1,
                   help="learnable hyperedges per modality")
HPARAMS = (
    learning_rate(1e-3, "MMRec src/configs/overall.yaml (no scheduler: [1.0, 50])"),
    HParam("keep_rate", 0.5, YAML, low=0.0, high=1.0, low_open=True,
           help="keep rate of the dropout on the hyperedge assignments"),
    weight("alpha", 0.3, YAML, "weight of the global hypergraph embedding", off=0.0),
    weight("cl_weight", 1e-4, YAML, "weight of the hypergraph contrastive loss", off=0.0),
    weight("reg_weight", 1e-6, YAML, "weight of the norms of the batch's embeddings"),
    N_UI_LAYERS, N_MM_LAYERS, N_HYPER_LAYER, HYPER_NUM)

TAU = 0.2                      # the authors' self.tau (Gumbel-softmax and HCL)
DEGREE_EPS = 1e-7              # 1 / (num_inters + 1e-7)


def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_t, k_h = jax.random.split(key, 4)
  n_mod, hyper = spec.n_modalities, spec.option(HYPER_NUM)
  return {"users": xavier_table(k_u, spec.n_users, spec.embed_dim),
          "items": xavier_table(k_i, spec.n_items, spec.embed_dim),
          "trs": [xavier_table(k, d, spec.embed_dim) for k, d in
                  zip(jax.random.split(k_t, n_mod), spec.feature_dims)],
          "hyper": [xavier_table(k, d, hyper) for k, d in
                    zip(jax.random.split(k_h, n_mod), spec.feature_dims)]}


def collaborative(params, inputs: ModelInputs, spec: ModelSpec) -> jax.Array:
  """(U + I, D) the LightGCN layer mean of the id tables."""
  ego = jnp.concatenate([params["users"], params["items"]], axis=0)
  return inputs.graph.layer_mean(ego, spec.option(N_UI_LAYERS))


def modality_local(params, inputs: ModelInputs, spec: ModelSpec) -> list[jax.Array]:
  """Per modality (U + I, D) g_m: features projected, users as their items' mean,
  propagated n_mm_layers times over Â (the last layer, as `mge`)."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  graph = inputs.graph
  degree = graph.to_users(jnp.ones((spec.n_items, 1)), normalised=False)
  out = []
  for x, trs in zip(feats, params["trs"]):
    f = x @ trs
    g = jnp.concatenate([graph.to_users(f, normalised=False) / (degree + DEGREE_EPS), f], 0)
    for _ in range(spec.option(N_MM_LAYERS)):
      g = graph.propagate(g)
    out.append(g)
  return out


def assignments(params, inputs: ModelInputs, spec: ModelSpec, key=None):
  """Per modality (items (I, H), users (U, H)): each row a softmax over the
  hyperedges, with Gumbel noise from `key` (training), else noise-free."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  out = []
  for m, (x, w) in enumerate(zip(feats, params["hyper"])):
    item_logits = x @ w
    user_logits = inputs.graph.to_users(item_logits, normalised=False)
    pair = []
    for j, logits in enumerate((item_logits, user_logits)):
      if key is not None:
        logits = logits + jax.random.gumbel(jax.random.fold_in(key, 2 * m + j), logits.shape)
      pair.append(jax.nn.softmax(logits / TAU, axis=-1))
    out.append(tuple(pair))
  return out


def hypergraph_views(params, inputs: ModelInputs, hp, spec: ModelSpec, item_ids: jax.Array,
                     key=None) -> list[tuple[jax.Array, jax.Array]]:
  """Per modality (u_m (U, D), i_m (I, D)): `item_ids` (the collaborative item
  embeddings) through the modality's hypergraph (dropout with `key`)."""
  k_gumbel, k_drop = (None, None) if key is None else jax.random.split(key)
  views = []
  for m, (h_items, h_users) in enumerate(assignments(params, inputs, spec, k_gumbel)):
    if key is not None:
      rate = 1.0 - hp["keep_rate"]
      h_items = dropout(h_items, rate, jax.random.fold_in(k_drop, 2 * m))
      h_users = dropout(h_users, rate, jax.random.fold_in(k_drop, 2 * m + 1))
    items = item_ids
    for _ in range(spec.option(N_HYPER_LAYER)):
      latent = h_items.T @ items                     # (H, D) the hyperedges
      items = h_items @ latent
      users = h_users @ latent
    views.append((users, items))
  return views


def forward(params, inputs: ModelInputs, hp, spec: ModelSpec, key=None):
  """(final (U + I, D), hypergraph views) with noise and dropout from `key`."""
  c = collaborative(params, inputs, spec)
  local = c + sum(l2_normalise_rows(g) for g in modality_local(params, inputs, spec))
  views = hypergraph_views(params, inputs, hp, spec, c[spec.n_users:], key)
  glob = sum(jnp.concatenate([u, i], axis=0) for u, i in views)
  return local + hp["alpha"] * l2_normalise_rows(glob), views


def ssl_triple(anchors: jax.Array, positives: jax.Array, candidates: jax.Array,
               weights: jax.Array) -> jax.Array:
  """Σ_b w_b · −log softmax over `candidates` of anchor b's positive (cosines / τ)."""
  a, p, c = (l2_normalise_rows(x) for x in (anchors, positives, candidates))
  pos = jnp.sum(a * p, -1) / TAU
  total = jax.nn.logsumexp(a @ c.T / TAU, axis=-1)
  return jnp.sum(weights * (total - pos))


def hypergraph_contrastive(views, batch: Batch) -> jax.Array:
  """HCL between each pair of modality hypergraph views (users and positives)."""
  out = jnp.float32(0.0)
  for a in range(len(views)):
    for b in range(a + 1, len(views)):
      (u_a, i_a), (u_b, i_b) = views[a], views[b]
      out = out + ssl_triple(u_a[batch.users], u_b[batch.users], u_b, batch.weights)
      out = out + ssl_triple(i_a[batch.pos], i_b[batch.pos], i_b, batch.weights)
  return out


def lgmrec_terms(params, batch: Batch, inputs: ModelInputs, hp, key,
                 spec: ModelSpec) -> dict:
  final, views = forward(params, inputs, hp, spec, key)
  n_users = spec.n_users
  u, p, n = final[batch.users], final[n_users + batch.pos], final[n_users + batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  w = batch.weights[:, None]
  norms = sum(jnp.sqrt(jnp.sum(w * e ** 2)) for e in (u, p, n))
  reg = norms / jnp.maximum(jnp.sum(batch.weights), 1.0)
  return {"bpr": bpr, "hcl": hypergraph_contrastive(views, batch), "reg": reg}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def loss(state: State, batch: Batch, run: Run):
    inputs, hp, ctx = run
    terms = lgmrec_terms(state.params, batch, inputs, hp, ctx.key, spec)
    total = terms["bpr"] + hp["cl_weight"] * terms["hcl"] + hp["reg_weight"] * terms["reg"]
    return total, terms

  def embed(state: State, run: Run):
    """Final users and items, noise-free and without dropout [D]."""
    final, _ = forward(state.params, run.inputs, run.hp, spec)
    return final[:spec.n_users], final[spec.n_users:]
  return Hooks(init=init, loss=loss, embed=embed)


# The per-run fields at the values of the three per-dataset best settings in
# MMRec src/configs/model/LGMRec.yaml (baby keep_rate 0.5 / alpha 0.3 — the
# defaults —, sports 0.4 / 0.6, clothing 0.2 / 0.2; cl_weight 1e-4 and
# reg_weight 1e-6 in all three): 9 points. The authors' own LGMREC.yaml
# (georgeguo-cn/LGMRec @ 457f39c5) comments out the whole range they searched
# (keep_rate 0.1…1.0, alpha 0…1, cl/reg weight 0…0.1: ~6,000 points), too many
# for one group; MMRec lists the points chosen from it. n_ui_layers, n_mm_layers,
# n_hyper_layer and hyper_num change shapes and are static here.
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D]. 27 points.
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "keep_rate": (0.2, 0.4, 0.5), "alpha": (0.2, 0.3, 0.6),
                "cl_weight": (1e-4,), "reg_weight": (1e-6,)}
LGMREC = Model(name="lgmrec", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
