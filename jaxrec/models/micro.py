"""MICRO (Zhang et al., TKDE 2022, "Latent Structure Mining with Contrastive
Modality Fusion for Multimedia Recommendation"): LATTICE's learned item-item
graphs kept per modality, the item ids convolved over each, the modality views
fused by attention and tied to the fused view by a contrastive (InfoNCE) term.
Here a new-item baseline (protocol "new_item", MILK's).

Read from the authors' code (our own implementation, none of theirs copied):
  CRIPAC-DIG/MICRO @ 80f6cc68b8535d08660dc72e478043b2d1a97a75, codes/Models.py
    (MICRO), codes/main.py (Trainer: loss, lr schedule, build_item_graph),
    codes/utility/parser.py (defaults), codes/utility/norm.py (build_sim,
    build_knn_normalized_graph, sparse 'sym'), codes/utility/load_data.py
    (norm_adj, the sampler), data/cold_start.py and README.md (the cold-start
    mode: `--core 0 --verbose 1 --lr 1e-5`).
The kNN graph, the learned graph's neighbour lists, the user-item backbone and
the lr schedule are LATTICE's and are imported from `jaxrec.models.lattice`
(norm.py is LATTICE's utils with the same formulas). MILK's reference code
(HaoyueBai98/MILK @ 0b7a3f915f77a22dc1d88827bfa76eb859b0d145) and ColdRec
(YuanchenBei/ColdRec @ 18efd24ec79b0ac2b5b7b10ebc8703274fc117d1) have no MICRO,
nor does MMRec; the MILK paper names MICRO among its baselines without saying
how it was run, so the authors' own cold-start mode is the reference.

The model (per modality m; k = knn_k; N(A) = D^-1/2 A D^-1/2, D = A's row sums):
  Ŝ_m  = N(kNN_k(cos(x_m)))            the run's kNN graph of its masked, filled
                                       features (`lattice.prepare`, on device)
  ê_m  = trs_m(x_m)                    projected (fine-tuned) features
  S_m  = (1 − λ) N(kNN_k(cos(ê_m))) + λ Ŝ_m         one graph per modality
  h_m  = S_m^L Ē,  L = n_layers = 1    Ē: item id embeddings, 0 for new items
  β_m  = softmax_m(q(h_m)),  q(h) = w2ᵀ tanh(W1 h + b1)   attention (per item)
  h    = Σ_m β_m h_m                   the fused view
  ū, ī = mean(E, P E, …, P^L_ui E), E = [E_u; Ē], P = (D + I)^-1 (A + I), L_ui = 2
  users ū,  items ī + h / ‖h‖
  C(a, b) = mean_i −log e^{c(a_i,b_i)/τ} / (Σ_j e^{c(a_i,a_j)/τ} + Σ_j e^{c(a_i,b_j)/τ}
                                            − e^{c(a_i,a_i)/τ}),  c = cosine, over all items
  loss = BPR + reg_weight · ½ (‖ū_u‖² + ‖ī_p‖² + ‖ī_n‖²) + loss_ratio · Σ_m C(h_m, h)

As in LATTICE (and the authors' `build_item_graph`), S_m is rebuilt at each
epoch's start (`pre_epoch`) and carries gradient only at the epoch's first
step (`S_epoch + g · (S_now − sg(S_now))`, g = 1 at step 0), and the
evaluation rebuilds it from the current parameters. Adam at lr · 0.96^(epoch/50).

New items (no training interactions): the kNN graphs Ŝ_m and the learned ones
are built over ALL items, new ones included, from the run's masked and filled
features, so a new item's neighbours come from its content alone (a missing
modality's filled row gives it that modality's fill-value neighbours). A new
item has no collaborative signal, so its id row is unavailable: Ē is the id
table with new items' rows set to 0 (new = no edge in the training graph,
`ModelInputs.warm_items`, computed in `prepare`). Its user-item part is then 0
(no edges: P's row is its self-loop) and its representation is h / ‖h‖, the
attention fusion of its content neighbours' id embeddings: the content-graph
side alone. The same representation is the one BPR sees when a new item is
drawn as a negative (negatives are drawn from all items, as the authors').

Deviations ([D]):
[D] New items' id rows are 0 (see above). The authors' cold-start mode runs the
    unchanged model: a new item keeps its Xavier-initialised id row, moved only
    as a BPR negative, as a graph neighbour and by the contrastive term, and it
    enters its own score (LightGCN self-loop and h's self edge).
[D] lr default 5e-4, the parser's (and the warm setting's), not the README's
    cold-start 1e-5, which is in SEARCH_SPACE: our runs stop after tens of
    epochs, the authors' after up to 1000 (see the notes for the measurement).
[D] M modalities: one graph and one attention score per modality, C summed over
    them (the authors' code has image and text, M = 2).
[D] Features are jaxrec's L2-normalised rows (the authors' raw rows): the cosine
    kNN graphs are the same, trs_m sees rescaled inputs.
[D] The L2 term is the mean over the batch's valid slots (the authors divide the
    batch sum by the configured batch size).
[D] C is computed in blocks of CONTRAST_BLOCK rows (the authors': 4096); where
    a run's saved similarities would pass REMAT_BYTES (TikTok's 6,710 items:
    0.36 GB per modality) each block is rematerialised in the backward pass, so
    at most (block, I) similarities exist at once; the value is the same.
    Below it (MovieLens' 1,682 items: 23 MB) they are kept: the step is ≈ 10%
    faster on the CPU (BUILD_NOTES, "Speed").
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import item_content, item_graph, lattice
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                mmrec_decayed_adam, weight)
from jaxrec.models.layers import linear, xavier_table

PARSER = "CRIPAC-DIG/MICRO codes/utility/parser.py"
MODELS_PY = "CRIPAC-DIG/MICRO codes/Models.py"
README = "CRIPAC-DIG/MICRO README.md (cold-start command)"
# The static options are LATTICE's (its `prepare` and `learned_neighbours` read
# them; MICRO's parser has the same names and defaults), cited to MICRO's files.
KNN_K = dataclasses.replace(lattice.KNN_K, source=f"{PARSER} (topk)")
N_LAYERS = dataclasses.replace(lattice.N_LAYERS, source=f"{PARSER} (layers)",
                               help="convolutions of the item ids over each item-item graph")
N_UI_LAYERS = dataclasses.replace(lattice.N_UI_LAYERS,
                                  source=f"{PARSER} weight_size [64, 64] (its length)")
TRAIN_FEATURES = dataclasses.replace(lattice.TRAIN_FEATURES,
                                     source=f"{MODELS_PY} (from_pretrained, freeze=False)")

HPARAMS = (
    HParam("lr", 5e-4, f"{PARSER} (lr) [D]; the cold-start 1e-5 of {README} is in the search",
           low=0.0, low_open=True, help="learning rate at epoch 0 (decays 0.96 per 50 epochs)"),
    weight("reg_weight", 1e-5, f"{PARSER} (regs[0], the decay)",
           "weight of the L2 term on the batch's final embeddings"),
    HParam("lambda_coeff", 0.9, f"{PARSER}", low=0.0, high=1.0, off=1.0,
           help="λ: weight of the kNN graph against the learned one (1: none learned)"),
    weight("loss_ratio", 0.03, f"{PARSER}", "weight of the contrastive term", off=0.0),
    HParam("tau", 0.5, f"{MODELS_PY} (self.tau)", low=0.0, low_open=True,
           help="temperature of the contrastive term"),
    KNN_K, N_LAYERS, N_UI_LAYERS, TRAIN_FEATURES)

CONTRAST_BLOCK = 1024   # rows of the contrastive term's similarities per block [D]
REMAT_BYTES = 64 * 2 ** 20   # saved similarities of one contrast above which blocks recompute


def unit_rows(x: jax.Array) -> jax.Array:
  """`x / max(‖x‖, 1e-12)` per row (F.normalize), with a finite gradient at a zero
  row (a new item whose neighbours are all new has h = 0)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-24))


