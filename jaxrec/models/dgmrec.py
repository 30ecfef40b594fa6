"""DGMRec (Kim et al., SIGIR 2025): disentangling each modality into general
and specific parts and generating the missing ones.

Read from the authors' code (our own implementation, none of theirs copied):
  ptkjw1997/DGMRec @ 50cdd41ccc05a5f8042e7725cd36cfc42149186c (the SIGIR 2025
    release), src/models/dgmrec.py, src/configs/model/DGMRec.yaml,
    src/configs/overall.yaml, src/common/trainer.py, src/common/loss.py (MSELoss),
    src/utils/mi_estimator.py (CLUBSample), src/utils/utils.py;
  ptkjw1997/DGMRec @ cd8f00db1fd927738c1cf87b1abe40493ae0ec70 (the later TORS
    release), src/models/dgmrec.py (its 3-modality path, for M > 2) and
    src/configs/best/DGMRec_*.json (the search space).
It is built on MMRec (enoche/MMRec, the trainer and the kNN helpers).

The model (per modality m; T_m the item feature table, fine-tuned):
  g_m = σ(W_sh tanh(E_m T_m))   general part (W_sh shared by the modalities)
  s_m = σ(F_m T_m)              specific part
  f_m = mean_{u ∈ N(i)} tanh(P_m e_u)         the users' modality preference
  G_m = S_m^L (f_m ⊙ g_m),  Σ_m = S_m^L (f_m ⊙ s_m)   item graph, L = n_mm_layers
  user parts: mean over the user's items of G_m, Σ_m
  ē_u, ē_i = LightGCN layer mean of the ids, 3 layers, on the normalised graph
  score  (ē + (mean_m G_m + Σ_m Σ_m) / (M + 1)) of the user · of the item
  loss = BPR + λ1 (CLUB(Σ_m; G_m) + InfoNCE(g_m, g_m') + InfoNCE(uG_m, uG_m'))
       + 0.05 (MSE(s_m, gen_m(~f_m)) + MSE(G_m, trans_m(~G_{-m})))     generators
       + 0.1 MSE(dec_m(~sg[G_m, Σ_m]), T_m)                               decoders
       + λ2 (InfoNCE user-item in the id, general and specific spaces
             + InfoNCE ids-vs-general for items and users)
       + 1e-5 ‖ids‖ / B + 0.1 Σ_m ‖G_m + Σ_m‖ / B            (norms, not squared)
  (~x = x + sign(x) · normalise(U[0,1)) · 0.1, the authors' perturb.) The
  generator losses read the batch's distinct items that observe m (the
  translator: that observe every modality), the InfoNCE of g the complete ones.

Missing modalities (the run's availability mask, `inputs.available`):
  * S_m is the cosine kNN graph (k = knn_k, weighted, D^-1/2 A D^-1/2) of the
    run's filled features, built in `prepare` by chunked top-k; an item missing
    m has no edge to or from it in S_m but a self-loop (the authors' masking).
  * Each epoch starts (`pre_epoch`, the authors' `pre_epoch_processing`) by
    fitting the CLUB networks (5 Adam steps at 1e-4 on 2048 random items, on the
    unpropagated (s_m, g_m)), then GENERATES the raw features of every item that
    misses m and observes every other modality: dec_m(~[S_m^L trans_m(g_{-m}),
    S_m^L gen_m(f_m)]), written into T_m (the authors' `generate_missing_modal`,
    which overwrites the rows of their fine-tuned feature table). Items missing
    more than m keep the fill (+ their fine-tuned offset), as in the authors'
    code (only `missing_items['t']` is written, not `'all'`).
  * Every `refresh_every` = 5 epochs (after the generation) the rows of S_m of
    the items missing m become α · row of the kNN graph of the current T_m +
    (1 − α) · old row (the authors' `update_adj`); columns stay masked.
  * At evaluation the mask is the evaluation mask (under the warm protocol an
    item can miss a modality at test that it observed in training): the items
    missing m there (observing the rest) get their m-features generated from
    the current parameters in the same way, and their graph rows the blend of
    the refreshes; the hidden raw rows are never read.
Training state: the feature offsets (`delta`) are parameters; the generated
rows, the blended graph rows and the CLUB networks (with their Adam) live in
the auxiliary state, moved only by `pre_epoch`. A generated row is stored as
`recon − delta` so that T_m = stored + delta is exactly the generation at the
epoch's start and then fine-tuned by the gradient, as the authors' overwrite.

[D] Features are jaxrec's L2-normalised rows (the authors' raw .npy rows).
[D] The blended rows of S_m are kept as neighbour lists of a fixed width 2k:
    after each refresh the duplicates are summed and the 2k largest weights kept
    (exact while an item's refreshed neighbours over training number ≤ 2k; the
    authors blend dense/scipy rows).
[D] M modalities: the translator of m reads the concatenation of the other
    modalities' general parts (the TORS release's 3-modality path); the
    InfoNCE between general parts runs over every pair m < m' (items and users).
[D] Evaluation generates without the perturbation noise (no key at embed) and
    from the parameters of the scored epoch; its graph rows of the missing items
    are (1 − α)^n self-loop + (1 − (1 − α)^n) · kNN row of the table, n the
    refreshes so far (the authors' running blend when the table does not move
    between refreshes). With the same mask at train and test the authors score
    the rows generated at the epoch's start, fine-tuned during the epoch.
[D] Padded batch slots are left out of every term; the norms of the L2 term are
    over the valid slots and divided by their count (the authors' batch size).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import club, item_graph
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                StepContext, learning_rate, mmrec_decayed_adam, weight)
from jaxrec.models.layers import (apply_linear, apply_mlp, first_occurrence, l2_normalise_rows,
                                  linear, mlp, xavier_table)

SIGIR = "ptkjw1997/DGMRec@50cdd41"
TORS = "ptkjw1997/DGMRec@cd8f00d"
YAML = f"{SIGIR} src/configs/model/DGMRec.yaml"
CODE = f"{SIGIR} src/models/dgmrec.py"
OVERALL = f"{SIGIR} src/configs/overall.yaml"

KNN_K = HParam("knn_k", 10, YAML, kind=int, per_run=False, low=1,
               help="neighbours per item in the modality kNN graphs")
N_MM_LAYERS = HParam("n_mm_layers", 2, YAML, kind=int, per_run=False, low=0,
                     help="propagations over the modality graphs")
N_UI_LAYERS = HParam("n_ui_layers", 3, YAML, kind=int, per_run=False, low=0,
                     help="LightGCN layers of the ids over the user-item graph")
REFRESH_EVERY = HParam("refresh_every", 5, f"{CODE} (pre_epoch_processing: counter % 5)",
                       kind=int, per_run=False, low=1,
                       help="epochs between refreshes of the missing items' graph rows")
TRAIN_FEATURES = HParam("train_features", True, f"{CODE} (from_pretrained, freeze=False)",
                        kind=bool, per_run=False,
                        help="fine-tune the item feature tables (else frozen)")
HPARAMS = (
    learning_rate(1e-3, OVERALL),
    weight("lambda_1", 0.01, YAML, "λ1: weight of the disentangling terms (CLUB + InfoNCE)",
           off=0.0),
    weight("lambda_2", 0.01, YAML, "λ2: weight of the alignment terms", off=0.0),
    HParam("alpha", 0.4, YAML, low=0.0, high=1.0, off=0.0,
           help="α: weight of the rebuilt kNN row when refreshing a missing item's row"),
    HParam("info_nce_temp", 0.4, f"{YAML} (infoNCETemp)", low=0.0, low_open=True,
           help="temperature of the InfoNCE between general parts"),
    HParam("align_bm_temp", 0.4, f"{YAML} (alignBMTemp)", low=0.0, low_open=True,
           help="temperature of the ids-vs-general alignment"),
    HParam("align_ui_temp", 0.2, f"{YAML} (alignUITemp)", low=0.0, low_open=True,
           help="temperature of the user-item alignment"),
    weight("gen_weight", 0.05, f"{SIGIR} src/common/loss.py (MSELoss: mse · 0.05)",
           "weight of the generator and translator MSE", off=0.0),
    weight("recon_weight", 0.1, f"{CODE} (calculate_recon_loss)",
           "weight of the decoders' reconstruction MSE"),
    weight("reg_weight", 0.1, f"{CODE} (calculate_reg_loss)",
           "weight of the norm of the items' modality embeddings"),
    weight("id_reg_weight", 1e-5, f"{CODE} (calculate_reg_loss)",
           "weight of the norm of the batch's id embeddings"),
    KNN_K, N_MM_LAYERS, N_UI_LAYERS, REFRESH_EVERY, TRAIN_FEATURES)

# No grid is released; the values the per-dataset best configs of the TORS
# release take (src/configs/best/DGMRec_*.json: avg_lambda ∈ {0, 0.4, 0.8};
# interModal = sampler ∈ {0, 0.01}, which is λ1 split in two), less their 0s: α = 0
# (no refresh of the missing rows) and λ1 = 0 (no disentangling) switch DGMRec's own
# mechanisms off, ablations (`off`), not tuning points [D]; so λ1 stays at 0.01. lr: the
# overall.yaml 1e-3 and its neighbours in MMRec's learning_rate grid (enoche/MMRec @
# e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D]. 6 points.
SEARCH_SPACE = {"lr": (5e-4, 1e-3, 5e-3), "alpha": (0.4, 0.8)}

PERTURB = 0.1                             # the authors' perturb scale
CLUB_HIDDEN = 32                          # CLUBSample(64, 64, hidden 64): hidden // 2
CLUB_LR = 1e-4
CLUB_STEPS = 5
CLUB_ITEMS = 2048
DEGREE_EPS = 1e-7                         # num_inters = 1 / (degree + 1e-7)


# ----------------------------------------------------------------- parameters

# DGMRec's layers: `nn.Linear` with `xavier_uniform_` on the weight, the default
# bias; its MLPs are Linear → tanh → Linear (`apply_mlp`).
_linear = functools.partial(linear, weight="xavier_uniform")
_mlp = functools.partial(mlp, weight="xavier_uniform")


def init_params(key, spec: ModelSpec) -> dict:
  dim, n_mod = spec.embed_dim, spec.n_modalities
  keys = iter(jax.random.split(key, 3 + 6 * n_mod))
  per_mod = lambda make: [make(next(keys), d) for d in spec.feature_dims]
  params = {
      "users": xavier_table(next(keys), spec.n_users, dim),
      "items": xavier_table(next(keys), spec.n_items, dim),
      "shared": _linear(next(keys), dim, dim),
      "enc_g": per_mod(lambda k, d: _linear(k, d, dim)),
      "enc_s": per_mod(lambda k, d: _linear(k, d, dim)),
      "pref": per_mod(lambda k, d: _linear(k, dim, dim, bias=False)),
      "dec": per_mod(lambda k, d: _linear(k, 2 * dim, d)),
      "gen": per_mod(lambda k, d: _mlp(k, dim, dim, dim)),
      "trans": per_mod(lambda k, d: _mlp(k, (n_mod - 1) * dim, dim, dim)),
  }
  if spec.option(TRAIN_FEATURES):
    params["delta"] = [jnp.zeros((spec.n_items, d)) for d in spec.feature_dims]
  return params


def init_aux_state(key, spec: ModelSpec) -> dict:
  """CLUB networks with their Adam; generated rows; blended graph rows."""
  dims = (spec.embed_dim,) * spec.n_modalities
  nets, opt = club.init_per_modality(key, dims, spec.embed_dim, CLUB_HIDDEN, CLUB_LR)
  width = 2 * spec.option(KNN_K)
  n_mod, n = spec.n_modalities, spec.n_items
  return {"club": nets, "club_opt": opt,
          "gen": [jnp.zeros((n, d)) for d in spec.feature_dims],
          "has_gen": jnp.zeros((n, n_mod), bool),
          "acc_nb": jnp.zeros((n_mod, n, width), jnp.int32),
          "acc_w": jnp.zeros((n_mod, n, width)),
          "refreshes": jnp.int32(0)}


def embed_aux(aux):
  return {k: aux[k] for k in ("gen", "has_gen", "refreshes")}


# ---------------------------------------------------------------- item graphs

def masked_knn(x: jax.Array, observed: jax.Array, k: int):
  """The authors' modality graph: cosine kNN of `x`, rows and columns of the
  unobserved items zeroed, a self-loop of 1 on them, D^-1/2 A D^-1/2.
  Returns (neighbours (I, k), weights (I, k))."""
  values, nb = item_graph.cosine_knn(x, k)
  values = jnp.where(observed[:, None] & observed[nb], values, 0.0)
  own = jnp.arange(x.shape[0], dtype=jnp.int32)
  first = jnp.arange(k) == 0
  nb = jnp.where(observed[:, None], nb, jnp.where(first, own[:, None], nb))
  values = jnp.where(observed[:, None], values, first.astype(values.dtype))
  return nb, item_graph.symmetric_normalise(values, nb)


def plain_knn(x: jax.Array, k: int):
  """The refresh's graph: cosine kNN of the whole table, normalised."""
  values, nb = item_graph.cosine_knn(x, k)
  return nb, item_graph.symmetric_normalise(values, nb)


