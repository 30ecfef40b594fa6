"""BM3 (Zhou et al., WWW 2023), "Bootstrap Latent Representations for
Multi-modal Recommendation": a LightGCN backbone trained without negatives by
predicting dropout-perturbed, stop-gradient target views.

Read from the authors' code (our own implementation, none of theirs copied):
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/bm3.py,
    src/configs/model/BM3.yaml, src/configs/overall.yaml, src/common/loss.py
    (`EmbLoss`), src/common/trainer.py;
  enoche/BM3 @ ef82a333823ae01ac5964039720f697532b40ea3, src/models/bm3.py (the
    same model file), README.md (the best hyper-parameters per data set).

The model (E = [E_u; E_i] Xavier-uniform ID tables, x_m the fine-tuned features):
  ū, ī      = mean(E, ÂE, …, Â^L E),  items ī + E_i         (the online views)
  f_m       = trs_m(x_m)                                   (I, D) modality views
  targets   ũ = drop(sg(ū)), ĩ = drop(sg(ī)), f̃_m = drop(sg(f_m))  (inverted dropout p)
  online    p(·) = W_p · + b_p                              (one predictor, shared)
  loss      = [1 − cos(p(ū)_u, ĩ_i)] + [1 − cos(p(ī)_i, ũ_u)]
              + reg_weight · (‖ū‖_F + ‖ī‖_F) / I
              + cl_weight · Σ_m {[1 − cos(p(f_m)_i, ĩ_i)] + [1 − cos(p(f_m)_i, f̃_m,i)]}
  scores    <p(ū)_u, p(ī)_i>                                (`full_sort_predict`)

with each cosine averaged over the batch's training pairs (u, i). The batch's
negative items are never read (MMRec's `use_neg_sampling: False`): the engine's
sampler still draws them, the loss ignores them. Dropout masks are drawn over
the whole (U, D), (I, D) and per-modality (I, D) tables from the step's key, as
the authors' `F.dropout` on the full tables (a user twice in a batch shares one
mask). The regulariser is `EmbLoss` over the full propagated tables: Frobenius
norms (not squared), divided by the number of items.

Missing modalities: f_m reads the run's filled features (`inputs.item_features`,
fine-tuned by a per-item offset as the authors' `from_pretrained(freeze=False)`).

[D] M modalities: one projection and two alignment terms per modality (the
    authors' image and text).
[D] Features are jaxrec's L2-normalised rows (the authors feed the raw rows).
[D] The graph is the shared `D^-1/2 A D^-1/2` (the authors add 1e-7 to every
    degree; no difference for a node with an edge).
[D] `n_layers` is static (the yaml's grid [1, 2] is over it): its two values are
    two compiled groups; SEARCH_SPACE holds the per-run rest of the grid.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import item_content
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.layers import dropout as inverted_dropout
from jaxrec.models.layers import torch_bias, xavier_normal, xavier_table

YAML = "MMRec src/configs/model/BM3.yaml"
README = "enoche/BM3 README.md, best on Baby"
N_LAYERS = HParam("n_layers", 1, README + " (yaml grid [1, 2])", kind=int, per_run=False,
                  low=0, help="LightGCN layers over the user-item graph")
TRAIN_FEATURES = HParam("train_features", True, "MMRec bm3.py (from_pretrained, "
                        "freeze=False)", kind=bool, per_run=False,
                        help="fine-tune the item features (else frozen)")
HPARAMS = (
    learning_rate(1e-3, "MMRec src/configs/overall.yaml"),
    weight("reg_weight", 0.1, README + " (yaml grid [0.1, 0.01])",
           "weight of the Frobenius norms of the propagated tables"),
    HParam("dropout", 0.5, README + " (yaml grid [0.3, 0.5])", low=0.0, high=1.0,
           high_open=True, help="dropout rate of the target views"),
    weight("cl_weight", 2.0, YAML, "weight of the modality alignment terms", off=0.0),
    N_LAYERS, TRAIN_FEATURES)

# MMRec BM3.yaml hyper_parameters: n_layers (static here, [D]), reg_weight, dropout.
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "reg_weight": (0.1, 0.01), "dropout": (0.3, 0.5)}
COS_EPS = 1e-8     # torch.nn.functional.cosine_similarity's eps


def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_p, k_pb, k_c = jax.random.split(key, 5)
  d = spec.embed_dim
  content = item_content.content_params(k_c, spec, spec.option(TRAIN_FEATURES))
  # The authors' `xavier_normal_` on each `*_trs` weight (bias: PyTorch's default).
  for k, p, d_m in zip(jax.random.split(k_c, spec.n_modalities), content["trs"],
                       spec.feature_dims):
    p["w"] = xavier_normal(jax.random.fold_in(k, 1), d_m, d)
  return {"users": xavier_table(k_u, spec.n_users, d),
          "items": xavier_table(k_i, spec.n_items, d),
          "predictor": {"w": xavier_normal(k_p, d, d), "b": torch_bias(k_pb, d, d)},
          "content": content}


def forward(params, inputs: ModelInputs, spec: ModelSpec) -> dict:
  """The online views over all nodes: users (U, D), items (I, D), per modality (I, D)."""
  ego = jnp.concatenate([params["users"], params["items"]], axis=0)
  out = inputs.graph.layer_mean(ego, spec.option(N_LAYERS))
  modal = item_content.projected(params["content"], inputs, jnp.arange(spec.n_items))
  return {"users": out[:spec.n_users], "items": out[spec.n_users:] + params["items"],
          "modal": modal}


def predict(params, x: jax.Array) -> jax.Array:
  return x @ params["predictor"]["w"] + params["predictor"]["b"]


def cosine(x: jax.Array, y: jax.Array) -> jax.Array:
  """Row-wise cosine similarity, each row's norm clamped at 1e-8."""
  nx = jnp.maximum(jnp.linalg.norm(x, axis=-1), COS_EPS)
  ny = jnp.maximum(jnp.linalg.norm(y, axis=-1), COS_EPS)
  return jnp.sum(x * y, -1) / (nx * ny)


