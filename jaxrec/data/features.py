"""Per-modality feature files: which `.npy` is which modality, and loading them safely.

A modality is a name and a `.npy` file (row `i` = item `i`). The file of a name
comes, in this order of precedence, from
  1. the `modalities` selection, written `name:file` (e.g. `audio:vggish.npy`);
  2. a manifest `modalities.json` in the folder, `{"image": "resnet152.npy"}`;
  3. the file `<name>_feat.npy`.
Without a selection the modalities are the manifest's (in its order), else the
reader's default, else every `*_feat.npy` (sorted). An optional
`<name>_mask.npy` (bool per item) marks natural missingness.

Every failure is an `InputError` naming the file; in particular `np.load`'s own
errors (pickled objects, truncated files) never reach the user unexplained.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from jaxrec.errors import InputError

MANIFEST = "modalities.json"
FEATURE_SUFFIX = "_feat.npy"
MASK_SUFFIX = "_mask.npy"

# A selection: (name, file or None) per modality, in order; None = no selection.
Selection = tuple[tuple[str, "str | None"], ...]


def parse_modalities(text: str) -> Selection | None:
  """`"a,v"` or `"audio:vggish.npy,image:clip.npy"` (mixable) -> selection, "" -> None.

  >>> parse_modalities("audio:vggish.npy, image")
  (('audio', 'vggish.npy'), ('image', None))
  """
  out = []
  for item in (part.strip() for part in text.split(",")):
    if not item:
      continue
    name, sep, file = (s.strip() for s in item.partition(":"))
    if not name or (sep and not file):
      raise InputError(f"modalities: {item!r}, expected 'name' or 'name:file.npy' "
                       "(e.g. 'audio:vggish.npy,image:clip.npy')")
    out.append((name, file or None))
  return as_selection(out) if out else None


def as_selection(modalities) -> Selection | None:
  """Names and/or (name, file) pairs -> a validated selection; None stays None."""
  if modalities is None:
    return None
  out = tuple((m, None) if isinstance(m, str) else (m[0], m[1]) for m in modalities)
  names = [n for n, _ in out]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise InputError(f"modalities: {repeated} named more than once, expected each once")
  for name, file in out:
    if file is not None and not _inside(file):
      raise InputError(f"modalities: {name}:{file}: expected a .npy file inside the "
                       "data folder (a relative path)")
  return out


def _inside(file: str) -> bool:
  norm = os.path.normpath(file)
  return (file.endswith(".npy") and not os.path.isabs(file)
          and norm != ".." and not norm.startswith(".." + os.sep))


def read_manifest(folder: str) -> dict[str, str] | None:
  """The folder's `modalities.json` ({name: file}), or None if it has none."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (ValueError, OSError) as err:
    raise InputError(f"{path}: not readable JSON ({_one_line(err)}), expected "
                     '{"<modality>": "<file>.npy", ...}') from None
  if (not isinstance(manifest, dict) or not manifest
      or not all(isinstance(k, str) and k and isinstance(v, str) and _inside(v)
                 for k, v in manifest.items())):
    raise InputError(f"{path}: got {_short(manifest)}, expected a non-empty object "
                     '{"<modality>": "<file>.npy", ...} of files inside the folder')
  return manifest


def choose(folder: str, npy_files: Sequence[str], manifest: dict[str, str] | None,
           selection: Selection | None, default: Sequence[str] | None = None
           ) -> tuple[tuple[str, str], ...]:
  """(name, file relative to `folder`) per modality; pure (see module docstring).

  `npy_files`: the .npy files present (relative paths), for `*_feat.npy` names
  and for the messages.
  """
  catalogue = {f[:-len(FEATURE_SUFFIX)]: f for f in sorted(npy_files)
               if f.endswith(FEATURE_SUFFIX) and os.sep not in f}
  catalogue.update(manifest or {})
  if selection is None:
    names = list(manifest or default or catalogue)
    if not names:
      raise InputError(
          f"{folder}: no feature file found; expected '<modality>{FEATURE_SUFFIX}' files, a "
          f'{MANIFEST} like {{"image": "resnet152.npy"}}, or --set modalities=name:file.npy,'
          f"...; the folder has {_listing(npy_files)}")
    selection = tuple((n, None) for n in names)
  unknown = [n for n, f in selection if f is None and n not in catalogue]
  if unknown or not selection:
    raise InputError(f"{folder}: unknown modality {unknown or list(selection)!r}, expected "
                     f"a non-empty selection of {sorted(catalogue)} or name:file.npy with "
                     f"one of {_listing(npy_files)}")
  out = tuple((n, f if f is not None else catalogue[n]) for n, f in selection)
  for (name, file), (_, selected) in zip(out, selection):
    if file not in npy_files:
      source = (f" (named in {MANIFEST})" if selected is None and name in (manifest or {})
                else "")
      raise InputError(f"{folder}: modality file '{name}:{file}'{source} not found; the "
                       f"folder has {_listing(npy_files)}")
  return out


def npy_files(folder: str) -> tuple[str, ...]:
  """The .npy files under `folder`, relative to it, sorted."""
  out = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    out += [os.path.relpath(os.path.join(root, n), folder) for n in sorted(files)
            if n.endswith(".npy")]
  return tuple(out)


def resolve(folder: str, selection: Selection | None,
            default: Sequence[str] | None = None) -> tuple[tuple[str, str], ...]:
  """(name, absolute path) per modality of the feature folder `folder`."""
  if not os.path.isdir(folder):
    raise InputError(f"{folder}: feature folder not found")
  chosen = choose(folder, npy_files(folder), read_manifest(folder), selection, default)
  return tuple((n, os.path.join(folder, f)) for n, f in chosen)