def merge_rows(nb: jax.Array, w: jax.Array, width: int):
  """Per row, sum the weights of repeated neighbours and keep the `width`
  largest: (neighbours, weights) (I, width) of the same sparse rows."""
  rows = jnp.arange(nb.shape[0])[:, None]
  order = jnp.argsort(nb, axis=1)
  nb_s, w_s = jnp.take_along_axis(nb, order, 1), jnp.take_along_axis(w, order, 1)
  start = jnp.concatenate([jnp.ones_like(nb_s[:, :1], bool), nb_s[:, 1:] != nb_s[:, :-1]], 1)
  group = jnp.cumsum(start, axis=1) - 1
  sums = jnp.zeros(w_s.shape, w_s.dtype).at[rows, group].add(w_s)
  ids = jnp.zeros(nb_s.shape, nb_s.dtype).at[rows, group].max(nb_s)
  top, idx = jax.lax.top_k(sums, width)
  return jnp.take_along_axis(ids, idx, 1), top


def masked_graphs(inputs: ModelInputs, spec: ModelSpec) -> dict:
  """The run's masked kNN graphs S_m from its filled features: (M, I, k) lists."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  graphs = [masked_knn(x, inputs.available[:, m] > 0, spec.option(KNN_K))
            for m, x in enumerate(feats)]
  return {"neighbours": jnp.stack([g[0] for g in graphs]),
          "weights": jnp.stack([g[1] for g in graphs])}


def _kept_share(hp, refreshes) -> jax.Array:
  """(1 − α)^n: what is left of a missing item's original row after n refreshes."""
  return (1.0 - hp["alpha"]) ** refreshes.astype(jnp.float32)


