"""Readers for the on-disk layouts in PROTOCOL.md, each returning a `Dataset`.

Every reader returns `(dataset, splits)`: `splits` maps "train"/"val"/"test"
to the data's own (N, 2) int32 pair arrays (plus "cold_items" for MILK), or is
None when the data has no split of its own (MovieLens). `dataset.pairs` is the
union of the splits in that order.

Bad input raises `DataError` naming the file, the 1-based line (the header is
line 1) or the id, and what was expected: a silently dropped line or a
mis-shaped feature file would otherwise surface much later as a wrong metric.
Duplicate pairs are the one thing repaired, since real copies contain them;
they are dropped with a warning that counts them.
"""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np

from jaxrec.data.dataset import Dataset

SPLITS = ("train", "val", "test")


class DataError(ValueError):
  """A data file does not have the expected layout or content."""


# ---------------------------------------------------------------- parsing ---

def _read_lines(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found")
  with open(path, encoding="utf-8") as f:
    # splitlines: a trailing newline adds no empty line; \r\n is handled.
    return f.read().splitlines()


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
      raise DataError(f"{path}: line {first_line + k}: expected {n_fields} "
                      f"{what} fields, got {len(parts)}: {line!r}")
    try:
      out[k] = [int(parts[c]) for c in cols]
    except ValueError:
      raise DataError(f"{path}: line {first_line + k}: expected integer "
                      f"fields, got {line!r}") from None
  return out


def _check_ids(path: str, ids: np.ndarray, lines: np.ndarray, what: str,
               low: int = 0, high: int | None = None, hint: str = "") -> None:
  """Raises on the first id outside [low, high), naming its line."""
  bad = ids < low if high is None else (ids < low) | (ids >= high)
  if bad.any():
    k = int(np.argmax(bad))
    rng = f">= {low}" if high is None else f"in [{low}, {high})"
    raise DataError(f"{path}: line {int(lines[k])}: {what} {int(ids[k])}, "
                    f"expected {rng}{hint}")


def _read_pair_tsv(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A `userID<TAB>itemID` file -> (pairs int64 (N, 2), line numbers (N,))."""
  lines = _read_lines(path)
  if not lines or lines[0].split("\t") != ["userID", "itemID"]:
    got = repr(lines[0]) if lines else "an empty file"
    raise DataError(f"{path}: line 1: expected header 'userID<TAB>itemID', "
                    f"got {got}")
  pairs = _parse_ints(path, lines[1:], 2, "\t", 2, (0, 1))
  return pairs, np.arange(2, len(lines) + 1)


def _read_milk_txt(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A `uid item item ...` file -> (pairs int64 (N, 2), line numbers (N,))."""
  users, items, line_no = [], [], []
  for k, line in enumerate(_read_lines(path), start=1):
    parts = line.split()
    if not parts:
      raise DataError(f"{path}: line {k}: expected 'uid item item ...', "
                      "got an empty line")
    try:
      ids = [int(p) for p in parts]
    except ValueError:
      raise DataError(f"{path}: line {k}: expected integer ids, "
                      f"got {line!r}") from None
    # A line with the uid alone is a user without items in this split.
    users += [ids[0]] * (len(ids) - 1)
    items += ids[1:]
    line_no += [k] * (len(ids) - 1)
  pairs = np.stack([np.asarray(users, np.int64), np.asarray(items, np.int64)],
                   axis=1) if users else np.zeros((0, 2), np.int64)
  return pairs, np.asarray(line_no, np.int64)


# --------------------------------------------------------------- features ---

def _load_features(folder: str, modalities=None, default=None):
  """Loads `<name>_feat.npy` (+ optional `<name>_mask.npy`) from `folder`.

  Returns (features tuple, names tuple, available (n_rows, M) bool). Without
  `modalities`, every `*_feat.npy` sorted by name (or `default` when given).
  """
  found = sorted(os.path.basename(p)[:-len("_feat.npy")]
                 for p in glob.glob(os.path.join(folder, "*_feat.npy")))
  if not found:
    raise DataError(f"{folder}: no '<modality>_feat.npy' file found")
  names = list(modalities if modalities is not None else default or found)
  missing = [n for n in names if n not in found]
  if missing or not names:
    raise DataError(f"{folder}: unknown modality {missing or names!r}, "
                    f"expected a non-empty selection of {found}")
  feats, masks, n_rows = [], [], None
  for name in names:
    path = os.path.join(folder, f"{name}_feat.npy")
    f = np.load(path, allow_pickle=False)
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.floating):
      raise DataError(f"{path}: expected a 2-D float array (n_items, d), got "
                      f"shape {f.shape} dtype {f.dtype}")
    if n_rows is None:
      n_rows, first = f.shape[0], path
    elif f.shape[0] != n_rows:
      raise DataError(f"{path}: {f.shape[0]} rows, expected {n_rows} rows "
                      f"like {first} (row i = item i in every file)")
    bad = ~np.isfinite(f).all(axis=1)
    if bad.any():
      row = int(np.argmax(bad))
      raise DataError(f"{path}: row {row} (item {row}) has NaN "
                      f"or inf, expected finite features "
                      f"({int(bad.sum())} bad rows)")
    # float16 is a storage format only; compute in float32.
    feats.append(f.astype(np.float32) if f.dtype == np.float16 else f)
    mask_path = os.path.join(folder, f"{name}_mask.npy")
    if os.path.exists(mask_path):
      m = np.load(mask_path, allow_pickle=False)
      if m.dtype != np.bool_ or m.shape != (n_rows,):
        raise DataError(f"{mask_path}: expected a ({n_rows},) bool array, got "
                        f"shape {m.shape} dtype {m.dtype}")
      masks.append(m)
    else:
      masks.append(np.ones(n_rows, bool))
  return tuple(feats), tuple(names), np.stack(masks, axis=1)


# ------------------------------------------------------------- assembling ---

def _dedupe(path: str, pairs: np.ndarray, seen: np.ndarray, n_items: int,
            split: str):
  """Drops duplicates within `pairs` and pairs already in `seen` (keys).

  Keeps the first occurrence so the file order survives; warns with counts.
  """
  keys = pairs[:, 0] * n_items + pairs[:, 1]
  _, first = np.unique(keys, return_index=True)
  first.sort()
  if len(first) < len(keys):
    warnings.warn(f"{path}: dropped {len(keys) - len(first)} duplicate "
                  f"(user, item) pairs within split '{split}'", stacklevel=3)
  keep = first[~np.isin(keys[first], seen)]
  if len(keep) < len(first):
    warnings.warn(f"{path}: dropped {len(first) - len(keep)} (user, item) "
                  f"pairs of split '{split}' already in an earlier split",
                  stacklevel=3)
  return pairs[keep], keys[keep]


def _assemble(name, split_data, feats, names, avail, folder):
  """Validates ids and splits, dedupes, builds the Dataset and split dict.

  split_data: list of (split name, file path, pairs int64, line numbers).
  """
  n_items = feats[0].shape[0]
  feat_file = os.path.join(folder, f"{names[0]}_feat.npy")
  for split, path, pairs, lines in split_data:
    _check_ids(path, pairs[:, 0], lines, "user id")
    _check_ids(path, pairs[:, 1], lines, "item id", 0, n_items,
               f" (the rows of {feat_file})")
  n_users = max(int(p[:, 0].max()) + 1 for _, _, p, _ in split_data
                if len(p)) if any(len(p) for _, _, p, _ in split_data) else 0
  splits, seen, train_users = {}, np.zeros(0, np.int64), None
  for split, path, pairs, _ in split_data:
    pairs, keys = _dedupe(path, pairs, seen, n_items, split)
    if not len(pairs):
      raise DataError(f"{path}: split '{split}' is empty, expected at least "
                      "one (user, item) pair")
    if split == "train":
      train_users = np.unique(pairs[:, 0])
    elif not np.isin(pairs[:, 0], train_users).any():
      raise DataError(f"{path}: no user of split '{split}' has training "
                      "pairs, expected at least one (are the ids aligned?)")
    seen = np.concatenate([seen, keys])
    splits[split] = pairs.astype(np.int32)
  data = Dataset(name=name, n_users=n_users, n_items=n_items,
                 pairs=np.concatenate(list(splits.values())),
                 features=feats, modality_names=names, available=avail)
  return data, splits


# ---------------------------------------------------------------- readers ---

def read_pair_tsvs(path: str, modalities=None):
  """`train.tsv`/`val.tsv`/`test.tsv` (header `userID<TAB>itemID`) + features.

  The TikTok copy in shared/data/tiktok-diffmm has this layout.
  """
  feats, names, avail = _load_features(path, modalities)
  split_data = []
  for split in SPLITS:
    f = os.path.join(path, f"{split}.tsv")
    split_data.append((split, f, *_read_pair_tsv(f)))
  return _assemble(os.path.basename(os.path.normpath(path)), split_data,
                   feats, names, avail, path)


def read_mmrec(path: str, modalities=None):
  """MMRec layout: one `<name>.inter` TSV + `<modality>_feat.npy` files.

  The header must name `userID`, `itemID` and `x_label` (0/1/2 = train/valid/
  test); other columns (rating, timestamp) are counted but not parsed, since
  every row of an .inter file is a positive.
  """
  inters = sorted(glob.glob(os.path.join(path, "*.inter")))
  if len(inters) != 1:
    raise DataError(f"{path}: expected exactly one '<name>.inter' file, "
                    f"found {[os.path.basename(p) for p in inters]}")
  inter = inters[0]
  feats, names, avail = _load_features(path, modalities)
  lines = _read_lines(inter)
  header = lines[0].split("\t") if lines else []
  need = ("userID", "itemID", "x_label")
  if not all(c in header for c in need):
    raise DataError(f"{inter}: line 1: expected a tab-separated header with "
                    f"columns {list(need)}, got {header}")
  cols = tuple(header.index(c) for c in need)
  rows = _parse_ints(inter, lines[1:], 2, "\t", len(header), cols)
  line_no = np.arange(2, len(lines) + 1)
  _check_ids(inter, rows[:, 2], line_no, "x_label value", 0, 3,
             " (0/1/2 = train/valid/test)")
  split_data = [(s, inter, rows[rows[:, 2] == x, :2], line_no[rows[:, 2] == x])
                for x, s in enumerate(SPLITS)]
  name = os.path.basename(inter)[:-len(".inter")]
  return _assemble(name, split_data, feats, names, avail, path)


def read_milk(path: str, modalities=None):
  """MILK/GoRec layout: `train.txt`/`val.txt`/`test.txt` (`uid item item ...`),
  `cold_item_index.npy` and the feature files.

  The cold (new) items come back as `splits["cold_items"]`, a 1-D int32 array.
  """
  feats, names, avail = _load_features(path, modalities)
  split_data = []
  for split in SPLITS:
    f = os.path.join(path, f"{split}.txt")
    split_data.append((split, f, *_read_milk_txt(f)))
  data, splits = _assemble(os.path.basename(os.path.normpath(path)),
                           split_data, feats, names, avail, path)
  cold_path = os.path.join(path, "cold_item_index.npy")
  if not os.path.isfile(cold_path):
    raise DataError(f"{cold_path}: file not found")
  cold = np.load(cold_path, allow_pickle=False)
  if cold.ndim != 1 or not np.issubdtype(cold.dtype, np.integer):
    raise DataError(f"{cold_path}: expected a 1-D integer array of item ids, "
                    f"got shape {cold.shape} dtype {cold.dtype}")
  bad = (cold < 0) | (cold >= data.n_items)
  if bad.any():
    raise DataError(f"{cold_path}: item id {int(cold[np.argmax(bad)])}, "
                    f"expected in [0, {data.n_items})")
  splits["cold_items"] = cold.astype(np.int32)
  return data, splits


def read_movielens(path: str, min_rating: int = 4,
                   modalities=("image", "text")):
  """MovieLens-100K with poster and plot features (movielens100k-posters).

  `ml-100k/u.data` (user, item, rating, timestamp; 1-based ids) -> positives
  with rating >= min_rating, ids made 0-based. Features come from
  `features/<name>_feat.npy` (row j = movie j+1) with the natural masks
  `features/<name>_mask.npy`. The id ranges cover every user in u.data and
  every feature row, so ids stay aligned with the files even when an id has
  no positive. By default the image and plot-text modalities (the two with
  natural gaps); pass modalities=None for every feature file (adds
  text_title). No split of its own: splits is None.
  """
  feat_dir = os.path.join(path, "features")
  feats, names, avail = _load_features(feat_dir, modalities)
  data_path = os.path.join(path, "ml-100k", "u.data")
  lines = _read_lines(data_path)
  rows = _parse_ints(data_path, lines, 1, "\t", 4, (0, 1, 2, 3))
  line_no = np.arange(1, len(lines) + 1)
  n_items = feats[0].shape[0]
  _check_ids(data_path, rows[:, 0], line_no, "user id", 1, None, " (1-based)")
  _check_ids(data_path, rows[:, 1], line_no, "item id", 1, n_items + 1,
             f" (1-based, the rows of {names[0]}_feat.npy)")
  pairs = rows[rows[:, 2] >= min_rating, :2] - 1
  if not len(pairs):
    raise DataError(f"{data_path}: no rating >= {min_rating}, expected at "
                    "least one positive")
  pairs, _ = _dedupe(data_path, pairs, np.zeros(0, np.int64), n_items, "all")
  data = Dataset(name=os.path.basename(os.path.normpath(path)),
                 n_users=int(rows[:, 0].max()), n_items=n_items,
                 pairs=pairs.astype(np.int32), features=feats,
                 modality_names=names, available=avail)
  return data, None


_LAYOUTS = (
    ("pair TSVs", lambda p: os.path.isfile(os.path.join(p, "train.tsv")),
     read_pair_tsvs),
    ("MMRec", lambda p: bool(glob.glob(os.path.join(p, "*.inter"))),
     read_mmrec),
    ("MILK", lambda p: os.path.isfile(os.path.join(p, "train.txt")),
     read_milk),
    ("MovieLens", lambda p: os.path.isfile(os.path.join(p, "ml-100k",
                                                        "u.data")),
     read_movielens),
)


def read_dataset(path: str, modalities=None, min_rating: int = 4):
  """Detects the layout of `path` and calls the matching reader.

  Exactly one layout must match; two matches are an error rather than a
  guess, since reading the wrong files would give plausible-looking data.
  For MovieLens, modalities=None keeps read_movielens's default and
  `min_rating` turns ratings into positives; other layouts ignore it.
  """
  if not os.path.isdir(path):
    raise DataError(f"{path}: not a directory")
  hits = [(n, r) for n, test, r in _LAYOUTS if test(path)]
  if len(hits) != 1:
    what = ("no known layout" if not hits else
            f"several layouts ({', '.join(n for n, _ in hits)})")
    raise DataError(f"{path}: {what}; looked for train.tsv (pair TSVs), "
                    "<name>.inter (MMRec), train.txt (MILK) and "
                    "ml-100k/u.data (MovieLens), expected exactly one")
  reader = hits[0][1]
  if reader is read_movielens:
    kwargs = {} if modalities is None else {"modalities": modalities}
    return reader(path, min_rating=min_rating, **kwargs)
  return reader(path, modalities=modalities)