def files_read(folder: str, selection: Selection | None,
               default: Sequence[str] | None = None) -> tuple[str, ...]:
  """Every file `load_features` reads: features, masks present, the manifest."""
  out = []
  for name, path in resolve(folder, selection, default):
    mask = os.path.join(folder, name + MASK_SUFFIX)
    out += [path] + [mask] * os.path.isfile(mask)
  manifest = os.path.join(folder, MANIFEST)
  return tuple(out + [manifest] * os.path.isfile(manifest))


def load_npy(path: str) -> np.ndarray:
  """`np.load` of one plain array; a missing, foreign, pickled or truncated file is
  an `InputError` naming `path` (checked from the header, before reading the data)."""
  if not os.path.isfile(path):
    raise InputError(f"{path}: file not found")
  fmt = np.lib.format
  try:
    with open(path, "rb") as f:
      major, _ = fmt.read_magic(f)
      read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
      shape, _, dtype = read_header(f)
      data_bytes = os.fstat(f.fileno()).st_size - f.tell()
  except (ValueError, OSError, EOFError) as err:
    raise InputError(f"{path}: not a .npy array ({_one_line(err)}), expected one array "
                     "written by numpy.save") from None
  if dtype.hasobject:
    raise InputError(f"{path}: holds pickled Python objects (dtype {dtype}), expected a "
                     "plain numeric array; re-save it with numpy.save(path, "
                     "numpy.asarray(x, numpy.float32))")
  need = int(np.prod(shape)) * dtype.itemsize
  if data_bytes < need:
    raise InputError(f"{path}: truncated, {data_bytes} bytes of data where shape "
                     f"{shape} {dtype} needs {need}")
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as err:
    raise InputError(f"{path}: not readable ({_one_line(err)})") from None


def _float_rows(path: str, f: np.ndarray, n_rows: int | None, first: str | None) -> None:
  if f.ndim != 2 or not np.issubdtype(f.dtype, np.floating) or 0 in f.shape:
    raise InputError(f"{path}: expected a 2-D float array (n_items, d) with d >= 1, got "
                     f"shape {f.shape} dtype {f.dtype}")
  if n_rows is not None and f.shape[0] != n_rows:
    raise InputError(f"{path}: {f.shape[0]} rows, expected {n_rows} rows like {first} "
                     "(row i = item i in every file)")
  bad = ~np.isfinite(f).all(axis=1)
  if bad.any():
    row = int(np.argmax(bad))
    raise InputError(f"{path}: row {row} (item {row}) has NaN or inf, expected finite "
                     f"features ({int(bad.sum())} bad rows)")


def _mask(mask_path: str, name: str, n_rows: int) -> np.ndarray:
  m = load_npy(mask_path)
  if m.dtype != np.bool_ or m.shape != (n_rows,):
    raise InputError(f"{mask_path}: expected a ({n_rows},) bool array, got shape "
                     f"{m.shape} dtype {m.dtype}")
  if not m.any():
    raise InputError(f"{mask_path}: marks every item's '{name}' missing (all False), "
                     "expected at least one observed item; fix the mask, or leave the "
                     f"modality out (--set modalities=...)")
  return m


def _rows(rows: np.ndarray, most: int = 5) -> str:
  shown = ", ".join(str(int(r)) for r in rows[:most])
  return shown + (f", ... {len(rows) - most} more" if len(rows) > most else "")


def zero_row_notes(path: str, f: np.ndarray, mask_path: str | None,
                   mask: np.ndarray) -> list[str]:
  """A warning counting the all-zero rows that are taken as real features (a
  common way to write "missing"), saying whether a mask file disagrees."""
  zero = ~f.any(axis=1) & mask
  if not zero.any():
    return []
  rows = np.flatnonzero(zero)
  what = f"{path}: {len(rows)} rows are all zero (rows {_rows(rows)})"
  if mask_path is not None:
    return [f"{what} but {os.path.basename(mask_path)} marks them observed; they are used "
            "as real features; if zero means missing, mark them False in that mask"]
  name = os.path.basename(path).removesuffix(".npy").removesuffix("_feat")
  return [f"{what}; they are used as real features; if zero means missing, write "
          f"{name}{MASK_SUFFIX} (a bool per item, False for those rows) beside it"]


def load_features(folder: str, selection: Selection | None,
                  default: Sequence[str] | None = None):
  """(features tuple, names tuple, available (n_rows, M) bool, first feature path,
  warnings).

  Float16 is a storage format only: those features come back as float32.
  """
  feats, names, masks, n_rows, first, notes = [], [], [], None, None, []
  for name, path in resolve(folder, selection, default):
    f = load_npy(path)
    _float_rows(path, f, n_rows, first)
    if n_rows is None:
      n_rows, first = f.shape[0], path
    feats.append(f.astype(np.float32) if f.dtype == np.float16 else f)
    names.append(name)
    mask_path = os.path.join(folder, name + MASK_SUFFIX)
    if not os.path.exists(mask_path):
      mask_path = None
    masks.append(np.ones(n_rows, bool) if mask_path is None else _mask(mask_path, name, n_rows))
    notes += zero_row_notes(path, f, mask_path, masks[-1])
  return tuple(feats), tuple(names), np.stack(masks, axis=1), first, tuple(notes)


def _listing(files: Sequence[str], most: int = 12) -> str:
  if not files:
    return "no .npy file"
  shown = list(files[:most]) + ([f"... {len(files) - most} more"] if len(files) > most else [])
  return ".npy files " + ", ".join(shown)


def _one_line(err: BaseException) -> str:
  return " ".join(str(err).split())[:200]


def _short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 80 else text[:77] + "..."
