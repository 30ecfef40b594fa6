"""From config fields to a `Dataset`, its own split, and a protocol `Split`.

Real data is parsed once and cached on disk (`jaxrec.data.cache`), keyed by the
files' bytes and the reader arguments; protocol splits are cached the same way
under the data key plus the protocol arguments.
"""
from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np

from jaxrec.data import cache, protocol, readers
from jaxrec.data.dataset import Dataset
from jaxrec.data.synthetic import make_synthetic

CACHE_VERSION = 1
_OWN_SPLITS = ("train", "val", "test", "cold_items")
_SPLIT_ARRAYS = ("train_pairs", "val_pairs", "test_pairs", "train_items", "eval_items",
                 "candidates")


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A dataset, its own split (None if it has none) and its cache key ("" if none)."""
  dataset: Dataset
  own_splits: dict | None
  key: str


def _dataset_to_arrays(dataset: Dataset, own_splits: dict | None) -> dict:
  arrays = {"pairs": dataset.pairs, "available": dataset.available,
            "meta": np.array(json.dumps({
                "name": dataset.name, "n_users": dataset.n_users,
                "n_items": dataset.n_items,
                "modality_names": list(dataset.modality_names)}))}
  for m, feats in enumerate(dataset.features):
    arrays[f"feature_{m}"] = feats
  for name, value in (own_splits or {}).items():
    arrays[f"split_{name}"] = value
  return arrays


def _dataset_from_arrays(arrays: dict) -> tuple[Dataset, dict | None]:
  meta = json.loads(str(arrays["meta"]))
  names = tuple(meta["modality_names"])
  dataset = Dataset(name=meta["name"], n_users=meta["n_users"], n_items=meta["n_items"],
                    pairs=arrays["pairs"],
                    features=tuple(arrays[f"feature_{m}"] for m in range(len(names))),
                    modality_names=names, available=arrays["available"])
  own = {n: arrays[f"split_{n}"] for n in _OWN_SPLITS if f"split_{n}" in arrays}
  return dataset, own or None


def parse_modalities(text: str) -> tuple[str, ...] | None:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  return names or None


def load(data: str, *, modalities: str = "", min_rating: int = 4,
         synthetic_users: int = 1200, synthetic_items: int = 1000,
         synthetic_dims: tuple[int, ...] = (48, 32), synthetic_interactions: float = 25.0,
         data_seed: int = 0, use_cache: bool = True) -> Loaded:
  """`data` = "synthetic" or a folder in one of the layouts of PROTOCOL.md.

  Memoised in the process while the files' sizes and mtimes are unchanged;
  the disk cache behind it is keyed by their bytes.
  """
  signature = () if data == "synthetic" else cache.stat_signature(data)
  return _load(data, modalities, min_rating, synthetic_users, synthetic_items,
               tuple(synthetic_dims), synthetic_interactions, data_seed, use_cache, signature)


@functools.lru_cache(maxsize=8)
def _load(data, modalities, min_rating, synthetic_users, synthetic_items, synthetic_dims,
          synthetic_interactions, data_seed, use_cache, signature) -> Loaded:
  del signature    # part of the memo key only
  if data == "synthetic":
    return Loaded(make_synthetic(n_users=synthetic_users, n_items=synthetic_items,
                                 feature_dims=tuple(synthetic_dims),
                                 interactions_per_user=synthetic_interactions,
                                 seed=data_seed),
                  None, "")
  args = dict(version=CACHE_VERSION, reader="read_dataset", modalities=modalities,
              min_rating=min_rating)
  key = cache.content_key(data, args) if use_cache else ""

  def build():
    dataset, own = readers.read_dataset(data, modalities=parse_modalities(modalities),
                                        min_rating=min_rating)
    return _dataset_to_arrays(dataset, own)

  arrays, _ = cache.cached_arrays(f"data-{key}", build, enabled=use_cache)
  return Loaded(*_dataset_from_arrays(arrays), key)


def _build_split(loaded: Loaded, protocol_name: str, split_seed: int,
                 new_fraction: float) -> protocol.Split:
  dataset, own = loaded.dataset, loaded.own_splits or {}
  if protocol_name == "new_item":
    if "cold_items" in own:
      return protocol.own_new_item_split(dataset, own)
    return protocol.new_item_split(dataset, seed=split_seed, new_fraction=new_fraction)
  if protocol_name == "warm":
    if "train" not in own:
      own = protocol.random_pair_split(dataset, seed=split_seed)
    return protocol.warm_split(dataset, own)
  raise ValueError(f"unknown protocol {protocol_name!r}; expected one of "
                   f"{protocol.PROTOCOLS}")


def make_split(loaded: Loaded, *, protocol_name: str, split_seed: int,
               new_fraction: float) -> protocol.Split:
  """The protocol's `Split`, cached on disk for real data.

  New-item: a seeded split, or the data's own cold items (MILK layout). Warm:
  the data's own split, or a seeded per-user 80/10/10 split if it has none.
  """
  build = lambda: dataclasses.asdict(_build_split(loaded, protocol_name, split_seed,
                                                  new_fraction))
  if not loaded.key:
    return protocol.Split(**build())
  key = f"split-{loaded.key}-{protocol_name}-{split_seed}-{new_fraction}"

  def arrays():
    fields = build()
    return {k: fields[k] for k in _SPLIT_ARRAYS}

  fields, _ = cache.cached_arrays(key, arrays)
  return protocol.Split(protocol=protocol_name, **fields)
