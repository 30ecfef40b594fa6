"""I3-MRec: invariant learning with an information bottleneck for incomplete
modality recommendation (Chen et al., 2025). Spec: ../shared/spec/I3MRec.md.

Per-modality 3-layer LightGCN encoders over the shared training graph with a
shared user table; each modality is an environment (all M scored in one `vmap`)
with the same penalty choices as MILK; a missing-aware fusion
`z = tanh(dropout(W · (1/M) Σ_m sg(I_m)))` (W = identity at init) scores items;
an information bottleneck adds InfoNCE between simulated missing views (every
non-empty modality subset, one `vmap`) and the CLUB bound between each
modality's features and z. The CLUB networks (`models/club.py`: Cheng et al.'s
CLUBSample at PyTorch's nn.Linear init) live in the auxiliary state: fitted
by their own Adam on the (x_m, z) pairs they are applied to — z with the fusion
dropout of training, as in the loss — never by the main optimiser. Under the
new-item protocol, new items have no edges, so their embedding is their projected
content alone (H0 / 4 after the layer mean).

Weighting of the two bottleneck terms (authors' code vs here):
  InfoNCE  the authors sum the P = V(V-1) ordered view pairs and add that sum / 6
           (V = 2^M - 1 views): P·7/6 times the mean over pairs, 7x at M = 2 and
           49x at M = 3 for the same c_max. Default here: the mean over pairs
           (spec [D]); `infonce_reduction="authors"` gives their weighting, under
           which their README's c_max values were chosen.
  CLUB     averaged over the M modalities, as the authors do.
Training stops after at most 200 epochs by default (the authors' `epochs`).
"""
from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec import losses
from jaxrec.models import club
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                learning_rate, weight)
from jaxrec.models.layers import (UsersAndContent, dense, dropout, id_table,
                                  l2_normalise_rows, one_row_features)
from jaxrec.models.milk import PENALTY

N_LAYERS = 3
TEMPERATURE = 0.4
CLUB_HIDDEN = 32
CLUB_LR = 1e-4
CLUB_STEPS = 10
CLUB_BATCH = 2048

INFONCE_REDUCTIONS = ("mean", "authors")
INFONCE_REDUCTION = HParam(
    "infonce_reduction", "mean", "spec [D]; 'authors' = their sum + sum/6",
    kind=str, per_run=False, choices=INFONCE_REDUCTIONS,
    help="InfoNCE over view pairs: mean over pairs, or the authors' sum·7/6")

# The authors' Baby settings (their README): lr, reg, β (penalty), c_max, c_min.
SOURCE = "I3-MRec authors' README (Baby)"
HPARAMS = (
    learning_rate(1e-3, SOURCE),
    weight("reg", 1e-3, SOURCE, "L2 weight"),
    weight("penalty_weight", 300.0, SOURCE, "β: weight of the invariance penalty", off=0.0),
    weight("c_max", 1e-3, SOURCE, "weight of InfoNCE between missing views", off=0.0),
    weight("c_min", 1e-5, SOURCE, "weight of the CLUB bound", off=0.0),
    HParam("dropout", 0.5, "I3-MRec authors' code (fusion dropout)", low=0.0, high=0.99,
           help="dropout rate of the missing-aware fusion"),
    PENALTY,
    INFONCE_REDUCTION)


class I3MRecNet(UsersAndContent):
  """Shared user table, one linear item encoder per modality, the fusion map."""

  def setup(self):
    self.user_table = id_table(self.n_users, self.embed_dim)
    self.encoders = [dense(self.embed_dim, d, name=f"encoder_{m}")
                     for m, d in enumerate(self.feature_dims)]
    self.fusion = nn.Dense(self.embed_dim, use_bias=False,
                           kernel_init=lambda key, shape, dtype=jnp.float32:
                           jnp.eye(shape[0], shape[1], dtype=dtype))

  def __call__(self, item_feats):
    return self.all_users(), self.project(item_feats), self.fuse(
        jnp.zeros((1, self.embed_dim)))

  def project(self, item_feats):
    """(M, I, D) per-modality linear item embeddings."""
    return jnp.stack([f(x) for f, x in zip(self.encoders, item_feats)])

  def fuse(self, x):
    return self.fusion(x)


def _net(spec: ModelSpec) -> I3MRecNet:
  return I3MRecNet(spec.n_users, spec.embed_dim, spec.feature_dims)


