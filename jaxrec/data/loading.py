"""From config fields to a `Dataset`, its own split, and a protocol `Split`.

Real data is parsed once and cached on disk (`jaxrec.data.cache`), keyed by the
files' bytes and the reader arguments; protocol splits are cached the same way
under the data key plus the protocol arguments.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os

import numpy as np

from jaxrec.data import cache, features, protocol, readers
from jaxrec.data.dataset import Dataset
from jaxrec.data.synthetic import make_synthetic
from jaxrec.errors import InputError

CACHE_VERSION = 3    # 2: warnings in the entry; 3: all-zero feature rows counted
_OWN_SPLITS = ("train", "val", "test", "cold_items")
_SPLIT_ARRAYS = ("train_pairs", "val_pairs", "test_pairs", "train_items", "eval_items",
                 "val_candidates", "test_candidates")
parse_modalities = features.parse_modalities


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A dataset as the sweep uses it.

  Attributes:
    dataset: the `Dataset`.
    own_splits: the data's own split, or None if it has none.
    key: the cache key ("" for synthetic data or without the cache).
    warnings: one line per thing repaired or ignored in the files (dropped
      duplicates, users without training pairs, remapped ids), for the caller
      to print once and store with the results; nothing is printed here.
    fingerprint: {file relative to the data folder: sha256} of every file the
      layout read ({} for synthetic data); see `fingerprint_changes`.
  """
  dataset: Dataset
  own_splits: dict | None
  key: str
  warnings: tuple[str, ...] = ()
  fingerprint: dict = dataclasses.field(default_factory=dict)


def _dataset_to_arrays(dataset: Dataset, own_splits: dict | None,
                       warnings: tuple[str, ...]) -> dict:
  arrays = {"pairs": dataset.pairs, "available": dataset.available,
            "meta": np.array(json.dumps({
                "name": dataset.name, "n_users": dataset.n_users,
                "n_items": dataset.n_items,
                "modality_names": list(dataset.modality_names),
                "warnings": list(warnings)}))}
  for m, feats in enumerate(dataset.features):
    arrays[f"feature_{m}"] = feats
  for name, value in (own_splits or {}).items():
    arrays[f"split_{name}"] = value
  return arrays


def _dataset_from_arrays(arrays: dict) -> tuple[Dataset, dict | None, tuple[str, ...]]:
  meta = json.loads(str(arrays["meta"]))
  names = tuple(meta["modality_names"])
  dataset = Dataset(name=meta["name"], n_users=meta["n_users"], n_items=meta["n_items"],
                    pairs=arrays["pairs"],
                    features=tuple(arrays[f"feature_{m}"] for m in range(len(names))),
                    modality_names=names, available=arrays["available"])
  own = {n: arrays[f"split_{n}"] for n in _OWN_SPLITS if f"split_{n}" in arrays}
  return dataset, own or None, tuple(meta["warnings"])


def _files(data: str, modalities: str) -> tuple[str, ...]:
  return readers.detect_layout(data).files(data, parse_modalities(modalities))


def data_fingerprint(data: str, modalities: str = "") -> dict[str, str]:
  """{file relative to `data`: sha256} of every file `load(data, modalities=...)`
  reads; {} for "synthetic". Equal to `load(...).fingerprint`, without parsing."""
  if data == "synthetic":
    return {}
  return cache.file_hashes(data, _files(data, modalities))


def fingerprint_changes(old: dict[str, str], new: dict[str, str]) -> str | None:
  """One line naming the files that differ between two fingerprints, or None.

  For a work directory that recorded `old` and is resumed on data that now
  fingerprints as `new`.
  """
  parts = [(what, sorted(names)) for what, names in (
      ("edited", [f for f in old if f in new and old[f] != new[f]]),
      ("added", [f for f in new if f not in old]),
      ("removed", [f for f in old if f not in new])) if names]
  if not parts:
    return None
  changes = "; ".join(f"{what} {', '.join(names)}" for what, names in parts)
  return (f"the data changed since this work directory was started: {changes} "
          "(sha256 differs); restore those files, or start a new work directory")


def load(data: str, *, modalities: str = "", min_rating: int = 4,
         synthetic_users: int = 1200, synthetic_items: int = 1000,
         synthetic_dims: tuple[int, ...] = (48, 32), synthetic_interactions: float = 25.0,
         data_seed: int = 0, remap_users: bool = False, use_cache: bool = True) -> Loaded:
  """`data` = "synthetic" or a folder in one of the layouts of PROTOCOL.md.

  `modalities`: "" (the layout's default), or names and/or name:file pairs,
  e.g. "audio:vggish.npy,image" (`features.parse_modalities`). `remap_users`:
  renumber sparse user ids 0..n-1 (with a warning) instead of refusing them.
  Memoised in the process while the files' sizes and mtimes are unchanged;
  the disk cache behind it is keyed by their bytes. Bad input raises
  `InputError`.
  """
  files = () if data == "synthetic" else _files(data, modalities)
  return _load(data, modalities, min_rating, synthetic_users, synthetic_items,
               tuple(synthetic_dims), synthetic_interactions, data_seed, remap_users,
               use_cache, files, cache.stat_signature(files))


