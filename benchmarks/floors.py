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
The profiles below read each model's static hyper-parameters (layers, k) from
the group's spec, so a non-default `--set n_ui_layers=3` is counted. They are a
simple count (the issue's "embedding reads/writes per step, graph nnz x D per
layer x layers, dense matmuls"): small terms (MLP heads, contrastive in-batch
similarities, the hypergraph of LGMRec) are left out, so a model can beat its
floor only by that much.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.models import clcrec, gar, heater, pretrained

F32 = 4


@dataclasses.dataclass(frozen=True)
class Propagation:
  graph: str          # "ui": the user-item graph; "ii": an item kNN graph
  layers: int
  graphs: int = 1     # how many tables are propagated over it (one per modality, ...)


@dataclasses.dataclass(frozen=True)
class Work:
  """What a model's training step touches (see the module doc)."""
  feature_rows: str | None = None      # None, "batch" (2 B rows) or "items" (all of them)
  views: int = 1                       # score views per row (MILK, I3-MRec: one per modality)
  propagations: tuple[Propagation, ...] = ()
  rebuild_every: int = 0               # epochs between item-item similarity rebuilds (0: never)
  rebuild_graphs: int = 0
  content_width: int | None = None     # width of the first map of the features (None: D)


def _options(spec) -> dict:
  return dict(spec.options)


def _ui(layers, graphs=1):
  return Propagation("ui", int(layers), int(graphs))


def _ii(layers, graphs=1):
  return Propagation("ii", int(layers), int(graphs))


# Per model: spec -> Work. Layers and k as each model file describes its forward.
PROFILES: dict[str, Callable] = {
    "mf": lambda s: Work(),
    "lightgcn": lambda s: Work(propagations=(_ui(3),)),
    **{name: (lambda s: Work(feature_rows="batch"))
       for name in ("vbpr", "duif", "mtpr", "ccfcrec", "gorec")},
    "dropoutnet": lambda s: Work(feature_rows="batch", content_width=pretrained.HIDDEN),
    "heater": lambda s: Work(feature_rows="batch",
                             content_width=heater.N_EXPERTS * (s.embed_dim + 1)),
    "clcrec": lambda s: Work(feature_rows="batch", content_width=clcrec.ENCODER_HIDDEN),
    **{name: (lambda s: Work(feature_rows="batch", content_width=gar.GAR_HIDDEN))
       for name in ("gar", "gar_scaled")},
    "milk": lambda s: Work(feature_rows="batch", views=s.n_modalities),
    "i3mrec": lambda s: Work(feature_rows="items", views=s.n_modalities,
                             propagations=(_ui(3, s.n_modalities),)),
    "bm3": lambda s: Work(feature_rows="items", propagations=(_ui(_options(s)["n_layers"]),)),
    "freedom": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_mm_layers"]))),
    "lattice": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_layers"])),
        rebuild_every=1, rebuild_graphs=s.n_modalities),
    "micro": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ii(_options(s)["n_layers"], s.n_modalities)),
        rebuild_every=1, rebuild_graphs=s.n_modalities),
    "mgcn": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ui(1, s.n_modalities),        # u_m = R h_m
        _ii(_options(s)["n_layers"], s.n_modalities))),
    "lgmrec": lambda s: Work(feature_rows="items", propagations=(
        _ui(_options(s)["n_ui_layers"]), _ui(_options(s)["n_mm_layers"], s.n_modalities))),
    "dgmrec": lambda s: Work(feature_rows="items", propagations=(
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
  rows = {None: 0, "batch": min(items, 2 * batch), "items": items}[work.feature_rows]
  flops = (3 * 2 * rows * feat * (work.content_width or dim)
           + 3 * 2 * 2 * batch * work.views * dim)
  bytes_ = (feature_bytes * rows * feat + F32 * 3 * batch * dim * (1 + 2 * work.views)
            + F32 * 7 * params)
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