def train_graphs(aux, inputs: ModelInputs, hp, spec: ModelSpec) -> list:
  """Per modality (neighbours (I, 3k), weights): the masked graph with the
  missing items' rows scaled by (1 − α)^n, plus their blended refreshed rows."""
  base = inputs.prepared
  out = []
  for m in range(spec.n_modalities):
    missing = inputs.available[:, m] <= 0
    scale = jnp.where(missing, _kept_share(hp, aux["refreshes"]), 1.0)
    out.append((jnp.concatenate([base["neighbours"][m], aux["acc_nb"][m]], 1),
                jnp.concatenate([scale[:, None] * base["weights"][m], aux["acc_w"][m]], 1)))
  return out


def eval_graphs(tables, inputs: ModelInputs, hp, refreshes, spec: ModelSpec) -> list:
  """Per modality (neighbours (I, 2k), weights) at evaluation: the masked graph
  of the evaluation inputs, the missing items' rows blended with the kNN rows
  of `tables` as after `refreshes` refreshes (see [D] in the docstring)."""
  base, k = inputs.prepared, spec.option(KNN_K)
  kept = _kept_share(hp, refreshes)
  out = []
  for m, x in enumerate(tables):
    missing = inputs.available[:, m] <= 0
    nb, w = plain_knn(jax.lax.stop_gradient(x), k)
    scale = jnp.where(missing, kept, 1.0)
    new = jnp.where(missing, 1.0 - kept, 0.0)
    out.append((jnp.concatenate([base["neighbours"][m], nb], 1),
                jnp.concatenate([scale[:, None] * base["weights"][m], new[:, None] * w], 1)))
  return out


