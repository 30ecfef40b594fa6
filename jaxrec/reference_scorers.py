"""Non-learned reference scorers, as embeddings for the one evaluator.

A scorer is a pair (user_emb, item_emb) whose inner products rank items, so it
goes through exactly the same masking, chunking and metrics as a model.
"""
from __future__ import annotations

import numpy as np

from jaxrec.data.dataset import l2_normalise


def random_scorer(n_users: int, n_items: int, seed: int = 0, dim: int = 32):
  """Independent random rankings per user (Gaussian embeddings)."""
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((n_users, dim)).astype(np.float32),
          rng.standard_normal((n_items, dim)).astype(np.float32))


def popularity_scorer(train_pairs: np.ndarray, n_users: int, n_items: int):
  """Every user ranks items by training interaction count (ties by item id)."""
  counts = np.bincount(train_pairs[:, 1], minlength=n_items).astype(np.float32)
  tiebreak = -np.arange(n_items, dtype=np.float32) / (10.0 * n_items)
  return np.ones((n_users, 1), np.float32), (counts + tiebreak)[:, None]


def content_popularity_scorer(features, train_pairs: np.ndarray, warm: np.ndarray,
                              n_users: int, ridge: float = 1.0):
  """Popularity predicted from content: ridge regression of log(1 + count) on the
  concatenated normalised features of warm items, applied to every item.

  The fair non-personalised baseline for new items, which have no counts.
  """
  x = np.concatenate([l2_normalise(f) for f in features], axis=1).astype(np.float64)
  x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  y = np.log1p(np.bincount(train_pairs[:, 1], minlength=x.shape[0]))
  xw, yw = x[warm], y[warm]
  coef = np.linalg.solve(xw.T @ xw + ridge * np.eye(x.shape[1]), xw.T @ yw)
  return np.ones((n_users, 1), np.float32), (x @ coef).astype(np.float32)[:, None]
