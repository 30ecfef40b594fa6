"""CCFCRec: its contrastive pairs come from co-occurrence in the training
interactions, and new items use the content encoder (the runs axis, the fills
and learning are tests/test_every_model.py's)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.graph import Graph
from jaxrec.models import ccfcrec
from jaxrec.models.base import Batch, ModelInputs, ModelSpec, Run, State
from tests.helpers import one_run, step_context

TINY = dict(protocol="new_item", setting="ff", synthetic_users=150, synthetic_items=120,
            synthetic_dims=(12, 8), embed_dim=8, batch_size=128, max_epochs=4,
            eval_every=2, patience=5)


# A hand-built interaction set: user -> training items. Item 5 is new (no
# training interaction); user 4 has none.
HISTORY = {0: [0, 1, 2], 1: [2, 3], 2: [4], 3: [0, 4]}
N_USERS, N_ITEMS = 5, 6


@functools.lru_cache(maxsize=None)
def _tiny_index():
  pairs = np.array([(u, i) for u, items in HISTORY.items() for i in items])
  spec = ModelSpec(n_users=N_USERS, n_items=N_ITEMS, feature_dims=(3, 2), embed_dim=4,
                   options=(("n_pos", 6), ("n_neg", 7), ("n_self_neg", 5)))
  hooks = ccfcrec.make(spec)
  features = tuple(jax.random.normal(jax.random.PRNGKey(m), (N_ITEMS, d))
                   for m, d in enumerate(spec.feature_dims))
  inputs = ModelInputs(features=features, available=jnp.ones((N_ITEMS, 2)),
                       fill=tuple(jnp.zeros(d) for d in spec.feature_dims),
                       graph=Graph.from_pairs(pairs, N_USERS, N_ITEMS))
  index = hooks.prepare(inputs, {})
  return spec, inputs.replace(prepared=index), index


def test_interacted_is_the_training_history():
  _, _, index = _tiny_index()
  users, items = np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij")
  got = np.asarray(ccfcrec.interacted(index, jnp.asarray(users), jnp.asarray(items)))
  want = np.zeros((N_USERS, N_ITEMS), bool)
  for u, its in HISTORY.items():
    want[u, its] = True
  np.testing.assert_array_equal(got, want)


def test_contrastive_pairs_come_from_co_occurrence():
  spec, _, index = _tiny_index()
  pairs = [(u, i) for u, its in HISTORY.items() for i in its]
  users = jnp.array([u for u, _ in pairs] * 50)
  items = jnp.array([i for _, i in pairs] * 50)
  s = jax.tree.map(np.asarray, ccfcrec.contrast_samples(index, users, items,
                                                        jax.random.PRNGKey(0), spec))
  warm = {i for its in HISTORY.values() for i in its}
  seen = {u: set() for u in HISTORY}
  for b, (u, v) in enumerate(zip(np.asarray(users), np.asarray(items))):
    # Positives: items that co-occur with v in u's history (v included).
    assert set(s["pos"][b]) <= set(HISTORY[u])
    seen[u] |= set(s["pos"][b])
    # Negatives: training items; those counted are outside u's history.
    for drawn, ok in ((s["neg"][b].ravel(), s["neg_ok"][b].ravel()),
                      (s["self_neg"][b], s["self_neg_ok"][b])):
      assert set(drawn) <= warm                             # never the new item 5
      assert all((d in HISTORY[u]) == (k == 0) for d, k in zip(drawn, ok))
    # The negative user never interacted with v and has a training history.
    if s["neg_user_ok"][b]:
      assert v not in HISTORY.get(int(s["neg_user"][b]), [v])
  # Every co-occurring item is drawn (uniform over the history, with replacement).
  assert seen == {u: set(its) for u, its in HISTORY.items()}
  assert s["neg_user_ok"].mean() > 0.9 and s["neg_ok"].mean() > 0.3


def test_loss_is_the_codes_contrast_and_ranking_on_those_pairs():
  spec, inputs, index = _tiny_index()
  hooks = ccfcrec.make(spec)
  params = hooks.init(jax.random.PRNGKey(1), {})
  pairs = np.array([(u, i) for u, its in HISTORY.items() for i in its])
  batch = Batch(users=jnp.asarray(pairs[:, 0]), pos=jnp.asarray(pairs[:, 1]),
                neg=jnp.zeros(len(pairs), jnp.int32), weights=jnp.ones(len(pairs)))
  hp = {"tau": jnp.float32(0.1), "lambda1": jnp.float32(0.6)}
  key = jax.random.PRNGKey(2)
  total, terms = hooks.loss(State(params, {}), batch,
                                       Run(inputs, hp, step_context(key)))
  s = jax.tree.map(lambda x: np.asarray(x, np.float64),
                   ccfcrec.contrast_samples(index, batch.users, batch.pos, key, spec))
  q = np.asarray(ccfcrec.content_embeddings(params, inputs, batch.pos, spec), np.float64)
  e = np.asarray(params["item_table"]["embedding"], np.float64)
  users = np.asarray(params["user_table"]["embedding"], np.float64)
  cos = lambda a, b: np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  idx = lambda x: x.astype(int)

  def contrast(pos, neg, ok):   # -log e^pos / (e^pos + Σ e^neg), the code's form
    return -np.log(np.exp(pos) / (np.exp(pos) + np.sum(ok * np.exp(neg), -1)))
  co = contrast(cos(q[:, None], e[idx(s["pos"])]) / 0.1,
                cos(q[:, None, None], e[idx(s["neg"])]) / 0.1, s["neg_ok"])
  own = contrast(cos(q, e[pairs[:, 1]]) / 0.1, cos(q[:, None], e[idx(s["self_neg"])]) / 0.1,
                 s["self_neg_ok"])
  u, k = users[pairs[:, 0]], users[idx(s["neg_user"])]
  rank = lambda v: np.sum(s["neg_user_ok"] * np.log1p(np.exp(-np.sum((u - k) * v, -1))))
  want = {"contrast": co.mean(1).sum(), "self_contrast": own.sum(),
          "rank_cf": rank(e[pairs[:, 1]]), "rank_content": rank(q)}
  for name, value in want.items():
    assert float(terms[name]) == pytest.approx(value, rel=1e-4), name
  assert float(total) == pytest.approx(
      0.6 * (want["contrast"] + want["self_contrast"])
      + 0.4 * (want["rank_cf"] + want["rank_content"]), rel=1e-4)


def test_new_items_use_the_content_encoder():
  run = one_run(make_config(**TINY, model="ccfcrec"))
  model, spec, split, hp, inputs = run.model, run.spec, run.split, run.hp, run.inputs
  hooks = model.make(spec)
  params = hooks.init(jax.random.PRNGKey(0), hp)
  q = np.asarray(ccfcrec.content_embeddings(params, inputs, jnp.arange(spec.n_items), spec))
  _, items = hooks.embed(State(params, {}), Run(inputs, hp))
  new, warm = split.eval_items, split.train_items
  np.testing.assert_allclose(items[new], q[new], rtol=1e-6)
  np.testing.assert_array_equal(items[warm], params["item_table"]["embedding"][warm])
