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


# The config fields that decide a run's data and split, so its reference scores.
_SPLIT_FIELDS = ("data", "modalities", "min_rating", "synthetic_users", "synthetic_items",
                 "synthetic_dims", "synthetic_interactions", "data_seed", "remap_users",
                 "protocol", "split_seed", "new_fraction", "candidates")


def reference_metrics(cfg) -> dict[str, dict[str, float]]:
  """Test metrics of the reference scorers on `cfg`'s data and split (a
  `RunConfig`): a random ranking, content popularity, and on the warm protocol
  item popularity (new items have no counts). The report's floor: a cell that
  does not beat these by a margin has learned nothing it can claim."""
  key = tuple(getattr(cfg, f) for f in _SPLIT_FIELDS)
  if key not in _REFERENCES:
    _REFERENCES[key] = _reference_metrics(cfg)
  return _REFERENCES[key]


_REFERENCES: dict[tuple, dict] = {}   # one entry per data and split a process has seen


def _reference_metrics(cfg) -> dict[str, dict[str, float]]:
  import jax
  import jax.numpy as jnp
  from jaxrec.engine.inputs import dataset_for, split_for
  from jaxrec.eval import evaluate, make_eval_split
  dataset, split = dataset_for(cfg), split_for(cfg)
  test = make_eval_split(eval_pairs=split.test_pairs, train_pairs=split.train_pairs,
                         candidates=split.test_candidates, n_users=dataset.n_users,
                         n_items=dataset.n_items)
  scorers = {"random": random_scorer(dataset.n_users, dataset.n_items),
             "content_popularity": content_popularity_scorer(
                 dataset.features, split.train_pairs, split.train_items, dataset.n_users)}
  if cfg.protocol == "warm":
    scorers["popularity"] = popularity_scorer(split.train_pairs, dataset.n_users,
                                              dataset.n_items)
  # One compiled evaluation for every scorer: embeddings zero-padded to one width.
  width = max(u.shape[1] for u, _ in scorers.values())
  pad = lambda x: jnp.pad(jnp.asarray(x), ((0, 0), (0, width - x.shape[1])))
  scored = jax.jit(evaluate)
  return {name: {k: float(v) for k, v in scored(pad(u), pad(i), test).items()}
          for name, (u, i) in scorers.items()}
