"""Evaluation protocols and missing-modality masks (PROTOCOL.md, MILK.md, I3MRec.md).

Everything here is a deterministic function of (dataset, arguments, seed).
Availability masks (items x M, True = observed) are the single representation
of missingness; filling happens on device from the masks. A run has two masks:
the one its training sees and the one its evaluation sees. They are the same
matrix under the new-item protocol (training and evaluation items are
disjoint) and differ under the warm protocol, where one item can be in both.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data.dataset import Dataset
from jaxrec.errors import InputError

PROTOCOLS = ("new_item", "warm")
# Which new items an evaluation of the new-item protocol ranks. "all_new"
# (PROTOCOL.md, MILK's and CLCRec's codes): every new item, at validation and
# test alike, so the other half's items are candidates that are never hits.
# "own_half": validation ranks the validation new items only, test the test new
# items only, so a split whose halves differ in popularity does not move the
# test numbers (docs/results.md, "A second split"). The warm protocol ranks
# every item either way.
CANDIDATES = ("all_new", "own_half")
SETTINGS = ("ff", "fm", "mf", "mm", "mix")
# Fractions when no rate is given. New-item (MILK): 50% of new items (fm, mm),
# 30% of warm items (mf, mm). Warm (I3-MRec): 50% of test items, whatever the
# training rate; 30% of training items (mm).
DEFAULT_EVAL_RATE = 0.5
DEFAULT_TRAIN_RATE = 0.3
# The MILK paper's TikTok test mix: complete / one modality missing / two missing.
TEST_MIX = (0.10, 0.45, 0.45)


@dataclasses.dataclass(frozen=True)
class Split:
  """Item roles and interaction splits of one protocol instance.

  Attributes:
    protocol: "new_item" or "warm".
    train_pairs, val_pairs, test_pairs: (N, 2) int32 (user, item).
    train_items: (I,) bool items with training interactions that masks treat
      as training items (new-item: the warm items).
    eval_items: (I,) bool items whose modalities the evaluation settings hide
      (new-item: all new items; warm: the items of the test split).
    val_candidates, test_candidates: (I,) bool items ranked at validation
      and at test (see `CANDIDATES`).
  """
  protocol: str
  train_pairs: np.ndarray
  val_pairs: np.ndarray
  test_pairs: np.ndarray
  train_items: np.ndarray
  eval_items: np.ndarray
  val_candidates: np.ndarray
  test_candidates: np.ndarray


def _items_of(pairs: np.ndarray, n_items: int) -> np.ndarray:
  out = np.zeros(n_items, bool)
  out[pairs[:, 1]] = True
  return out


def _trained_users_only(pairs: np.ndarray, train: np.ndarray) -> np.ndarray:
  """The evaluation pairs of users with at least one training pair.

  A user without one has nothing the model learned to rank from; the readers
  count such users in their warnings. Only the data's own splits need this: a
  seeded new-item split keeps every user, as MILK's code does.
  """
  return pairs[np.isin(pairs[:, 0], train[:, 0])]


def _new_item_candidates(new: np.ndarray, val_half: np.ndarray, test_half: np.ndarray,
                         candidates: str) -> dict[str, np.ndarray]:
  """The validation and test candidate masks of a new-item split (`CANDIDATES`)."""
  if candidates == "all_new":
    return dict(val_candidates=new, test_candidates=new)
  if candidates == "own_half":
    return dict(val_candidates=val_half, test_candidates=test_half)
  raise InputError(f"candidates={candidates!r}; expected one of {CANDIDATES}")


def new_item_split(dataset: Dataset, *, seed: int, new_fraction: float = 0.2,
                   candidates: str = "all_new") -> Split:
  """MILK's new-item protocol.

  A seeded `new_fraction` of items become new items, half for validation and
  half for test; all their interactions leave training. `candidates` says which
  new items each evaluation ranks (`CANDIDATES`; PROTOCOL.md: all of them).
  """
  rng = np.random.default_rng(seed)
  order = rng.permutation(dataset.n_items)
  n_new = int(round(new_fraction * dataset.n_items))
  if n_new < 2:
    raise InputError(f"the new-item protocol needs at least 2 new items, got {n_new} "
                     f"({dataset.n_items} items, new_fraction={new_fraction})")
  val_items, test_items = order[:n_new // 2], order[n_new // 2:n_new]
  role = np.zeros(dataset.n_items, np.int8)
  role[val_items], role[test_items] = 1, 2
  pair_role = role[dataset.pairs[:, 1]]
  new = role > 0
  return Split(protocol="new_item", train_pairs=dataset.pairs[pair_role == 0],
               val_pairs=dataset.pairs[pair_role == 1],
               test_pairs=dataset.pairs[pair_role == 2],
               train_items=~new, eval_items=new,
               **_new_item_candidates(new, role == 1, role == 2, candidates))


def own_new_item_split(dataset: Dataset, own_splits: dict,
                       candidates: str = "all_new") -> Split:
  """The new-item protocol of data that comes with one (MILK/GoRec layout):
  its own train / val / test pairs, new items = `cold_items`; evaluation users
  without training pairs are left out. The data names no halves, so under
  "own_half" a half is the new items of its pairs."""
  new = np.zeros(dataset.n_items, bool)
  new[np.asarray(own_splits["cold_items"])] = True
  train, val, test = (np.asarray(own_splits[k], np.int32) for k in ("train", "val", "test"))
  for name, pairs, want_new in (("train", train, False), ("val", val, True),
                                ("test", test, True)):
    wrong = new[pairs[:, 1]] != want_new
    if wrong.any():
      u, i = pairs[np.argmax(wrong)]
      raise InputError(f"{name} pair (user {u}, item {i}): expected "
                       f"{'a cold' if want_new else 'a warm'} item (cold_item_index.npy)")
  return Split(protocol="new_item", train_pairs=train,
               val_pairs=_trained_users_only(val, train),
               test_pairs=_trained_users_only(test, train),
               train_items=~new, eval_items=new,
               **_new_item_candidates(new, _items_of(val, dataset.n_items),
                                      _items_of(test, dataset.n_items), candidates))


def warm_split(dataset: Dataset, own_splits: dict) -> Split:
  """The warm protocol: the data's own train / val / test pairs, all items ranked.

  Evaluation users without training pairs are left out.
  """
  train, val, test = (np.asarray(own_splits[k], np.int32) for k in ("train", "val", "test"))
  val, test = _trained_users_only(val, train), _trained_users_only(test, train)
  return Split(protocol="warm", train_pairs=train, val_pairs=val, test_pairs=test,
               train_items=_items_of(train, dataset.n_items),
               eval_items=_items_of(test, dataset.n_items),
               val_candidates=np.ones(dataset.n_items, bool),
               test_candidates=np.ones(dataset.n_items, bool))


def random_pair_split(dataset: Dataset, *, seed: int,
                      fractions: tuple[float, float] = (0.8, 0.1)) -> dict:
  """A seeded per-user split of the pairs (train, val, rest test), for data without one.

  Each user with at least 3 pairs keeps at least one pair in each split.
  """
  rng = np.random.default_rng(seed)
  pairs = dataset.pairs[rng.permutation(len(dataset.pairs))]
  pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
  starts = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")
  rank = np.arange(len(pairs)) - starts
  counts = np.bincount(pairs[:, 0], minlength=dataset.n_users)[pairs[:, 0]]
  n_train = np.maximum(1, np.floor(fractions[0] * counts)).astype(int)
  n_val = np.maximum(counts >= 3, np.floor(fractions[1] * counts)).astype(int)
  part = np.where(rank < n_train, 0, np.where(rank < n_train + n_val, 1, 2))
  return {name: pairs[part == k] for k, name in enumerate(("train", "val", "test"))}


def _drawn_modality(available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One random observed modality per item (I3-MRec draws one index per item)."""
  scores = np.where(available, rng.random(available.shape), -1.0)
  return np.argmax(scores, axis=1)


