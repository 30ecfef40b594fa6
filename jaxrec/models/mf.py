"""MF-BPR (Rendle et al., UAI 2009): free user and item embeddings, BPR.

The warm baseline, and the collaborative model that DropoutNet, Heater and GAR
pretrain as their first stage (`mf_params`, `mf_terms` are the shared pieces).
It has no content, so under the new-item protocol new items keep their random
initial embeddings: that is the point of the comparison.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models.base import Batch, Hooks, Model, ModelSpec, Run, State, learning_rate, weight

# MILK's reference code (Adam 1e-3, L2 1e-4 on the batch's rows), used for
# every baseline of its comparison.
HPARAMS = (learning_rate(1e-3, "MILK reference code"),
           weight("reg", 1e-4, "MILK reference code", "L2 weight on the batch's rows"))
INIT_STD = 0.1


def mf_params(key, n_users: int, n_items: int, dim: int) -> dict:
  """{"users": (U, D), "items": (I, D)} drawn from N(0, 0.1²)."""
  k_users, k_items = jax.random.split(key)
  return {"users": INIT_STD * jax.random.normal(k_users, (n_users, dim)),
          "items": INIT_STD * jax.random.normal(k_items, (n_items, dim))}


def mf_terms(mf: dict, batch: Batch) -> dict:
  """BPR risk and the batch L2 (mean over the batch of the three squared norms)."""
  u, p, n = mf["users"][batch.users], mf["items"][batch.pos], mf["items"][batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  l2 = losses.weighted_mean(jnp.sum(u ** 2 + p ** 2 + n ** 2, -1), batch.weights)
  return {"bpr": bpr, "l2": l2}


def mf_loss(mf: dict, batch: Batch, hp) -> tuple[jax.Array, dict]:
  """MF-BPR's total `bpr + reg·l2` on the tables `mf` and its terms."""
  terms = mf_terms(mf, batch)
  return terms["bpr"] + hp["reg"] * terms["l2"], terms


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return {"mf": mf_params(key, spec.n_users, spec.n_items, spec.embed_dim)}

  def loss(state: State, batch: Batch, run: Run):
    return mf_loss(state.params["mf"], batch, run.hp)

  def embed(state: State, run: Run):
    return state.params["mf"]["users"], state.params["mf"]["items"]
  return Hooks(init=init, loss=loss, embed=embed)


# MMRec's grid for BPR (src/configs/model/BPR.yaml, commit 250d305): reg_weight.
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "reg": (2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)}
MF_BPR = Model(name="mf", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
