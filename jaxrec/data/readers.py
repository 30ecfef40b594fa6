"""Readers for the on-disk layouts in PROTOCOL.md, and the registry of layouts.

`read(folder)` detects the layout (`LAYOUTS`: each declares how it is
recognised and every file it reads) and returns a `Read`: the `Dataset`, the
data's own split (or None) and the warnings, as data. `splits` maps "train"/
"val"/"test" to (N, 2) int32 pair arrays (plus "cold_items" for MILK);
`dataset.pairs` is the union of the splits in that order.

Bad input raises `InputError` naming the file, the 1-based line (the header is
line 1) or the id, and what was expected: a silently dropped line or a
mis-shaped feature file would otherwise surface much later as a wrong metric.
What is repaired instead is counted in `Read.warnings`: duplicate pairs and
pairs repeated in a later split are dropped; users of val/test without any
training pair are kept in the data but named, since evaluation on the data's
own split leaves them out (`protocol.warm_split`).

User ids must be dense (see `_dense_ids`) or remapped explicitly: sizes are
max id + 1, so one stray id would otherwise allocate memory for every id below
it. Item ids need no such rule: they index the feature rows and must be below
their count.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Sequence

import numpy as np

from jaxrec.data import features
from jaxrec.data.dataset import Dataset
from jaxrec.errors import InputError

SPLITS = ("train", "val", "test")
# Ids may leave gaps: the id range may be up to twice the number of distinct ids,
# plus this many, so small hand-made files and sparse-ish real ids pass while a
# stray 30000000 is refused before anything is sized by it.
ID_SLACK = 1024
# Ends the warnings that hold only where the data's own split is used
# (`loading.warnings_for` drops them under a seeded split).
OWN_SPLIT_NOTE = "evaluation on the data's own split leaves them out"


@dataclasses.dataclass(frozen=True)
class Read:
  """What a reader returns: the dataset, its own split (or None), the warnings."""
  dataset: Dataset
  splits: dict | None
  warnings: tuple[str, ...]


# ---------------------------------------------------------------- parsing ---

def _read_lines(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise InputError(f"{path}: file not found")
  try:
    # utf-8-sig: a byte-order mark (some editors write one) is not part of the header.
    with open(path, encoding="utf-8-sig") as f:
      # splitlines: a trailing newline adds no empty line; \r\n is handled.
      lines = f.read().splitlines()
  except UnicodeDecodeError as err:
    raise InputError(f"{path}: byte {err.start} is not UTF-8 text, expected a text "
                     "file") from None
  except OSError as err:
    raise InputError(f"{path}: cannot be read ({err.strerror})") from None
  while lines and not lines[-1].strip():
    lines.pop()           # blank lines an editor leaves at the end are not records
  return lines


def _parse_ints(path: str, lines: list[str], first_line: int, sep: str | None,
                n_fields: int, cols: tuple[int, ...]) -> np.ndarray:
  """Parses `cols` of every line as integers -> (len(lines), len(cols)) int64.

  A per-line loop (not np.loadtxt) so that an error can name its line; it is
  about 0.1 s per 100k lines.
  """
  what = "tab-separated" if sep == "\t" else "space-separated"
  out = np.empty((len(lines), len(cols)), np.int64)
  for k, line in enumerate(lines):
    parts = line.split(sep)
    if len(parts) != n_fields:
      raise InputError(f"{path}: line {first_line + k}: expected {n_fields} "
                       f"{what} fields, got {len(parts)}: {line!r}")
    try:
      out[k] = [int(parts[c]) for c in cols]
    except ValueError:
      raise InputError(f"{path}: line {first_line + k}: expected integer "
                       f"fields, got {line!r}") from None
    except OverflowError:
      raise InputError(f"{path}: line {first_line + k}: an integer beyond 64 bits in "
                       f"{line!r}, expected ids from 0 up") from None
  return out


def _check_ids(path: str, ids: np.ndarray, lines: np.ndarray, what: str,
               low: int = 0, high: int | None = None, hint: str = "") -> None:
  """Raises on the first id outside [low, high), naming its line."""
  bad = ids < low if high is None else (ids < low) | (ids >= high)
  if bad.any():
    k = int(np.argmax(bad))
    rng = f">= {low}" if high is None else f"in [{low}, {high})"
    raise InputError(f"{path}: line {int(lines[k])}: {what} {int(ids[k])}, "
                     f"expected {rng}{hint}")


def _read_pair_tsv(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A `userID<TAB>itemID` file -> (pairs int64 (N, 2), line numbers (N,))."""
  lines = _read_lines(path)
  if not lines or lines[0].split("\t") != ["userID", "itemID"]:
    got = repr(lines[0]) if lines else "an empty file"
    raise InputError(f"{path}: line 1: expected header 'userID<TAB>itemID', "
                     f"got {got}")
  pairs = _parse_ints(path, lines[1:], 2, "\t", 2, (0, 1))
  return pairs, np.arange(2, len(lines) + 1)


