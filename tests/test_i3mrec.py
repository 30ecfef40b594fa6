"""I3-MRec: its loss terms against float64 references and CLUB isolation (the
runs axis, the fills and learning are tests/test_every_model.py's; InfoNCE is
tests/test_losses.py's)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import losses
from jaxrec.config import make_config
from jaxrec.models import club, i3mrec
from jaxrec.models.base import Run, State
from tests.helpers import one_run, step_context

TINY = dict(model="i3mrec", protocol="warm", synthetic_users=150, synthetic_items=120,
            synthetic_dims=(12, 8), embed_dim=8, batch_size=128, max_epochs=4,
            eval_every=2, patience=5)


def test_club_bound_and_nll_match_float64():
  rng = np.random.default_rng(1)
  mu, logvar, y = (rng.standard_normal((5, 3)) for _ in range(3))
  perm = np.array([2, 0, 4, 1, 3])
  w = np.ones(5)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  got = losses.club_upper_bound(mu=f32(mu), logvar=f32(logvar), target=f32(y),
                                shuffled_target=f32(y[perm]), weights=f32(w))
  pos = -((mu - y) ** 2 / np.exp(logvar)).sum(1)
  neg = -((mu - y[perm]) ** 2 / np.exp(logvar)).sum(1)
  assert float(got) == pytest.approx(np.mean(pos - neg) / 2, rel=1e-5)
  nll = losses.gaussian_nll(mu=f32(mu), logvar=f32(logvar), target=f32(y), weights=f32(w))
  ref = np.mean(((mu - y) ** 2 / np.exp(logvar) + logvar).sum(1))
  assert float(nll) == pytest.approx(ref, rel=1e-5)


def test_subset_views():
  views = np.asarray(i3mrec.subset_masks(3))
  assert views.shape == (7, 3) and len({tuple(r) for r in views}) == 7
  assert views.sum(1).min() == 1


def _single_run(cfg):
  from jaxrec.models.base import Batch
  run = one_run(cfg)
  model, spec, data, hp, inputs = run.model, run.spec, run.data, run.hp, run.inputs
  hooks = model.make(spec)
  pairs = data.train_pairs[:64]
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1],
                weights=jnp.ones(64))
  key = jax.random.PRNGKey(0)
  params = hooks.init(key, hp)
  aux = hooks.init_aux(key, hp, params)
  return model, spec, hp, inputs, batch, params, aux


def test_club_nets_are_outside_the_main_update_and_fitted_by_their_own():
  cfg = make_config(**TINY)
  model, spec, hp, inputs, batch, params, aux = _single_run(cfg)
  hooks = model.make(spec)
  ctx = step_context(jax.random.PRNGKey(1))
  grads = jax.grad(lambda p: hooks.loss(State(p, aux), batch, Run(inputs, hp, ctx))[0])(params)
  assert set(grads) == set(params) and "club" not in str(jax.tree_util.tree_structure(grads))
  # The main loss does depend on the CLUB nets' outputs, but only through the bound:
  # their gradient w.r.t. the aux state is blocked.
  club_grads = jax.grad(lambda nets: hooks.loss(
      State(params, {**aux, "club": nets}), batch, Run(inputs, hp, ctx))[0])(aux["club"])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(club_grads))

  def nll(nets):
    # Measured on z with the fusion dropout of training: the pairs CLUB is applied to.
    items = jnp.arange(spec.n_items)
    _, _, items_m = i3mrec.encode(params, inputs, spec)
    fused = i3mrec.fuse(params, jnp.mean(items_m, 0), spec, jax.random.PRNGKey(99),
                        hp["dropout"])
    xs, z = i3mrec.club_inputs(inputs, items, fused)
    return sum(losses.gaussian_nll(mu=mu, logvar=lv, target=z, weights=jnp.ones(len(items)))
               for mu, lv in (club.apply(n, x) for n, x in zip(nets, xs)))

  fitted = aux
  for k in range(5):
    fitted, _ = hooks.pre_epoch(State(params, fitted),
                                Run(inputs, hp, step_context(jax.random.PRNGKey(k))))
  assert float(nll(fitted["club"])) < float(nll(aux["club"]))


def test_club_is_fitted_on_the_dropout_fused_embedding_it_is_applied_to():
  cfg = make_config(**TINY)
  model, spec, hp, inputs, batch, params, aux = _single_run(cfg)
  hooks = model.make(spec)
  ctx = step_context(jax.random.PRNGKey(3))
  with_dropout = hooks.pre_epoch(State(params, aux), Run(inputs, hp, ctx))[0]
  without, _ = hooks.pre_epoch(State(params, aux),
                               Run(inputs, {**hp, "dropout": jnp.float32(0.0)}, ctx))
  gaps = [float(jnp.abs(a - b).max()) for a, b in
          zip(jax.tree.leaves(with_dropout["club"]), jax.tree.leaves(without["club"]))]
  assert max(gaps) > 0.0


@pytest.mark.parametrize("n_modalities, ratio", [(2, 7.0), (3, 49.0)])
def test_authors_infonce_weighting_is_their_sum_plus_a_sixth(n_modalities, ratio):
  views = i3mrec.subset_masks(n_modalities).shape[0]
  per_pair = jnp.linspace(0.5, 2.0, views * (views - 1))
  mean = i3mrec.infonce_over_pairs(per_pair, "mean")
  authors = i3mrec.infonce_over_pairs(per_pair, "authors")
  assert float(mean) == pytest.approx(float(jnp.mean(per_pair)))
  assert float(authors) == pytest.approx(float(jnp.sum(per_pair) + jnp.sum(per_pair) / 6))
  assert float(authors / mean) == pytest.approx(ratio, rel=1e-5)


def test_i3mrec_stops_at_the_authors_200_epochs_unless_told():
  assert make_config(model="i3mrec").max_epochs == 200
  assert make_config(model="i3mrec", max_epochs=30).max_epochs == 30


def test_fusion_starts_as_identity_and_dropout_only_in_training():
  cfg = make_config(**TINY)
  model, spec, hp, inputs, batch, params, aux = _single_run(cfg)
  hooks = model.make(spec)
  x = jnp.linspace(-1, 1, 8)[None]
  np.testing.assert_allclose(i3mrec.fuse(params, x, spec), jnp.tanh(x), rtol=1e-6)
  dropped = i3mrec.fuse(params, jnp.ones((100, 8)), spec, jax.random.PRNGKey(0), 0.5)
  assert 0.3 < float(jnp.mean(dropped == 0)) < 0.7
  users, items = hooks.embed(State(params, aux), Run(inputs, hp))
  users2, items2 = hooks.embed(State(params, aux), Run(inputs, hp))
  np.testing.assert_array_equal(items, items2)
