"""Evaluation protocols and missing-modality masks (PROTOCOL.md).

Everything here is a deterministic function of (dataset, arguments, seed). The
availability mask (items x M, True = observed) is the single representation of
missingness; filling happens on device from the mask.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data.dataset import Dataset

SETTINGS = ("ff", "fm", "mf", "mm")
# Paper fractions when no rate is given: new items 50% (fm, mm), warm 30% (mf, mm).
DEFAULT_NEW_RATE = 0.5
DEFAULT_WARM_RATE = 0.3


@dataclasses.dataclass(frozen=True)
class Split:
  """Item roles and interaction splits of one protocol instance.

  Attributes:
    train_pairs, val_pairs, test_pairs: (N, 2) int32 (user, item).
    warm: (I,) bool items whose interactions are used for training.
    new: (I,) bool new items (validation and test new items together).
    candidates: (I,) bool items ranked at evaluation.
  """
  train_pairs: np.ndarray
  val_pairs: np.ndarray
  test_pairs: np.ndarray
  warm: np.ndarray
  new: np.ndarray
  candidates: np.ndarray


def new_item_split(dataset: Dataset, *, seed: int,
                   new_fraction: float = 0.2) -> Split:
  """MILK's new-item protocol: a seeded `new_fraction` of items become new items.

  Half of them are validation items, half test items; all their interactions
  leave training. Candidates are all new items, for validation and test alike.
  """
  rng = np.random.default_rng(seed)
  order = rng.permutation(dataset.n_items)
  n_new = int(round(new_fraction * dataset.n_items))
  if n_new < 2:
    raise ValueError(f"new_fraction={new_fraction} of {dataset.n_items} items "
                     "leaves fewer than 2 new items")
  val_items, test_items = order[:n_new // 2], order[n_new // 2:n_new]
  role = np.zeros(dataset.n_items, np.int8)
  role[val_items], role[test_items] = 1, 2
  pair_role = role[dataset.pairs[:, 1]]
  new = role > 0
  return Split(train_pairs=dataset.pairs[pair_role == 0],
               val_pairs=dataset.pairs[pair_role == 1],
               test_pairs=dataset.pairs[pair_role == 2],
               warm=~new, new=new, candidates=new)


def _drop_one_modality(available: np.ndarray, items: np.ndarray, rate: float,
                       rng: np.random.Generator) -> np.ndarray:
  """Hides one random observed modality of round(rate * len(items)) of `items`.

  Only items with at least two observed modalities are eligible, so no item is
  left with nothing and nothing naturally missing is ever un-hidden.
  """
  eligible = items[available[items].sum(axis=1) >= 2]
  n_drop = min(int(round(rate * len(items))), len(eligible))
  chosen = rng.permutation(eligible)[:n_drop]
  out = available.copy()
  for item in chosen:
    observed = np.flatnonzero(out[item])
    out[item, rng.choice(observed)] = False
  return out


def missing_mask(*, available: np.ndarray, split: Split, setting: str,
                 rate: float | None, seed: int) -> np.ndarray:
  """(I, M) bool availability for a missing-modality setting.

  Args:
    available: natural availability of the data.
    split: item roles (new vs warm).
    setting: ff (full), fm (new items miss), mf (warm items miss), mm (both).
    rate: fraction of the affected items that lose one modality; None gives the
      paper's fractions (new 0.5, warm 0.3).
    seed: seed of this mask.
  """
  if setting not in SETTINGS:
    raise ValueError(f"unknown missing setting {setting!r}; expected one of {SETTINGS}")
  if rate is not None and not 0.0 <= rate <= 1.0:
    raise ValueError(f"missing rate must be in [0, 1], got {rate}")
  rng = np.random.default_rng(seed)
  mask = np.asarray(available, bool)
  if setting in ("fm", "mm"):
    new_rate = DEFAULT_NEW_RATE if rate is None else rate
    mask = _drop_one_modality(mask, np.flatnonzero(split.new), new_rate, rng)
  if setting in ("mf", "mm"):
    warm_rate = DEFAULT_WARM_RATE if rate is None else rate
    mask = _drop_one_modality(mask, np.flatnonzero(split.warm), warm_rate, rng)
  return mask


def l2_normalise(x: np.ndarray) -> np.ndarray:
  """Row-wise `x / max(||x||, 1e-12)` in float32 (a zero row stays zero)."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fill_values(features: tuple[np.ndarray, ...], mask: np.ndarray,
                rows: np.ndarray, fill: str) -> tuple[np.ndarray, ...]:
  """Per-modality (d_m,) vector that replaces a missing row.

  `zero`: zeros. `mean`: mean of the observed (normalised) rows among `rows`
  (the training items), so no evaluation item leaks into the fill.
  """
  if fill not in ("zero", "mean"):
    raise ValueError(f"unknown fill {fill!r}; expected 'zero' or 'mean'")
  out = []
  for m, feats in enumerate(features):
    if fill == "zero":
      out.append(np.zeros(feats.shape[1], np.float32))
      continue
    observed = rows & mask[:, m]
    if not observed.any():
      raise ValueError(f"mean fill of modality {m}: no training item observes it")
    out.append(feats[observed].mean(axis=0).astype(np.float32))
  return tuple(out)
