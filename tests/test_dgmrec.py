"""DGMRec: a masked modality is generated from the available ones (at train and
at test) and its hidden raw row is never read; the missing items' graph rows
are refreshed as the authors' blend (the runs axis, the fills and learning
are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import make_config
from jaxrec.models import dgmrec
from jaxrec.models.base import Batch, Run, State
from tests.helpers import WARM_TINY, one_run, step_context

TINY = WARM_TINY


def _setup(**kw):
  cfg = make_config(**{**TINY, **kw}, model="dgmrec", setting="mm")
  run = one_run(cfg)
  spec, split, hp, inputs = run.spec, run.split, run.hp, run.inputs
  hooks = dgmrec.make(spec)
  inputs = inputs.replace(prepared=hooks.prepare(inputs, hp))
  params = hooks.init(jax.random.PRNGKey(0), hp)
  # Fine-tuned offsets away from zero, so the tables' plumbing is seen.
  keys = jax.random.split(jax.random.PRNGKey(3), spec.n_modalities)
  params["delta"] = [0.05 * jax.random.normal(k, d.shape) for k, d in zip(keys, params["delta"])]
  aux = hooks.init_aux(jax.random.PRNGKey(1), hp, params)
  return spec, split, hp, inputs, params, aux


def _hide_the_hidden(inputs, spec, seed=7):
  """The same inputs with every masked raw row replaced by noise, re-prepared."""
  hooks = dgmrec.make(spec)
  feats = []
  for m, x in enumerate(inputs.features):
    noise = jax.random.normal(jax.random.PRNGKey(seed + m), x.shape, x.dtype)
    feats.append(jnp.where(inputs.available[:, m:m + 1] > 0, x, noise))
  changed = inputs.replace(features=tuple(feats), prepared=None)
  return changed.replace(prepared=hooks.prepare(changed, None))


def test_a_masked_modality_is_generated_from_the_available_ones_at_test():
  spec, split, hp, inputs, params, aux = _setup()
  hooks = dgmrec.make(spec)
  fresh = np.asarray(dgmrec.eligible(inputs.available))
  assert fresh.any(axis=0).all()                        # every modality has generated items
  tables, _ = jax.jit(lambda p, i: dgmrec.eval_tables(p, hooks.embed_aux(aux), i, hp,
                                                      spec))(params, inputs)
  # By hand, for every generated (item, modality): the decoder of [the
  # translator of the other modality's general part, the generator of the
  # users' preference]; the missing item's graph row is its self-loop (no
  # refresh yet), so propagation leaves both as they are.
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  lin = lambda q, x: x @ q["w"] + q.get("b", 0.0)
  mlp = lambda q, x: lin(q[1], np.tanh(lin(q[0], x)))
  sig = lambda x: 1.0 / (1.0 + np.exp(-x))
  feats = [np.asarray(x, np.float64) for x in inputs.item_features(jnp.arange(spec.n_items))]
  pairs = np.asarray(split.train_pairs)
  for m in range(spec.n_modalities):
    o = 1 - m
    for i in np.flatnonzero(fresh[:, m])[:5]:
      assert bool(inputs.available[i, o]) and not bool(inputs.available[i, m])
      g_other = sig(lin(p["shared"], np.tanh(lin(p["enc_g"][o], feats[o][i] + p["delta"][o][i]))))
      users = pairs[pairs[:, 1] == i, 0]
      pref = np.tanh(p["users"][users] @ p["pref"][m]["w"]).sum(0) / (len(users) + 1e-7)
      want = lin(p["dec"][m], np.concatenate([mlp(p["trans"][m], g_other),
                                              mlp(p["gen"][m], pref)]))
      np.testing.assert_allclose(tables[m][i], want, rtol=1e-4, atol=1e-5)
  # Observed rows are the fine-tuned features.
  observed = np.asarray(inputs.available[:, 0]) > 0
  np.testing.assert_allclose(np.asarray(tables[0])[observed],
                             (feats[0] + p["delta"][0])[observed], rtol=1e-5, atol=1e-6)
  # Unmasking one generated item makes it read its own features instead.
  i = int(np.flatnonzero(fresh[:, 0])[0])
  shown = inputs.replace(available=inputs.available.at[i, 0].set(True), prepared=None)
  shown = shown.replace(prepared=hooks.prepare(shown, hp))
  tables_shown, _ = dgmrec.eval_tables(params, hooks.embed_aux(aux), shown, hp, spec)
  own = np.asarray(shown.item_features(jnp.array([i]))[0][0], np.float64)
  np.testing.assert_allclose(tables_shown[0][i], own + p["delta"][0][i], rtol=1e-5, atol=1e-6)
  assert not np.allclose(tables_shown[0][i], tables[0][i])


def test_the_hidden_raw_features_change_nothing_at_train_or_test():
  spec, _, hp, inputs, params, aux = _setup()
  hooks = dgmrec.make(spec)
  changed = _hide_the_hidden(inputs, spec)
  assert not np.allclose(np.asarray(changed.features[0]), np.asarray(inputs.features[0]))
  batch = Batch(users=jnp.arange(32), pos=jnp.arange(32), neg=jnp.arange(32, 64) % spec.n_items,
                weights=jnp.ones(32))

  @jax.jit
  def everything(inputs):
    ctx = step_context(jax.random.PRNGKey(2), epoch=4)          # a refresh epoch
    after = hooks.pre_epoch(State(params, aux), Run(inputs, hp, ctx))[0]
    total, _ = hooks.loss(State(params, after), batch, Run(inputs, hp, ctx))
    grads = jax.grad(lambda q: hooks.loss(State(q, after), batch, Run(inputs, hp, ctx))[0])(params)
    return after, total, grads, hooks.embed(State(params, dgmrec.embed_aux(after)), Run(inputs, hp))

  for got, want in zip(jax.tree.leaves(everything(changed)), jax.tree.leaves(everything(inputs))):
    np.testing.assert_array_equal(got, want)


def test_training_writes_the_generated_rows_into_the_tables():
  spec, _, hp, inputs, params, aux = _setup()
  hooks = dgmrec.make(spec)
  ctx = step_context(jax.random.PRNGKey(2), epoch=0)
  after = hooks.pre_epoch(State(params, aux), Run(inputs, hp, ctx))[0]
  before = dgmrec.train_tables(params, aux, inputs, spec)
  _, k_gen = jax.random.split(ctx.key)
  recon = dgmrec.generate(params, before, dgmrec.train_graphs(aux, inputs, hp, spec), inputs,
                          spec, k_gen)
  tables = dgmrec.train_tables(params, after, inputs, spec)
  fresh = np.asarray(dgmrec.eligible(inputs.available))
  np.testing.assert_array_equal(after["has_gen"], fresh)
  for m in range(spec.n_modalities):
    rows = fresh[:, m]
    np.testing.assert_allclose(np.asarray(tables[m])[rows], np.asarray(recon[m])[rows],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(tables[m])[~rows], np.asarray(before[m])[~rows])
    assert not np.allclose(np.asarray(tables[m])[rows], np.asarray(before[m])[rows])
  assert int(after["refreshes"]) == 0                           # epoch 0 does not refresh


def _dense(nb, w, n):
  out = np.zeros((n, n))
  np.add.at(out, (np.repeat(np.arange(n), nb.shape[1]), np.asarray(nb).ravel()),
            np.asarray(w, np.float64).ravel())
  return out


def test_the_missing_rows_are_refreshed_as_the_authors_blend():
  spec, _, hp, inputs, params, aux = _setup()
  hooks = dgmrec.make(spec)
  n, k, alpha = spec.n_items, spec.option(dgmrec.KNN_K), float(hp["alpha"])
  step = jax.jit(lambda a, epoch: hooks.pre_epoch(
      State(params, a), Run(inputs, hp, step_context(jax.random.PRNGKey(epoch), epoch=epoch)))[0])
  graphs = [_dense(*g, n) for g in dgmrec.train_graphs(aux, inputs, hp, spec)]
  for epoch in range(10):                                       # refreshes after 4 and 9
    aux = step(aux, epoch)
    if (epoch + 1) % 5:
      continue
    tables = dgmrec.train_tables(params, aux, inputs, spec)
    for m, x in enumerate(tables):
      x = np.asarray(x, np.float64)
      x = x / np.linalg.norm(x, axis=1, keepdims=True)
      sim = x @ x.T
      a = np.zeros((n, n))
      top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
      np.put_along_axis(a, top, np.take_along_axis(sim, top, 1), axis=1)
      d = a.sum(1)
      rebuilt = a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
      missing = ~np.asarray(inputs.available[:, m])
      graphs[m][missing] = alpha * rebuilt[missing] + (1 - alpha) * graphs[m][missing]
  assert int(aux["refreshes"]) == 2
  for m, g in enumerate(dgmrec.train_graphs(aux, inputs, hp, spec)):
    np.testing.assert_allclose(_dense(*g, n), graphs[m], rtol=1e-4, atol=1e-5)
  missing = ~np.asarray(inputs.available[:, 0])
  assert (_dense(*dgmrec.train_graphs(aux, inputs, hp, spec)[0], n)[missing] > 0).sum(1).min() > 1
