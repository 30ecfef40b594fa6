"""GAR (Chen et al., SIGIR 2022): a generator of CF-like embeddings for new
items trained adversarially against a recommender, on a pretrained MF-BPR model.

Stage 1 (epoch < pretrain_epochs) is MF-BPR on `params["mf"]`, as in
DropoutNet (see dropoutnet.py for the staging). Stage 2, with the MF tables
(e_u, e_i) fixed, the two players alternate every step, as the authors' code
(zfnWong/GAR: one recommender step, then one generator step, same batch):
  * the recommender R(u, i) = r_U(e_u) · r_I(e_i), two towers, learns to rank a
    user's real positive item above its generated embedding and a negative:
      L_R = softplus(-(R(u, e_pos) − (1−β)·R(u, G(x_pos)) − β·R(u, e_neg)));
  * the generator G(x) learns to be ranked like the real embedding, plus an L1
    similarity to it:
      L_G = (1−α)·softplus(-(R(u, G(x_pos)) − R(u, e_pos))) + α·|G(x_pos) − e_pos|.
At test both sides go through the recommender's towers: users r_U(e_u), warm
items r_I(e_i), new items r_I(G(x_i)) (the authors' main.py: get_user_emb,
get_item_emb).

Both players, their batch-norm statistics and their Adam states live in the
auxiliary state and move only in `aux_step`, each with the code's own Adam at
1e-3 (the run's `lr` drives stage 1's MF-BPR only). `embed_aux` hands the
players to `embed`, so the engine keeps the selected epoch's players with the
selected MF tables. The main loss in stage 2 is the generator's loss of the
latest step, reported from the aux state (no gradient: the MF tables are
fixed), so the engine's curves and divergence check see it.

Batch norm as the authors' build_mlp: a recommender tower is BN(no scale) ->
Dense -> BN -> tanh -> dropout -> Dense (bn_first); the generator is Dense ->
BN -> tanh -> dropout -> Dense. A player in its own step is in training mode
(batch statistics, running averages updated with TF's momentum 0.99 and
epsilon 1e-3, dropout: generator 0.1, recommender 0.5); the other player is
in inference mode (running averages, no dropout), as the code's `g_training`
/ `d_training` flags. The recommender's step is one pass over the concatenated
[real; negative; generated] items, so its batch norm sees all three.
[D] The offsets right before a batch norm (a Dense's bias, the first norm's
    offset) are dropped: the norm's mean cancels them in training, so their
    gradients are rounding noise that Adam turns into ±lr steps (which made
    a vmapped run differ from the same run alone).
[D] Batch statistics include the padded slots of an epoch's last batch (the
    code drops the incomplete batch).
[D] β, the players' rates and L2 weights are module constants; α is
    `gar.alpha`, the generator's dropout `gar.dropout`.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrec import losses
from jaxrec.models import mf, pretrained
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                StepContext, adam_at, learning_rate)
from jaxrec.models.layers import dropout
from jaxrec.models.pretrained import content_dim, frozen_mf

# The authors' code (zfnWong/GAR, GAR/GAR.py and main.py): 200-unit tanh
# layers, g_drop 0.1, d_drop 0.5, Adam 1e-3 for both players, 1e-3 L2 on
# kernels, alpha 0.05 (similarity share), beta 0.1 (negative share).
GAR_HIDDEN = 200
D_DROPOUT = 0.5
D_LR = 1e-3
G_LR = 1e-3
D_REG = 1e-3
G_REG = 1e-3
BETA = 0.1
BN_MOMENTUM = 0.99     # tf.layers.batch_normalization's defaults
BN_EPSILON = 1e-3

# lr 5e-3 is stage 1's (MF-BPR, as DropoutNet); the players have their own rates.
HPARAMS = (
    learning_rate(5e-3, "DropoutNet's MF stage [D]"),
    HParam("reg", 1e-4, "MF-BPR's (first stage)", low=0.0, help="L2 of the MF stage"),
    HParam("dropout", 0.1, "authors' code, g_drop", low=0.0, high=0.99,
           help="the generator's dropout"),
    HParam("alpha", 0.05, "authors' code, main.py", low=0.0, high=1.0, off=1.0,
           help="α: share of the L1 similarity in the generator's loss (1: no adversary)"),
    pretrained.PRETRAIN_EPOCHS)
TERMS = ("adversarial", "similarity", "generator_l2", "generator_loss", "recommender_loss")


class BatchNormMLP(nn.Module):
  """[BN(no scale) ->] Dense -> BN -> tanh -> dropout -> Dense (build_mlp)."""
  hidden: int
  out: int
  bn_first: bool

  @nn.compact
  def __call__(self, x, train: bool, rate=0.0, key=None):
    norm = lambda name, affine: nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        use_scale=affine, use_bias=affine, name=name)
    if self.bn_first:
      x = norm("bn_in", False)(x)
    h = nn.Dense(self.hidden, use_bias=False, name="hidden")(x)
    h = jnp.tanh(norm("bn_hidden", True)(h))
    return nn.Dense(self.out, name="out")(dropout(h, rate, key))


TOWER = BatchNormMLP(GAR_HIDDEN, GAR_HIDDEN, bn_first=True)   # each recommender side


def _generator(spec: ModelSpec) -> BatchNormMLP:
  return BatchNormMLP(GAR_HIDDEN, spec.embed_dim, bn_first=False)


def _run_player(module: BatchNormMLP, player: dict, x, train: bool, rate=0.0, key=None):
  """(output, running statistics after the pass) of one network of a player."""
  variables = {"params": player["params"], "batch_stats": player["stats"]}
  if not train:
    return module.apply(variables, x, False), player["stats"]
  out, updated = module.apply(variables, x, True, rate, key, mutable=["batch_stats"])
  return out, updated["batch_stats"]


def _player(module: BatchNormMLP, key, in_dim: int) -> dict:
  variables = module.init(key, jnp.zeros((1, in_dim)), False)
  return {"params": variables["params"], "stats": variables["batch_stats"]}


def players(key, spec: ModelSpec) -> dict:
  """The generator and the recommender's towers, their Adam states, their last terms."""
  k_g, k_u, k_i = jax.random.split(key, 3)
  user, item = _player(TOWER, k_u, spec.embed_dim), _player(TOWER, k_i, spec.embed_dim)
  players = {
      "generator": _player(_generator(spec), k_g, content_dim(spec)),
      "recommender": {"params": {"user": user["params"], "item": item["params"]},
                      "stats": {"user": user["stats"], "item": item["stats"]}}}
  return {**players,
          "opt": {"generator": adam_at(G_LR).init(players["generator"]["params"]),
                  "recommender": adam_at(D_LR).init(players["recommender"]["params"])},
          "last": {name: jnp.float32(0.0) for name in TERMS}}


