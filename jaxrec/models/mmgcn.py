"""MMGCN (Wei et al., ACM MM 2019), "Multi-modal Graph Convolution Network for
Personalized Recommendation of Micro-video": one graph convolution network per
modality over the user-item graph, the modalities' node outputs averaged.

Read from the authors' code (our own implementation, none of theirs copied):
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/mmgcn.py,
    src/configs/model/MMGCN.yaml, src/configs/overall.yaml, src/common/trainer.py;
  weiyinwei/MMGCN @ a643673ecdf822e99f9833d1e9b0de960b7c2087, Model_MMGCN.py,
    BaseModel.py, main.py (the same network; MMRec's is its port).

The model, per modality m (nodes = U users then I items, N(n) n's neighbours in
the training graph):
  x⁰     = normalise([P_m; t_m(x_m)])      P_m (U, w_m) the users' preferences in
                                           modality m, t_m = a linear map to
                                           w_m = 256 for the image modality (the
                                           authors' `dim_latent`), identity else
  for l = 1..3:
    h    = lrelu(mean_{j ∈ N(n)} (x^{l-1} W_l)_j)               (aggregation, eq. 1)
    x̂    = lrelu(x^{l-1} L_l + b_l) + E                          (+ ID rows, eq. 5)
    x^l  = lrelu([h, x̂] G_l + c_l)                               (combination)
  r      = (1/M) Σ_m x³_m,   users r[:U], items r[U:]           (U + I, D)
  loss   = BPR(r_u, r_i, r_j) + reg_weight · (mean(E_u² + E_{i,j}²) + mean(P_image²))

E (U + I, D) is one ID table shared by every branch. The aggregation is a mean
over each node's neighbours (PyG `MessagePassing(aggr='mean')`, no self-loops),
computed by segment sums over the shared training edge list (both directions),
never a dense (U + I)² matrix. lrelu has slope 0.01.

What the authors' code does and we follow:
- Three layers, whatever `n_layers` says (its forward is written out three
  times; MMRec's yaml `n_layers: 2` is never read by it).
- Concatenation in the combination: the code passes `concate='False'`, a
  non-empty string, so its `if self.concate` takes the concat branch.
- P_m and E are *not trained*: both are plain tensors (`xavier_normal_(rand(...))
  .to(device)`), not `nn.Parameter`s, so no optimiser sees them; they stay at
  their random draw, and their regulariser is a constant. `train_free_vectors=true`
  trains them (the paper's reading, eq. 1 learns the user preference).
- Initialisation: Xavier-normal W_l, L_l, G_1, E, P_m; PyTorch's Linear default
  for t_m, G_2, G_3 and every bias.

Missing modalities: t_m reads the run's filled features (`inputs.item_features`).

[D] M modalities: the modality named `image_modality` ("image" by default) has
    the 256-wide latent map and the preference regulariser (the authors' `v_gcn`),
    the others use their features as they are (the authors' acoustic and textual
    branches).
[D] Features are jaxrec's L2-normalised rows (the authors feed the raw rows;
    the identity branches are normalised on entry anyway).
[D] Evaluation scores with the current parameters (the authors keep `self.result`
    of the epoch's last training forward, one step before the update).
[D] The BPR has no 1e-10 inside the log (softplus form); the regulariser
    averages over the batch's valid slots.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.graph import Graph
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, modality_option, weight)
from jaxrec.models.layers import l2_normalise_rows, linear, xavier_normal

YAML = "MMRec src/configs/model/MMGCN.yaml"
AUTHORS = "weiyinwei/MMGCN Model_MMGCN.py and MMRec mmgcn.py"
N_LAYERS = 3        # the authors' forward: three layers written out
IMAGE_MODALITY = modality_option("image_modality", "image", AUTHORS + " (v_gcn)",
                                 "the modality with the latent map, the authors' v_gcn")
LATENT_DIM = HParam("latent_dim", 256, AUTHORS + " (dim_latent=256 of v_gcn)", kind=int,
                    per_run=False, low=1, help="width of the image modality's latent map")
TRAIN_FREE_VECTORS = HParam(
    "train_free_vectors", False, AUTHORS + " (preference and id_embedding are no "
    "nn.Parameter, so never trained)", kind=bool, per_run=False,
    help="train the user preferences and the ID table (the paper) or keep them at init")
HPARAMS = (
    learning_rate(1e-3, "MMRec src/configs/overall.yaml (in the yaml's grid)"),
    weight("reg_weight", 1e-5, "weiyinwei/MMGCN main.py (--weight_decay 1e-5, passed as "
           "reg_weight; in the yaml's grid)", "weight of the ID and preference regulariser"),
    IMAGE_MODALITY, LATENT_DIM, TRAIN_FREE_VECTORS)

# MMRec MMGCN.yaml hyper_parameters: reg_weight × learning_rate.
SEARCH_SPACE = {"reg_weight": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1),
                "lr": (1e-4, 5e-4, 1e-3, 5e-3, 1e-2)}


def widths(spec: ModelSpec) -> tuple[int, ...]:
  """Per modality the width of its first layer: the latent map's or the features'."""
  image = spec.modality(IMAGE_MODALITY)
  return tuple(spec.option(LATENT_DIM) if m == image else d
               for m, d in enumerate(spec.feature_dims))


def branch_params(key, spec: ModelSpec, m: int) -> dict:
  d, w = spec.embed_dim, widths(spec)[m]
  keys = jax.random.split(key, 11)
  xavier = lambda k, d_in, d_out: linear(k, d_in, d_out, "xavier_normal")
  out = {"preference": xavier_normal(keys[0], spec.n_users, w),
         "conv": [xavier_normal(keys[1], w, w), xavier_normal(keys[2], d, d),
                  xavier_normal(keys[3], d, d)],
         "linear": [xavier(keys[4], w, d), xavier(keys[5], d, d), xavier(keys[6], d, d)],
         "combine": [xavier(keys[7], w + d, d), linear(keys[8], 2 * d, d),
                     linear(keys[9], 2 * d, d)]}
  if m == spec.modality(IMAGE_MODALITY):
    out["latent"] = linear(keys[10], spec.feature_dims[m], w)
  return out


def init_params(key, spec: ModelSpec) -> dict:
  k_e, k_b = jax.random.split(key)
  return {"id_embedding": xavier_normal(k_e, spec.n_users + spec.n_items, spec.embed_dim),
          "branches": [branch_params(k, spec, m) for m, k in
                       enumerate(jax.random.split(k_b, spec.n_modalities))]}


def free_vectors(params, spec: ModelSpec):
  """`params` with E and the preferences held constant unless they are trained."""
  if spec.option(TRAIN_FREE_VECTORS):
    return params
  sg = jax.lax.stop_gradient
  return {**params, "id_embedding": sg(params["id_embedding"]),
          "branches": [{**b, "preference": sg(b["preference"])} for b in params["branches"]]}


def mean_aggregate(graph: Graph, y: jax.Array) -> jax.Array:
  """(n_nodes, d) each node's mean of its neighbours' rows (0 without any)."""
  count = jax.ops.segment_sum(jnp.ones_like(graph.weight), graph.dst,
                              num_segments=graph.n_nodes)
  total = jax.ops.segment_sum(y[graph.src], graph.dst, num_segments=graph.n_nodes)
  return total / jnp.maximum(count, 1.0)[:, None]


def branch(p, features: jax.Array, id_embedding: jax.Array, graph: Graph) -> jax.Array:
  """One modality's GCN: (U + I, D) node outputs from its (I, d_m) item features."""
  items = features @ p["latent"]["w"] + p["latent"]["b"] if "latent" in p else features
  x = l2_normalise_rows(jnp.concatenate([p["preference"], items], axis=0))
  lrelu = jax.nn.leaky_relu
  for conv, lin, comb in zip(p["conv"], p["linear"], p["combine"]):
    h = lrelu(mean_aggregate(graph, x @ conv))
    x_hat = lrelu(x @ lin["w"] + lin["b"]) + id_embedding
    x = lrelu(jnp.concatenate([h, x_hat], axis=-1) @ comb["w"] + comb["b"])
  return x


