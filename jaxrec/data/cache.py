"""On-disk cache of parsed data and protocol splits, keyed by file content.

A key hashes the bytes of every input file (and the arguments), so a changed
file can never be served from a stale entry. Entries are `.npz` files written
atomically (temporary file + rename), so a killed process leaves no torn entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np

DATA_EXTENSIONS = (".tsv", ".txt", ".inter", ".npy", ".data")


def cache_dir() -> str:
  return os.environ.get("JAXREC_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                     "jaxrec"))


def data_files(path: str) -> list[str]:
  """The files under `path` that a reader may read, in a stable order."""
  out = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    out += [os.path.join(root, n) for n in sorted(files) if n.endswith(DATA_EXTENSIONS)]
  return out


def stat_signature(path: str) -> tuple:
  """(name, size, mtime) of every data file: a cheap in-process change detector."""
  return tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in data_files(path))


def content_key(path: str, args: dict) -> str:
  """sha256 over the data files under `path` (names and bytes) and `args`."""
  digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode())
  for full in data_files(path):
    digest.update(os.path.relpath(full, path).encode() + b"\0")
    with open(full, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        digest.update(block)
  return digest.hexdigest()[:32]


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]],
                  enabled: bool = True) -> tuple[dict[str, np.ndarray], bool]:
  """Returns (arrays, hit): the entry for `key`, built and stored on a miss."""
  path = os.path.join(cache_dir(), f"{key}.npz")
  if enabled and os.path.exists(path):
    with np.load(path, allow_pickle=False) as entry:
      return {k: entry[k] for k in entry.files}, True
  arrays = build()
  if enabled:
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  return arrays, False
