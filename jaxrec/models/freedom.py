"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item-item graph and a
degree-sensitively pruned user-item graph.

Read from the authors' code (our own implementation, none of theirs copied):
  enoche/MMRec @ e775373b3ab1354a92165b0885ce4ab3dc4d7497, src/models/freedom.py,
    src/configs/model/FREEDOM.yaml, src/configs/overall.yaml, src/common/trainer.py;
  enoche/FREEDOM @ 6f896e244123cfe9baaf7e92a1a3bfc06dfdc3c2, src/models/freedom.py
    (the same model file as MMRec's but for its docstring), src/configs/model/FREEDOM.yaml.

The model:
  S     = Σ_m w_m · Ŝ_m,  Ŝ_m = D^-1/2 kNN_k(cos(x_m)) D^-1/2 (0/1 edges, self
          included), built once from the run's filled features: frozen.
  h     = S^L_mm E_i                                   (item ids over S, L_mm = 1)
  ū, ī  = mean(E, Â_ρ E, …, Â_ρ^L_ui E), E = [E_u; E_i] (LightGCN, L_ui = 2)
  users ū,  items ī + h
  loss  = BPR(ū, ī + h) + reg_weight · Σ_m BPR(ū, trs_m(x_m))

Â_ρ is the training graph after degree-sensitive edge pruning: each epoch keeps
⌊N (1 − ρ)⌋ of its N edges, drawn without replacement with probability ∝
1/sqrt(d_u d_i) (so edges between high-degree nodes go first), and renormalises
the kept graph; evaluation uses the full graph. The draw is Gumbel top-k (the
same distribution as `torch.multinomial(p, n)` without replacement) from the
per-epoch key fold_in(run_key, epoch): the same pruned graph at every step of
an epoch, a new one each epoch, as the authors' `pre_epoch_processing`. It is
redrawn at each step from that key rather than kept in the auxiliary state,
whose shapes cannot depend on the edge count.

The projected features trs_m(x_m) enter only the modality BPR terms (they pull
the users toward the content); items are scored with ī + h, as in the authors'
`full_sort_predict`. The raw features are fine-tuned (`train_features`), as the
authors' `nn.Embedding.from_pretrained(freeze=False)`; the kNN graph stays the
one built from the features at the start.

Missing modalities: the graph, the projections and the modality BPR all read
the run's filled features (`inputs.item_features`), and `prepare` builds S per
run from them, on device, by a chunked top-k (`item_graph.knn`).

[D] M modalities: the authors' code has image and text, S = w·Ŝ_image + (1 − w)·
    Ŝ_text with w = mm_image_weight. Here the modality named `image_modality`
    ("image" by default; checked against the data's names before compiling) gets
    w and the others share 1 − w equally; with one modality S = Ŝ_0.
[D] Features are jaxrec's L2-normalised rows (the authors feed the raw .npy rows
    to trs_m; the kNN graph, from cosines, is the same).
[D] A zero-filled row has cosine 0 to every item (the authors' division by a zero
    norm gives NaN); its k neighbours are then ties, broken by lowest id.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import item_content, item_graph
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                StepContext,
                                learning_rate, modality_option, weight)
from jaxrec.models.layers import xavier_table

YAML = "MMRec src/configs/model/FREEDOM.yaml"
KNN_K = HParam("knn_k", 10, YAML, kind=int, per_run=False, low=1,
               help="neighbours per item in the item-item kNN graph")
N_MM_LAYERS = HParam("n_mm_layers", 1, YAML, kind=int, per_run=False, low=0,
                     help="propagations of the item ids over the item-item graph")
N_UI_LAYERS = HParam("n_ui_layers", 2, YAML, kind=int, per_run=False, low=0,
                     help="LightGCN layers over the user-item graph")
IMAGE_MODALITY = modality_option("image_modality", "image", "the authors' image modality",
                                 "the modality weighted by mm_image_weight")
TRAIN_FEATURES = HParam("train_features", True, "MMRec freedom.py (from_pretrained, "
                        "freeze=False)", kind=bool, per_run=False,
                        help="fine-tune the item features (else frozen)")
HPARAMS = (
    learning_rate(1e-3, "MMRec src/configs/overall.yaml"),
    # The yaml's grid is [0, 1e-5, 1e-4, 1e-3]; 1e-4 is our pick inside it.
    weight("reg_weight", 1e-4, YAML + " grid [0, 1e-5, 1e-4, 1e-3], our pick",
           "weight of the modality BPR terms"),
    # The yaml's grid is [0.8, 0.9]; its first value.
    HParam("dropout", 0.8, YAML + " grid [0.8, 0.9], first value", low=0.0, high=1.0,
           high_open=True, help="ρ: fraction of user-item edges pruned each epoch"),
    HParam("mm_image_weight", 0.1, YAML, low=0.0, high=1.0,
           help="weight of the image modality's kNN graph in S"),
    KNN_K, N_MM_LAYERS, N_UI_LAYERS, IMAGE_MODALITY, TRAIN_FEATURES)

DEGREE_EPS = 1e-7   # the authors' 1e-7 added to every degree
PRUNE_TAG = 0x46524545   # folds the epoch's pruning key out of run_key


