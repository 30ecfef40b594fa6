"""Full-ranking evaluation on device: Recall, NDCG and HR at several cut-offs.

Definitions (PROTOCOL.md), per evaluated user u with ground truth T_u, averaged
over users:
  Recall@K = hits@K / |T_u|
  NDCG@K   = sum_{r<K, item_r in T_u} 1/log2(r+2) / sum_{k<min(K,|T_u|)} 1/log2(k+2)
  HR@K     = hits@K / min(K, |T_u|)   -- the MILK/GoRec evaluator's "HR", which is
             a normalised hit count, not the 0/1 hit rate of some other papers.
Non-candidate items and each user's `seen` (training) items are never ranked.
Only candidate items are scored (see `EvalSplit`). Users are processed in chunks
(`lax.map`), so peak memory is chunk x candidates per run, and results do not
depend on the chunk size.
"""
from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("recall", "ndcg", "hr")


@flax.struct.dataclass
class EvalSplit:
  """Ground truth of one split, shared by every run of a group.

  Only candidate items are scored: under the new-item protocol that is the new
  items alone (a fifth of TikTok's), so the score matrix and the top-k shrink by
  the same factor. Truth and seen lists therefore hold *positions* in `items`.

  Attributes:
    users: (U_e,) int32 ids of the evaluated users.
    truth: (U_e, T) int32 positions in `items` of the ground truth, padded with -1.
    seen: (U_e, P) int32 positions in `items` never ranked for the user (training
      positives that are candidates), padded with len(items) (an out-of-range
      index that scatter drops).
    items: (C,) int32 ids of the candidate items, ascending (so ties among equal
      scores break towards the lower item id, as when ranking all items).
  """
  users: jax.Array
  truth: jax.Array
  seen: jax.Array
  items: jax.Array


def _pad_lists(lists: Sequence[np.ndarray], fill: int) -> np.ndarray:
  width = max([1] + [len(x) for x in lists])
  out = np.full((len(lists), width), fill, np.int32)
  for row, items in enumerate(lists):
    out[row, :len(items)] = items
  return out


def _group_by_user(pairs: np.ndarray, n_users: int) -> list[np.ndarray]:
  order = np.lexsort((pairs[:, 1], pairs[:, 0]))
  pairs = pairs[order]
  bounds = np.searchsorted(pairs[:, 0], np.arange(n_users + 1))
  return [pairs[bounds[u]:bounds[u + 1], 1] for u in range(n_users)]


def make_eval_split(*, eval_pairs: np.ndarray, train_pairs: np.ndarray,
                    candidates: np.ndarray, n_users: int,
                    n_items: int) -> EvalSplit:
  """Builds an `EvalSplit` from (user, item) pair arrays on the host.

  Users are those with at least one evaluation pair; ground truth is restricted
  to candidate items (a pair on a non-candidate item can never be hit).
  `candidates` is an (n_items,) bool mask.
  """
  candidates = np.asarray(candidates, bool)
  if candidates.shape != (n_items,):
    raise ValueError(f"candidates must be a ({n_items},) bool mask, got {candidates.shape}")
  items = np.flatnonzero(candidates).astype(np.int32)
  position = np.full(n_items, len(items), np.int32)       # non-candidates -> dropped
  position[items] = np.arange(len(items), dtype=np.int32)
  eval_pairs = np.asarray(eval_pairs).reshape(-1, 2)
  train_pairs = np.asarray(train_pairs).reshape(-1, 2)
  eval_pairs = eval_pairs[candidates[eval_pairs[:, 1]]]
  train_pairs = train_pairs[candidates[train_pairs[:, 1]]]   # others are never scored
  truth_by_user = _group_by_user(eval_pairs, n_users)
  seen_by_user = _group_by_user(train_pairs, n_users)
  users = np.array([u for u in range(n_users) if len(truth_by_user[u])], np.int32)
  return EvalSplit(
      users=jnp.asarray(users),
      truth=jnp.asarray(_pad_lists([position[truth_by_user[u]] for u in users], -1)),
      seen=jnp.asarray(_pad_lists([position[seen_by_user[u]] for u in users], len(items))),
      items=jnp.asarray(items))


def _ideal_dcg_table(max_truth: int, k: int) -> jax.Array:
  """idcg[n] = sum_{r < min(k, n)} 1/log2(r+2) for n = 0..max_truth."""
  gains = 1.0 / np.log2(np.arange(k) + 2.0)
  cums = np.concatenate([[0.0], np.cumsum(gains)])
  return jnp.asarray(cums[np.minimum(np.arange(max_truth + 1), k)], jnp.float32)


# Ranks are counted in blocks of this many candidates. The partial counts are
# int8 so that XLA keeps the two sums apart: merged into one long sum, the CPU
# backend splits it with a reduce-window that first writes the whole
# (C, T, candidates) comparison to memory (10x slower; BENCHMARKS.md).
_RANK_BLOCK = 32


