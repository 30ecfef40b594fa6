"""MGCN (Yu et al., ACM MM 2023): multi-view graph convolution with behaviour-
guided purification of the modality features and behaviour-aware fusion.

Read from the authors' code (our own implementation, none of theirs copied):
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/mgcn.py,
    src/configs/model/MGCN.yaml, src/configs/overall.yaml, src/common/trainer.py
    (the LambdaLR of `learning_rate_scheduler`), src/utils/utils.py
    (build_sim, build_knn_normalized_graph, get_sparse_laplacian);
  demonph10/MGCN @ d080d5a1475bfa0e3668ead6c28815a2dedd3ad2, src/models/mgcn.py and
    src/configs/model/MGCN.yaml (the same model and grid as MMRec's).

The model (E_u, E_i free id tables, x_m the run's filled, fine-tuned features):
  f_m   = trs_m(x_m)                                   (I, D) projected features
  ẽ_m   = E_i ⊙ σ(W_m f_m + b_m)                       behaviour-guided purifier
  h_m   = S_m^L ẽ_m,   u_m = R h_m,   v_m = [u_m; h_m]  item-item view (L = n_layers),
          S_m = D^-1/2 kNN_k(cos(x_m)) D^-1/2 with the cosines as edge weights,
          R the user-item block of the normalised training graph Â
  c     = mean(E, Â E, …, Â^L_ui E),  E = [E_u; E_i]    user-item view (LightGCN)
  β     = softmax_m(q(v_m)),  q(v) = w2ᵀ tanh(W1 v + b1)  behaviour-aware fuser
  com   = Σ_m β_m v_m,   sep_m = σ(P_m c + p_m) ⊙ (v_m − com)
  side  = (com + Σ_m sep_m) / (M + 1),   final = c + side
  loss  = BPR(final) + reg_weight · ½ (‖u‖² + ‖i⁺‖² + ‖i⁻‖²)
          + cl_loss · [InfoNCE(side_i⁺, c_i⁺) + InfoNCE(side_u, c_u)]

The InfoNCE terms (temperature 0.2, cosine, in-batch negatives) contrast each
batch row's side (modality) view with its user-item view, as the authors'
`calculate_loss`. The learning rate decays as 0.96^(epoch / 50) (the yaml's
`learning_rate_scheduler`). The features are fine-tuned (`from_pretrained(
freeze=False)`); S_m stays the graph built from the run's features at the start.

Missing modalities: S_m is built by `prepare` from the run's filled features
(`inputs.item_features`), per run on device, by the chunked top-k of
`item_graph.knn` (never an I × I matrix); f_m reads the same filled rows.

[D] M modalities: the authors' code has image and text and divides by 3; here
    q, the purifier gate and the preference gate exist per modality (q shared,
    as theirs) and the side view divides by M + 1.
[D] Features are jaxrec's L2-normalised rows (the authors feed the raw rows to
    trs_m; S_m, from cosines, is the same). A zero-filled row has cosine 0 to
    every item (the authors' division by a zero norm gives NaN).
[D] A node of S_m whose row sum is not positive gets weight 0 (their x^-0.5 of
    a negative sum is NaN; with the item itself among its k neighbours the sum
    is positive in practice).
[D] The L2 term is the mean over the batch's valid slots (the authors divide
    the batch sum by the configured batch size, also for a short last batch);
    the InfoNCE ignores padded slots.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import item_content, item_graph
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, mmrec_decayed_adam, weight)
from jaxrec.models.layers import apply_linear, linear, xavier_table

YAML = "MMRec src/configs/model/MGCN.yaml"
KNN_K = HParam("knn_k", 10, YAML, kind=int, per_run=False, low=1,
               help="neighbours per item in the item-item kNN graphs")
N_LAYERS = HParam("n_layers", 1, YAML, kind=int, per_run=False, low=0,
                  help="propagations of the purified item embeddings over S_m")
N_UI_LAYERS = HParam("n_ui_layers", 2, YAML, kind=int, per_run=False, low=0,
                     help="LightGCN layers over the user-item graph")
TRAIN_FEATURES = HParam("train_features", True, "MMRec mgcn.py (from_pretrained, "
                        "freeze=False)", kind=bool, per_run=False,
                        help="fine-tune the item features (else frozen)")
HPARAMS = (
    learning_rate(1e-3, YAML + " (learning_rate; decays 0.96 per 50 epochs)"),
    weight("reg_weight", 1e-4, YAML, "weight of the L2 term on the batch's final embeddings"),
    # The yaml's grid is [0.001, 0.01, 0.1]; 0.01 is our pick inside it.
    weight("cl_loss", 0.01, YAML + " grid [0.001, 0.01, 0.1], our pick (middle)",
           "weight of the InfoNCE terms between the side and user-item views", off=0.0),
    KNN_K, N_LAYERS, N_UI_LAYERS, TRAIN_FEATURES)

TEMPERATURE = 0.2                         # calculate_loss: InfoNCE(..., 0.2)


def _linears(key, n: int, d_in: int, d_out: int) -> list[dict]:
  return [linear(k, d_in, d_out) for k in jax.random.split(key, n)]


def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_c, k_g, k_p, k_q1, k_q2 = jax.random.split(key, 7)
  d, n_mod = spec.embed_dim, spec.n_modalities
  bound = 1.0 / d ** 0.5                  # nn.Linear(D, 1, bias=False)
  return {"users": xavier_table(k_u, spec.n_users, d),
          "items": xavier_table(k_i, spec.n_items, d),
          "content": item_content.content_params(k_c, spec, spec.option(TRAIN_FEATURES)),
          "gate": _linears(k_g, n_mod, d, d),          # gate_v, gate_t
          "prefer": _linears(k_p, n_mod, d, d),        # gate_image_prefer, gate_text_prefer
          "query": {"hidden": linear(k_q1, d, d),
                    "out": jax.random.uniform(k_q2, (d,), jnp.float32, -bound, bound)}}


def purified(params, inputs: ModelInputs, spec: ModelSpec) -> list[jax.Array]:
  """Per modality (I, D) `E_i ⊙ σ(W_m trs_m(x_m) + b_m)`: the id embeddings gated
  by the modality (the behaviour-guided purifier)."""
  feats = item_content.projected(params["content"], inputs, jnp.arange(spec.n_items))
  return [params["items"] * jax.nn.sigmoid(apply_linear(g, f))
          for g, f in zip(params["gate"], feats)]


def views(params, inputs: ModelInputs, spec: ModelSpec, graph) -> tuple[jax.Array, list]:
  """(c (U + I, D) the user-item view, [v_m (U + I, D)] the item-item views)."""
  ego = jnp.concatenate([params["users"], params["items"]], axis=0)
  content_view = graph.layer_mean(ego, spec.option(N_UI_LAYERS))
  modal = []
  for m, h in enumerate(purified(params, inputs, spec)):
    for _ in range(spec.option(N_LAYERS)):
      h = item_graph.propagate(inputs.prepared["neighbours"][m],
                               inputs.prepared["weights"][m], h)
    # R h: Â's user-item block applied to h.
    users = graph.to_users(h)
    modal.append(jnp.concatenate([users, h], axis=0))
  return content_view, modal


def fuse(params, content_view: jax.Array, modal: list[jax.Array]) -> jax.Array:
  """(U + I, D) the side view: common part by attention, specific parts by
  the user-item view's preference gates."""
  q = params["query"]
  scores = jnp.stack([jnp.tanh(apply_linear(q["hidden"], v)) @ q["out"] for v in modal], -1)
  beta = jax.nn.softmax(scores, axis=-1)
  common = sum(beta[:, m:m + 1] * v for m, v in enumerate(modal))
  specific = [jax.nn.sigmoid(apply_linear(p, content_view)) * (v - common)
              for p, v in zip(params["prefer"], modal)]
  return (common + sum(specific)) / (len(modal) + 1)


