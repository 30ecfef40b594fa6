"""GAR (Chen et al., SIGIR 2022): a generator of CF-like embeddings for new
items trained adversarially against a recommender, on a pretrained MF-BPR model.

Stage 1 (epoch < pretrain_epochs) is MF-BPR, as in DropoutNet (see
dropoutnet.py for the staging). Stage 2, with the MF tables (e_u, e_i) frozen,
the two players alternate every step (the authors' code: one D step, then one
G step on the same batch):
  * recommender / discriminator R(u, i) = r_U(e_u) · r_I(e_i), two tanh MLPs,
    learns to rank a user's real positive item above its generated embedding
    and a negative item:
      L_R = softplus(-(R(u, e_pos) − (1−β)·R(u, G(x_pos)) − β·R(u, e_neg)));
  * generator G(x) (tanh MLP on content) learns to be ranked like the real
    embedding, plus an L1 similarity to it:
      L_G = (1−α)·softplus(-(R(u, G(x_pos)) − R(u, e_pos))) + α·|G(x_pos) − e_pos|.
The generator (with the MF tables) is in `params`, moved by the main
optimiser; the recommender is in the auxiliary state, moved only by
`aux_step` with its own Adam state (`aux["opt"]`), and is stop-gradient'ed in
the generator's loss. The engine calls `aux_step` before the main update, so
each step is one R update against the current G, then one G update against
the updated R. During stage 1 `aux_step` leaves the recommender as it is.

[D] The recommender lives in aux, the generator in params: `embed` sees only
    params, so new items are scored as `e_u · G(x_i)` in the pretrained CF
    space (warm items `e_u · e_i`), as the authors' first public GAR-MLP code
    does (GCGAN/main.py ranks cold items by `user_emb · gen_emb`); their later
    code also passes both sides through the recommender's towers at test.
Batch norm as in the authors' towers (build_mlp with bn_first): each
recommender tower is BN(no scale) -> Dense -> BN -> tanh -> dropout -> Dense.
The recommender's step runs one pass over the concatenated [real; neg; fake]
items in training mode (batch statistics, running averages updated with TF's
momentum 0.99 and epsilon 1e-3, kept in the auxiliary state); the generator's
step uses the recommender in inference mode (running averages), as the code's
`d_training=False`. Without it the generator ran away on TikTok at once (its
L1 to the CF embedding grew from 0.3 to 15-40 within five epochs of stage 2,
new-item recall at random level); with it the same run-away still comes, but
15-19 epochs into stage 2, after a useful peak (BUILD_NOTES.md).
[D] The generator has no batch norm (the code has one after its first layer):
    its running statistics would be needed at evaluation, and `embed` sees
    only params. Dropout as in the authors' code: generator `dropout`
    (default 0.1) while G trains, recommender D_DROPOUT = 0.5 while R trains,
    none in the other player's step or at evaluation.
[D] β (BETA), the L2 weights (D_REG, G_REG) and the recommender's Adam rate
    (D_LR) are module constants (no config field for them); α is `aux_weight`.
[D] Both players' L2 is the code's 1e-3 kernel regulariser (G_REG, D_REG:
    1e-3·Σ‖W‖²/2); `reg` weights MF-BPR's L2 in stage 1 only.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrec import losses
from jaxrec.models import mf
from jaxrec.models.base import Batch, Model, ModelInputs, ModelSpec, dropout
from jaxrec.models.dropoutnet import (content_dim, frozen_mf, in_first_stage,
                                      item_content, mf_stage_loss, staged, warm_items)

# The authors' code (zfnWong/GAR, GAR/GAR.py and main.py): 200-unit tanh
# layers, g_drop 0.1, d_drop 0.5, Adam 1e-3 for both players, 1e-3 L2 on
# kernels, alpha 0.05 (similarity share), beta 0.1 (negative share).
GAR_HIDDEN = 200
D_DROPOUT = 0.5
D_LR = 1e-3
D_REG = 1e-3
G_REG = 1e-3
BETA = 0.1
BN_MOMENTUM = 0.99     # tf.layers.batch_normalization's defaults
BN_EPSILON = 1e-3

# [D] lr 5e-3 (the authors' players use 1e-3): one per-run rate drives both
# stages, and MF-BPR needs 5e-3 to fit in a short first stage on small data.
# [D] α (aux_weight) 0.5, not the code's 0.05: chosen before the recommender had
# the code's batch norm, when α = 0.05 let the generator run off to saturate the
# recommender's tanh layers on synthetic data (new-item recall below 2x random);
# not re-tuned with the batch norm.
DEFAULT_HPARAMS = dict(lr=5e-3, reg=1e-4, dropout=0.1, aux_weight=0.5)
CONFIG_DEFAULTS = {"pretrain_epochs": 20, "fill": "mean"}


class MLP(nn.Module):
  """`Dense(out) ∘ dropout ∘ tanh ∘ Dense(hidden)`."""
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x, rate=0.0, key=None):
    h = jnp.tanh(nn.Dense(self.hidden, name="hidden")(x))
    return nn.Dense(self.out, name="out")(dropout(h, rate, key))


def _mlp(spec: ModelSpec, out: int | None = None) -> MLP:
  return MLP(GAR_HIDDEN, out or spec.embed_dim)


class Tower(nn.Module):
  """A recommender tower: BN(no scale) -> Dense -> BN -> tanh -> dropout -> Dense.

  [D] The first norm has no offset and the first Dense no bias (the code has
  both; the second norm cancels them in training, its running mean absorbs
  them in inference).
  """
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x, train: bool, rate=0.0, key=None):
    norm = lambda name, affine: nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        use_scale=affine, use_bias=affine, name=name)
    # No offset before the second batch norm (neither the first norm's nor the
    # Dense's): that norm's mean cancels it, so its gradient is zero up to
    # rounding, and Adam would turn that rounding into random +-lr steps.
    h = nn.Dense(self.hidden, use_bias=False, name="hidden")(norm("bn_in", False)(x))
    h = jnp.tanh(norm("bn_hidden", True)(h))
    return nn.Dense(self.out, name="out")(dropout(h, rate, key))


TOWER = Tower(GAR_HIDDEN, GAR_HIDDEN)


def init(key, spec: ModelSpec, hp):
  del hp
  k_mf, k_gen = jax.random.split(key)
  return {"mf": mf.mf_params(k_mf, spec.n_users, spec.n_items, spec.embed_dim),
          "generator": _mlp(spec).init(k_gen, jnp.zeros((1, content_dim(spec))))["params"]}


def generate(params, content: jax.Array, spec: ModelSpec, key=None, rate=0.0):
  """(N, D) G(x): CF-like item embeddings from content."""
  return _mlp(spec).apply({"params": params["generator"]}, content, rate, key)


def init_aux(key, spec: ModelSpec, hp, params):
  del hp, params
  towers = {side: TOWER.init(k, jnp.zeros((1, spec.embed_dim)), False)
            for side, k in zip(("user", "item"), jax.random.split(key))}
  disc = {side: v["params"] for side, v in towers.items()}
  return {"disc": disc, "stats": {side: v["batch_stats"] for side, v in towers.items()},
          "opt": optax.adam(D_LR).init(disc)}


def _tower(params, stats, x, train: bool, key=None):
  """(tower output, updated running statistics); dropout D_DROPOUT with a key."""
  variables = {"params": params, "batch_stats": stats}
  if not train:
    return TOWER.apply(variables, x, False), stats
  out, updated = TOWER.apply(variables, x, True, D_DROPOUT, key, mutable=["batch_stats"])
  return out, updated["batch_stats"]


def recommender_scores(disc, stats, users, items, train: bool = False, key=None):
  """(N,) R(u, i) = r_U(users) · r_I(items), and the updated running statistics.

  `train`: batch statistics (and their running averages updated) and dropout
  with `key`; otherwise the running averages, no dropout.
  """
  k_u, k_i = jax.random.split(key) if key is not None else (None, None)
  u, stats_u = _tower(disc["user"], stats["user"], users, train, k_u)
  i, stats_i = _tower(disc["item"], stats["item"], items, train, k_i)
  return jnp.sum(u * i, -1), {"user": stats_u, "item": stats_i}


def _kernel_l2(tree) -> jax.Array:
  """Σ‖W‖²/2 over the dense kernels (TF's l2_regularizer, biases excluded)."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return sum(0.5 * jnp.sum(jnp.square(x)) for path, x in leaves
             if "kernel" in jax.tree_util.keystr(path))