def init_params(key, spec: ModelSpec) -> dict:
  k_u, k_i, k_c, k_q1, k_q2 = jax.random.split(key, 5)
  d = spec.embed_dim
  return {"users": xavier_table(k_u, spec.n_users, d),
          "items": xavier_table(k_i, spec.n_items, d),
          "content": item_content.content_params(k_c, spec, spec.option(TRAIN_FEATURES)),
          # the authors' `query`: Linear(D, D) -> Tanh -> Linear(D, 1, bias=False)
          "query": {"hidden": linear(k_q1, d, d),
                    "out": linear(k_q2, d, 1)["w"]}}


def knn_graphs_and_warm_items(inputs: ModelInputs, spec: ModelSpec) -> dict:
  """The run's kNN graphs Ŝ_m from its masked, filled features ((M, I, k) lists,
  all items, new ones included) and its warm items (I,)."""
  return {**lattice.knn_graphs(inputs, spec), "warm": inputs.warm_items(spec.n_items)}


def modality_graphs(params, learned: jax.Array, inputs: ModelInputs, hp, spec: ModelSpec):
  """S_m as lists: (neighbours (M, I, 2k), weights (M, I, 2k)), learned part first.

  `learned` is `lattice.learned_neighbours` (I, M·k); the learned part's
  weights are the projections' cosines on those lists (differentiable).
  """
  k = spec.option(KNN_K)
  lam = hp["lambda_coeff"]
  knn = inputs.prepared
  units = [unit_rows(e) for e in
           item_content.projected(params["content"], inputs, jnp.arange(spec.n_items))]
  weights = []
  for m, e in enumerate(units):
    nb = learned[:, m * k:(m + 1) * k]
    values = jnp.sum(e[:, None, :] * e[nb], -1)
    learned_w = item_graph.symmetric_normalise(values, nb)
    weights.append(jnp.concatenate([(1.0 - lam) * learned_w, lam * knn["weights"][m]], 1))
  return graph_neighbours(learned, inputs, spec), jnp.stack(weights)