def targets(views: dict, key: jax.Array, rate) -> dict:
  """Stop-gradient target views with inverted dropout over the full tables."""
  leaves, tree = jax.tree.flatten(jax.lax.stop_gradient(views))
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [inverted_dropout(x, rate, k) for x, k in zip(leaves, keys)])


def bm3_terms(params, online: dict, target: dict, batch: Batch, hp, key: jax.Array) -> dict:
  """BM3's loss terms for the batch's training pairs (never its negatives).

  `online` are the views from `forward(params)`; `target` the views the target
  branch perturbs (the same views in training; stop-gradient here).
  """
  tgt = targets(target, key, hp["dropout"])
  users, items, w = batch.users, batch.pos, batch.weights
  one_minus_cos = lambda x, y: 1.0 - losses.weighted_mean(cosine(x, y), w)
  u_pred = predict(params, online["users"][users])
  i_pred = predict(params, online["items"][items])
  i_tgt, u_tgt = tgt["items"][items], tgt["users"][users]
  align = 0.0
  for f, f_tgt in zip(online["modal"], tgt["modal"]):
    f_pred = predict(params, f[items])
    align = align + one_minus_cos(f_pred, i_tgt) + one_minus_cos(f_pred, f_tgt[items])
  reg = (jnp.linalg.norm(online["users"]) + jnp.linalg.norm(online["items"])) \
      / online["items"].shape[0]
  return {"ui": one_minus_cos(u_pred, i_tgt), "iu": one_minus_cos(i_pred, u_tgt),
          "align": align, "reg": reg}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def loss(state: State, batch: Batch, run: Run):
    params, hp = state.params, run.hp
    views = forward(params, run.inputs, spec)
    t = bm3_terms(params, views, views, batch, hp, run.ctx.key)
    total = t["ui"] + t["iu"] + hp["reg_weight"] * t["reg"] + hp["cl_weight"] * t["align"]
    return total, t

  def embed(state: State, run: Run):
    """`full_sort_predict`: the predictor on the propagated users and items."""
    views = forward(state.params, run.inputs, spec)
    return predict(state.params, views["users"]), predict(state.params, views["items"])
  return Hooks(init=init, loss=loss, embed=embed)


BM3 = Model(name="bm3", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
