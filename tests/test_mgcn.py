"""MGCN: the kNN graphs built from each run's own masked features, the
id-conditioned purifier and the fusion (the runs axis, the fills and learning
are tests/test_every_model.py's)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import make_config
from jaxrec.models import item_graph, mgcn
from tests.helpers import WARM_TINY, assert_item_graphs_follow_each_runs_mask, one_run

TINY = WARM_TINY


def test_the_knn_graphs_of_a_run_follow_its_own_mask():
  assert_item_graphs_follow_each_runs_mask("mgcn", TINY)


def test_item_graphs_are_the_authors_cosine_weighted_knn_laplacians():
  cfg = make_config(model="mgcn", **TINY)
  run = one_run(cfg)
  spec, hp, inputs = run.spec, run.hp, run.inputs
  hooks = mgcn.make(spec)
  prepared = hooks.prepare(inputs, hp)
  k, n = spec.option(mgcn.KNN_K), spec.n_items
  h = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (n, 3)))
  for m, x in enumerate(inputs.item_features(jnp.arange(n))):
    # Dense reference (build_knn_normalized_graph, 'sym'): top-k cosines kept as
    # edge weights, D^-1/2 A D^-1/2 with D the row sums.
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    top = np.argsort(-sim, axis=1)[:, :k]
    a = np.zeros((n, n))
    np.put_along_axis(a, top, np.take_along_axis(sim, top, 1), axis=1)
    d = 1.0 / np.sqrt(a.sum(1))
    want = d[:, None] * a * d[None, :]
    got = item_graph.propagate(prepared["neighbours"][m], prepared["weights"][m],
                               jnp.asarray(h))
    np.testing.assert_allclose(got, want @ h, rtol=1e-4, atol=1e-5)


def _params_and_inputs():
  cfg = make_config(model="mgcn", **TINY)
  run = one_run(cfg)
  model, spec, hp, inputs = run.model, run.spec, run.hp, run.inputs
  params = model.make(spec).init(jax.random.PRNGKey(1), hp)
  inputs = inputs.replace(prepared=mgcn.make(spec).prepare(inputs, hp))
  return params, spec, inputs


def test_the_purifier_gates_each_items_id_embedding_by_its_features():
  params, spec, inputs = _params_and_inputs()
  base = mgcn.purified(params, inputs, spec)
  gates = [np.asarray(b / params["items"]) for b in base]
  assert all(((g > 0) & (g < 1)).all() for g in gates)           # a sigmoid gate
  # Id-conditioned: rescaling item 3's id embedding rescales its purified rows
  # in every modality, and no other item's.
  items = params["items"].at[3].multiply(2.0)
  moved = mgcn.purified({**params, "items": items}, inputs, spec)
  for b, m in zip(base, moved):
    np.testing.assert_allclose(m[3], 2.0 * b[3], rtol=1e-6)
    np.testing.assert_allclose(np.delete(np.asarray(m), 3, 0), np.delete(np.asarray(b), 3, 0))
  # The gate reads the modality: item 3 takes item 5's gates with item 5's features.
  feats = tuple(f.at[3].set(f[5]) for f in inputs.features)
  swapped = mgcn.purified(params, inputs.replace(features=feats), spec)
  for m, s in enumerate(swapped):
    if inputs.available[3, m] and inputs.available[5, m]:
      np.testing.assert_allclose(s[3] / params["items"][3], gates[m][5], rtol=1e-5)
  # A zero id embedding purifies to zero whatever the features.
  zeroed = mgcn.purified({**params, "items": params["items"].at[7].set(0.0)}, inputs, spec)
  assert all(float(jnp.abs(z[7]).max()) == 0.0 for z in zeroed)


def test_fusion_splits_the_views_into_a_common_and_preference_gated_parts():
  params, spec, inputs = _params_and_inputs()
  content_view, modal = mgcn.views(params, inputs, spec, inputs.graph)
  side = mgcn.fuse(params, content_view, modal)
  # With the preference gates closed (σ → 0) only the attention-weighted common
  # part is left: (Σ β_m v_m) / (M + 1), β a softmax over the modalities.
  closed = [{"w": jnp.zeros_like(p["w"]), "b": jnp.full_like(p["b"], -1e4)}
            for p in params["prefer"]]
  common = mgcn.fuse({**params, "prefer": closed}, content_view, modal) * (len(modal) + 1)
  q = params["query"]
  scores = np.stack([np.tanh(np.asarray(v) @ q["hidden"]["w"] + q["hidden"]["b"]) @ q["out"]
                     for v in modal], -1)
  beta = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
  want = sum(beta[:, m:m + 1] * np.asarray(v) for m, v in enumerate(modal))
  np.testing.assert_allclose(common, want, rtol=1e-4, atol=1e-6)
  # Open, each modality adds its own residual v_m − common.
  opened = [{"w": jnp.zeros_like(p["w"]), "b": jnp.full_like(p["b"], 1e4)}
            for p in params["prefer"]]
  full = mgcn.fuse({**params, "prefer": opened}, content_view, modal) * (len(modal) + 1)
  np.testing.assert_allclose(full, sum(np.asarray(v) for v in modal) - (len(modal) - 1) * want,
                             rtol=1e-4, atol=1e-5)
  assert not np.allclose(side, common / (len(modal) + 1))