def _read_milk_txt(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A `uid item item ...` file -> (pairs int64 (N, 2), line numbers (N,))."""
  users, items, line_no = [], [], []
  for k, line in enumerate(_read_lines(path), start=1):
    parts = line.split()
    if not parts:
      raise InputError(f"{path}: line {k}: expected 'uid item item ...', "
                       "got an empty line")
    ids = _parse_ints(path, [line], k, None, len(parts), tuple(range(len(parts))))[0]
    # A line with the uid alone is a user without items in this split.
    users += [ids[0]] * (len(ids) - 1)
    items += list(ids[1:])
    line_no += [k] * (len(ids) - 1)
  pairs = np.stack([np.asarray(users, np.int64), np.asarray(items, np.int64)],
                   axis=1) if users else np.zeros((0, 2), np.int64)
  return pairs, np.asarray(line_no, np.int64)


# -------------------------------------------------------------------- ids ---

def _dense_ids(sources: Sequence[tuple[str, np.ndarray, np.ndarray]], what: str,
               remap: bool, hint: str = ""):
  """Checks (or remaps) ids that size an array -> (ids per source, n ids, warnings).

  sources: (file, ids >= 0, line numbers) per file. The rule: the id range
  (max + 1) may be at most 2 x the number of distinct ids + ID_SLACK; beyond it
  the first id out of range is refused by file and line, before any array is
  sized by it. With `remap`, the distinct ids are renumbered 0..n-1 in sorted
  order instead, and a warning counts the ids that changed.
  """
  distinct = np.unique(np.concatenate([ids for _, ids, _ in sources]))
  if not len(distinct):
    return [ids for _, ids, _ in sources], 0, ()
  n, top = len(distinct), int(distinct[-1])
  if remap:
    changed = distinct != np.arange(n)
    if not changed.any():
      return [ids for _, ids, _ in sources], n, ()
    first = int(np.argmax(changed))
    note = (f"remapped {what}s: {n} distinct ids in [0, {top}] renumbered 0..{n - 1} in "
            f"sorted order; {int(changed.sum())} ids changed (the first: "
            f"{int(distinct[first])} -> {first})")
    return [np.searchsorted(distinct, ids) for _, ids, _ in sources], n, (note,)
  limit = 2 * n + ID_SLACK
  if top >= limit:
    path, ids, lines = next(s for s in sources if len(s[1]) and s[1].max() >= limit)
    k = int(np.argmax(ids >= limit))
    above = int((distinct >= limit).sum())
    raise InputError(
        f"{path}: line {int(lines[k])}: {what} {int(ids[k])}{hint}, expected dense ids in "
        f"[0, {limit}) (2 x the {n} distinct {what}s + {ID_SLACK}; {above} distinct ids "
        f"are above); renumber the {what}s 0..n-1, or set remap_users=True")
  return [ids for _, ids, _ in sources], top + 1, ()


# ------------------------------------------------------------- assembling ---

def _dedupe(path: str, pairs: np.ndarray, seen: np.ndarray, n_items: int,
            split: str):
  """Drops duplicates within `pairs` and pairs already in `seen` (keys).

  Keeps the first occurrence so the file order survives. Returns (pairs, keys,
  warnings with counts).
  """
  keys = pairs[:, 0] * n_items + pairs[:, 1]
  _, first = np.unique(keys, return_index=True)
  first.sort()
  notes = []
  if len(first) < len(keys):
    notes.append(f"{path}: dropped {len(keys) - len(first)} duplicate (user, item) "
                 f"pairs within split '{split}'")
  keep = first[~np.isin(keys[first], seen)]
  if len(keep) < len(first):
    notes.append(f"{path}: dropped {len(first) - len(keep)} (user, item) pairs of split "
                 f"'{split}' already in an earlier split")
  return pairs[keep], keys[keep], notes


def _untrained_users(path: str, split: str, pairs: np.ndarray,
                     train_users: np.ndarray) -> list[str]:
  """A warning counting the users of an evaluation split without training pairs."""
  lost = ~np.isin(pairs[:, 0], train_users)
  if not lost.any():
    return []
  n_users = len(np.unique(pairs[lost, 0]))
  if n_users == len(np.unique(pairs[:, 0])):
    raise InputError(f"{path}: no user of split '{split}' has training pairs, expected "
                     "at least one (are the ids aligned?)")
  return [f"{path}: {n_users} users of split '{split}' ({int(lost.sum())} pairs) have no "
          f"training pairs; {OWN_SPLIT_NOTE}"]


def _assemble(name, split_data, feats, names, avail, feat_file, feat_notes=(),
              remap_users=False) -> Read:
  """Validates ids and splits, dedupes, builds the `Read`.

  split_data: list of (split name, file path, pairs int64, line numbers).
  feat_notes: the feature files' warnings (`features.load_features`).
  """
  n_items = feats[0].shape[0]
  for split, path, pairs, lines in split_data:
    _check_ids(path, pairs[:, 0], lines, "user id")
    _check_ids(path, pairs[:, 1], lines, "item id", 0, n_items,
               f" (the rows of {feat_file})")
  users, n_users, notes = _dense_ids([(p, d[:, 0], l) for _, p, d, l in split_data],
                                     "user id", remap_users)
  notes = list(feat_notes) + list(notes)
  splits, seen, train_users = {}, np.zeros(0, np.int64), None
  for (split, path, pairs, _), user in zip(split_data, users):
    pairs, keys, dropped = _dedupe(path, np.stack([user, pairs[:, 1]], axis=1), seen,
                                   n_items, split)
    notes += dropped
    if not len(pairs):
      raise InputError(f"{path}: split '{split}' is empty, expected at least "
                       "one (user, item) pair")
    if split == "train":
      train_users = np.unique(pairs[:, 0])
    else:
      notes += _untrained_users(path, split, pairs, train_users)
    seen = np.concatenate([seen, keys])
    splits[split] = pairs.astype(np.int32)
  data = Dataset(name=name, n_users=n_users, n_items=n_items,
                 pairs=np.concatenate(list(splits.values())),
                 features=feats, modality_names=names, available=avail)
  return Read(data, splits, tuple(notes))


def _folder_name(path: str) -> str:
  return os.path.basename(os.path.normpath(path))


# ---------------------------------------------------------------- readers ---

def _split_files(path: str, ext: str) -> tuple[str, ...]:
  return tuple(os.path.join(path, f"{s}.{ext}") for s in SPLITS)


def _read_tsv_layout(path, selection, default=None, min_rating=4, remap_users=False):
  del min_rating    # ratings are not part of this layout
  feats, names, avail, first, notes = features.load_features(path, selection, default)
  split_data = [(s, f, *_read_pair_tsv(f)) for s, f in zip(SPLITS, _split_files(path, "tsv"))]
  return _assemble(_folder_name(path), split_data, feats, names, avail, first, notes,
                   remap_users)


def _inter_file(path: str) -> str:
  inters = sorted(glob.glob(os.path.join(path, "*.inter")))
  if len(inters) != 1:
    raise InputError(f"{path}: expected exactly one '<name>.inter' file, "
                     f"found {[os.path.basename(p) for p in inters]}")
  return inters[0]


def _read_mmrec_layout(path, selection, default=None, min_rating=4, remap_users=False):
  """Every row of an .inter file is a positive: rating and timestamp are not parsed."""
  del min_rating
  inter = _inter_file(path)
  feats, names, avail, first, notes = features.load_features(path, selection, default)
  lines = _read_lines(inter)
  header = lines[0].split("\t") if lines else []
  need = ("userID", "itemID", "x_label")
  if not all(c in header for c in need):
    raise InputError(f"{inter}: line 1: expected a tab-separated header with "
                     f"columns {list(need)}, got {header}")
  cols = tuple(header.index(c) for c in need)
  rows = _parse_ints(inter, lines[1:], 2, "\t", len(header), cols)
  line_no = np.arange(2, len(lines) + 1)
  _check_ids(inter, rows[:, 2], line_no, "x_label value", 0, 3,
             " (0/1/2 = train/valid/test)")
  split_data = [(s, inter, rows[rows[:, 2] == x, :2], line_no[rows[:, 2] == x])
                for x, s in enumerate(SPLITS)]
  name = os.path.basename(inter)[:-len(".inter")]
  return _assemble(name, split_data, feats, names, avail, first, notes, remap_users)


def _read_cold_items(path: str, n_items: int) -> np.ndarray:
  cold = features.load_npy(path)
  if cold.ndim != 1 or not np.issubdtype(cold.dtype, np.integer):
    raise InputError(f"{path}: expected a 1-D integer array of item ids, "
                     f"got shape {cold.shape} dtype {cold.dtype}")
  bad = (cold < 0) | (cold >= n_items)
  if bad.any():
    raise InputError(f"{path}: entry {int(np.argmax(bad))}: item id "
                     f"{int(cold[np.argmax(bad)])}, expected in [0, {n_items})")
  return cold.astype(np.int32)


def _read_milk_layout(path, selection, default=None, min_rating=4, remap_users=False):
  del min_rating
  feats, names, avail, first, notes = features.load_features(path, selection, default)
  split_data = [(s, f, *_read_milk_txt(f)) for s, f in zip(SPLITS, _split_files(path, "txt"))]
  out = _assemble(_folder_name(path), split_data, feats, names, avail, first, notes,
                  remap_users)
  cold = _read_cold_items(os.path.join(path, "cold_item_index.npy"), out.dataset.n_items)
  return dataclasses.replace(out, splits={**out.splits, "cold_items": cold})


def _read_movielens_layout(path, selection, default=None, min_rating=4, remap_users=False):
  """MovieLens ids are 1-based: made 0-based here. The id ranges cover every user
  in u.data and every feature row, so ids stay aligned with the files even
  when an id has no positive."""
  feats, names, avail, first, feat_notes = features.load_features(
      os.path.join(path, "features"), selection, default)
  data_path = os.path.join(path, "ml-100k", "u.data")
  lines = _read_lines(data_path)
  rows = _parse_ints(data_path, lines, 1, "\t", 4, (0, 1, 2, 3))
  line_no = np.arange(1, len(lines) + 1)
  n_items = feats[0].shape[0]
  _check_ids(data_path, rows[:, 0], line_no, "user id", 1, None, " (1-based)")
  _check_ids(data_path, rows[:, 1], line_no, "item id", 1, n_items + 1,
             f" (1-based, the rows of {os.path.basename(first)})")
  (users,), n_users, notes = _dense_ids([(data_path, rows[:, 0] - 1, line_no)], "user id",
                                        remap_users, " (0-based)")
  positive = rows[:, 2] >= min_rating
  pairs = np.stack([users, rows[:, 1] - 1], axis=1)[positive]
  if not len(pairs):
    raise InputError(f"{data_path}: no rating >= {min_rating}, expected at "
                     "least one positive")
  pairs, _, dropped = _dedupe(data_path, pairs, np.zeros(0, np.int64), n_items, "all")
  data = Dataset(name=_folder_name(path), n_users=n_users, n_items=n_items,
                 pairs=pairs.astype(np.int32), features=feats,
                 modality_names=names, available=avail)
  return Read(data, None, feat_notes + tuple(notes) + tuple(dropped))


# ---------------------------------------------------------------- layouts ---

@dataclasses.dataclass(frozen=True)
class Layout:
  """One on-disk layout.

  Attributes:
    name: what the messages call it.
    marker: the file whose presence identifies it, as the messages write it.
    detect: folder -> whether it is in this layout.
    own_files: folder -> its interaction files (everything it reads but features).
    read: (folder, selection, default, min_rating, remap_users) -> `Read`.
    feature_dir: the feature files' folder, relative to the data folder.
    default_modalities: the modalities when none are selected (None: all).
  """
  name: str
  marker: str
  detect: Callable[[str], bool]
  own_files: Callable[[str], tuple[str, ...]]
  read: Callable[..., Read]
  feature_dir: str = ""
  default_modalities: tuple[str, ...] | None = None

  def files(self, folder: str, modalities=None) -> tuple[str, ...]:
    """Every file this layout reads from `folder`, in a stable order; all must exist."""
    out = self.own_files(folder) + features.files_read(
        os.path.join(folder, self.feature_dir), features.as_selection(modalities),
        self.default_modalities)
    for path in out:
      if not os.path.isfile(path):
        raise InputError(f"{path}: file not found, expected in the {self.name} layout "
                         f"(it reads {', '.join(os.path.relpath(f, folder) for f in out)})")
    return out


LAYOUTS = (
    Layout("pair TSVs", "train.tsv",
           lambda p: os.path.isfile(os.path.join(p, "train.tsv")),
           lambda p: _split_files(p, "tsv"), _read_tsv_layout),
    Layout("MMRec", "<name>.inter",
           lambda p: bool(glob.glob(os.path.join(p, "*.inter"))),
           lambda p: (_inter_file(p),), _read_mmrec_layout),
    Layout("MILK", "train.txt",
           lambda p: os.path.isfile(os.path.join(p, "train.txt")),
           lambda p: _split_files(p, "txt") + (os.path.join(p, "cold_item_index.npy"),),
           _read_milk_layout),
    Layout("MovieLens", "ml-100k/u.data",
           lambda p: os.path.isfile(os.path.join(p, "ml-100k", "u.data")),
           lambda p: (os.path.join(p, "ml-100k", "u.data"),), _read_movielens_layout,
           feature_dir="features", default_modalities=("image", "text")),
)


def _contents(path: str, most: int = 12) -> str:
  names = sorted(n + "/" * os.path.isdir(os.path.join(path, n)) for n in os.listdir(path))
  if not names:
    return "the folder is empty"
  more = [f"... {len(names) - most} more"] if len(names) > most else []
  return "the folder has " + ", ".join(names[:most] + more)


def detect_layout(path: str) -> Layout:
  """The one layout of `LAYOUTS` that `path` is in.

  Two matches are an error rather than a guess, since reading the wrong files
  would give plausible-looking data.
  """
  if not os.path.isdir(path):
    raise InputError(f"{path}: not a directory")
  hits = [layout for layout in LAYOUTS if layout.detect(path)]
  if len(hits) == 1:
    return hits[0]
  what = ("no known layout" if not hits else
          f"several layouts ({', '.join(h.name for h in hits)})")
  looked = ", ".join(f"{l.marker} ({l.name})" for l in LAYOUTS)
  raise InputError(f"{path}: {what}; looked for {looked}, expected exactly one; "
                   f"{_contents(path)}")


def read(path: str, modalities=None, *, min_rating: int = 4,
         remap_users: bool = False) -> Read:
  """Detects the layout of `path` and reads it.

  Args:
    modalities: None (the layout's default: every feature file, or MovieLens's
      image and plot text), or names and/or (name, file) pairs, as
      `features.parse_modalities` returns them.
    min_rating: MovieLens only: ratings >= it are positives.
    remap_users: renumber sparse user ids 0..n-1 instead of refusing them.
  """
  layout = detect_layout(path)
  return layout.read(path, features.as_selection(modalities), layout.default_modalities,
                     min_rating=min_rating, remap_users=remap_users)