def branches(params, inputs: ModelInputs, spec: ModelSpec) -> list[jax.Array]:
  """Per modality the (U + I, D) output of its GCN on the run's filled features."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  return [branch(p, x, params["id_embedding"], inputs.graph)
          for p, x in zip(params["branches"], feats)]


def propagate(params, inputs: ModelInputs, spec: ModelSpec):
  """(users (U, D), items (I, D)): the mean of the modality branches."""
  out = sum(branches(params, inputs, spec)) / spec.n_modalities
  return out[:spec.n_users], out[spec.n_users:]


def mmgcn_terms(params, batch: Batch, inputs: ModelInputs, spec: ModelSpec) -> dict:
  users, items = propagate(params, inputs, spec)
  u = users[batch.users]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (items[batch.pos] - items[batch.neg]), -1),
                        weights=batch.weights)
  e = params["id_embedding"]
  sq = lambda rows: jnp.mean(rows ** 2, axis=-1)
  e_u, n_u = sq(e[batch.users]), spec.n_users
  # The authors' mean over the (2B, D) stacked (user, pos) and (user, neg) rows.
  ids = losses.weighted_mean(e_u + 0.5 * (sq(e[n_u + batch.pos]) + sq(e[n_u + batch.neg])),
                             batch.weights)
  pref = jnp.mean(params["branches"][spec.modality(IMAGE_MODALITY)]["preference"] ** 2)
  return {"bpr": bpr, "reg": ids + pref}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def loss(state: State, batch: Batch, run: Run):
    terms = mmgcn_terms(free_vectors(state.params, spec), batch, run.inputs, spec)
    return terms["bpr"] + run.hp["reg_weight"] * terms["reg"], terms

  def embed(state: State, run: Run):
    return propagate(state.params, run.inputs, spec)
  return Hooks(init=init, loss=loss, embed=embed)


MMGCN = Model(name="mmgcn", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
