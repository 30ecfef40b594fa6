"""LATTICE (Zhang et al., ACM MM 2021): a learned item-item graph on top of the
content kNN graph, graph convolution of the item ids over it, and a LightGCN
user-item backbone.

Read from the authors' code and MMRec's port (our own implementation, none of
theirs copied):
  CRIPAC-DIG/LATTICE @ 1b72fe7a74de28ce78e4ff4008bd05b9ea55c57b, codes/Models.py,
    codes/main.py, codes/utility/parser.py;
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/lattice.py,
    src/configs/model/LATTICE.yaml, src/utils/utils.py (build_sim,
    build_knn_neighbourhood, compute_normalized_laplacian).

The model (per modality m; k = knn_k; N(A) = D^-1/2 A D^-1/2 with D = A's row sums):
  Ŝ_m   = N(kNN_k(cos(x_m)))          the kNN graph, weighted by cosine, self
                                      included; built once per run in `prepare`
  ê_m   = trs_m(x_m)                  projected (fine-tuned) features
  α     = softmax(modal_weight)       learned modality weights (init 0.5 each)
  S     = (1 − λ) N(Σ_m α_m kNN_k(cos(ê_m))) + λ Σ_m α_m Ŝ_m
  h     = S^L E_i,  L = n_layers = 1
  ū, ī  = mean(E, P E, …, P^L_ui E), E = [E_u; E_i], P = (D + I)^-1 (A + I)
          (the authors' random-walk graph with self-loops), L_ui = 2
  users ū,  items ī + h / ‖h‖
  loss  = BPR + reg_weight · ½ (‖ū_u‖² + ‖ī_p‖² + ‖ī_n‖²), batch mean

The learned graph is rebuilt once per epoch (`pre_epoch`, the authors'
`build_item_graph = True` at an epoch's first batch) and used detached for the
rest of the epoch: its gradient (to trs_m, the fine-tuned features and α)
flows only at the epoch's first step, as in the authors' code. Here the
epoch's graph is kept in the auxiliary state; at every step the loss
recomputes S's weights on the epoch's neighbour lists and uses
`S_epoch + g · (S_now − sg(S_now))`, g = 1 at the first step, else 0: the
forward value is always the epoch's graph, the gradient the authors'. The
evaluation rebuilds S from the current parameters (`full_sort_predict` builds
it too). The learning rate decays as 0.96^(epoch / 50) (the yaml's
`learning_rate_scheduler`, the original code's LambdaLR).

Missing modalities: Ŝ_m is built by `prepare` from the run's filled features,
per run on device, and ê_m reads the same filled (then fine-tuned) rows; both
kNN use the chunked top-k of `item_graph.knn`, never an I × I matrix.

[D] Features are jaxrec's L2-normalised rows (the authors' raw rows); the cosine
    kNN graph Ŝ_m is the same, trs_m sees rescaled inputs. A zero-filled row has
    cosine 0 to all items (the authors' code would divide by a zero norm).
[D] M modalities: α has M entries (the authors' code has image and text, M = 2).
[D] The L2 term is the mean over the batch's valid slots (the authors divide the
    batch sum by the configured batch size, also for a short last batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import item_content, item_graph
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                mmrec_decayed_adam, weight)
from jaxrec.models.layers import l2_normalise_rows, xavier_table

YAML = "MMRec src/configs/model/LATTICE.yaml"
PARSER = "CRIPAC-DIG/LATTICE codes/utility/parser.py"
KNN_K = HParam("knn_k", 10, f"{YAML}; {PARSER} (topk)", kind=int, per_run=False, low=1,
               help="neighbours per item in the kNN graphs")
N_LAYERS = HParam("n_layers", 1, f"{YAML}; {PARSER}", kind=int, per_run=False, low=0,
                  help="convolutions of the item ids over the item-item graph")
N_UI_LAYERS = HParam("n_ui_layers", 2, f"{YAML} weight_size [64, 64] (its length)", kind=int,
                     per_run=False, low=0, help="LightGCN layers over the user-item graph")
TRAIN_FEATURES = HParam("train_features", True, "authors' Models.py (from_pretrained, "
                        "freeze=False)", kind=bool, per_run=False,
                        help="fine-tune the item features (else frozen)")
HPARAMS = (
    HParam("lr", 5e-4, f"{PARSER} (lr); in {YAML} grid [1e-4, 5e-4, 1e-3, 5e-3]", low=0.0,
           low_open=True, help="learning rate at epoch 0 (decays 0.96 per 50 epochs)"),
    weight("reg_weight", 1e-5, f"{PARSER} (regs[0]); in {YAML} grid [0, 1e-5, 1e-4, 1e-3]",
           "weight of the L2 term on the batch's final embeddings"),
    HParam("lambda_coeff", 0.9, f"{YAML}; {PARSER}", low=0.0, high=1.0, off=1.0,
           help="λ: weight of the kNN graph against the learned one (1: none learned)"),
    KNN_K, N_LAYERS, N_UI_LAYERS, TRAIN_FEATURES)



def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_c = jax.random.split(key, 3)
  return {"users": xavier_table(k_u, spec.n_users, spec.embed_dim),
          "items": xavier_table(k_i, spec.n_items, spec.embed_dim),
          "content": item_content.content_params(k_c, spec, spec.option(TRAIN_FEATURES)),
          "modal_weight": jnp.full((spec.n_modalities,), 0.5, jnp.float32)}


def knn_graphs(inputs: ModelInputs, spec: ModelSpec) -> dict:
  """The run's kNN graphs Ŝ_m from its filled features: (M, I, k) lists."""
  return item_graph.modality_knn_laplacians(inputs, spec.n_items, spec.option(KNN_K))


