"""VBPR (He & McAuley, AAAI 2016): matrix factorisation plus a visual term, BPR.

  x̂_ui = β_i + <γ_u, γ_i> + <θ_u, E f_i> + <β', f_i>

(the global offset α and the user bias β_u cancel in every BPR difference, so the
paper drops them too). `f_i` is the concatenation of the item's M modality
features with missing rows filled (`ModelInputs.item_features`), so a run with a
missing modality sees its fill vector there. The content part `E f_i` is shared
through `E`, so it carries information between items with similar content; the
ID part `γ_i` lets warm items move away from what their content says.

[D] "Visual" features here are all modalities concatenated (the paper has one
    CNN feature); each block is L2-normalised per modality by the data layer.
[D] The embedding width is split K = ceil(D/2) ID factors and K' = floor(D/2)
    content factors, so VBPR has the same scoring width D as MF-BPR at equal
    `embed_dim` (the paper compares at equal total dimension with K = K').
[D] Optimiser and scale: the engine's Adam with the batch-mean BPR risk; the
    paper's SGD learning rate and λ_Θ (for a summed objective) do not transfer,
    so lr and reg default to MF-BPR's (Adam) values; see HPARAMS.
[D] Init: γ, θ and E from N(0, 0.1²) as MF-BPR (`mf_params`), biases β_i, β' at 0
    (the paper does not state its initialisation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import mf
from jaxrec.models.base import Batch, Hooks, Model, ModelInputs, ModelSpec, Run, State
from jaxrec.models.mf import INIT_STD, mf_params
from jaxrec.models.layers import per_item

# lr, reg: MF-BPR's Adam defaults ([D] above; the paper used SGD). The paper
# regularises γ, θ and β_i with one λ_Θ and sets λ_E = 0: E (and, in the authors'
# follow-up TVBPR, WWW 2016, also β') are left unregularised because they are a
# small, fixed number of parameters shared by all items. We do the same.
HPARAMS = mf.HPARAMS


def factor_split(embed_dim: int) -> tuple[int, int]:
  """(K, K'): ID and content factors, K + K' = embed_dim, K = K' when even."""
  content = embed_dim // 2
  return embed_dim - content, content


def init_params(key, spec: ModelSpec):
  """{"mf": γ (U, K)/(I, K), "theta": (U, K'), "E": (F, K'), "item_bias": (I,),
  "visual_bias": β' (F,)} with F = Σ_m d_m."""
  k_id, k_theta, k_e = jax.random.split(key, 3)
  n_id, n_content = factor_split(spec.embed_dim)
  n_feat = sum(spec.feature_dims)
  return {"mf": mf_params(k_id, spec.n_users, spec.n_items, n_id),
          "theta": INIT_STD * jax.random.normal(k_theta, (spec.n_users, n_content)),
          "E": INIT_STD * jax.random.normal(k_e, (n_feat, n_content)),
          "item_bias": jnp.zeros((spec.n_items,)),
          "visual_bias": jnp.zeros((n_feat,))}


def item_parts(params, inputs: ModelInputs, items: jax.Array):
  """The three item-side pieces of the score for `items` (N,).

  Returns:
    gamma (N, K) ID factors, visual (N, K') `E f_i`, bias (N,) `β_i + β'·f_i`.
  """
  f = inputs.item_content(items)
  return (params["mf"]["items"][items], f @ params["E"],
          params["item_bias"][items] + f @ params["visual_bias"])


def vbpr_terms(params, batch: Batch, inputs: ModelInputs) -> dict:
  """BPR risk of x̂_ui − x̂_uj and the batch L2 of the Θ rows it touches."""
  gamma_u, theta_u = params["mf"]["users"][batch.users], params["theta"][batch.users]
  n_items = params["item_bias"].shape[0]
  (g_pos, v_pos, b_pos), (g_neg, v_neg, b_neg) = per_item(
      lambda ids: item_parts(params, inputs, ids), n_items, batch.pos, batch.neg)
  diff = (jnp.sum(gamma_u * (g_pos - g_neg), -1) + jnp.sum(theta_u * (v_pos - v_neg), -1)
          + (b_pos - b_neg))
  bpr = losses.bpr_risk(score_diff=diff, weights=batch.weights)
  # λ_Θ on γ_u, θ_u, γ_i, γ_j, β_i, β_j (the per-triple SGD regulariser of the
  # paper as a batch mean, like MF-BPR's); E and β' unregularised (λ_E = 0).
  item_bias = params["item_bias"]
  l2 = losses.weighted_mean(
      jnp.sum(gamma_u ** 2 + theta_u ** 2 + g_pos ** 2 + g_neg ** 2, -1)
      + item_bias[batch.pos] ** 2 + item_bias[batch.neg] ** 2, batch.weights)
  return {"bpr": bpr, "l2": l2}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def loss(state: State, batch: Batch, run: Run):
    terms = vbpr_terms(state.params, batch, run.inputs)
    return terms["bpr"] + run.hp["reg"] * terms["l2"], terms

  def embed(state: State, run: Run):
    """Users `[γ_u, θ_u, 1]` (U, D+1), items `[γ_i, E f_i, β_i + β'·f_i]` (I, D+1).

    Their inner product is exactly x̂_ui, so the shared evaluator ranks by it.
    """
    params = state.params
    gamma, visual, bias = item_parts(params, run.inputs, jnp.arange(spec.n_items))
    users = jnp.concatenate([params["mf"]["users"], params["theta"],
                             jnp.ones((spec.n_users, 1))], axis=-1)
    return users, jnp.concatenate([gamma, visual, bias[:, None]], axis=-1)
  return Hooks(init=init, loss=loss, embed=embed)


# MMRec's grid for VBPR (src/configs/model/VBPR.yaml, commit a75d89a): reg_weight.
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "reg": (2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)}
VBPR = Model(name="vbpr", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