def recommender_loss(disc, stats, params, batch: Batch, inputs: ModelInputs, key,
                     spec: ModelSpec):
  """(L_R on the batch, updated running statistics); the generator held fixed.

  As the authors' code, one training-mode pass over the users repeated three
  times against [real; negative; generated] items, so batch norm sees all three.
  """
  cf = frozen_mf(params)
  u = cf["users"][batch.users]
  fake = jax.lax.stop_gradient(generate(params, item_content(inputs, batch.pos), spec))
  items = jnp.concatenate([cf["items"][batch.pos], cf["items"][batch.neg], fake])
  scores, stats = recommender_scores(disc, stats, jnp.tile(u, (3, 1)), items, True, key)
  real, neg, gen = jnp.split(scores, 3)
  risk = losses.bpr_risk(score_diff=real - (1.0 - BETA) * gen - BETA * neg,
                         weights=batch.weights)
  return risk + D_REG * _kernel_l2(disc), stats


def aux_step(params, aux, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec):
  """One Adam step of the recommender against the current generator (stage 2)."""
  grads, stats = jax.grad(recommender_loss, has_aux=True)(
      aux["disc"], aux["stats"], params, batch, inputs, key, spec)
  updates, opt = optax.adam(D_LR).update(grads, aux["opt"], aux["disc"])
  stepped = {"disc": optax.apply_updates(aux["disc"], updates), "stats": stats, "opt": opt}
  # In the first stage the MF tables are still moving: the recommender waits.
  first = in_first_stage(hp)
  return jax.tree.map(lambda old, new: jnp.where(first, old, new), aux, stepped)