def _projected_unit(params, inputs: ModelInputs, spec: ModelSpec) -> list[jax.Array]:
  return [l2_normalise_rows(e) for e in
          item_content.projected(params["content"], inputs, jnp.arange(spec.n_items))]


def learned_neighbours(params, inputs: ModelInputs, spec: ModelSpec) -> jax.Array:
  """(I, M·k) the k nearest items of each item by each modality's projection."""
  units = jax.lax.stop_gradient(_projected_unit(params, inputs, spec))
  return jnp.concatenate([item_graph.knn(e, spec.option(KNN_K))[1] for e in units], axis=1)


def adjacency(params, learned: jax.Array, inputs: ModelInputs, hp, spec: ModelSpec):
  """S as lists: (neighbours (I, 2·M·k), weights (I, 2·M·k)), learned part first.

  The learned part's weights are the projections' cosines on the `learned`
  neighbour lists, so they are differentiable in the parameters.
  """
  k = spec.option(KNN_K)
  alpha = jax.nn.softmax(params["modal_weight"])
  units = _projected_unit(params, inputs, spec)
  values = jnp.concatenate(
      [alpha[m] * jnp.sum(e[:, None, :] * e[learned[:, m * k:(m + 1) * k]], -1)
       for m, e in enumerate(units)], axis=1)
  learned_w = item_graph.symmetric_normalise(values, learned)
  knn = inputs.prepared
  knn_w = jnp.concatenate([alpha[m] * knn["weights"][m] for m in range(spec.n_modalities)], 1)
  lam = hp["lambda_coeff"]
  return (graph_neighbours(learned, inputs),
          jnp.concatenate([(1.0 - lam) * learned_w, lam * knn_w], 1))


def graph_neighbours(learned: jax.Array, inputs: ModelInputs) -> jax.Array:
  """S's neighbour lists (I, 2·M·k): the learned ones, then the features' kNN."""
  return jnp.concatenate([learned, *inputs.prepared["neighbours"]], 1)


def epoch_graph_weights(current_weights, epoch_weights: jax.Array, first_step) -> jax.Array:
  """A step's graph weights: the epoch's (detached), plus at the epoch's first step
  `now − sg(now)` of the current parameters' weights (value 0, their gradient), as
  the authors build the graph with gradient at an epoch's first batch only. Only
  that step computes them (`current_weights()`): `lax.cond` on the unbatched step
  skips the projection of every item's features at the other steps."""
  def gradient_only():
    now = current_weights()
    return now - jax.lax.stop_gradient(now)
  delta = jax.lax.cond(first_step, gradient_only, lambda: jnp.zeros_like(epoch_weights))
  return jax.lax.stop_gradient(epoch_weights) + delta


