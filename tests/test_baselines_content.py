"""New-item baselines DUIF, MTPR and CLCRec: their mechanisms (the runs axis and
learning are tests/test_every_model.py's)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.models import clcrec, mtpr
from jaxrec.models.base import Batch, ModelInputs, Run, State
from jaxrec.sweep import train_configs
from tests.helpers import one_run, step_context

# tests/test_every_model.py's learning data; CLCRec is well past its margin after 20 epochs.
CFG = dict(protocol="new_item", setting="ff", synthetic_users=600, synthetic_items=500,
           synthetic_dims=(24, 16), embed_dim=32, batch_size=512, eval_every=10,
           max_epochs=20)
TINY = dict(protocol="new_item", setting="ff", synthetic_users=150, synthetic_items=120,
            synthetic_dims=(12, 8), embed_dim=8, batch_size=128, max_epochs=4,
            eval_every=2, patience=5)


@functools.lru_cache(maxsize=None)
def _single_run(name):
  """(model, spec, hp, train inputs, params, split) of one fresh TINY run."""
  run = one_run(make_config(**TINY, model=name))
  model, spec, split, hp, inputs = run.model, run.spec, run.split, run.hp, run.inputs
  hooks = model.make(spec)
  params = hooks.init(jax.random.PRNGKey(0), hp)
  return model, spec, hp, inputs, params, split


def _batch(split, size=64):
  pairs = jnp.asarray(split.train_pairs[:size])
  return Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1],
               weights=jnp.ones(size))


def _copy_item(inputs: ModelInputs, src: int, dst: int) -> ModelInputs:
  return inputs.replace(features=tuple(f.at[dst].set(f[src]) for f in inputs.features))


def test_duif_items_are_a_function_of_content_only():
  model, spec, hp, inputs, params, split = _single_run("duif")
  hooks = model.make(spec)
  # No per-item parameter: nothing in the model is indexed by item id.
  assert all(spec.n_items not in leaf.shape for leaf in jax.tree.leaves(params))
  new = np.flatnonzero(split.eval_items)
  warm = np.flatnonzero(split.train_items)
  # A new and a warm item with identical features get identical embeddings.
  _, items = hooks.embed(State(params, {}), Run(_copy_item(inputs, warm[0], new[0]), hp))
  np.testing.assert_array_equal(items[new[0]], items[warm[0]])
  _, before = hooks.embed(State(params, {}), Run(inputs, hp))
  assert not np.allclose(before[new[0]], before[warm[0]])


def test_mtpr_counterfactual_has_an_exactly_zero_preference_part():
  model, spec, hp, inputs, params, split = _single_run("mtpr")
  hooks = model.make(spec)
  half = spec.embed_dim // 2
  items = jnp.arange(spec.n_items)
  normal, cf = mtpr.item_representations(mtpr.MTPRNet.for_spec(spec), params, inputs, items)
  assert np.all(np.asarray(cf[:, :half]) == 0.0)
  np.testing.assert_array_equal(cf[:, half:], normal[:, half:])
  assert np.all(np.abs(np.asarray(normal[:, :half])).sum(1) > 0)
  # New items (no training edges) are scored with the counterfactual.
  _, emb = hooks.embed(State(params, {}), Run(inputs, hp))
  new, warm = split.eval_items, split.train_items
  np.testing.assert_array_equal(emb[new], cf[new])
  np.testing.assert_array_equal(emb[warm], normal[warm])
  # The counterfactual task never reaches the preference table; the normal one does.
  batch = _batch(split)
  ctx = step_context(jax.random.PRNGKey(1))
  term_grad = lambda term: jax.grad(
      lambda p: hooks.loss(State(p, {}), batch, Run(inputs, hp, ctx))[1][term])
  grad_cc, grad_nn = jax.jit(lambda p: (term_grad("bpr_cc")(p), term_grad("bpr_nn")(p)))(
      params)
  assert np.all(np.asarray(grad_cc["pref_table"]["embedding"]) == 0.0)
  assert np.any(np.asarray(grad_nn["pref_table"]["embedding"]) != 0.0)


def test_mtpr_loss_is_the_four_pairwise_terms():
  model, spec, hp, inputs, params, split = _single_run("mtpr")
  hooks = model.make(spec)
  batch = _batch(split)
  total, terms = hooks.loss(State(params, {}), batch,
                            Run(inputs, hp, step_context(jax.random.PRNGKey(1))))
  u = np.asarray(params["user_table"]["embedding"], np.float64)[np.asarray(batch.users)]
  normal, cf = (np.asarray(x, np.float64) for x in mtpr.item_representations(
      mtpr.MTPRNet.for_spec(spec), params, inputs, jnp.arange(spec.n_items)))
  pos, neg = np.asarray(batch.pos), np.asarray(batch.neg)
  bpr = lambda p, n: np.mean(np.log1p(np.exp(-np.sum(u * (p - n), 1))))
  ranking = (bpr(normal[pos], normal[neg]) + bpr(cf[pos], cf[neg])
             + bpr(normal[pos], cf[neg]) + bpr(cf[pos], normal[neg]))
  l2 = np.mean(np.sum(u ** 2 + normal[pos] ** 2 + normal[neg] ** 2, 1))
  assert float(total) == pytest.approx(ranking + float(hp["reg"]) * l2, rel=1e-5)


def test_clcrec_new_items_use_the_content_encoder():
  model, spec, hp, inputs, params, split = _single_run("clcrec")
  hooks = model.make(spec)
  content = np.asarray(clcrec.content_embeddings(clcrec.CLCRecNet.for_spec(spec), params,
                                                 inputs, jnp.arange(spec.n_items)))
  ids = np.asarray(params["item_table"]["embedding"])
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  _, emb = hooks.embed(State(params, {}), Run(inputs, hp))
  new, warm = split.eval_items, split.train_items
  np.testing.assert_allclose(emb[new], unit(content[new]), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(emb[warm], unit(ids[warm]), rtol=1e-5, atol=1e-6)
  # A new item's embedding moves with its features, not with its ID row.
  moved = params | {"item_table": {"embedding": params["item_table"]["embedding"] + 1.0}}
  _, emb_moved = hooks.embed(State(moved, {}), Run(inputs, hp))
  np.testing.assert_array_equal(emb_moved[new], emb[new])


def test_clcrec_contrastive_terms_decrease():
  curves = []
  train_configs([make_config(**CFG, model="clcrec", seed=0)],
                on_epoch=lambda epoch, terms: curves.append(terms))
  for term in ("rep_emb", "user_item"):
    first, last = np.asarray(curves[0][term]), np.asarray(curves[-1][term])
    print(f"clcrec {term}: epoch 1 {first} -> epoch {len(curves)} {last}")
    assert np.all(last < first - 0.05), term