@functools.lru_cache(maxsize=8)
def _load(data, modalities, min_rating, synthetic_users, synthetic_items, synthetic_dims,
          synthetic_interactions, data_seed, remap_users, use_cache, files,
          signature) -> Loaded:
  del signature    # part of the memo key only
  if data == "synthetic":
    return Loaded(make_synthetic(n_users=synthetic_users, n_items=synthetic_items,
                                 feature_dims=tuple(synthetic_dims),
                                 interactions_per_user=synthetic_interactions,
                                 seed=data_seed),
                  None, "")
  fingerprint = cache.file_hashes(data, files)
  args = dict(version=CACHE_VERSION, reader="read", modalities=modalities,
              min_rating=min_rating, remap_users=remap_users)
  key = cache.key_of(args, fingerprint) if use_cache else ""

  def build():
    out = readers.read(data, parse_modalities(modalities), min_rating=min_rating,
                       remap_users=remap_users)
    return _dataset_to_arrays(out.dataset, out.splits, out.warnings)

  arrays, _ = cache.cached_arrays(f"data-{key}", build, enabled=use_cache)
  dataset, own, warnings = _dataset_from_arrays(arrays)
  return Loaded(dataset, own, key, warnings, fingerprint)


def uses_own_split(loaded: Loaded, protocol_name: str) -> bool:
  """Whether `protocol_name` evaluates on the data's own split (see `make_split`)."""
  own = loaded.own_splits or {}
  return "cold_items" in own if protocol_name == "new_item" else "train" in own


def warnings_for(loaded: Loaded, protocol_name: str) -> tuple[str, ...]:
  """The data's warnings that hold under `protocol_name`: what the data's own split
  leaves out is not said where a seeded split is used instead."""
  own = uses_own_split(loaded, protocol_name)
  return tuple(w for w in loaded.warnings if own or not w.endswith(readers.OWN_SPLIT_NOTE))


def unread_feature_files(data: str, modalities: str = "") -> list[str]:
  """The feature folder's .npy files that `load(data, modalities=...)` does not read
  (masks and the MILK layout's cold items aside), relative to that folder."""
  if data == "synthetic":
    return []
  layout = readers.detect_layout(data)
  folder = os.path.join(data, layout.feature_dir)
  read = {os.path.relpath(f, folder) for f in _files(data, modalities)}
  return [f for f in features.npy_files(folder) if f not in read
          and not f.endswith(features.MASK_SUFFIX) and f != "cold_item_index.npy"]


def check_modalities(data: str, modalities: str, dataset: Dataset, model_name: str,
                     least: int) -> None:
  """Refuses data with fewer modalities than a model needs, naming the feature
  files it left unread (an encoder-named file needs its modality named)."""
  if dataset.n_modalities >= least:
    return
  unread = unread_feature_files(data, modalities)
  hint = (f"; not read: {', '.join(unread)} (a file not named '<modality>_feat.npy' is read "
          "once named: --set modalities=name:file.npy,... lists every modality, or write "
          f"{features.MANIFEST} in the folder)" if unread else "")
  raise InputError(f"model {model_name!r} needs at least {least} modalities; {data} has "
                   f"{dataset.n_modalities} ({', '.join(dataset.modality_names)}){hint}")


def _build_split(loaded: Loaded, protocol_name: str, split_seed: int,
                 new_fraction: float, candidates: str) -> protocol.Split:
  dataset, own = loaded.dataset, loaded.own_splits or {}
  if protocol_name == "new_item":
    if "cold_items" in own:
      return protocol.own_new_item_split(dataset, own, candidates)
    return protocol.new_item_split(dataset, seed=split_seed, new_fraction=new_fraction,
                                   candidates=candidates)
  if protocol_name == "warm":
    if "train" not in own:
      own = protocol.random_pair_split(dataset, seed=split_seed)
    return protocol.warm_split(dataset, own)
  raise InputError(f"unknown protocol {protocol_name!r}; expected one of "
                   f"{protocol.PROTOCOLS}")


def make_split(loaded: Loaded, *, protocol_name: str, split_seed: int,
               new_fraction: float, candidates: str = "all_new") -> protocol.Split:
  """The protocol's `Split`, cached on disk for real data.

  New-item: a seeded split, or the data's own cold items (MILK layout), its
  evaluations ranking the new items `candidates` names. Warm: the data's own
  split, or a seeded per-user 80/10/10 split if it has none; all items ranked.
  """
  build = lambda: dataclasses.asdict(_build_split(loaded, protocol_name, split_seed,
                                                  new_fraction, candidates))
  if not loaded.key:
    return protocol.Split(**build())
  key = f"split-{loaded.key}-{protocol_name}-{split_seed}-{new_fraction}-{candidates}"

  def arrays():
    fields = build()
    return {k: fields[k] for k in _SPLIT_ARRAYS}

  fields, _ = cache.cached_arrays(key, arrays)
  return protocol.Split(protocol=protocol_name, **fields)