def _hide(mask: np.ndarray, items: np.ndarray, rate: float, n_hide: int,
          rng: np.random.Generator, modality: np.ndarray | None = None) -> np.ndarray:
  """Hides `n_hide` observed modalities of round(rate * len(items)) of `items`.

  Only items with more than `n_hide` observed modalities are eligible, so no
  item is left with nothing and nothing naturally missing is ever un-hidden.
  With `modality`, the one hidden modality is the item's pre-drawn one.
  """
  eligible = items[mask[items].sum(axis=1) > n_hide]
  chosen = rng.permutation(eligible)[:min(int(round(rate * len(items))), len(eligible))]
  out = mask.copy()
  for item in chosen:
    if modality is not None:
      out[item, modality[item]] = False
    else:
      out[item, rng.choice(np.flatnonzero(out[item]), n_hide, replace=False)] = False
  return out


def _check(setting: str, rate: float | None, n_modalities: int) -> None:
  if setting not in SETTINGS:
    raise InputError(f"unknown missing setting {setting!r}; expected one of {SETTINGS}")
  if rate is not None and not 0.0 <= rate <= 1.0:
    raise InputError(f"missing rate must be in [0, 1], got {rate}")
  if setting == "mix" and n_modalities < 3:
    raise InputError(f"setting 'mix' (10% complete, 45% one missing, 45% two missing) "
                     f"needs at least 3 modalities, the data has {n_modalities}")