def random_walk_layer_mean(graph, h0: jax.Array, n_layers: int) -> jax.Array:
  """`mean(H0, P H0, …, P^L H0)`, P = (D + I)^-1 (A + I) on the training graph."""
  degree = jax.ops.segment_sum(jnp.ones_like(graph.weight), graph.dst,
                               num_segments=graph.n_nodes) + 1.0
  total, h = h0, h0
  for _ in range(n_layers):
    h = (jax.ops.segment_sum(h[graph.src], graph.dst, num_segments=graph.n_nodes) + h
         ) / degree[:, None]
    total = total + h
  return total / (n_layers + 1)


def propagate(params, neighbours, weights, inputs: ModelInputs, spec: ModelSpec):
  """(users (U, D), items (I, D)) with the item graph S = (neighbours, weights)."""
  h = params["items"]
  for _ in range(spec.option(N_LAYERS)):
    h = item_graph.propagate(neighbours, weights, h)
  ego = jnp.concatenate([params["users"], params["items"]], axis=0)
  out = random_walk_layer_mean(inputs.graph, ego, spec.option(N_UI_LAYERS))
  return out[:spec.n_users], out[spec.n_users:] + l2_normalise_rows(h)


def lattice_terms(params, aux, batch: Batch, inputs: ModelInputs, hp, spec: ModelSpec,
                  first_step=True) -> dict:
  """BPR and the L2 of the batch's final embeddings, on the epoch's graph S."""
  weights = epoch_graph_weights(
      lambda: adjacency(params, aux["neighbours"], inputs, hp, spec)[1], aux["weights"],
      first_step)
  users, items = propagate(params, graph_neighbours(aux["neighbours"], inputs), weights,
                           inputs, spec)
  u, p, n = users[batch.users], items[batch.pos], items[batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  l2 = 0.5 * losses.weighted_mean(jnp.sum(u ** 2 + p ** 2 + n ** 2, -1), batch.weights)
  return {"bpr": bpr, "l2": l2}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def prepare(inputs: ModelInputs, hp):
    return knn_graphs(inputs, spec)

  def init_aux(key, hp, params):
    """The epoch's learned graph (set by `pre_epoch`)."""
    width = spec.n_modalities * spec.option(KNN_K)
    return {"neighbours": jnp.zeros((spec.n_items, width), jnp.int32),
            "weights": jnp.zeros((spec.n_items, 2 * width))}

  def pre_epoch(state: State, run: Run):
    """Rebuilds S from the epoch's starting parameters (`build_item_graph`)."""
    learned = learned_neighbours(state.params, run.inputs, spec)
    _, weights = adjacency(state.params, learned, run.inputs, run.hp, spec)
    return {"neighbours": learned, "weights": weights}, {}

  def loss(state: State, batch: Batch, run: Run):
    terms = lattice_terms(state.params, state.aux, batch, run.inputs, run.hp, spec,
                          run.ctx.at_first_step)
    return terms["bpr"] + run.hp["reg_weight"] * terms["l2"], terms

  def embed(state: State, run: Run):
    """Scores with S rebuilt from the current parameters."""
    params, inputs = state.params, run.inputs
    neighbours, weights = adjacency(params, learned_neighbours(params, inputs, spec), inputs,
                                    run.hp, spec)
    return propagate(params, neighbours, weights, inputs, spec)
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare, init_aux=init_aux,
               pre_epoch=pre_epoch, optimizer=mmrec_decayed_adam)


# MMRec LATTICE.yaml hyper_parameters ["reg_weight", "learning_rate"], its grids (16 points).
SEARCH_SPACE = {"lr": (1e-4, 5e-4, 1e-3, 5e-3), "reg_weight": (0.0, 1e-5, 1e-4, 1e-3)}
LATTICE = Model(name="lattice", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