def gar_terms(params, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec,
              aux) -> dict:
  """Stage-2 generator terms: `adversarial` and `similarity` (L1), `l2`."""
  cf = frozen_mf(params)
  disc, stats = jax.lax.stop_gradient((aux["disc"], aux["stats"]))
  u = cf["users"][batch.users]
  real = cf["items"][batch.pos]
  fake = generate(params, item_content(inputs, batch.pos), spec, key, hp["dropout"])
  adversarial = losses.bpr_risk(   # the recommender in inference mode
      score_diff=recommender_scores(disc, stats, u, fake)[0]
      - recommender_scores(disc, stats, u, real)[0], weights=batch.weights)
  similarity = losses.weighted_mean(jnp.mean(jnp.abs(fake - real), -1), batch.weights)
  return {"adversarial": adversarial, "similarity": similarity,
          "generator_l2": _kernel_l2(params["generator"])}


def loss(params, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec, aux):
  mf_loss, mf_t = mf_stage_loss(params, batch, hp)
  t = gar_terms(params, batch, inputs, hp, key, spec, aux)
  alpha = hp["aux_weight"]
  own = ((1.0 - alpha) * t["adversarial"] + alpha * t["similarity"]
         + G_REG * t["generator_l2"])
  return staged(hp, mf_loss, own), {**mf_t, **t}


def embed(params, inputs: ModelInputs, hp, spec: ModelSpec):
  """Users e_u; warm items e_i, new items G(x_i) (no dropout)."""
  del hp
  cf = params["mf"]
  gen = generate(params, item_content(inputs, jnp.arange(spec.n_items)), spec)
  return cf["users"], jnp.where(warm_items(inputs, spec.n_items)[:, None], cf["items"], gen)


GAR = Model(name="gar", init=init, loss=loss, embed=embed,
            default_hparams=DEFAULT_HPARAMS, config_defaults=CONFIG_DEFAULTS,
            init_aux=init_aux, aux_step=aux_step)