def _propagate(graph, h: jax.Array, spec: ModelSpec) -> jax.Array:
  for _ in range(spec.option(N_MM_LAYERS)):
    h = item_graph.propagate(graph[0], graph[1], h)
  return h


# ------------------------------------------------------------------- forward

def _mean_via(sum_to, rows: jax.Array) -> jax.Array:
  """Each node's sum over its training neighbours of `rows` / (degree + 1e-7),
  the degree summed in the same pass (a column of ones)."""
  ones = jnp.ones((rows.shape[0], 1), rows.dtype)
  total = sum_to(jnp.concatenate([rows, ones], axis=1), normalised=False)
  return total[:, :-1] / (total[:, -1:] + DEGREE_EPS)


def items_from_users(graph, parts: list) -> list:
  """Per part (U, D) → (I, D): each item's mean over its training users; the
  parts gathered and summed as one (U, P·D) table."""
  return _split(_mean_via(graph.to_items, jnp.concatenate(parts, axis=1)), len(parts))


def users_from_items(graph, parts: list) -> list:
  """Per part (I, D) → (U, D): each user's mean over its training items."""
  return _split(_mean_via(graph.to_users, jnp.concatenate(parts, axis=1)), len(parts))


def _split(x: jax.Array, n: int) -> list:
  return list(jnp.split(x, n, axis=1))