def graph_neighbours(learned: jax.Array, inputs: ModelInputs, spec: ModelSpec) -> jax.Array:
  """Every S_m's neighbour lists (M, I, 2k): the learned ones, then the kNN."""
  k = spec.option(KNN_K)
  return jnp.stack([jnp.concatenate([learned[:, m * k:(m + 1) * k], nb], 1)
                    for m, nb in enumerate(inputs.prepared["neighbours"])])


def item_ids(params, inputs: ModelInputs) -> jax.Array:
  """(I, D) Ē: the id table with new items' rows 0 (they have no collaborative signal)."""
  return jnp.where(inputs.prepared["warm"][:, None], params["items"], 0.0)


def views(params, neighbours, weights, inputs: ModelInputs, spec: ModelSpec):
  """(h_m (M, I, D), fused h (I, D), attention β (I, M))."""
  ids = item_ids(params, inputs)
  per_modality = []
  for m in range(spec.n_modalities):
    h = ids
    for _ in range(spec.option(N_LAYERS)):
      h = item_graph.propagate(neighbours[m], weights[m], h)
    per_modality.append(h)
  hm = jnp.stack(per_modality)
  q = params["query"]
  scores = (jnp.tanh(hm @ q["hidden"]["w"] + q["hidden"]["b"]) @ q["out"])[..., 0]   # (M, I)
  beta = jax.nn.softmax(scores, axis=0)
  return hm, jnp.sum(beta[..., None] * hm, 0), beta.T


def forward(params, neighbours, weights, inputs: ModelInputs, spec: ModelSpec):
  """(users (U, D), items (I, D), h_m (M, I, D), h (I, D))."""
  hm, h, _ = views(params, neighbours, weights, inputs, spec)
  ego = jnp.concatenate([params["users"], item_ids(params, inputs)], axis=0)
  out = lattice.random_walk_layer_mean(inputs.graph, ego, spec.option(N_UI_LAYERS))
  return out[:spec.n_users], out[spec.n_users:] + unit_rows(h), hm, h