def modality_weights(hp, spec: ModelSpec) -> jax.Array:
  """(M,) w for `image_modality`, (1 − w) / (M − 1) for each other one."""
  n_mod = spec.n_modalities
  if n_mod == 1:
    return jnp.ones((1,))
  w = hp["mm_image_weight"]
  image = jnp.arange(n_mod) == spec.modality(IMAGE_MODALITY)
  return jnp.where(image, w, (1.0 - w) / (n_mod - 1))


def item_item_graph(inputs: ModelInputs, hp, spec: ModelSpec) -> dict:
  """The run's frozen item graph S from its filled features: (I, M·k) lists."""
  k = spec.option(KNN_K)
  feats = inputs.item_features(jnp.arange(spec.n_items))
  neighbours, weights = [], []
  for w_m, x in zip(modality_weights(hp, spec), feats):
    _, nb = item_graph.cosine_knn(x, k)
    neighbours.append(nb)
    weights.append(w_m * item_graph.symmetric_normalise(jnp.ones(nb.shape), nb, DEGREE_EPS))
  return {"neighbours": jnp.concatenate(neighbours, 1), "weights": jnp.concatenate(weights, 1)}


def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_c = jax.random.split(key, 3)
  return {"users": xavier_table(k_u, spec.n_users, spec.embed_dim),
          "items": xavier_table(k_i, spec.n_items, spec.embed_dim),
          "content": item_content.content_params(k_c, spec, spec.option(TRAIN_FEATURES))}


def pruned_weights(graph, key: jax.Array, rate) -> jax.Array:
  """(2N,) edge weights of the training graph after degree-sensitive pruning.

  Keeps ⌊N (1 − rate)⌋ undirected edges drawn without replacement ∝ their
  normalised weight 1/sqrt(d_u d_i), renormalised on the kept graph; pruned
  edges weigh 0. `graph` lists the N user→item edges first, then the same N
  reversed.
  """
  n = graph.src.shape[0] // 2
  users, items = graph.src[:n], graph.dst[:n]
  gumbel = jax.random.gumbel(key, (n,))
  order = jnp.argsort(-(jnp.log(graph.weight[:n]) + gumbel))
  rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
  keep = (rank < jnp.floor(n * (1.0 - rate))).astype(jnp.float32)
  degree = jax.ops.segment_sum(jnp.concatenate([keep, keep]), graph.src,
                               num_segments=graph.n_nodes) + DEGREE_EPS
  w = keep * jax.lax.rsqrt(degree[users]) * jax.lax.rsqrt(degree[items])
  return jnp.concatenate([w, w])


def propagate(params, inputs: ModelInputs, spec: ModelSpec, graph):
  """(users (U, D), items (I, D)) over user-item `graph` and the frozen S."""
  h = params["items"]
  for _ in range(spec.option(N_MM_LAYERS)):
    h = item_graph.propagate(inputs.prepared["neighbours"], inputs.prepared["weights"], h)
  ego = jnp.concatenate([params["users"], params["items"]], axis=0)
  out = graph.layer_mean(ego, spec.option(N_UI_LAYERS))
  return out[:spec.n_users], out[spec.n_users:] + h


def epoch_key(ctx: StepContext) -> jax.Array:
  """This epoch's pruning key: fixed within an epoch, new each epoch."""
  return jax.random.fold_in(jax.random.fold_in(ctx.run_key, PRUNE_TAG), ctx.epoch)


def freedom_terms(params, batch: Batch, inputs: ModelInputs, spec: ModelSpec) -> dict:
  """BPR on the embeddings over `inputs.graph` and the summed modality BPR terms."""
  users, items = propagate(params, inputs, spec, inputs.graph)
  u = users[batch.users]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (items[batch.pos] - items[batch.neg]), -1),
                        weights=batch.weights)
  pos = item_content.projected(params["content"], inputs, batch.pos)
  neg = item_content.projected(params["content"], inputs, batch.neg)
  modal = sum(losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
              for p, n in zip(pos, neg))
  return {"bpr": bpr, "modal_bpr": modal}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def prepare(inputs: ModelInputs, hp):
    return item_item_graph(inputs, hp, spec)

  def loss(state: State, batch: Batch, run: Run):
    """`BPR + reg_weight · Σ_m BPR_m` on this epoch's pruned training graph."""
    inputs, hp, ctx = run
    pruned = inputs.graph.replace(
        weight=pruned_weights(inputs.graph, epoch_key(ctx), hp["dropout"]))
    terms = freedom_terms(state.params, batch, inputs.replace(graph=pruned), spec)
    return terms["bpr"] + hp["reg_weight"] * terms["modal_bpr"], terms

  def embed(state: State, run: Run):
    """Scores on the full (unpruned) training graph, as `full_sort_predict`."""
    return propagate(state.params, run.inputs, spec, run.inputs.graph)
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare)


# MMRec FREEDOM.yaml hyper_parameters ["dropout", "reg_weight"], its grids (the authors'
# reg_weight grid has 0: a weight of the auxiliary modality BPR terms, not FREEDOM's
# frozen/denoised graph, so not declared `off`).
# lr: the default 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "dropout": (0.8, 0.9),
                "reg_weight": (0.0, 1e-5, 1e-4, 1e-3)}
FREEDOM = Model(name="freedom", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
