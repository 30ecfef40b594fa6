"""gar_scaled: GAR whose players see the frozen MF tables standardised to unit
RMS over the warm item rows (the runs axis, the fills and learning are
tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.models import gar, gar_scaled
from jaxrec.models.base import Batch, Run, State
from tests.helpers import one_run, step_context

TINY = dict(synthetic_users=150, synthetic_items=120, synthetic_dims=(12, 8),
            embed_dim=8, batch_size=128, setting="ff", protocol="new_item",
            pretrain_epochs=2, max_epochs=3, eval_every=1, patience=5)


def test_players_and_scoring_see_the_tables_at_unit_rms():
  run = one_run(make_config(**TINY, model="gar_scaled"))
  model, spec, data, hp, inputs = run.model, run.spec, run.data, run.hp, run.inputs
  params = model.make(spec).init(jax.random.PRNGKey(0), hp)
  # Tables far from unit scale, new items' rows different from the warm ones'.
  warm = inputs.warm_items(spec.n_items)
  params = {"mf": {"users": params["mf"]["users"] * 0.05,
                   "items": jnp.where(warm[:, None], params["mf"]["items"] * 0.05, 7.0)}}
  scaled = gar_scaled.standardised(params, inputs, spec)
  warm_rows = np.asarray(scaled["mf"]["items"])[np.asarray(warm)]
  assert float(np.sqrt(np.mean(warm_rows ** 2))) == pytest.approx(1.0, rel=1e-5)
  c = float(scaled["mf"]["items"][0, 0] / params["mf"]["items"][0, 0])
  assert c > 1.0
  np.testing.assert_allclose(scaled["mf"]["users"], c * params["mf"]["users"], rtol=1e-5)
  # The players' step and the scoring are gar's on the scaled tables.
  aux = model.make(spec).init_aux(jax.random.PRNGKey(1), hp, params)
  pairs = data.train_pairs[:128]
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1], weights=jnp.ones(128))
  ctx = step_context(jax.random.PRNGKey(2), TINY["pretrain_epochs"], TINY["pretrain_epochs"])
  got = model.make(spec).aux_step(State(params, aux), batch, Run(inputs, hp, ctx))[0]
  want = gar.make(spec).aux_step(State(scaled, aux), batch, Run(inputs, hp, ctx))[0]
  plain = gar.make(spec).aux_step(State(params, aux), batch, Run(inputs, hp, ctx))[0]
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert max(float(jnp.abs(x - y).max()) for x, y in
             zip(jax.tree.leaves(got["generator"]), jax.tree.leaves(plain["generator"]))) > 1e-4
  shown = gar.embed_aux(got)
  users, items = model.make(spec).embed(State(params, shown), Run(inputs, hp))
  want_users, want_items = gar.make(spec).embed(State(scaled, shown), Run(inputs, hp))
  np.testing.assert_allclose(users, want_users, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(items, want_items, rtol=1e-5, atol=1e-5)
