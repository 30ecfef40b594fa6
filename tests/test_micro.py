"""MICRO: the per-modality kNN graphs of a run follow its masked features and
give new items neighbours from content, new items are represented by the
content-graph side alone, and the contrastive term is the authors' formula (the
runs axis, the fills and learning are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.models import micro
from jaxrec.models.base import Batch, Run, State
from tests.helpers import one_run, prepared_runs, step_context

TINY = dict(protocol="new_item", setting="fm", synthetic_users=150, synthetic_items=120,
            synthetic_dims=(12, 8), embed_dim=8, batch_size=128, max_epochs=4,
            eval_every=2, patience=5)


def test_the_knn_graphs_follow_each_runs_mask_and_give_new_items_neighbours():
  # Two runs of one group that differ only in their masks (fm: seeds hide a
  # modality of different new items).
  configs = [make_config(**TINY, model="micro", seed=s) for s in (0, 1)]
  runs = prepared_runs(configs)
  nb = np.asarray(runs.prepared["train"]["neighbours"])             # (R, M, I, k)
  w = np.asarray(runs.prepared["train"]["weights"])
  available = np.asarray(runs.train_available)
  assert (available[0] != available[1]).any()
  assert (nb[0] != nb[1]).any()                                     # different graphs
  run = one_run(configs[0])
  spec, split, inputs = run.spec, run.split, run.inputs
  new = np.flatnonzero(split.eval_items)
  k = spec.option(micro.KNN_K)
  for r in range(2):
    own = inputs.replace(available=jnp.asarray(available[r]))
    for m, x in enumerate(own.item_features(jnp.arange(spec.n_items))):
      # Each run's graph is the cosine kNN of its own masked, filled features
      # (compared by the similarities it keeps: rows that share a fill tie) ...
      x = np.asarray(x, np.float64)
      x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
      sims = x @ x.T
      got = np.sort(np.take_along_axis(sims, nb[r, m], 1), 1)
      want = np.sort(sims, 1)[:, -k:]
      np.testing.assert_allclose(got, want, atol=1e-5)
      # ... and new items are nodes with neighbours and non-zero edge weights.
      assert np.all(w[r, m][new].sum(1) > 0)
  # A new item whose modality is hidden in one run only has other neighbours there.
  hidden = new[available[0][new, 0] != available[1][new, 0]]
  assert len(hidden) > 0
  assert all((nb[0, 0, i] != nb[1, 0, i]).any() for i in hidden)
  np.testing.assert_array_equal(np.asarray(runs.prepared["train"]["warm"][0]), split.train_items)


def _one(setting="ff"):
  run = one_run(make_config(**{**TINY, "setting": setting},
                            model="micro"))
  model, spec, split, hp, inputs = run.model, run.spec, run.split, run.hp, run.inputs
  inputs = inputs.replace(prepared=micro.make(spec).prepare(inputs, hp))
  params = model.make(spec).init(jax.random.PRNGKey(0), hp)
  return model, spec, split, hp, inputs, params


def test_new_items_are_represented_by_their_content_neighbours_only():
  model, spec, split, hp, inputs, params = _one()
  hooks = model.make(spec)
  new, warm = split.eval_items, split.train_items
  users, items = hooks.embed(State(params, {}), Run(inputs, hp))
  # A new item's id row is never read: moving it changes no score.
  moved = {**params, "items": params["items"].at[new].add(1.0)}
  _, items_moved = hooks.embed(State(moved, {}), Run(inputs, hp))
  np.testing.assert_array_equal(items_moved, items)
  # A new item is h / ||h||: unit norm, the fusion of its neighbours' id rows.
  learned = micro.lattice.learned_neighbours(params, inputs, spec)
  nb, w = micro.modality_graphs(params, learned, inputs, hp, spec)
  hm, h, beta = micro.views(params, nb, w, inputs, spec)
  np.testing.assert_allclose(items[new], np.asarray(micro.unit_rows(h))[new], atol=1e-6)
  ids = np.where(warm[:, None], np.asarray(params["items"]), 0.0)
  for m in range(spec.n_modalities):
    want = np.einsum("ik,ikd->id", np.asarray(w[m]), ids[np.asarray(nb[m])])
    np.testing.assert_allclose(hm[m], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(beta).sum(1), 1.0, rtol=1e-6)
  # Moving a warm neighbour's id row moves the new items that have it as a neighbour.
  i = int(np.flatnonzero(new)[0])
  j = int(next(j for j in np.asarray(nb[0, i]) if warm[j]))
  moved_j = {**params, "items": params["items"].at[j].add(1.0)}
  _, items_j = hooks.embed(State(moved_j, {}), Run(inputs, hp))
  assert np.abs(np.asarray(items_j[i] - items[i])).max() > 1e-4
  # Warm items add the user-item part: not unit norm.
  assert not np.allclose(np.linalg.norm(np.asarray(items)[warm], axis=1), 1.0)


def test_contrastive_term_is_the_authors_formula():
  a = jax.random.normal(jax.random.PRNGKey(0), (37, 6))
  b = jax.random.normal(jax.random.PRNGKey(1), (37, 6)).at[3].set(0.0)   # a zero row
  tau = 0.5
  x, y = (np.asarray(v, np.float64) for v in (a, b))
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
  refl, between = np.exp(x @ x.T / tau), np.exp(x @ y.T / tau)
  want = np.mean(-np.log(np.diag(between)
                         / (refl.sum(1) + between.sum(1) - np.diag(refl))))
  for block in (8, 37, 100):                  # blocks with padding, one, larger
    assert float(micro.contrastive(a, b, tau, block=block)) == pytest.approx(want, rel=1e-5)
  grad = jax.grad(lambda b: micro.contrastive(a, b, tau, block=8))(b)
  assert np.all(np.isfinite(np.asarray(grad)))
  # Recomputing the blocks in the backward pass changes no number.
  recomputed = jax.grad(lambda b: micro.contrastive(a, b, tau, block=8, remat_bytes=0))(b)
  np.testing.assert_array_equal(np.asarray(recomputed), np.asarray(grad))


def test_the_loss_has_the_contrastive_term_and_the_graph_learns_at_step_zero():
  model, spec, split, hp, inputs, params = _one(setting="fm")
  hooks = model.make(spec)
  ctx = step_context(jax.random.PRNGKey(2))
  aux, _ = hooks.pre_epoch(State(params, hooks.init_aux(None, hp, params)), Run(inputs, hp, ctx))
  pairs = jnp.asarray(split.train_pairs[:32])
  batch = Batch(users=pairs[:, 0], pos=pairs[:, 1], neg=pairs[::-1, 1], weights=jnp.ones(32))
  grad = jax.jit(jax.grad(lambda p, step: hooks.loss(
      State(p, aux), batch, Run(inputs, hp, ctx.replace(step=step)))[0]))
  grads = [grad(params, jnp.int32(step)) for step in range(2)]
  content = lambda g: max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g["content"]))
  assert content(grads[0]) > 0 and content(grads[1]) == 0.0
  # New items' id rows get no gradient; the attention query does.
  new = split.eval_items
  assert float(jnp.abs(grads[1]["items"][new]).max()) == 0.0
  assert float(jnp.abs(grads[1]["query"]["out"]).max()) > 0
  total, terms = hooks.loss(State(params, aux), batch, Run(inputs, hp, ctx))
  assert float(terms["contrast"]) > 0
  assert float(total) == pytest.approx(float(terms["bpr"] + hp["reg_weight"] * terms["l2"]
                                             + hp["loss_ratio"] * terms["contrast"]), rel=1e-6)
