"""What the evaluation mask hides is gone, for every model: neither the hidden raw
rows nor anything the model learned per item from them reaches a score.

Warm `mm`: training observes the modality that evaluation later hides for half
the test items, so a model can learn per-item quantities from it (a fine-tuned
feature row). One trained state per model is scored twice under the evaluation
mask, as the engine scores it: once as trained, once with the hidden (item,
modality) pairs replaced by noise, both their raw feature rows and every
per-item learned row of that modality's width (a leaf (I, d_m) of the
parameters or of `embed_aux`: the item's own copy of modality m; the synthetic
widths differ from every other width here so that such a leaf is unambiguous).
Every score must be bitwise identical.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.engine import sharding
from jaxrec.engine.inputs import build_group
from jaxrec.engine.train import GroupTrainer
from jaxrec.models import REGISTRY
from jaxrec.models.base import Run, State

# Feature widths 11 and 7: unlike the embedding (8), the users (150), the items
# (120) and the kNN widths (multiples of knn_k = 10).
TINY = dict(protocol="warm", setting="mm", synthetic_users=150, synthetic_items=120,
            synthetic_dims=(11, 7), embed_dim=8, batch_size=512, seed=0)
EPOCHS = 2   # with a one-epoch first stage where a model has one


def _config(name: str):
  model = REGISTRY[name]
  extra = {"pretrain_epochs": 1} if "pretrain_epochs" in model.hparam else {}
  return make_config(**TINY, model=name, **extra)


def _trained(cfg):
  """(trainer, unprepared runs, data, state) after EPOCHS epochs, as the engine trains."""
  group = build_group([cfg])
  mesh = sharding.runs_mesh()
  trainer = GroupTrainer(group.model, group.spec, group.settings,
                         int(group.data.train_pairs.shape[0]), mesh)
  data = sharding.to_device(group.data, sharding.replicated(mesh))
  runs = sharding.to_device(group.runs, sharding.runs_sharding(mesh))
  prepared = trainer.prepare(runs, data)
  state = trainer.init(prepared)
  for epoch in range(EPOCHS):
    state, _ = trainer.epoch(state, prepared, data, jnp.int32(epoch))
  return trainer, runs, data, state


def _noisy_rows(tree, hidden: np.ndarray, feature_dims, n_items: int, rng):
  """`tree` (leading runs axis 1) with the hidden rows of every (I, d_m) leaf noised."""
  def noise(leaf):
    shape = tuple(np.shape(leaf))[1:]
    if len(shape) != 2 or shape[0] != n_items or shape[1] not in feature_dims:
      return leaf
    rows = hidden[:, feature_dims.index(shape[1])]
    out = np.array(leaf)
    out[0, rows] = rng.normal(size=(int(rows.sum()), shape[1])).astype(out.dtype)
    return jnp.asarray(out)
  return jax.tree.map(noise, tree)


def _scorer(trainer):
  """f(params, embed_aux, runs, data) -> (U, I) every evaluation score of run 0,
  its evaluation inputs prepared from `data` (one compile for both calls)."""
  def one(params, embed_aux, run, data):
    users, items = trainer.hooks.embed(State(params, embed_aux),
                                       Run(trainer.inputs(run, data, "eval"), run.hp))
    return users @ items.T
  scores = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
  return lambda params, embed_aux, runs, data: np.asarray(
      scores(params, embed_aux, trainer.prepare(runs, data), data)[0])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_scores_ignore_what_evaluation_hides(name):
  trainer, runs, data, state = _trained(_config(name))
  train_seen = np.asarray(runs.train_available[0])
  hidden = ~np.asarray(runs.eval_available[0])
  assert (hidden & train_seen).any(), "no pair that training sees and evaluation hides"
  dims = trainer.spec.feature_dims
  assert len(set(dims)) == len(dims)
  embed_aux = trainer.hooks.embed_aux(state.aux)
  scores = _scorer(trainer)
  before = scores(state.params, embed_aux, runs, data)
  assert np.isfinite(before).all()

  rng = np.random.default_rng(1)
  features = tuple(jnp.asarray(np.where(hidden[:, m:m + 1], rng.normal(size=f.shape), f),
                               f.dtype)
                   for m, f in enumerate(map(np.asarray, data.features)))
  noised = lambda tree: _noisy_rows(tree, hidden, dims, trainer.spec.n_items, rng)
  noisy_data = sharding.to_device(data.replace(features=features),
                                  sharding.replicated(sharding.runs_mesh()))
  after = scores(noised(state.params), noised(embed_aux), runs, noisy_data)
  np.testing.assert_array_equal(after, before)