def subset_masks(n_modalities: int) -> jnp.ndarray:
  """(2^M - 1, M) 0/1 rows: every non-empty modality subset, a simulated missing view."""
  rows = [mask for mask in itertools.product((0.0, 1.0), repeat=n_modalities) if any(mask)]
  return jnp.array(rows, jnp.float32)


def encode(params, inputs: ModelInputs, spec: ModelSpec):
  """Graph encoders: (E_u (U, D), U_m (M, U, D), I_m (M, I, D))."""
  net, variables = _net(spec), {"params": params}
  users = net.apply(variables, method=I3MRecNet.all_users)
  items = net.apply(variables, inputs.item_features(jnp.arange(spec.n_items)),
                    method=I3MRecNet.project)                     # (M, I, D)
  h0 = l2_normalise_rows(jnp.concatenate(
      [jnp.broadcast_to(users, (spec.n_modalities,) + users.shape), items], axis=1))
  h = jax.vmap(lambda x: inputs.graph.layer_mean(x, N_LAYERS))(h0)
  return users, h[:, :spec.n_users], h[:, spec.n_users:]


def fuse(params, item_sum, spec: ModelSpec, key=None, rate=0.0):
  """`tanh(dropout(W · item_sum))`; no dropout without a key (evaluation)."""
  out = _net(spec).apply({"params": params}, item_sum, method=I3MRecNet.fuse)
  return jnp.tanh(dropout(out, rate, key))


def club_inputs(inputs: ModelInputs, items, fused):
  """Per modality (sigmoid(x_m), sigmoid(z)) at `items`: the pairs CLUB measures."""
  feats = inputs.item_features(items)
  return [jax.nn.sigmoid(x) for x in feats], jax.nn.sigmoid(fused)


def club_nets(key, spec: ModelSpec) -> dict:
  """The CLUB networks q_m(z | x_m), one per modality, and their Adam state."""
  nets, opt = club.init_per_modality(key, spec.feature_dims, spec.embed_dim, CLUB_HIDDEN,
                                     CLUB_LR)
  return {"club": nets, "opt": opt}


def fit_club(params, aux, inputs: ModelInputs, hp, key, spec: ModelSpec):
  """(aux, {"club_nll": the fit's last step's NLL}) after fitting the CLUB networks by
  maximum likelihood on (x_m, z) of random items, z with the fusion dropout the loss
  applies (a fresh mask per fitting step)."""
  _, _, items_m = encode(params, inputs, spec)
  fused_input = jax.lax.stop_gradient(jnp.mean(items_m, axis=0))

  def pairs(step_key):
    items_key, dropout_key = jax.random.split(step_key)
    items = jax.random.randint(items_key, (CLUB_BATCH,), 0, spec.n_items)
    fused = fuse(params, fused_input[items], spec, dropout_key, hp["dropout"])
    xs, z = club_inputs(inputs, items, jax.lax.stop_gradient(fused))
    return xs, [z] * len(xs)

  nets, opt, last = club.fit(aux["club"], aux["opt"], pairs,
                             jax.random.split(key, CLUB_STEPS), CLUB_LR)
  return {"club": nets, "opt": opt}, {"club_nll": last}


def infonce_over_pairs(per_pair: jax.Array, reduction: str) -> jax.Array:
  """One InfoNCE term from the (P,) ordered view pairs' terms: their mean, or the
  authors' `sum + sum / 6` (`P · 7/6` times the mean)."""
  if reduction == "authors":
    return jnp.sum(per_pair) * (7.0 / 6.0)
  return jnp.mean(per_pair)


