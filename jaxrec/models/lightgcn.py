"""LightGCN (He et al., SIGIR 2020): free ID embeddings smoothed over the graph, BPR.

  E^(k+1) = Â E^(k),   e = (1 / (K + 1)) Σ_{k=0..K} E^(k),   x̂_ui = <e_u, e_i>

over the shared normalised training graph `Â = D^-1/2 A D^-1/2` (no self-loops,
no feature transforms, no non-linearities: the paper's point). The only
parameters are the layer-0 embeddings E^(0) (`mf_params`), and only they are
L2-regularised. The whole graph is propagated at every step, as in the
authors' code, so a batch's gradient reaches every neighbour's E^(0).

No content: under the new-item protocol a new item has no edges, so its final
embedding is E^(0)_i / (K + 1), a random vector (like MF-BPR's).

[D] The L2 term is the authors' code's `½ (‖e_u⁰‖² + ‖e_i⁰‖² + ‖e_j⁰‖²)`
    averaged over the batch (the paper writes λ‖E^(0)‖² for the batch); `reg` is
    the λ of that code, so its 1e-4 means what it means there.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models.base import (Batch, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.mf import mf_params, mf_terms

# Paper, section 4.1.2: K = 3 layers (α_k = 1 / (K + 1)), Adam lr 1e-3, L2
# coefficient 1e-4 (optimal in most cases of their search), N(0, 0.1²) init as in
# the authors' code (= `mf_params`); embedding size 64 and batch 2048 are
# `RunConfig` defaults already.
N_LAYERS = 3
HPARAMS = (learning_rate(1e-3, "LightGCN paper, 4.1.2"),
           weight("reg", 1e-4, "LightGCN paper, 4.1.2", "L2 on the batch's layer-0 rows"))


def propagate(params, inputs: ModelInputs, spec: ModelSpec):
  """Final (layer-mean) embeddings: users (U, D), items (I, D)."""
  h0 = jnp.concatenate([params["mf"]["users"], params["mf"]["items"]], axis=0)
  h = inputs.graph.layer_mean(h0, N_LAYERS)
  return h[:spec.n_users], h[spec.n_users:]


def lightgcn_terms(params, batch: Batch, inputs: ModelInputs, spec: ModelSpec) -> dict:
  """BPR risk on the propagated embeddings; L2 on the batch's layer-0 rows."""
  users, items = propagate(params, inputs, spec)
  u, p, n = users[batch.users], items[batch.pos], items[batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  # mf_terms' l2 is the batch mean of ‖e_u⁰‖² + ‖e_i⁰‖² + ‖e_j⁰‖² (its BPR on the
  # raw embeddings is unused and removed by XLA); ½ as in the authors' code.
  l2 = 0.5 * mf_terms(params["mf"], batch)["l2"]
  return {"bpr": bpr, "l2": l2}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return {"mf": mf_params(key, spec.n_users, spec.n_items, spec.embed_dim)}

  def loss(state: State, batch: Batch, run: Run):
    terms = lightgcn_terms(state.params, batch, run.inputs, spec)
    return terms["bpr"] + run.hp["reg"] * terms["l2"], terms

  def embed(state: State, run: Run):
    return propagate(state.params, run.inputs, spec)
  return Hooks(init=init, loss=loss, embed=embed)


# MMRec's grid for LightGCN (src/configs/model/LightGCNTorch.yaml, commit f29d2de):
# reg_weight; its n_layers {1..4} is static here (N_LAYERS = 3, the paper's) [D].
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "reg": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}
LIGHTGCN = Model(name="lightgcn", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
