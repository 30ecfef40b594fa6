"""What one training epoch of a run must touch, per model: the FLOP and byte floors.

A floor is counted from the algorithm, not measured: the least work any
implementation of the model's epoch does, from a few terms every model is made
of (`Work`):
  * Adam's dense update of every parameter at every step: read param, grad, m,
    v and write param, m, v (7 x 4 bytes per parameter; the parameter count is
    the model's own `init`, by `jax.eval_shape`). It dominates when the tables
    (users, items, fine-tuned features) are large.
  * item features projected at every step: of the batch's items (2 B rows:
    positives and negatives, or every item once where the catalogue is smaller)
    for the content models, of every item for the graph models whose forward
    propagates all items: rows x feature width x the first map's width (D, or
    the model's hidden width: DropoutNet's and GAR's 200, CLCRec's 256,
    Heater's T experts of D and their gate) multiply-adds (x 3: forward, and
    the input and weight gradients), and the feature rows read once.
  * the batch's scores: 3 B rows of width D per view (users, positives,
    negatives; `views` = M for the models that score each modality apart) read,
    and their gradients written.
  * sparse propagation, per layer and per graph propagated: 2 x nnz x D FLOPs
    and nnz x D gathered + nodes x D written (x 3: forward and backward), over
    the user-item graph (nnz = 2 x training pairs) or an item kNN graph
    (nnz = I x (k + 1)).
  * an item-item similarity rebuilt once every `rebuild_every` epochs (LATTICE,
    MICRO learn their graph per epoch; DGMRec refreshes its kNN every 5):
    2 x I^2 x D FLOPs and the I x I scores written and read once, per graph.
  * the terms a few models add per batch row, where they are not small:
    in-batch similarity matrices (`pair_matrices`: InfoNCE or uniformity over
    the batch, 2 B^2 D FLOPs each, x 3), sampled item logits (`sampled_logits`
    per row, CCFCRec's co-occurrence and self contrasts: a D-row read and a
    dot product each, x 3), all-item similarity matrices (`item_pair_matrices`:
    MICRO's contrast of every item against every item, 2 I^2 D FLOPs each, x 3)
    and dense heads after the first content map (`head_flops`, forward and
    backward per row: the 200-wide towers of DropoutNet, Heater and GAR).
The profiles below read each model's static hyper-parameters (layers, k) from
the group's spec, so a non-default `--set n_ui_layers=3` is counted. They are a
simple count (the issue's "embedding reads/writes per step, graph nnz x D per
layer x layers, dense matmuls"): small terms (small MLP heads, the hypergraph of
LGMRec, batch norms) are left out, so a model can beat its floor only by that much.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.models import ccfcrec, clcrec, gar, heater, pretrained

F32 = 4


@dataclasses.dataclass(frozen=True)
class Propagation:
  graph: str          # "ui": the user-item graph; "ii": an item kNN graph
  layers: int
  graphs: int = 1     # how many tables are propagated over it (one per modality, ...)


@dataclasses.dataclass(frozen=True)
class Work:
  """What a model's training step touches (see the module doc)."""
  feature_rows: str | None = None      # None, "batch" (2 B rows), "positives" (B) or "items"
  views: int = 1                       # score views per row (MILK, I3-MRec: one per modality)
  propagations: tuple[Propagation, ...] = ()
  rebuild_every: int = 0               # epochs between item-item similarity rebuilds (0: never)
  rebuild_graphs: int = 0
  content_width: int | None = None     # width of the first map of the features (None: D)
  pair_matrices: int = 0               # (B, B) in-batch similarity matrices per step
  sampled_logits: int = 0              # sampled item logits per batch row
  head_flops: int = 0                  # FLOPs of dense heads per batch row (forward + backward)
  item_pair_matrices: int = 0          # (I, I) similarity matrices per step (all-item contrasts)


def _options(spec) -> dict:
  return dict(spec.options)


def _ui(layers, graphs=1):
  return Propagation("ui", int(layers), int(graphs))


def _ii(layers, graphs=1):
  return Propagation("ii", int(layers), int(graphs))