def perturb(x: jax.Array, key: jax.Array | None) -> jax.Array:
  """`x + sign(x) · normalise(U[0, 1)) · 0.1`; the identity without a key."""
  if key is None:
    return x
  noise = l2_normalise_rows(jax.random.uniform(key, x.shape, x.dtype))
  return x + jnp.sign(x) * noise * PERTURB


def disentangle(params, tables) -> tuple[list, list]:
  """(general g_m, specific s_m), each per modality (I, D) (the authors' `mge`)."""
  g = [jax.nn.sigmoid(apply_linear(params["shared"], jnp.tanh(apply_linear(p, x))))
       for p, x in zip(params["enc_g"], tables)]
  s = [jax.nn.sigmoid(apply_linear(p, x)) for p, x in zip(params["enc_s"], tables)]
  return g, s


def preferences(params, inputs: ModelInputs, spec: ModelSpec) -> list:
  """Per modality (I, D) f_m: the mean over an item's users of tanh(P_m e_u)."""
  return items_from_users(inputs.graph, [jnp.tanh(apply_linear(p, params["users"]))
                                          for p in params["pref"]])


def _others(parts: list, m: int) -> jax.Array:
  return jnp.concatenate([x for j, x in enumerate(parts) if j != m], axis=-1)


def eligible(available: jax.Array) -> jax.Array:
  """(I, M) bool: m is missing and every other modality observed (generated)."""
  observed = available > 0
  n_obs = jnp.sum(observed, axis=1, keepdims=True)
  return ~observed & (n_obs == observed.shape[1] - 1)


