"""Metrics against a hand-computed case, the authors' evaluator and a NumPy brute force."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.eval import evaluate, make_eval_split
from tests.helpers import load_fixture


def brute_force(user_emb, item_emb, eval_pairs, train_pairs, candidates, ks):
  """Float64 per-user loop, straight from the PROTOCOL.md formulas."""
  scores = user_emb.astype(np.float64) @ item_emb.astype(np.float64).T
  out = {f"{m}@{k}": [] for m in ("recall", "ndcg", "hr") for k in ks}
  for u in np.unique(eval_pairs[:, 0]):
    truth = set(eval_pairs[eval_pairs[:, 0] == u, 1]) & set(np.flatnonzero(candidates))
    if not truth:
      continue
    seen = set(train_pairs[train_pairs[:, 0] == u, 1])
    ranked = [i for i in np.argsort(-scores[u], kind="stable")
              if candidates[i] and i not in seen]
    for k in ks:
      top = ranked[:k]
      hits = [1.0 if i in truth else 0.0 for i in top]
      dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
      idcg = sum(1 / np.log2(r + 2) for r in range(min(k, len(truth))))
      out[f"recall@{k}"].append(sum(hits) / len(truth))
      out[f"ndcg@{k}"].append(dcg / idcg)
      out[f"hr@{k}"].append(sum(hits) / min(k, len(truth)))
  return {name: float(np.mean(v)) for name, v in out.items()}


def run_eval(user_emb, item_emb, eval_pairs, train_pairs, candidates, ks, chunk):
  split = make_eval_split(eval_pairs=np.asarray(eval_pairs, np.int32),
                          train_pairs=np.asarray(train_pairs, np.int32),
                          candidates=candidates, n_users=user_emb.shape[0],
                          n_items=item_emb.shape[0])
  res = evaluate(jnp.asarray(user_emb), jnp.asarray(item_emb), split, ks=ks,
                 chunk_size=chunk)
  return {k: float(v) for k, v in res.items()}


def test_hand_computed_case():
  # One user, items scored 5 > 4 > 3 > 2 > 1 (item 0 best). Item 0 is a training
  # item (masked), item 4 is not a candidate. Ranked list: 1, 2, 3. Truth {2, 3}.
  user = np.array([[1.0]], np.float32)
  items = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
  candidates = np.array([True, True, True, True, False])
  res = run_eval(user, items, [[0, 2], [0, 3]], [[0, 0]], candidates, (1, 2, 3), 1)
  # Hits at ranks 1 and 2 (0-based): DCG@3 = 1/log2(3) + 1/log2(4).
  assert res["recall@1"] == 0.0 and res["ndcg@1"] == 0.0
  assert res["recall@2"] == pytest.approx(0.5)
  assert res["hr@2"] == pytest.approx(0.5)
  assert res["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
  assert res["recall@3"] == pytest.approx(1.0)
  assert res["ndcg@3"] == pytest.approx(
      (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
  # HR@1 with |T| = 2 is hits / min(1, 2) = 0.
  assert res["hr@1"] == 0.0


@pytest.mark.parametrize("chunk", [1, 2, 4, 64])
def test_matches_reference_evaluator(chunk):
  fx = load_fixture("ranking_metrics.json")
  inp, expected = fx["inputs"], fx["expected"]
  users, items = np.array(inp["user_emb"], np.float32), np.array(inp["item_emb"], np.float32)
  candidates = np.zeros(items.shape[0], bool)
  candidates[inp["candidates"]] = True
  pairs = lambda d: [[int(u), i] for u, its in d.items() for i in its]
  res = run_eval(users, items, pairs(inp["test"]), pairs(inp["train"]), candidates,
                 tuple(inp["ks"]), chunk)
  for metric, by_k in expected.items():
    for k, value in by_k.items():
      assert res[f"{metric}@{k}"] == pytest.approx(value, abs=1e-6), (metric, k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_for_every_chunk_size(seed):
  rng = np.random.default_rng(seed)
  n_users, n_items = 37, 61
  user_emb = rng.standard_normal((n_users, 8)).astype(np.float32)
  item_emb = rng.standard_normal((n_items, 8)).astype(np.float32)
  pairs = np.unique(np.stack([rng.integers(0, n_users, 500),
                              rng.integers(0, n_items, 500)], 1), axis=0)
  is_eval = rng.random(len(pairs)) < 0.3
  candidates = rng.random(n_items) < 0.7
  ks = (1, 5, 10, 50)
  ref = brute_force(user_emb, item_emb, pairs[is_eval], pairs[~is_eval], candidates, ks)
  for chunk in (1, 7, 16, 1000):
    res = run_eval(user_emb, item_emb, pairs[is_eval], pairs[~is_eval], candidates,
                   ks, chunk)
    for name, value in ref.items():
      assert res[name] == pytest.approx(value, abs=2e-6), (chunk, name)


@pytest.mark.parametrize("seed,n_items", [(0, 90), (1, 400)])
def test_ties_break_towards_the_lower_item_id(seed, n_items):
  # Integer embeddings give many exactly equal scores, the same in float32 and
  # float64, so the ranking under ties is pinned: a stable sort puts the lower
  # item id first. Zero rows are items whose every modality is missing. 400
  # items: ranks past 127 and cut-offs past the 32-candidate counting blocks.
  rng = np.random.default_rng(seed)
  n_users = 40
  user_emb = rng.integers(-2, 3, (n_users, 3)).astype(np.float32)
  item_emb = rng.integers(-1, 2, (n_items, 3)).astype(np.float32)
  item_emb[rng.random(n_items) < 0.2] = 0.0
  pairs = np.unique(np.stack([rng.integers(0, n_users, 900),
                              rng.integers(0, n_items, 900)], 1), axis=0)
  is_eval = rng.random(len(pairs)) < 0.3
  candidates = rng.random(n_items) < 0.7
  ks = (1, 3, 10, 50, 200)
  ref = brute_force(user_emb, item_emb, pairs[is_eval], pairs[~is_eval], candidates, ks)
  for chunk in (1, 7, 1000):
    res = run_eval(user_emb, item_emb, pairs[is_eval], pairs[~is_eval], candidates, ks, chunk)
    for name, value in ref.items():
      assert res[name] == pytest.approx(value, abs=2e-6), (chunk, name)


def test_a_diverged_run_scores_zero():
  # NaN scores never count as hits (they would otherwise rank first: nothing beats NaN).
  user = np.full((3, 2), np.nan, np.float32)
  items = np.ones((5, 2), np.float32)
  res = run_eval(user, items, [[0, 1], [1, 2], [2, 4]], [[0, 0]], np.ones(5, bool), (1, 3), 2)
  assert all(v == 0.0 for v in res.values()), res


@pytest.mark.parametrize("seed,n_items", [(0, 90), (1, 400)])
def test_long_truth_lists_rank_by_top_k_with_the_same_results(seed, n_items, monkeypatch):
  # Past COUNT_MAX_TRUTH truth items per user the ranks come from top-k: forced here
  # for every list, the brute-force and tie checks above must hold on that path too.
  from jaxrec import eval as evaluation
  monkeypatch.setattr(evaluation, "COUNT_MAX_TRUTH", 0)
  test_matches_brute_force_for_every_chunk_size(seed)
  test_ties_break_towards_the_lower_item_id(seed, n_items)