def i3mrec_terms(params, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec,
                 aux) -> dict:
  """The named, unweighted loss terms of one I3-MRec mini-batch."""
  penalty_kind = spec.option(PENALTY)
  k_pos, k_neg, k_views, k_perm = jax.random.split(key, 4)
  user_table, users_m, items_m = encode(params, inputs, spec)
  n_mod = spec.n_modalities
  items_sg = jax.lax.stop_gradient(items_m)                      # sg(I_m)
  u = (user_table + jnp.mean(users_m, axis=0))[batch.users]      # (B, D)
  z_pos = fuse(params, jnp.mean(items_sg[:, batch.pos], axis=0), spec, k_pos, hp["dropout"])
  z_neg = fuse(params, jnp.mean(items_sg[:, batch.neg], axis=0), spec, k_neg, hp["dropout"])
  bpr = losses.bpr_risk(score_diff=jnp.sum(u * (z_pos - z_neg), -1), weights=batch.weights)

  def one_env(user_m, item_m):
    """Modality environment m scores with (E_u + U_m) · I_m."""
    eu = user_table[batch.users] + user_m[batch.users]
    diff = jnp.sum(eu * (item_m[batch.pos] - item_m[batch.neg]), -1)
    return losses.environment_risk(score_diff=diff, weights=batch.weights,
                                   penalty=penalty_kind)

  env_risks, irm = jax.vmap(one_env)(users_m, items_m)
  penalty = losses.invariance_penalty(risks=env_risks, irm=irm, penalty=penalty_kind)

  views = subset_masks(n_mod)                                     # (S, M)
  view_keys = jax.random.split(k_views, views.shape[0])
  z_views = jax.vmap(lambda mask, k: fuse(
      params, jnp.einsum("m,mbd->bd", mask, items_sg[:, batch.pos]) / n_mod, spec, k,
      hp["dropout"]))(views, view_keys)                           # (S, B, D)
  # Every ordered pair of views; (a, b) and (b, a) share one similarity matrix.
  n_views = views.shape[0]
  per_pair = {}
  for a, b in itertools.combinations(range(n_views), 2):
    per_pair[a, b], per_pair[b, a] = losses.info_nce_both_ways(
        a=z_views[a], b=z_views[b], weights=batch.weights, temperature=TEMPERATURE)
  nce = infonce_over_pairs(jnp.stack([per_pair[a, b] for a in range(n_views)
                                      for b in range(n_views) if a != b]),
                           spec.option(INFONCE_REDUCTION))

  xs, z = club_inputs(inputs, batch.pos, z_pos)
  shuffled = z[jax.random.permutation(k_perm, z.shape[0])]
  club_bound = jnp.mean(club.bounds(aux["club"], xs, [z] * len(xs), [shuffled] * len(xs),
                                    batch.weights))
  l2 = 0.5 * losses.weighted_mean(
      jnp.sum(u ** 2, -1) + jnp.sum(z_pos ** 2, -1) + jnp.sum(z_neg ** 2, -1),
      batch.weights)
  return dict(bpr=bpr, env_risk=jnp.sum(env_risks), penalty=penalty, infonce=nce,
              club=club_bound, l2=l2)


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return _net(spec).init(key, one_row_features(spec.feature_dims))["params"]

  def init_aux(key, hp, params):
    return club_nets(key, spec)

  def pre_epoch(state: State, run: Run):
    return fit_club(state.params, state.aux, run.inputs, run.hp, run.ctx.key, spec)

  def loss(state: State, batch: Batch, run: Run):
    """`BPR(u, z) + c_max·InfoNCE + c_min·CLUB + Σ_m R_m + reg·L2 + β·penalty`."""
    hp = run.hp
    t = i3mrec_terms(state.params, batch, run.inputs, hp, run.ctx.key, spec, state.aux)
    total = (t["bpr"] + hp["c_max"] * t["infonce"] + hp["c_min"] * t["club"]
             + t["env_risk"] + hp["reg"] * t["l2"] + hp["penalty_weight"] * t["penalty"])
    return total, t

  def embed(state: State, run: Run):
    """Final users `E_u + mean_m U_m`, items `z` without dropout."""
    params = state.params
    user_table, users_m, items_m = encode(params, run.inputs, spec)
    return (user_table + jnp.mean(users_m, axis=0),
            fuse(params, jnp.mean(items_m, axis=0), spec))
  return Hooks(init=init, loss=loss, embed=embed, init_aux=init_aux, pre_epoch=pre_epoch)


# InfoNCE contrasts pairs of missing views (modality subsets): at least two modalities.
# Search space (32 points): the union of the authors' README settings for Baby and Clothing
# (lr included); β, c_max, c_min = 0 are the ablations (`off`).
SEARCH_SPACE = {"lr": (1e-3, 1e-2), "reg": (1e-3, 1e-2), "penalty_weight": (1.0, 300.0),
                "c_max": (1e-3, 1e-2), "c_min": (1e-6, 1e-5)}
I3MREC = Model(name="i3mrec", hparams=HPARAMS, make=make,
               config_defaults={"fill": "zero", "max_epochs": 200}, min_modalities=2,
               search_space=SEARCH_SPACE)