def forward(params, inputs: ModelInputs, spec: ModelSpec, graph):
  """(final, side, content) node embeddings, each (U + I, D)."""
  content_view, modal = views(params, inputs, spec, graph)
  side = fuse(params, content_view, modal)
  return content_view + side, side, content_view


def mgcn_terms(params, batch: Batch, inputs: ModelInputs, spec: ModelSpec) -> dict:
  final, side, content_view = forward(params, inputs, spec, inputs.graph)
  n_users = spec.n_users
  u, p, n = final[batch.users], final[n_users + batch.pos], final[n_users + batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  l2 = 0.5 * losses.weighted_mean(jnp.sum(u ** 2 + p ** 2 + n ** 2, -1), batch.weights)
  cl = (losses.info_nce(anchors=side[n_users + batch.pos],
                        positives=content_view[n_users + batch.pos],
                        weights=batch.weights, temperature=TEMPERATURE)
        + losses.info_nce(anchors=side[batch.users], positives=content_view[batch.users],
                          weights=batch.weights, temperature=TEMPERATURE))
  return {"bpr": bpr, "l2": l2, "cl": cl}


def make(spec: ModelSpec) -> Hooks:
  knn_k = spec.option(KNN_K)

  def init(key, hp):
    return init_params(key, spec)

  def prepare(inputs: ModelInputs, hp):
    """The run's S_m from its filled features: (M, I, k) neighbour lists and weights."""
    return item_graph.modality_knn_laplacians(inputs, spec.n_items, knn_k)

  def loss(state: State, batch: Batch, run: Run):
    hp = run.hp
    terms = mgcn_terms(state.params, batch, run.inputs, spec)
    return terms["bpr"] + hp["reg_weight"] * terms["l2"] + hp["cl_loss"] * terms["cl"], terms

  def embed(state: State, run: Run):
    """Final users and items, as `full_sort_predict`."""
    final, _, _ = forward(state.params, run.inputs, spec, run.inputs.graph)
    return final[:spec.n_users], final[spec.n_users:]
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare, optimizer=mmrec_decayed_adam)



# MMRec src/configs/model/MGCN.yaml: hyper_parameters ["cl_loss"], cl_loss
# [0.001, 0.01, 0.1] (the same in demonph10/MGCN).
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "cl_loss": (0.001, 0.01, 0.1)}
MGCN = Model(name="mgcn", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