def _truth_ranks(scores: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
  """0-based rank of each ground-truth position in its user's ranking.

  The metrics need only where the few truth items land, not the top-K list, so
  each rank is counted: the candidates scoring higher, plus those scoring equal
  at a lower position (the order of a stable descending sort: ties go to the
  lower item id, as before). Exact, and one fused pass over (C, T, candidates)
  instead of XLA's TopK, which cost 10x the score matmul on CPU. The count grows
  with T (the longest truth list), top-k with log K: fine for T of a few dozen.

  Args:
    scores: (C, N) float32, seen positions already -inf.
    truth: (C, T) int32 positions in [0, N), padded with -1.
  Returns:
    ranks: (C, T) int32; is_truth: (C, T) bool, a real truth position whose score
    beats -inf (a seen item or a NaN score is never a hit).
  """
  n = scores.shape[1]
  pad = -n % _RANK_BLOCK
  blocks = jnp.pad(scores, ((0, 0), (0, pad)), constant_values=-jnp.inf)
  blocks = blocks.reshape(scores.shape[0], 1, -1, _RANK_BLOCK)        # (C, 1, nb, b)
  at = jnp.arange(n + pad).reshape(-1, _RANK_BLOCK)                   # (nb, b)
  position = jnp.maximum(truth, 0)
  own = jnp.take_along_axis(scores, position, axis=1)                 # (C, T)
  own4, position4 = own[:, :, None, None], position[:, :, None, None]
  ahead = (blocks > own4) | ((blocks == own4) & (at < position4))     # (C, T, nb, b)
  partial = jnp.sum(ahead, axis=-1, dtype=jnp.int8)
  ranks = jnp.sum(partial, axis=-1, dtype=jnp.int32)
  return ranks, (truth >= 0) & (own > -jnp.inf)


# Counting costs C x T x candidates, top-k about C x candidates x log K: past this
# many truth items per user (heavy users of a warm split) top-k is the cheaper one.
COUNT_MAX_TRUTH = 64


def _truth_ranks_by_top_k(scores: jax.Array, truth: jax.Array,
                          k_max: int) -> tuple[jax.Array, jax.Array]:
  """`_truth_ranks` from the top `k_max` list: ranks >= k_max come back as k_max
  (every metric cut-off is <= k_max). `lax.top_k` puts equal scores in index
  order, the same tie order as the count."""
  top_scores, top_items = jax.lax.top_k(scores, k_max)                 # (C, K)
  match = (top_items[:, None, :] == truth[:, :, None]) & (top_scores[:, None, :] > -jnp.inf)
  found = jnp.any(match, axis=-1)
  ranks = jnp.where(found, jnp.argmax(match, axis=-1), k_max).astype(jnp.int32)
  return ranks, (truth >= 0) & found


def truth_ranks(scores: jax.Array, truth: jax.Array,
                k_max: int) -> tuple[jax.Array, jax.Array]:
  """Ranks of the truth items: counted for short truth lists, from top-k for long
  ones (T is static, so this is a trace-time choice); both exact below k_max."""
  if truth.shape[1] > COUNT_MAX_TRUTH:
    return _truth_ranks_by_top_k(scores, truth, min(k_max, scores.shape[1]))
  return _truth_ranks(scores, truth)


def _chunk_sums(user_emb, candidate_emb, users, truth, seen, valid, ks):
  """Metric sums over one chunk of C users, for one run."""
  scores = user_emb[users] @ candidate_emb.T                   # (C, candidates)
  rows = jnp.arange(users.shape[0])[:, None]
  scores = scores.at[rows, seen].set(-jnp.inf, mode="drop")
  ranks, is_truth = truth_ranks(scores, truth, max(ks))          # (C, T)
  gains = 1.0 / jnp.log2(ranks.astype(jnp.float32) + 2.0)
  n_truth = jnp.sum(truth >= 0, axis=-1)
  n_truth_f = jnp.maximum(n_truth, 1).astype(jnp.float32)
  sums = {}
  for k in ks:
    hits = (is_truth & (ranks < k)).astype(jnp.float32)
    hit_k = jnp.sum(hits, axis=-1)
    dcg = jnp.sum(hits * gains, axis=-1)
    idcg = _ideal_dcg_table(truth.shape[1], k)[n_truth]
    per_user = {
        "recall": hit_k / n_truth_f,
        "ndcg": dcg / jnp.maximum(idcg, 1e-12),
        "hr": hit_k / jnp.minimum(float(k), n_truth_f),
    }
    for name, value in per_user.items():
      sums[f"{name}@{k}"] = jnp.sum(value * valid)
  return sums


def evaluate(user_emb: jax.Array, item_emb: jax.Array, split: EvalSplit, *,
             ks: Sequence[int] = (10, 20, 50), chunk_size: int = 256) -> dict:
  """Mean metrics of one run. Vmap it over a leading runs axis for a group.

  Args:
    user_emb: (U, D) user embeddings.
    item_emb: (I, D) item embeddings; score(u, i) = <user_emb[u], item_emb[i]>.
    split: the `EvalSplit` (shared; pass with `in_axes=None` under vmap).
    ks: cut-offs (static).
    chunk_size: users per chunk (static); does not change the results.
  Returns:
    dict `"{metric}@{k}"` -> scalar float32.
  """
  ks = tuple(int(k) for k in ks)
  n_eval = split.users.shape[0]
  chunk_size = max(1, min(chunk_size, n_eval))
  n_chunks = -(-n_eval // chunk_size)
  pad = n_chunks * chunk_size - n_eval
  candidate_emb = item_emb[split.items]          # once per evaluation, not per chunk
  n_candidates = candidate_emb.shape[0]

  def padded(x, fill):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    return x.reshape((n_chunks, chunk_size) + x.shape[1:])

  chunks = (padded(split.users, 0), padded(split.truth, -1),
            padded(split.seen, n_candidates),
            padded(jnp.ones((n_eval,), jnp.float32), 0.0))

  def one_chunk(args):
    users, truth, seen, valid = args
    return _chunk_sums(user_emb, candidate_emb, users, truth, seen, valid, ks)

  sums = jax.lax.map(one_chunk, chunks)
  return {name: jnp.sum(v) / max(n_eval, 1) for name, v in sums.items()}
