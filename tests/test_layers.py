"""The pieces every model is built from: one linear layer, one CLUB, one optimiser idiom."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import losses
from jaxrec.models import club, layers
from jaxrec.models.base import StepContext, adam_at, mmrec_decayed_adam
from jaxrec.models.pretrained import two_stage_adam

MODELS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "jaxrec", "models")


def _model_sources():
  for name in sorted(os.listdir(MODELS)):
    if name.endswith(".py") and name not in ("layers.py", "base.py"):
      yield name, open(os.path.join(MODELS, name)).read()


# --- one linear layer -------------------------------------------------------------
def test_linear_draws_each_weight_as_the_torch_call_it_names():
  key = jax.random.PRNGKey(0)
  d_in, d_out = 400, 300
  torch = layers.linear(key, d_in, d_out)
  bound = 1.0 / np.sqrt(d_in)
  for leaf in (torch["w"], torch["b"]):          # nn.Linear: U(±1/√fan_in), weight and bias
    assert float(jnp.abs(leaf).max()) <= bound
    assert float(jnp.abs(leaf).max()) > 0.95 * bound
  assert torch["w"].shape == (d_in, d_out) and torch["b"].shape == (d_out,)
  # xavier_uniform_: U(±√(6 / (fan_in + fan_out))); xavier_normal_: an untruncated
  # normal of std √(2 / (fan_in + fan_out)), so draws beyond 2 std exist (~4.6%).
  uniform = layers.linear(key, d_in, d_out, "xavier_uniform")["w"]
  assert float(jnp.abs(uniform).max()) <= np.sqrt(6.0 / (d_in + d_out))
  normal = layers.linear(key, d_in, d_out, "xavier_normal")["w"]
  std = np.sqrt(2.0 / (d_in + d_out))
  np.testing.assert_allclose(float(jnp.std(normal)), std, rtol=0.02)
  beyond = float(jnp.mean(jnp.abs(normal) > 2 * std))
  assert 0.035 < beyond < 0.057, beyond
  assert "b" not in layers.linear(key, d_in, d_out, bias=False)
  with pytest.raises(ValueError, match="weight init 'he'"):
    layers.linear(key, 2, 2, "he")


def test_the_linen_dense_draws_as_the_functional_linear():
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (5, 7))
  for weight in layers.WEIGHT_INITS:
    p = layers.linear(jax.random.PRNGKey(1), 7, 4, weight)
    dense = layers.dense(4, 7, weight)
    variables = {"params": {"kernel": p["w"], "bias": p["b"]}}
    np.testing.assert_allclose(dense.apply(variables, x), layers.apply_linear(p, x), rtol=1e-6)
    # Same distribution family: the linen init stays within the functional one's bounds.
    drawn = dense.init(key, x)["params"]
    assert drawn["kernel"].shape == (7, 4)
    assert float(jnp.abs(drawn["bias"]).max()) <= 1.0 / np.sqrt(7)


def test_apply_mlp_is_two_linears_with_the_activation_between():
  p = layers.mlp(jax.random.PRNGKey(0), 6, 5, 3)
  x = jnp.arange(12.0).reshape(2, 6) / 10
  want = jnp.tanh(x @ p[0]["w"] + p[0]["b"]) @ p[1]["w"] + p[1]["b"]
  np.testing.assert_allclose(layers.apply_mlp(p, x), want, rtol=1e-6)
  np.testing.assert_allclose(layers.apply_mlp(p, x, jax.nn.relu),
                             jax.nn.relu(x @ p[0]["w"] + p[0]["b"]) @ p[1]["w"] + p[1]["b"],
                             rtol=1e-6)


def test_models_write_no_linear_layer_or_optimiser_of_their_own():
  for name, text in _model_sources():
    assert not re.search(r"nn\.initializers\.|torch_linear_init\(", text), \
        f"{name}: use layers.linear / layers.dense"
    assert not re.search(r"optax\.(adam|sgd|adamw)\(", text), f"{name}: use base.adam_at"
    assert not re.search(r"\bdef _(linear|dense|mlp|apply)\b", text), name


# --- one CLUB -----------------------------------------------------------------------
def test_club_is_clubsample_and_its_fit_lowers_the_nll():
  key = jax.random.PRNGKey(0)
  nets, opt = club.init_per_modality(key, (6, 4), 3, hidden=8, lr=1e-2)
  assert [n["mu"][0]["w"].shape for n in nets] == [(6, 8), (4, 8)]
  x = [jax.random.normal(jax.random.PRNGKey(1), (64, 6)),
       jax.random.normal(jax.random.PRNGKey(2), (64, 4))]
  y = [x[0][:, :3] * 2.0, x[1][:, :3] - 1.0]     # y depends on x: q can learn it
  mu, logvar = club.apply(nets[0], x[0])
  hidden = lambda p: jax.nn.relu(x[0] @ p[0]["w"] + p[0]["b"]) @ p[1]["w"] + p[1]["b"]
  np.testing.assert_allclose(mu, hidden(nets[0]["mu"]), rtol=1e-6)
  np.testing.assert_allclose(logvar, jnp.tanh(hidden(nets[0]["logvar"])), rtol=1e-6)
  before = float(club.nll(nets, x, y))
  fitted, _, last = club.fit(nets, opt, lambda _: (x, y), jax.random.split(key, 200), 1e-2)
  assert float(club.nll(fitted, x, y)) < 0.5 * before
  assert np.isfinite(float(last))
  # The bound per modality is the sampled CLUB bound; the nets get no gradient from it.
  perm = jnp.arange(64)[::-1]
  got = club.bounds(fitted, x, y, [t[perm] for t in y], jnp.ones(64))
  for m in range(2):
    mu, lv = club.apply(fitted[m], x[m])
    want = losses.club_upper_bound(mu=mu, logvar=lv, target=y[m], shuffled_target=y[m][perm],
                                   weights=jnp.ones(64))
    np.testing.assert_allclose(got[m], want, rtol=1e-6)
  grads = jax.grad(lambda n: jnp.sum(club.bounds(n, x, y, y, jnp.ones(64))))(fitted)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


# --- one optimiser idiom ------------------------------------------------------------
def _ctx(epoch: int, first_stage_epochs: int = 0) -> StepContext:
  key = jax.random.PRNGKey(0)
  return StepContext(key=key, run_key=key, epoch=jnp.int32(epoch),
                     first_stage_epochs=first_stage_epochs)


def test_the_rate_in_force_is_in_the_optax_state():
  params = {"w": jnp.ones(3)}
  state = adam_at(0.01).init(params)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
  # MMRec's schedule lr · 0.96^(epoch / 50), evaluated at the group's epoch.
  hp = {"lr": jnp.float32(1e-3)}
  for epoch in (0, 50, 125):
    tx = mmrec_decayed_adam(hp, _ctx(epoch))
    _, new = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    assert float(new.hyperparams["learning_rate"]) == pytest.approx(1e-3 * 0.96 ** (epoch / 50),
                                                                     rel=1e-6)


def test_a_stage_mask_gives_zero_updates_and_keeps_the_state_outside_its_stage():
  params = {"mf": jnp.ones(2), "head": jnp.ones(2)}
  grads = {"mf": jnp.ones(2), "head": jnp.ones(2)}
  for epoch, moving, still in ((0, "mf", "head"), (5, "head", "mf")):
    tx = two_stage_adam(_ctx(epoch, first_stage_epochs=3), 0.1, 0.1)
    state = tx.init(params)
    updates, new = tx.update(grads, state, params)
    assert float(jnp.abs(updates[moving]).min()) > 0
    assert float(jnp.abs(updates[still]).max()) == 0.0
    inner = lambda s, name: s.inner_states[name].inner_state.inner_state
    kept = jax.tree.leaves(inner(state, "first" if still == "mf" else "second"))
    now = jax.tree.leaves(inner(new, "first" if still == "mf" else "second"))
    assert all(bool(jnp.all(a == b)) for a, b in zip(kept, now))
    assert int(inner(new, "first" if moving == "mf" else "second").count) == 1


# --- a projection per distinct item ---------------------------------------------------
def test_per_item_gives_the_rows_numbers_and_gradients_whichever_way_it_projects():
  feats = jax.random.normal(jax.random.PRNGKey(0), (10, 6))
  w = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
  pos = jnp.array([3, 3, 7, 0, 9, 3])
  neg = jnp.array([1, 1, 2, 8, 8, 5])
  calls = []

  def project(w, ids):
    calls.append(ids.shape[0])
    return jnp.tanh(feats[ids] @ w), feats[ids].sum(-1)

  def loss(w, n_items):
    (p, p_sum), (n, _) = layers.per_item(lambda ids: project(w, ids), n_items, pos, neg)
    return jnp.sum(p * n) + jnp.sum(p_sum)

  # 12 rows over a catalogue of 10: every item once (one call of 10 rows) ...
  value, grad = jax.value_and_grad(loss)(w, 10)
  assert calls == [10]
  # ... a catalogue as large as the rows: the rows themselves (one call per id array).
  calls.clear()
  want_value, want_grad = jax.value_and_grad(loss)(w, 12)
  assert calls == [6, 6]
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)