def _test_mix(mask: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  order = rng.permutation(items)
  n_one = int(round(TEST_MIX[1] * len(items)))
  n_two = int(round(TEST_MIX[2] * len(items)))
  mask = _hide(mask, order[:n_one], 1.0, 1, rng)
  return _hide(mask, order[n_one:n_one + n_two], 1.0, 2, rng)


def missing_masks(*, available: np.ndarray, split: Split, setting: str,
                  rate: float | None, seed: int,
                  test_rate: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(train_mask, eval_mask), each (I, M) bool, for a missing-modality setting.

  New-item protocol (one mask): `fm` hides one modality of `rate` (default 0.5)
  of the new items, `mf` of `rate` (default 0.3) of the warm items, `mm` both,
  `mix` gives the new items the TikTok test mix (needs M >= 3).
  Warm protocol (I3-MRec): one modality index is drawn per item; `fm` and `mm`
  hide it for `test_rate` (default 50%) of the test items in the evaluation
  mask; `mm` and `mf` hide
  it for `rate` (default 0.3) of the training items in the training mask.
  Masks only ever hide: natural missingness in `available` is kept.
  """
  _check(setting, rate, available.shape[1])
  rng = np.random.default_rng(seed)
  mask = np.asarray(available, bool)
  train_items = np.flatnonzero(split.train_items)
  eval_items = np.flatnonzero(split.eval_items)
  if split.protocol == "new_item":
    if setting in ("fm", "mm"):
      mask = _hide(mask, eval_items, DEFAULT_EVAL_RATE if rate is None else rate, 1, rng)
    if setting == "mix":
      mask = _test_mix(mask, eval_items, rng)
    if setting in ("mf", "mm"):
      mask = _hide(mask, train_items, DEFAULT_TRAIN_RATE if rate is None else rate, 1, rng)
    return mask, mask
  drawn = _drawn_modality(mask, rng)
  eval_mask, train_mask = mask, mask
  if setting in ("fm", "mm"):
    eval_mask = _hide(mask, eval_items, DEFAULT_EVAL_RATE if test_rate is None else test_rate,
                      1, rng, drawn)
  if setting == "mix":
    eval_mask = _test_mix(mask, eval_items, rng)
  if setting in ("mf", "mm"):
    train_mask = _hide(mask, train_items, DEFAULT_TRAIN_RATE if rate is None else rate,
                       1, rng, drawn)
  return train_mask, eval_mask


def fill_values(features: tuple[np.ndarray, ...], mask: np.ndarray,
                rows: np.ndarray, fill: str) -> tuple[np.ndarray, ...]:
  """Per-modality (d_m,) vector that replaces a missing row.

  `zero`: zeros. `mean`: mean of the observed (normalised) rows among `rows`
  (the training items, under the training mask), so no evaluation item leaks
  into the fill.
  """
  if fill not in ("zero", "mean"):
    raise InputError(f"unknown fill {fill!r}; expected 'zero' or 'mean'")
  out = []
  for m, feats in enumerate(features):
    if fill == "zero":
      out.append(np.zeros(feats.shape[1], np.float32))
      continue
    observed = rows & mask[:, m]
    if not observed.any():
      raise InputError(f"mean fill of modality {m}: no training item observes it, expected "
                       "at least one to average; use fill=zero, or a lower missing rate")
    out.append(feats[observed].mean(axis=0).astype(np.float32))
  return tuple(out)
