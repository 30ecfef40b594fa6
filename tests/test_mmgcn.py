"""MMGCN: the neighbour mean over the edge list, one GCN per modality on its own
features (against a dense reading of the authors' forward), the output as the
mean of the branches, and the untrained free vectors (the runs axis, the fills
and learning are tests/test_every_model.py's)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.graph import Graph
from jaxrec.models import mmgcn
from jaxrec.models.base import Batch, Run, State
from tests.helpers import WARM_TINY, one_run, step_context

TINY = WARM_TINY


def _setup(setting="ff", **kw):
  cfg = make_config(**{**TINY, **kw}, model="mmgcn", setting=setting)
  run = one_run(cfg)
  spec, data, hp, inputs = run.spec, run.data, run.hp, run.inputs
  hooks = mmgcn.make(spec)
  params = hooks.init(jax.random.PRNGKey(0), hp)
  return spec, hp, inputs, params, data


def _dense_mean_adjacency(graph: Graph) -> np.ndarray:
  a = np.zeros((graph.n_nodes, graph.n_nodes))
  a[np.asarray(graph.dst), np.asarray(graph.src)] = 1.0
  deg = a.sum(1, keepdims=True)
  return np.where(deg > 0, a / np.where(deg > 0, deg, 1.0), 0.0)


def test_mean_aggregation_is_the_neighbour_mean():
  pairs = np.array([(0, 0), (0, 1), (1, 1), (2, 0), (2, 1), (2, 2)])
  graph = Graph.from_pairs(pairs, 4, 4)        # user 3 and item 3 have no edge
  y = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
  got = np.asarray(mmgcn.mean_aggregate(graph, y))
  np.testing.assert_allclose(got, _dense_mean_adjacency(graph) @ np.asarray(y),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(got[4], np.asarray(y)[[0, 2]].mean(0), rtol=1e-6)  # item 0
  assert not got[3].any() and not got[7].any()


def _dense_branch(p, x, e, mean_adj):
  """The authors' GCN.forward (concat, three layers) with a dense mean adjacency."""
  f64 = lambda a: np.asarray(a, np.float64)
  lrelu = lambda a: np.where(a > 0, a, 0.01 * a)
  x = f64(x)
  if "latent" in p:
    x = x @ f64(p["latent"]["w"]) + f64(p["latent"]["b"])
  h0 = np.concatenate([f64(p["preference"]), x])
  h0 = h0 / np.linalg.norm(h0, axis=1, keepdims=True)
  for conv, lin, comb in zip(p["conv"], p["linear"], p["combine"]):
    h = lrelu(mean_adj @ (h0 @ f64(conv)))
    x_hat = lrelu(h0 @ f64(lin["w"]) + f64(lin["b"])) + f64(e)
    h0 = lrelu(np.concatenate([h, x_hat], 1) @ f64(comb["w"]) + f64(comb["b"]))
  return h0


def test_one_gcn_per_modality_on_its_own_features_averaged():
  spec, hp, inputs, params, _ = _setup()
  hooks = mmgcn.make(spec)
  feats = inputs.item_features(jnp.arange(spec.n_items))
  outs = mmgcn.branches(params, inputs, spec)
  mean_adj = _dense_mean_adjacency(inputs.graph)
  for p, x, out in zip(params["branches"], feats, outs):
    np.testing.assert_allclose(out, _dense_branch(p, x, params["id_embedding"], mean_adj),
                               rtol=1e-4, atol=1e-5)
  users, items = hooks.embed(State(params, {}), Run(inputs, hp))
  np.testing.assert_allclose(np.concatenate([users, items]), (outs[0] + outs[1]) / 2,
                             rtol=1e-5, atol=1e-6)
  # Only the image modality (0) has the 256-wide latent map.
  assert params["branches"][0]["latent"]["w"].shape == (spec.feature_dims[0], 256)
  assert "latent" not in params["branches"][1]
  # New features for modality 1: its branch changes, modality 0's does not.
  other = list(inputs.features)
  other[1] = other[1][::-1]
  moved = mmgcn.branches(params, inputs.replace(features=tuple(other)), spec)
  np.testing.assert_array_equal(moved[0], outs[0])
  assert float(jnp.abs(moved[1] - outs[1]).max()) > 1e-3


def test_the_latent_map_and_its_regulariser_follow_the_modality_named_image():
  spec, _, inputs, _, _ = _setup()
  # The same two feature tables, named (audio, image): the image is now second.
  audio_first = dataclasses.replace(spec, modality_names=("audio", "image"))
  assert mmgcn.widths(audio_first) == (spec.feature_dims[0], 256)
  params = mmgcn.make(audio_first).init(jax.random.PRNGKey(0), {})
  assert "latent" not in params["branches"][0]
  assert params["branches"][1]["latent"]["w"].shape == (spec.feature_dims[1], 256)
  # The preference regulariser reads the image branch's preferences only.
  batch = Batch(*(jnp.zeros((1,), jnp.int32),) * 3, weights=jnp.ones((1,)))

  def reg_without_preferences(m):
    branches = list(params["branches"])
    branches[m] = {**branches[m], "preference": jnp.zeros_like(branches[m]["preference"])}
    return float(mmgcn.mmgcn_terms({**params, "branches": branches}, batch, inputs,
                                   audio_first)["reg"])
  full = float(mmgcn.mmgcn_terms(params, batch, inputs, audio_first)["reg"])
  assert reg_without_preferences(0) == full
  assert reg_without_preferences(1) < full


def test_a_run_reads_its_own_filled_features():
  spec, hp, inputs, params, _ = _setup()
  masked = inputs.replace(available=inputs.available.at[:30, 1].set(False))
  full, hidden = mmgcn.branches(params, inputs, spec), mmgcn.branches(params, masked, spec)
  np.testing.assert_array_equal(full[0], hidden[0])
  n = spec.n_users
  assert float(jnp.abs(full[1][n:n + 30] - hidden[1][n:n + 30]).max()) > 1e-4


@pytest.mark.parametrize("trained", [False, True])
def test_preferences_and_ids_are_trained_only_when_asked(trained):
  spec, hp, inputs, params, _ = _setup(setting="mm", train_free_vectors=trained)
  hooks = mmgcn.make(spec)
  batch = Batch(users=jnp.arange(16), pos=jnp.arange(16), neg=jnp.arange(16, 32),
                weights=jnp.ones(16))
  ctx = step_context(jax.random.PRNGKey(1))
  grads = jax.grad(lambda p: hooks.loss(State(p, {}), batch, Run(inputs, hp, ctx))[0])(params)
  free = [grads["id_embedding"]] + [b["preference"] for b in grads["branches"]]
  assert all((float(jnp.abs(g).max()) > 0) == trained for g in free)
  assert float(jnp.abs(grads["branches"][1]["conv"][0]).max()) > 0   # the networks learn