def generate(generator: dict, content, spec: ModelSpec, train=False, rate=0.0, key=None):
  """((N, D) G(x), the generator's running statistics after the pass).

  `train`: batch statistics (running averages updated) and dropout `rate`
  with `key`; otherwise the running averages, no dropout.
  """
  return _run_player(_generator(spec), generator, content, train, rate, key)


def recommender_scores(recommender: dict, users, items, train=False, key=None):
  """((N,) R(u, i) = r_U(users) · r_I(items), the towers' running statistics).

  `train`: batch statistics (running averages updated) and dropout D_DROPOUT
  with `key`; otherwise the running averages, no dropout.
  """
  k_u, k_i = jax.random.split(key) if key is not None else (None, None)
  u, stats_u = recommender_side(recommender, "user", users, train, k_u)
  i, stats_i = recommender_side(recommender, "item", items, train, k_i)
  return jnp.sum(u * i, -1), {"user": stats_u, "item": stats_i}


def recommender_side(recommender: dict, side: str, x, train=False, key=None):
  """(r_U(x) or r_I(x), that tower's running statistics after the pass)."""
  tower = {"params": recommender["params"][side], "stats": recommender["stats"][side]}
  return _run_player(TOWER, tower, x, train, D_DROPOUT, key)


def _kernel_l2(tree) -> jax.Array:
  """Σ‖W‖²/2 over the dense kernels (TF's l2_regularizer, biases excluded)."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return sum(0.5 * jnp.sum(jnp.square(x)) for path, x in leaves
             if "kernel" in jax.tree_util.keystr(path))


class Players(NamedTuple):
  """One batch as the players see it: users e_u, items e_pos / e_neg, content x_pos."""
  users: jax.Array
  real: jax.Array
  neg: jax.Array
  content: jax.Array
  weights: jax.Array


def players_batch(params, batch: Batch, inputs: ModelInputs) -> Players:
  cf = frozen_mf(params)
  return Players(users=cf["users"][batch.users], real=cf["items"][batch.pos],
                 neg=cf["items"][batch.neg], content=inputs.item_content(batch.pos),
                 weights=batch.weights)


def recommender_loss(rec_params, aux, b: Players, key, spec: ModelSpec, hp):
  """(L_R + its L2, (the towers' updated statistics, {})); the generator in
  inference mode.

  As the authors' code, one training-mode pass over the users repeated three
  times against [real; negative; generated] items. (`hp` unused: both players'
  losses share one signature.)
  """
  fake, _ = generate(aux["generator"], b.content, spec)
  items = jnp.concatenate([b.real, b.neg, fake])
  recommender = {**aux["recommender"], "params": rec_params}
  scores, stats = recommender_scores(recommender, jnp.tile(b.users, (3, 1)), items, True, key)
  real, neg, gen = jnp.split(scores, 3)
  risk = losses.bpr_risk(score_diff=real - (1.0 - BETA) * gen - BETA * neg, weights=b.weights)
  return risk + D_REG * _kernel_l2(rec_params), (stats, {})


def generator_loss(gen_params, aux, b: Players, key, spec: ModelSpec, hp):
  """(L_G + its L2, (the generator's updated statistics, its terms `adversarial`,
  `similarity` (L1), `generator_l2`)); the recommender in inference mode."""
  fake, stats = generate({**aux["generator"], "params": gen_params}, b.content, spec, True,
                         hp["dropout"], key)
  score = lambda items: recommender_scores(aux["recommender"], b.users, items)[0]
  terms = {"adversarial": losses.bpr_risk(score_diff=score(fake) - score(b.real),
                                          weights=b.weights),
           "similarity": losses.weighted_mean(jnp.mean(jnp.abs(fake - b.real), -1), b.weights),
           "generator_l2": _kernel_l2(gen_params)}
  alpha = hp["alpha"]
  total = ((1.0 - alpha) * terms["adversarial"] + alpha * terms["similarity"]
           + G_REG * terms["generator_l2"])
  return total, (stats, terms)


def _player_step(aux, name: str, rate: float, player_loss, b: Players, key, spec, hp):
  """aux after one Adam step of player `name` on `player_loss` (its params, the
  rest held fixed), with its statistics and its reported terms updated."""
  player = aux[name]
  (value, (stats, terms)), grads = jax.value_and_grad(player_loss, has_aux=True)(
      player["params"], aux, b, key, spec, hp)
  updates, opt = adam_at(rate).update(grads, aux["opt"][name], player["params"])
  return {**aux, name: {"params": optax.apply_updates(player["params"], updates),
                        "stats": stats},
          "opt": {**aux["opt"], name: opt},
          "last": {**aux["last"], **terms, f"{name}_loss": value}}


def recommender_step(aux, b: Players, key, spec: ModelSpec):
  """aux after one Adam step of the recommender against the current generator."""
  return _player_step(aux, "recommender", D_LR, recommender_loss, b, key, spec, None)


def generator_step(aux, b: Players, key, spec: ModelSpec, hp):
  """aux after one Adam step of the generator against the current recommender."""
  return _player_step(aux, "generator", G_LR, generator_loss, b, key, spec, hp)


def players_steps(params, aux, batch: Batch, inputs: ModelInputs, hp, ctx: StepContext,
                  spec: ModelSpec):
  """Stage 2: one recommender step, then one generator step against the updated
  recommender (the code's train_d, train_g). Stage 1: the players wait for the
  MF tables. Their terms are reported by `loss` (from aux["last"])."""
  def steps(aux):
    k_d, k_g = jax.random.split(ctx.key)
    b = players_batch(params, batch, inputs)
    return generator_step(recommender_step(aux, b, k_d, spec), b, k_g, spec, hp)
  # The stage is the group's (not batched), so stage 1 skips the players' work.
  return jax.lax.cond(ctx.in_first_stage, lambda aux: aux, steps, aux)


def scores(params, aux, inputs: ModelInputs, spec: ModelSpec):
  """The recommender's towers (inference mode) on users e_u and on items (warm
  e_i, new G(x_i)), so that user · item = R(u, i)."""
  cf = params["mf"]
  gen, _ = generate(aux["generator"], inputs.item_content(jnp.arange(spec.n_items)), spec)
  items = jnp.where(inputs.warm_items(spec.n_items)[:, None], cf["items"], gen)
  rec = aux["recommender"]
  return recommender_side(rec, "user", cf["users"])[0], recommender_side(rec, "item", items)[0]


def embed_aux(aux):
  """What `embed` reads of the auxiliary state: both players."""
  return {"generator": aux["generator"], "recommender": aux["recommender"]}


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    return {"mf": mf.mf_params(key, spec.n_users, spec.n_items, spec.embed_dim)}

  def init_aux(key, hp, params):
    return players(key, spec)

  def aux_step(state: State, batch: Batch, run: Run):
    inputs, hp, ctx = run
    return players_steps(state.params, state.aux, batch, inputs, hp, ctx, spec), {}

  def reported(state: State, batch: Batch, run: Run):
    """Stage 2's loss: the generator's of this step's `aux_step`, reported (the MF
    tables are frozen, so it has no gradient)."""
    last = jax.lax.stop_gradient(state.aux["last"])
    return last["generator_loss"], last

  def embed(state: State, run: Run):
    return scores(state.params, state.aux, run.inputs, spec)
  return Hooks(init=init, loss=pretrained.staged_loss(reported), embed=embed,
               init_aux=init_aux, aux_step=aux_step, embed_aux=embed_aux,
               optimizer=pretrained.two_stage_optimizer)


# GAR's paper studies α; our grid spans the code's 0.05 to the 0.5 used before [D].
# lr is the MF stage's (the players' rates are the code's constants), the default 5e-3 and
# its neighbours in MMRec's learning_rate grid (enoche/MMRec @ e775373b,
# src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (1e-3, 5e-3, 1e-2), "alpha": (0.05, 0.2, 0.5)}
GAR = Model(name="gar", hparams=HPARAMS, make=make,
            first_stage_epochs=pretrained.PRETRAIN_EPOCHS, config_defaults={"fill": "mean"},
            search_space=SEARCH_SPACE)
