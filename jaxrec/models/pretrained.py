"""The pretrained-CF scheme shared by DropoutNet, Heater and GAR.

Two stages inside one training run (and one vmapped sweep):
  1. while `ctx.in_first_stage` (the first `pretrain_epochs` epochs): MF-BPR
     (`mf.mf_terms`) on the warm items' training pairs, on `params["mf"]`;
  2. afterwards the model's own loss, with the MF tables frozen.
`staged` runs only the current stage's loss (`lax.cond` on the group's epoch,
which every run of a group shares); the engine only evaluates after stage 1.
`two_stage_optimizer` makes the freezing real: each stage's parameters have
their own Adam, whose updates and moments stay exactly still outside its
stage, so the MF tables after stage 2 are bit-identical to those after
stage 1 (the earlier single Adam kept moving them for a few steps on its
first moment).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrec.models import mf
from jaxrec.models.base import Batch, HParam, ModelSpec, Run, State, StepContext, adam_at

# A first stage of 20 epochs suits the small data of tests and examples [D].
PRETRAIN_EPOCHS = HParam("pretrain_epochs", 20, "our choice for small data [D]", kind=int,
                         per_run=False, low=1, help="epochs of the MF-BPR first stage")
HIDDEN = 200


class Tower(nn.Module):
  """`Dense(out) ∘ tanh ∘ Dense(hidden)`: one side of a two-tower scorer."""
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out, name="out")(jnp.tanh(nn.Dense(self.hidden, name="hidden")(x)))


def tower(spec: ModelSpec) -> Tower:
  return Tower(HIDDEN, spec.embed_dim)


def staged(ctx: StepContext, hp, params, batch: Batch,
           own: Callable[[], tuple[jax.Array, dict]], aux=None):
  """(loss, terms): MF-BPR's in the first stage, `own()`'s afterwards.

  Only the stage's branch runs: the stage is the group's (`ctx.epoch` is not
  batched), so `lax.cond` stays a branch under the engine's vmap. The other
  branch's terms are reported as 0. Given `aux` (a loss that updates the
  auxiliary state, `Hooks.loss_updates_aux`), `own()` returns
  (loss, (terms, aux')) and so does `staged`, the first stage with `aux` as is.
  """
  updates_aux = aux is not None

  def mf_part():
    return (*mf.mf_loss(params["mf"], batch, hp), aux)

  def own_part():
    value, out = own()
    return (value, *(out if updates_aux else (out, aux)))
  mf_terms, own_terms = jax.eval_shape(lambda: (mf_part()[1], own_part()[1]))
  zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)

  def with_zeros(part, other_terms):
    value, terms, new_aux = part()
    return value, {**zeros(other_terms), **terms}, new_aux
  value, terms, new_aux = jax.lax.cond(ctx.in_first_stage,
                                       lambda: with_zeros(mf_part, own_terms),
                                       lambda: with_zeros(own_part, mf_terms))
  return (value, (terms, new_aux)) if updates_aux else (value, terms)


def staged_loss(own: Callable[[State, Batch, Run], tuple[jax.Array, dict]],
                updates_aux: bool = False):
  """The `loss` hook of a two-stage model: MF-BPR first, `own(state, batch, run)` after
  (with `updates_aux`, `own` returns (loss, (terms, aux')), as `staged` says)."""
  def loss(state: State, batch: Batch, run: Run):
    return staged(run.ctx, run.hp, state.params, batch, lambda: own(state, batch, run),
                  state.aux if updates_aux else None)
  return loss


def frozen_mf(params) -> dict:
  """The pretrained MF tables, with no gradient into them (stage 2)."""
  return jax.lax.stop_gradient(params["mf"])


def score_pairs(batch: Batch):
  """The batch's (user, pos) and (user, neg) pairs as (2B,) users, items, weights."""
  users = jnp.concatenate([batch.users, batch.users])
  items = jnp.concatenate([batch.pos, batch.neg])
  weights = jnp.concatenate([batch.weights, batch.weights])
  return users, items, weights


def content_dim(spec: ModelSpec) -> int:
  return int(sum(spec.feature_dims))


def two_stage_optimizer(hp, ctx: StepContext) -> optax.GradientTransformation:
  """Adam at `lr` on `params["mf"]` in stage 1 and on the rest in stage 2 only."""
  return two_stage_adam(ctx, hp["lr"], hp["lr"])


def two_stage_adam(ctx: StepContext, first_lr, second_lr) -> optax.GradientTransformation:
  """Adam at `first_lr` on `params["mf"]` in stage 1 only and at `second_lr` on
  the rest in stage 2 only (each stage's moments still outside its stage)."""
  # optax's stage mask: outside its stage an Adam gives zero updates and keeps its
  # state. The condition is the group's epoch, as `staged` reads it (unbatched: a
  # real branch under vmap), not the mask's own step count.
  in_first = ctx.in_first_stage
  only_when = lambda active, tx: optax.transforms.conditionally_mask(tx, lambda _: active)
  return optax.multi_transform(
      {"first": only_when(in_first, adam_at(first_lr)),
       "second": only_when(jnp.logical_not(in_first), adam_at(second_lr))},
      lambda params: {name: "first" if name == "mf" else "second" for name in params})
