"""FREEDOM: the chunked kNN, the frozen item graph built from each run's own
masked features, and degree-sensitive pruning (the runs axis, the fills and
learning are tests/test_every_model.py's)."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.engine.inputs import dataset_for, split_for
from jaxrec.eval import evaluate
from jaxrec.graph import Graph
from jaxrec.models import freedom, item_graph
from jaxrec.models.base import ModelSpec, Run, State
from jaxrec.sweep import train_configs
from tests.helpers import (SHARED, WARM_TINY, assert_item_graphs_follow_each_runs_mask, one_run,
                           step_context)

TINY = WARM_TINY
TIKTOK = os.path.join(SHARED, "data", "tiktok-diffmm")


@pytest.mark.parametrize("n, block", [(50, 16), (64, 64), (37, 100)])
def test_chunked_top_k_equals_dense_top_k(n, block):
  x = item_graph.l2_normalise_rows(jax.random.normal(jax.random.PRNGKey(n), (n, 6)))
  values, neighbours = item_graph.knn(x, 5, block=block)
  want_values, want_neighbours = jax.lax.top_k(x @ x.T, 5)
  np.testing.assert_array_equal(neighbours, want_neighbours)
  np.testing.assert_allclose(values, want_values, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(neighbours[:, 0], np.arange(n))    # itself first


def test_item_graph_is_the_authors_normalised_sum_of_modalities():
  cfg = make_config(model="freedom", **TINY)
  run = one_run(cfg)
  spec, hp, inputs = run.spec, run.hp, run.inputs
  hooks = freedom.make(spec)
  prepared = hooks.prepare(inputs, hp)
  k, n = spec.option(freedom.KNN_K), spec.n_items
  # Dense reference: per modality 0/1 kNN rows of the cosine matrix, D^-1/2 A D^-1/2
  # with row sums + 1e-7, weighted 0.1 (image, modality 0) and 0.9.
  want = np.zeros((n, n))
  for w, x in zip((0.1, 0.9), inputs.item_features(jnp.arange(n))):
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    a = np.zeros((n, n))
    np.put_along_axis(a, np.argsort(-(x @ x.T), axis=1)[:, :k], 1.0, axis=1)
    d = 1.0 / np.sqrt(a.sum(1) + 1e-7)
    want += w * d[:, None] * a * d[None, :]
  h = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (n, 3)))
  got = item_graph.propagate(prepared["neighbours"], prepared["weights"], jnp.asarray(h))
  np.testing.assert_allclose(got, want @ h, rtol=1e-4, atol=1e-5)


def test_modality_weights_give_the_image_modality_its_weight():
  hp = {"mm_image_weight": jnp.float32(0.1)}
  two = ModelSpec(n_users=2, n_items=3, feature_dims=(4, 5), modality_names=("image", "text"))
  np.testing.assert_allclose(freedom.modality_weights(hp, two), [0.1, 0.9], rtol=1e-6)
  audio_first = ModelSpec(n_users=2, n_items=3, feature_dims=(4, 5),
                          modality_names=("audio", "image"))
  np.testing.assert_allclose(freedom.modality_weights(hp, audio_first), [0.9, 0.1], rtol=1e-6)
  three = ModelSpec(n_users=2, n_items=3, feature_dims=(4, 5, 6),
                    modality_names=("image", "text", "audio"),
                    options=(("image_modality", "text"),))
  np.testing.assert_allclose(freedom.modality_weights(hp, three), [0.45, 0.1, 0.45], rtol=1e-6)
  one = ModelSpec(n_users=2, n_items=3, feature_dims=(4,), modality_names=("image",))
  np.testing.assert_allclose(freedom.modality_weights(hp, one), [1.0])


def _dense_item_graph(prepared, n_items: int) -> np.ndarray:
  s = np.zeros((n_items, n_items))
  rows = np.repeat(np.arange(n_items), prepared["neighbours"].shape[1])
  np.add.at(s, (rows, np.asarray(prepared["neighbours"]).ravel()),
            np.asarray(prepared["weights"], np.float64).ravel())
  return s


def test_the_item_graph_weights_the_modality_named_image_wherever_it_stands():
  cfg = make_config(model="freedom", **TINY)
  run = one_run(cfg)
  spec, hp, inputs = run.spec, run.hp, run.inputs
  hooks = freedom.make(spec)
  assert spec.modality_names == ("image", "text")
  flip = lambda t: tuple(reversed(t))
  flipped_spec = dataclasses.replace(spec, feature_dims=flip(spec.feature_dims),
                                     modality_names=flip(spec.modality_names))
  flipped = inputs.replace(features=flip(inputs.features), fill=flip(inputs.fill),
                           available=inputs.available[:, ::-1])
  s = _dense_item_graph(hooks.prepare(inputs, hp), spec.n_items)
  np.testing.assert_allclose(
      _dense_item_graph(freedom.make(flipped_spec).prepare(flipped, hp), spec.n_items), s,
      rtol=1e-6, atol=1e-7)
  # The weight is the image's: naming the text instead moves it.
  text = dataclasses.replace(spec, options=spec.options + (("image_modality", "text"),))
  text_graph = _dense_item_graph(freedom.make(text).prepare(inputs, hp), spec.n_items)
  assert np.abs(text_graph - s).max() > 0.05


@pytest.mark.skipif(not os.path.isdir(TIKTOK), reason="TikTok data not in ../shared/data")
def test_on_tiktok_the_order_of_the_modalities_changes_nothing():
  # TikTok's modalities sort as (audio, image); `modalities=image,audio` puts the
  # image first. reg_weight 0: the modality projections, whose initial draws
  # follow the modalities' order, then do not enter training, and the item graph
  # is the only thing the modalities change (setting ff: no per-modality masks).
  base = dict(model="freedom", data=TIKTOK, protocol="warm", setting="ff", max_epochs=1,
              eval_every=1, seed=0, reg_weight=0.0)
  sorted_, image_first = (train_configs([make_config(**base, modalities=m)])
                          for m in ("", "image,audio"))
  for name in sorted_.test:
    assert float(sorted_.test[name][0]) == pytest.approx(float(image_first.test[name][0]),
                                                         abs=1e-6), name
  np.testing.assert_allclose(image_first.best_params["items"], sorted_.best_params["items"],
                             atol=1e-6)


def test_the_knn_graph_of_a_run_follows_its_own_mask():
  assert_item_graphs_follow_each_runs_mask("freedom", TINY)


def test_the_item_graph_stays_frozen_while_the_features_are_fine_tuned():
  cfg = make_config(**{**TINY, "eval_every": 4}, model="freedom", setting="mm")
  out = train_configs([cfg])
  run = one_run(cfg)
  spec, data, hp, inputs = run.spec, run.data, run.hp, run.inputs
  hooks = freedom.make(spec)
  params = jax.tree.map(lambda x: jnp.asarray(x[0]), out.best_params)
  # The features moved (the authors fine-tune them) ...
  assert max(float(jnp.abs(d).max()) for d in params["content"]["delta"]) > 1e-4
  # ... but the graph is no parameter: the test metrics are those of the graph
  # built from the run's features before training.
  assert not any("neighbour" in str(path) for path, _ in
                 jax.tree_util.tree_leaves_with_path(out.best_params))
  from jaxrec.engine.inputs import run_inputs
  runs = run_inputs(freedom.FREEDOM, [cfg], dataset_for(cfg), split_for(cfg))
  eval_inputs = inputs.replace(available=jnp.asarray(runs.eval_available[0]))
  eval_inputs = eval_inputs.replace(prepared=hooks.prepare(eval_inputs, hp))
  users, items = hooks.embed(State(params, {}), Run(eval_inputs, hp))
  got = evaluate(users, items, data.test)
  for name in ("recall@20", "ndcg@20"):
    assert float(got[name]) == pytest.approx(float(out.test[name][0]), abs=1e-5)


def _hub_graph():
  """Users 0-1 and items 0-1 form a dense core (high degrees); users 2-9 each
  have one private item (degree 1 on both sides)."""
  core = [(u, i) for u in range(2) for i in range(2)]
  core += [(u, i) for u in range(2) for i in range(10, 18)]        # make users 0-1 hubs
  core += [(u, i) for u in range(20, 28) for i in range(2)]        # make items 0-1 hubs
  leaves = [(u, 2 + u) for u in range(2, 10)]
  pairs = np.array(core + leaves)
  return pairs, Graph.from_pairs(pairs, 28, 18)


def test_edge_pruning_is_degree_sensitive_and_renormalised():
  pairs, graph = _hub_graph()
  n = graph.src.shape[0] // 2
  rate = 0.5
  draws = jax.vmap(lambda key: freedom.pruned_weights(graph, key, rate))(
      jax.random.split(jax.random.PRNGKey(0), 300))
  kept = np.asarray(draws[:, :n] > 0)
  assert (kept.sum(1) == int(n * (1 - rate))).all()               # ⌊N (1 - ρ)⌋ each draw
  users, items = np.asarray(graph.src[:n]), np.asarray(graph.dst[:n]) - 28
  core = (users < 2) & (items < 2)                                 # hub-hub edges
  leaf = (users >= 2) & (users < 10)                               # degree-1 edges
  assert kept[:, core].mean() < 0.5 * kept[:, leaf].mean()
  # The two directions carry the same weight, that of the kept graph renormalised.
  np.testing.assert_array_equal(draws[:, :n], draws[:, n:])
  one = np.asarray(draws[0])
  kept_pairs = np.stack([users[one[:n] > 0], items[one[:n] > 0]], 1)
  renorm = Graph.from_pairs(kept_pairs, 28, 18)
  want = {(int(s), int(d)): float(w) for s, d, w in zip(renorm.src, renorm.dst, renorm.weight)}
  for e in np.flatnonzero(one > 0):
    assert one[e] == pytest.approx(want[(int(graph.src[e]), int(graph.dst[e]))], rel=1e-5)
  # No pruning: the full normalised graph.
  np.testing.assert_allclose(freedom.pruned_weights(graph, jax.random.PRNGKey(0), 0.0),
                             graph.weight, rtol=1e-5)


def test_one_pruned_graph_per_epoch():
  key = jax.random.PRNGKey(3)
  same = [freedom.epoch_key(step_context(jax.random.fold_in(key, s), epoch=2)) for s in range(3)]
  assert all((np.asarray(k) == np.asarray(same[0])).all() for k in same)
  other = freedom.epoch_key(step_context(key, epoch=3))
  assert (np.asarray(other) != np.asarray(same[0])).any()