def ccfcrec_logits(spec) -> int:
  """CCFCRec's sampled logits per batch row: n_pos x (n_neg + 1) + n_self_neg + 1."""
  n_pos, n_neg = spec.option(ccfcrec.N_POS), spec.option(ccfcrec.N_NEG)
  return n_pos * (n_neg + 1) + spec.option(ccfcrec.N_SELF_NEG) + 1


def two_tower_head_flops(spec) -> int:
  """DropoutNet's and Heater's towers per batch row: the (user, pos) and (user, neg)
  pairs through f_U and f_V, each D -> H -> D (H = 200; DropoutNet's content share
  of f_V's first layer is counted as its content map). A pass is 2 D H
  multiply-adds forward; backward the weight gradients and the hidden layer's
  input gradient (3 D H), plus the input gradient on the item side (D H: Heater's
  content representation, DropoutNet's content share)."""
  d, h = spec.embed_dim, pretrained.HIDDEN
  return 2 * 2 * (5 * d * h + 6 * d * h)


def gar_head_flops(spec) -> int:
  """GAR's dense work per batch row after the generator's first layer (gar.py).

  A recommender tower is D -> H -> H (H = 200): D H + H^2 multiply-adds forward;
  backward, the weight gradients and the hidden input gradient, D H + 2 H^2
  (its inputs, frozen MF rows or the generator's output held constant, need
  none). The recommender's step runs both towers on 3 rows (real, negative,
  generated) forward and backward; the generator's step scores the generated
  and the real item (4 tower passes forward) and takes the item tower's input
  gradient for the generated one (D H + H^2); the generator's second layer
  H -> D runs forward in the recommender's step and forward and backward (3 H D)
  in its own.
  """
  h, d = gar.GAR_HIDDEN, spec.embed_dim
  forward, backward = d * h + h * h, d * h + 2 * h * h
  return 2 * (6 * (forward + backward) + 4 * forward + (d * h + h * h) + 4 * h * d)


# Per model: spec -> Work. Layers and k as each model file describes its forward.
PROFILES: dict[str, Callable] = {
    "mf": lambda s: Work(),
    "lightgcn": lambda s: Work(propagations=(_ui(3),)),
    **{name: (lambda s: Work(feature_rows="batch")) for name in ("vbpr", "duif", "mtpr")},
    # q of the batch's positives; each row's 5 x (40 + 1) co-occurrence and 40 + 1 self logits.
    "ccfcrec": lambda s: Work(feature_rows="positives", sampled_logits=ccfcrec_logits(s)),
    # Four maps read the content (encoder, the prior's μ and log σ², decoder); one uniformity.
    "gorec": lambda s: Work(feature_rows="positives", content_width=4 * s.embed_dim,
                            pair_matrices=1),
    "dropoutnet": lambda s: Work(feature_rows="batch", content_width=pretrained.HIDDEN,
                                 head_flops=two_tower_head_flops(s)),
    "heater": lambda s: Work(feature_rows="batch",
                             content_width=heater.N_EXPERTS * (s.embed_dim + 1),
                             head_flops=two_tower_head_flops(s)),
    # U-I and R-E contrasts; the encoder's second layer (256 -> D) as its head.
    "clcrec": lambda s: Work(feature_rows="positives", content_width=clcrec.ENCODER_HIDDEN,
                             pair_matrices=2, head_flops=3 * 2 * clcrec.ENCODER_HIDDEN
                             * s.embed_dim),
    **{name: (lambda s: Work(feature_rows="batch", content_width=gar.GAR_HIDDEN,
                             head_flops=gar_head_flops(s)))
       for name in ("gar", "gar_scaled")},
    "milk": lambda s: Work(feature_rows="batch", views=s.n_modalities),
    "i3mrec": lambda s: Work(feature_rows="items", views=s.n_modalities,
                             propagations=(_ui(3, s.n_modalities),),
                             pair_matrices=math.comb(2 ** s.n_modalities - 1, 2)),
    "bm3": lambda s: Work(feature_rows="items", propagations=(_ui(_options(s)["n_layers"]),)),
    "freedom": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_mm_layers"]))),
    "lattice": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_layers"])),
        rebuild_every=1, rebuild_graphs=s.n_modalities),
    # C(h_m, h) over all items at every step: h_m against every h_m and every h.
    "micro": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_layers"], s.n_modalities)),
        rebuild_every=1, rebuild_graphs=s.n_modalities, item_pair_matrices=2 * s.n_modalities),
    "mgcn": lambda s: Work(feature_rows="items", pair_matrices=2, propagations=(
        _ui(_options(s)["n_ui_layers"]), _ui(1, s.n_modalities),        # u_m = R h_m
        _ii(_options(s)["n_layers"], s.n_modalities))),
    "lgmrec": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ui(_options(s)["n_mm_layers"], s.n_modalities))),
    # Every item's features through E_m, F_m and back through the decoder (3 maps of D);
    # InfoNCEs per step (dgmrec_terms): the general parts over the 2 B slots (4 (B, B)
    # equivalents) and over users per modality pair, 2 + M user-item, 2 ids-vs-general.
    "dgmrec": lambda s: Work(feature_rows="items", content_width=3 * s.embed_dim,
                             pair_matrices=5 * math.comb(s.n_modalities, 2) + s.n_modalities + 4,
                             propagations=(
        _ui(_options(s)["n_ui_layers"]), _ui(1, s.n_modalities),        # f_m: the users' mean
        _ii(_options(s)["n_mm_layers"], 2 * s.n_modalities)),           # G_m and Σ_m
        rebuild_every=_options(s)["refresh_every"], rebuild_graphs=s.n_modalities),
    "mmgcn": lambda s: Work(feature_rows="items", propagations=(_ui(3, s.n_modalities),)),
}