def generate(params, tables, graphs, inputs: ModelInputs, spec: ModelSpec,
             key=None) -> list:
  """Per modality (I, d_m) the generated raw features of every item (the
  authors' `generate_missing_modal`): dec_m(~[S^L trans_m(g_{-m}), S^L gen_m(f_m)])."""
  g, _ = disentangle(params, tables)
  prefs = preferences(params, inputs, spec)
  keys = [None] * spec.n_modalities if key is None else list(
      jax.random.split(key, spec.n_modalities))
  out = []
  for m in range(spec.n_modalities):
    general = _propagate(graphs[m], apply_mlp(params["trans"][m], _others(g, m)), spec)
    specific = _propagate(graphs[m], apply_mlp(params["gen"][m], prefs[m]), spec)
    z = perturb(jnp.concatenate([general, specific], -1), keys[m])
    out.append(jax.lax.stop_gradient(apply_linear(params["dec"][m], z)))
  return out


def _delta(params, spec: ModelSpec) -> list:
  if "delta" in params:
    return params["delta"]
  return [jnp.zeros((spec.n_items, d)) for d in spec.feature_dims]


def train_tables(params, aux, inputs: ModelInputs, spec: ModelSpec) -> list:
  """Per modality (I, d_m) T_m: observed rows, generated rows, else the fill,
  each plus its fine-tuned offset."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  return [jnp.where(aux["has_gen"][:, m:m + 1], aux["gen"][m], x) + delta
          for m, (x, delta) in enumerate(zip(feats, _delta(params, spec)))]


def eval_tables(params, aux, inputs: ModelInputs, hp, spec: ModelSpec):
  """(tables, graphs) for scoring under the evaluation mask: the items missing
  m there (observing the rest) get their m-row generated from the current
  parameters; the hidden raw rows are never read."""
  feats = inputs.item_features(jnp.arange(spec.n_items))
  deltas = _delta(params, spec)
  start = []
  for m, (x, delta) in enumerate(zip(feats, deltas)):
    observed = inputs.available[:, m:m + 1] > 0
    trained_gen = aux["has_gen"][:, m:m + 1] & ~observed
    start.append(jnp.where(observed, x + delta,
                           jnp.where(trained_gen, aux["gen"][m] + delta, x)))
  gen = generate(params, start, eval_graphs(start, inputs, hp, aux["refreshes"], spec),
                 inputs, spec)
  fresh = eligible(inputs.available)
  tables = [jnp.where(fresh[:, m:m + 1], gen[m], t) for m, t in enumerate(start)]
  return tables, eval_graphs(tables, inputs, hp, aux["refreshes"], spec)


def forward(params, tables, graphs, inputs: ModelInputs, spec: ModelSpec) -> dict:
  """Every representation the loss and the scores read."""
  n_users, n_mod = spec.n_users, spec.n_modalities
  g, s = disentangle(params, tables)
  prefs = preferences(params, inputs, spec)
  big_g = [_propagate(graphs[m], prefs[m] * g[m], spec) for m in range(n_mod)]
  big_s = [_propagate(graphs[m], prefs[m] * s[m], spec) for m in range(n_mod)]
  user_parts = users_from_items(inputs.graph, big_g + big_s)
  user_g, user_s = user_parts[:n_mod], user_parts[n_mod:]
  ids = inputs.graph.layer_mean(jnp.concatenate([params["users"], params["items"]]),
                                spec.option(N_UI_LAYERS))
  id_users, id_items = ids[:n_users], ids[n_users:]
  users = id_users + (sum(user_g) / n_mod + sum(user_s)) / (n_mod + 1)
  items = id_items + (sum(big_g) / n_mod + sum(big_s)) / (n_mod + 1)
  return dict(g=g, s=s, prefs=prefs, G=big_g, S=big_s, user_g=user_g, user_s=user_s,
              id_users=id_users, id_items=id_items, users=users, items=items)


# ----------------------------------------------------------------- training

def epoch_update(params, aux, inputs: ModelInputs, hp, ctx: StepContext, spec: ModelSpec):
  """(aux, {"club_nll": the CLUB fit's last step's NLL}) after the CLUB fit, the
  generation of the missing rows, and every `refresh_every` epochs the refresh of
  the missing items' graph rows (the authors' order)."""
  params = jax.lax.stop_gradient(params)
  k_club, k_gen = jax.random.split(ctx.key)
  tables = train_tables(params, aux, inputs, spec)
  g, s = disentangle(params, tables)
  n_sample = min(CLUB_ITEMS, spec.n_items)

  def pairs(key):
    items = jax.random.permutation(key, spec.n_items)[:n_sample]
    return [s_m[items] for s_m in s], [g_m[items] for g_m in g]

  nets, opt, last_nll = club.fit(aux["club"], aux["club_opt"], pairs,
                                 jax.random.split(k_club, CLUB_STEPS), CLUB_LR)
  recon = generate(params, tables, train_graphs(aux, inputs, hp, spec), inputs, spec, k_gen)
  fresh = eligible(inputs.available)
  gen = [jnp.where(fresh[:, m:m + 1], r - d, 0.0)
         for m, (r, d) in enumerate(zip(recon, _delta(params, spec)))]
  aux = {**aux, "club": nets, "club_opt": opt, "gen": gen, "has_gen": fresh}

  def refresh(aux):
    new_tables = train_tables(params, aux, inputs, spec)
    width = aux["acc_nb"].shape[-1]
    acc_nb, acc_w = [], []
    for m, x in enumerate(new_tables):
      missing = (inputs.available[:, m] <= 0)[:, None]
      nb, w = plain_knn(x, spec.option(KNN_K))
      merged = merge_rows(jnp.concatenate([nb, aux["acc_nb"][m]], 1),
                          jnp.concatenate([hp["alpha"] * w,
                                           (1.0 - hp["alpha"]) * aux["acc_w"][m]], 1), width)
      acc_nb.append(jnp.where(missing, merged[0], aux["acc_nb"][m]))
      acc_w.append(jnp.where(missing, merged[1], aux["acc_w"][m]))
    return {**aux, "acc_nb": jnp.stack(acc_nb), "acc_w": jnp.stack(acc_w),
            "refreshes": aux["refreshes"] + 1}

  aux = jax.lax.cond((ctx.epoch + 1) % spec.option(REFRESH_EVERY) == 0, refresh,
                     lambda a: a, aux)
  return aux, {"club_nll": last_nll}


def _norm(x: jax.Array, w: jax.Array) -> jax.Array:
  """Frobenius norm of the valid rows of x."""
  return jnp.sqrt(jnp.sum(w * jnp.sum(x * x, -1)) + 1e-24)


def dgmrec_terms(params, aux, batch: Batch, inputs: ModelInputs, hp, key,
                 spec: ModelSpec) -> dict:
  n_mod = spec.n_modalities
  tables = train_tables(params, aux, inputs, spec)
  graphs = train_graphs(aux, inputs, hp, spec)
  f = forward(params, tables, graphs, inputs, spec)
  keys = iter(jax.random.split(key, 4 * n_mod + 1))
  u, p, n, w = batch.users, batch.pos, batch.neg, batch.weights
  nce = lambda a, b, temp, weights=w: losses.info_nce(anchors=a, positives=b, weights=weights,
                                                      temperature=temp)
  # The batch's distinct items (torch.unique of pos ∪ neg) and what they observe.
  slots = jnp.concatenate([p, n])
  distinct = first_occurrence(slots, jnp.concatenate([w, w]))
  observed = inputs.available[slots] > 0                               # (2B, M)
  complete = distinct * jnp.all(observed, axis=1)
  pairs = [(a, b) for a in range(n_mod) for b in range(a + 1, n_mod)]
  # Disentangling: CLUB(specific; general) over all items, InfoNCE of general parts.
  perm = jax.random.permutation(next(keys), spec.n_items)
  club_bound = jnp.sum(club.bounds(aux["club"], f["S"], f["G"], [g[perm] for g in f["G"]],
                                   jnp.ones(spec.n_items)))
  inter = sum(nce(f["g"][a][slots], f["g"][b][slots], hp["info_nce_temp"], complete)
              + nce(f["user_g"][a][u], f["user_g"][b][u], hp["info_nce_temp"])
              for a, b in pairs)
  # Generators (specific from preferences) and translators (general across modalities).
  mse = lambda a, b, weights: losses.weighted_mean(jnp.mean((a - b) ** 2, -1), weights)
  gen = 0.0
  for m in range(n_mod):
    made = apply_mlp(params["gen"][m], perturb(f["prefs"][m][slots], next(keys)))
    gen = gen + mse(f["s"][m][slots], made, distinct * observed[:, m])
    moved = apply_mlp(params["trans"][m], perturb(_others(f["G"], m)[slots], next(keys)))
    gen = gen + mse(f["G"][m][slots], moved, complete)
  # Decoders back to the (fine-tuned) feature tables.
  recon = 0.0
  for m in range(n_mod):
    z = perturb(jax.lax.stop_gradient(jnp.concatenate([f["G"][m], f["S"][m]], -1)),
                next(keys))
    recon = recon + jnp.mean((apply_linear(params["dec"][m], z) - tables[m]) ** 2)
  # Alignment: user-item in each space, ids against the general parts.
  sum_g, sum_ug = sum(f["G"]), sum(f["user_g"])
  align_ui = (nce(f["id_users"][u], f["id_items"][p], hp["align_ui_temp"])
              + nce(sum_ug[u], sum_g[p], hp["info_nce_temp"])
              + sum(nce(f["user_s"][m][u], f["S"][m][p], hp["align_ui_temp"])
                    for m in range(n_mod)))
  align_bm = (nce(f["id_items"][p], sum_g[p], hp["align_bm_temp"])
              + nce(f["id_users"][u], sum_ug[u], hp["align_bm_temp"]))
  users, items = f["users"], f["items"]
  bpr = losses.bpr_risk(score_diff=jnp.sum(users[u] * (items[p] - items[n]), -1), weights=w)
  count = jnp.maximum(jnp.sum(w), 1.0)
  id_norm = (_norm(f["id_users"][u], w) + _norm(f["id_items"][p], w)
             + _norm(f["id_items"][n], w)) / count
  mod_norm = sum(_norm((f["G"][m] + f["S"][m])[p], w) for m in range(n_mod)) / count
  return dict(bpr=bpr, club=club_bound, inter=inter, gen=gen, recon=recon, align_ui=align_ui,
              align_bm=align_bm, id_norm=id_norm, mod_norm=mod_norm)



def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return init_params(key, spec)

  def init_aux(key, hp, params):
    return init_aux_state(key, spec)

  def prepare(inputs: ModelInputs, hp):
    return masked_graphs(inputs, spec)

  def pre_epoch(state: State, run: Run):
    return epoch_update(state.params, state.aux, run.inputs, run.hp, run.ctx, spec)

  def loss(state: State, batch: Batch, run: Run):
    hp = run.hp
    t = dgmrec_terms(state.params, state.aux, batch, run.inputs, hp, run.ctx.key, spec)
    total = (t["bpr"] + hp["lambda_1"] * (t["club"] + t["inter"])
             + hp["gen_weight"] * t["gen"] + hp["recon_weight"] * t["recon"]
             + hp["lambda_2"] * (t["align_ui"] + t["align_bm"])
             + hp["id_reg_weight"] * t["id_norm"] + hp["reg_weight"] * t["mod_norm"])
    return total, t

  def embed(state: State, run: Run):
    """Scores under the evaluation mask, its missing modalities generated."""
    params, inputs = state.params, run.inputs
    tables, graphs = eval_tables(params, state.aux, inputs, run.hp, spec)
    f = forward(params, tables, graphs, inputs, spec)
    return f["users"], f["items"]
  return Hooks(init=init, loss=loss, embed=embed, prepare=prepare, init_aux=init_aux,
               pre_epoch=pre_epoch, embed_aux=embed_aux, optimizer=mmrec_decayed_adam)


DGMREC = Model(name="dgmrec", hparams=HPARAMS, make=make, config_defaults={"fill": "mean"},
               min_modalities=2, search_space=SEARCH_SPACE)