def contrastive(a: jax.Array, b: jax.Array, tau, block: int = CONTRAST_BLOCK,
                remat_bytes: int = REMAT_BYTES) -> jax.Array:
  """C(a, b): the mean over all rows i of the authors' `batched_contrastive_loss`
  (a_i's positive is b_i; its negatives every a_j, j ≠ i, and every b_j, j ≠ i).
  The blocks' (block, I) similarities to a and to b are recomputed in the
  backward pass where keeping them all would take more than `remat_bytes`."""
  n, d = a.shape
  a, b = unit_rows(a), unit_rows(b)
  block = min(block, n)
  n_blocks = -(-n // block)
  pad = n_blocks * block - n
  rows = jnp.pad(a, ((0, pad), (0, 0))).reshape(n_blocks, block, d)
  own_b = jnp.pad(b, ((0, pad), (0, 0))).reshape(n_blocks, block, d)

  def one_block(args):
    r, rb = args
    refl = jnp.sum(jnp.exp(r @ a.T / tau), -1)
    between = jnp.sum(jnp.exp(r @ b.T / tau), -1)
    self_sim = jnp.exp(jnp.sum(r * r, -1) / tau)
    positive = jnp.sum(r * rb, -1) / tau
    return jnp.log(refl + between - self_sim) - positive

  saved_bytes = 2 * n_blocks * block * n * a.dtype.itemsize
  body = jax.checkpoint(one_block) if saved_bytes > remat_bytes else one_block
  per_row = jax.lax.map(body, (rows, own_b)).reshape(-1)[:n]
  return jnp.mean(per_row)


def micro_terms(params, aux, batch: Batch, inputs: ModelInputs, hp, spec: ModelSpec,
                first_step=True) -> dict:
  """BPR, the L2 of the batch's final embeddings and Σ_m C(h_m, h), on the epoch's S_m."""
  weights = lattice.epoch_graph_weights(
      lambda: modality_graphs(params, aux["neighbours"], inputs, hp, spec)[1], aux["weights"],
      first_step)
  users, items, hm, h = forward(params, graph_neighbours(aux["neighbours"], inputs, spec),
                                weights, inputs, spec)
  u, p, n = users[batch.users], items[batch.pos], items[batch.neg]
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (p - n), -1), weights=batch.weights)
  l2 = 0.5 * losses.weighted_mean(jnp.sum(u ** 2 + p ** 2 + n ** 2, -1), batch.weights)
  contrast = sum(contrastive(hm[m], h, hp["tau"]) for m in range(spec.n_modalities))
  return {"bpr": bpr, "l2": l2, "contrast": contrast}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def prepare(inputs: ModelInputs, hp):
    return knn_graphs_and_warm_items(inputs, spec)

  def init_aux(key, hp, params):
    """The epoch's learned neighbour lists and S_m weights."""
    k, m = spec.option(KNN_K), spec.n_modalities
    return {"neighbours": jnp.zeros((spec.n_items, m * k), jnp.int32),
            "weights": jnp.zeros((m, spec.n_items, 2 * k))}

  def pre_epoch(state: State, run: Run):
    """Rebuilds every S_m from the epoch's starting parameters (`build_item_graph`)."""
    learned = lattice.learned_neighbours(state.params, run.inputs, spec)
    _, weights = modality_graphs(state.params, learned, run.inputs, run.hp, spec)
    return {"neighbours": learned, "weights": weights}, {}

  def loss(state: State, batch: Batch, run: Run):
    hp = run.hp
    terms = micro_terms(state.params, state.aux, batch, run.inputs, hp, spec,
                        run.ctx.at_first_step)
    total = (terms["bpr"] + hp["reg_weight"] * terms["l2"]
             + hp["loss_ratio"] * terms["contrast"])
    return total, terms

  def embed(state: State, run: Run):
    """Scores with every S_m rebuilt from the current parameters (the authors' test)."""
    params, inputs = state.params, run.inputs
    learned = lattice.learned_neighbours(params, inputs, spec)
    neighbours, weights = modality_graphs(params, learned, inputs, run.hp, spec)
    users, items, _, _ = forward(params, neighbours, weights, inputs, spec)
    return users, items
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare, init_aux=init_aux,
               pre_epoch=pre_epoch, optimizer=mmrec_decayed_adam)


# lr: the README's cold-start 1e-5, the parser's 5e-4, and LATTICE's MMRec grid
# values 1e-4, 1e-3 and 5e-3 around it; loss_ratio: the parser's 0.03 and a factor ~3
# either side [D] (the authors publish no grid).
SEARCH_SPACE = {"lr": (1e-5, 1e-4, 5e-4, 1e-3, 5e-3), "loss_ratio": (0.01, 0.03, 0.1)}
MICRO = Model(name="micro", hparams=HPARAMS, make=make, search_space=SEARCH_SPACE)