def work_of(model_name: str, spec) -> Work:
  if model_name not in PROFILES:
    raise ValueError(f"benchmarks/floors.py has no work profile for model {model_name!r}; "
                     f"add one to PROFILES (profiles: {sorted(PROFILES)})")
  return PROFILES[model_name](spec)


def n_params(model, spec) -> int:
  """The model's trainable parameter count (its `init`, shapes only)."""
  hp = {name: jnp.float32(model.hparam[name].default) if model.hparam[name].kind is not str
        else 0.0 for name in model.per_run_hparams}
  shapes = jax.eval_shape(lambda key: model.make(spec).init(key, hp), jax.random.PRNGKey(0))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def epoch_counts(work: Work, *, users: int, items: int, feature_dims, n_train: int,
                 batch: int, dim: int, train_pairs: int, params: int, knn_k: int = 10,
                 feature_bytes: int = F32) -> tuple[float, float]:
  """(FLOPs, bytes) one run needs per epoch (see the module doc)."""
  n_batches = -(-n_train // batch)
  feat = sum(feature_dims)
  rows = {None: 0, "batch": min(items, 2 * batch), "positives": min(items, batch),
          "items": items}[work.feature_rows]
  flops = (3 * 2 * rows * feat * (work.content_width or dim)
           + 3 * 2 * 2 * batch * work.views * dim
           + 3 * 2 * work.pair_matrices * batch * batch * dim
           + 3 * 2 * batch * work.sampled_logits * dim + batch * work.head_flops
           + 3 * 2 * work.item_pair_matrices * items * items * dim)
  bytes_ = (feature_bytes * rows * feat + F32 * 3 * batch * dim * (1 + 2 * work.views)
            + F32 * 3 * batch * work.sampled_logits * dim + F32 * 7 * params)
  for p in work.propagations:
    nnz, nodes = ((2 * train_pairs, users + items) if p.graph == "ui"
                  else (items * (knn_k + 1), items))
    flops += 3 * p.layers * p.graphs * 2 * nnz * dim
    bytes_ += F32 * 3 * p.layers * p.graphs * (nnz * dim + nodes * dim)
  per_epoch_flops = per_epoch_bytes = 0.0
  if work.rebuild_every:
    per_epoch_flops = work.rebuild_graphs * 2 * items * items * dim / work.rebuild_every
    per_epoch_bytes = work.rebuild_graphs * 2 * F32 * items * items / work.rebuild_every
  return (n_batches * flops + per_epoch_flops, n_batches * bytes_ + per_epoch_bytes)
