"""On-disk cache of parsed data and protocol splits, keyed by file content.

A key hashes the bytes of every input file (and the arguments), so a changed
file can never be served from a stale entry. Entries are `.npz` files written
atomically (temporary file + rename), so a killed process leaves no torn entry.
A cache folder that cannot be written (read-only, full) is said in one line and
bypassed: the cache saves time, it never stops a sweep.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zipfile
from typing import Callable, Sequence

import numpy as np

DATA_EXTENSIONS = (".tsv", ".txt", ".inter", ".npy", ".data", ".json")


def cache_dir() -> str:
  return os.environ.get("JAXREC_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                     "jaxrec"))


def data_files(path: str) -> list[str]:
  """The files under `path` that a reader may read, in a stable order.

  For a key over a folder whose layout is unknown; `loading` keys by the files
  its layout declares (`readers.Layout.files`).
  """
  out = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    out += [os.path.join(root, n) for n in sorted(files) if n.endswith(DATA_EXTENSIONS)]
  return out


def stat_signature(files: Sequence[str]) -> tuple:
  """(name, size, mtime) of every file: a cheap in-process change detector."""
  return tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)


def sha256_file(path: str) -> str:
  """The hex sha256 of a file's bytes, as `sha256sum` prints it."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def file_hashes(root: str, files: Sequence[str]) -> dict[str, str]:
  """{path relative to `root`: sha256} of `files`."""
  return {os.path.relpath(f, root): sha256_file(f) for f in files}


def key_of(args: dict, hashes: dict[str, str]) -> str:
  """A cache key over reader arguments and file hashes (names and contents)."""
  text = json.dumps({"args": args, "files": hashes}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:32]


def content_key(path: str, args: dict, files: Sequence[str] | None = None) -> str:
  """The key of `files` (default: every data file under `path`) and `args`."""
  return key_of(args, file_hashes(path, data_files(path) if files is None else files))


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]],
                  enabled: bool = True) -> tuple[dict[str, np.ndarray], bool]:
  """Returns (arrays, hit): the entry for `key`, built and stored on a miss."""
  path = os.path.join(cache_dir(), f"{key}.npz")
  if enabled and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as entry:
        return {k: entry[k] for k in entry.files}, True
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
      pass    # a damaged entry (disk full, edited by hand) is rebuilt and replaced
  arrays = build()
  if enabled:
    _store(path, arrays)
  return arrays, False


def _store(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes one entry atomically; a cache that cannot be written (read-only, full)
  is said once, in one line on stderr, and the data is used without it."""
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  try:
    os.makedirs(cache_dir(), exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  except OSError as err:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    _warn_unwritable(err)


_warned_dirs: set[str] = set()


def _warn_unwritable(err: OSError) -> None:
  if cache_dir() in _warned_dirs:
    return
  _warned_dirs.add(cache_dir())
  print(f"warning: the data cache {cache_dir()} cannot be written ({err.strerror}); the data "
        "is read without it, and read again next time; set JAXREC_CACHE to a writable "
        "folder to keep it", file=sys.stderr)
