"""Readers: each layout on tiny files, detection, each bad input, real data."""
import os

import numpy as np
import pytest

from jaxrec.data import readers
from jaxrec.errors import InputError
from tests.helpers import REPO

DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
N_ITEMS = 5


def _feats(folder, n_items=N_ITEMS, names=("image", "text"), dtype=np.float16):
  for k, name in enumerate(names):
    np.save(os.path.join(folder, f"{name}_feat.npy"),
            np.full((n_items, 2 + k), k + 1, dtype))


def _tsvs(folder, train="0\t1\n0\t2\n1\t3\n", val="0\t4\n", test="1\t0\n"):
  for split, body in (("train", train), ("val", val), ("test", test)):
    with open(os.path.join(folder, f"{split}.tsv"), "w") as f:
      f.write("userID\titemID\n" + body)
  _feats(folder)
  return str(folder)


def _mmrec(folder, body=None):
  body = body if body is not None else (
      "0\t1\t5\t10\t0\n0\t2\t4\t11\t0\n1\t3\t5\t12\t0\n0\t4\t4\t13\t1\n"
      "1\t0\t5\t14\t2\n")
  with open(os.path.join(folder, "baby.inter"), "w") as f:
    f.write("userID\titemID\trating\ttimestamp\tx_label\n" + body)
  _feats(folder)
  return str(folder)


def _milk(folder, train="0 1 2\n1 3\n", val="0 4\n", test="1 0\n"):
  for split, body in (("train", train), ("val", val), ("test", test)):
    with open(os.path.join(folder, f"{split}.txt"), "w") as f:
      f.write(body)
  np.save(os.path.join(folder, "cold_item_index.npy"), np.array([4, 0]))
  _feats(folder)
  return str(folder)


def _movielens(folder, body="1\t2\t5\t9\n1\t3\t2\t9\n3\t5\t4\t9\n"):
  os.makedirs(os.path.join(folder, "ml-100k"))
  os.makedirs(os.path.join(folder, "features"))
  with open(os.path.join(folder, "ml-100k", "u.data"), "w") as f:
    f.write(body)
  _feats(os.path.join(folder, "features"), names=("image", "text", "title"),
         dtype=np.float32)
  np.save(os.path.join(folder, "features", "image_mask.npy"),
          np.array([1, 1, 0, 1, 1], bool))
  return str(folder)


EXPECTED = np.array([[0, 1], [0, 2], [1, 3], [0, 4], [1, 0]], np.int32)


def _read(path, modalities=None, **kwargs):
  """(dataset, splits) of the one layout in `path` (`readers.read`)."""
  out = readers.read(str(path), modalities, **kwargs)
  return out.dataset, out.splits


@pytest.mark.parametrize("make", [_tsvs, _mmrec, _milk])
def test_split_readers(tmp_path, make):
  data, splits = _read(make(tmp_path))
  assert (data.n_users, data.n_items) == (2, N_ITEMS)
  np.testing.assert_array_equal(data.pairs, EXPECTED)
  assert data.pairs.dtype == np.int32
  np.testing.assert_array_equal(splits["train"], EXPECTED[:3])
  np.testing.assert_array_equal(splits["val"], EXPECTED[3:4])
  np.testing.assert_array_equal(splits["test"], EXPECTED[4:])
  assert data.modality_names == ("image", "text")
  assert [f.dtype for f in data.features] == [np.float32, np.float32]
  assert data.feature_dims == (2, 3) and data.available.all()
  assert data.available.shape == (N_ITEMS, 2)


def test_milk_cold_items(tmp_path):
  _, splits = _read(_milk(tmp_path))
  np.testing.assert_array_equal(splits["cold_items"], [4, 0])


def test_movielens(tmp_path):
  data, splits = _read(_movielens(tmp_path))
  assert splits is None and (data.n_users, data.n_items) == (3, N_ITEMS)
  np.testing.assert_array_equal(data.pairs, [[0, 1], [2, 4]])  # 0-based, >= 4
  assert data.modality_names == ("image", "text")
  np.testing.assert_array_equal(data.available[:, 0], [1, 1, 0, 1, 1])
  assert data.available[:, 1].all()  # no text_mask.npy: all available
  data, _ = _read(tmp_path, ["image", "text", "title"], min_rating=2)
  assert len(data.pairs) == 3 and data.modality_names == ("image", "text",
                                                          "title")


@pytest.mark.parametrize("make, n_pairs", [(_tsvs, 5), (_mmrec, 5), (_milk, 5),
                                           (_movielens, 2)])
def test_read_dataset_detects_layout(tmp_path, make, n_pairs):
  data, _ = _read(make(tmp_path))
  assert len(data.pairs) == n_pairs


def test_read_dataset_no_or_several_layouts(tmp_path):
  with pytest.raises(InputError, match="train.tsv.*inter.*train.txt.*u.data"):
    _read(tmp_path)
  _tsvs(tmp_path)
  _milk(tmp_path)
  with pytest.raises(InputError, match="several layouts"):
    _read(tmp_path)


def test_modality_selection(tmp_path):
  data, _ = _read(_tsvs(tmp_path), modalities=["text"])
  assert data.modality_names == ("text",) and data.feature_dims == (3,)
  with pytest.raises(InputError, match=r"'audio'.*\['image', 'text'\]"):
    _read(tmp_path, modalities=["audio"])


def test_duplicates_warn_with_counts(tmp_path):
  _tsvs(tmp_path, train="0\t1\n0\t1\n0\t1\n1\t3\n", test="1\t3\n1\t0\n")
  out = readers.read(str(tmp_path))
  data, splits, messages = out.dataset, out.splits, out.warnings
  assert any("train.tsv: dropped 2 duplicate" in m for m in messages)
  assert any("test.tsv: dropped 1" in m and "earlier split" in m
             for m in messages)
  np.testing.assert_array_equal(splits["test"], [[1, 0]])
  assert len(data.pairs) == len(np.unique(data.pairs, axis=0)) == 4


# Each bad input: (maker kwargs, the file named, a fragment of the message).
BAD_TSV = [
    (dict(train="0\t1\n0\t2\t7\n"), "train.tsv", "line 3: expected 2"),
    (dict(val="0\tx\n"), "val.tsv", "line 2: expected integer"),
    (dict(val="0\t4.5\n"), "val.tsv", "line 2: expected integer"),
    (dict(test="-1\t0\n"), "test.tsv", "line 2: user id -1"),
    (dict(train="0\t1\n0\t5\n"), "train.tsv", "line 3: item id 5"),
    (dict(val=""), "val.tsv", "'val' is empty"),
    (dict(test="7\t0\n"), "test.tsv", "no user of split 'test'"),
]


@pytest.mark.parametrize("kwargs, fname, fragment", BAD_TSV)
def test_bad_pair_tsv(tmp_path, kwargs, fname, fragment):
  _tsvs(tmp_path, **kwargs)
  with pytest.raises(InputError, match=fname) as err:
    _read(tmp_path)
  assert fragment in str(err.value)


def test_bad_header(tmp_path):
  _tsvs(tmp_path)
  with open(tmp_path / "train.tsv", "w") as f:
    f.write("user\titem\n0\t1\n")
  with pytest.raises(InputError, match="train.tsv: line 1: expected header"):
    _read(tmp_path)


def test_bad_mmrec(tmp_path):
  _mmrec(tmp_path, body="0\t1\t5\t10\t0\n0\t2\t5\t10\t3\n")
  with pytest.raises(InputError, match="baby.inter: line 3: x_label value 3"):
    _read(tmp_path)
  _mmrec(tmp_path, body="0\t1\t5\t0\n")
  with pytest.raises(InputError, match="baby.inter: line 2: expected 5"):
    _read(tmp_path)


def test_bad_milk(tmp_path):
  _milk(tmp_path, train="0 1 2\n1 3 9\n")
  with pytest.raises(InputError, match="train.txt: line 2: item id 9"):
    _read(tmp_path)
  _milk(tmp_path, val="0 4\n\n1 4\n")          # an empty line inside the file, not at its end
  with pytest.raises(InputError, match="val.txt: line 2: .*empty line"):
    _read(tmp_path)


def test_bad_movielens(tmp_path):
  _movielens(tmp_path, body="1\t2\t5\t9\n0\t3\t5\t9\n")
  with pytest.raises(InputError, match=r"u.data: line 2: user id 0.*1-based"):
    _read(tmp_path)


def test_feature_rows_disagree(tmp_path):
  _tsvs(tmp_path)
  np.save(tmp_path / "text_feat.npy", np.zeros((N_ITEMS + 1, 3), np.float32))
  with pytest.raises(InputError, match="text_feat.npy: 6 rows, expected 5"):
    _read(tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(tmp_path, bad):
  _tsvs(tmp_path)
  feat = np.zeros((N_ITEMS, 3), np.float32)
  feat[3, 1] = bad
  np.save(tmp_path / "text_feat.npy", feat)
  with pytest.raises(InputError, match="text_feat.npy: row 3"):
    _read(tmp_path)


def _real(name):
  path = os.path.join(DATA, name)
  if not os.path.isdir(path):
    pytest.skip(f"{path} absent")
  return path


def test_real_tiktok():
  data, splits = _read(_real("tiktok-diffmm"))
  assert (data.n_users, data.n_items, len(data.pairs)) == (9308, 6710, 68722)
  assert [len(splits[s]) for s in readers.SPLITS] == [59541, 3051, 6130]
  assert data.modality_names == ("audio", "image")
  assert data.feature_dims == (128, 128) and data.available.all()
  assert all(f.dtype == np.float32 for f in data.features)


def test_real_movielens():
  data, splits = _read(_real("movielens100k-posters"))
  assert splits is None
  assert (data.n_users, data.n_items, len(data.pairs)) == (943, 1682, 55375)
  assert data.modality_names == ("image", "text")
  assert data.available.sum(axis=0).tolist() == [1663, 1664]
  assert data.feature_dims == (1280, 384)


@pytest.mark.parametrize("make", [_tsvs, _mmrec, _milk, _movielens])
def test_each_layout_declares_every_file_it_reads(tmp_path, make, monkeypatch):
  import builtins
  folder = make(tmp_path)
  opened, real_open = set(), builtins.open

  def recording_open(file, *args, **kwargs):
    opened.add(os.path.abspath(os.fspath(file)))
    return real_open(file, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", recording_open)
  out = readers.read(folder)
  monkeypatch.undo()
  declared = readers.detect_layout(folder).files(folder)
  assert sorted(opened) == sorted(declared)
  assert len(out.dataset.pairs) and out.warnings == ()


def test_read_returns_warnings_as_data(tmp_path):
  import warnings
  _tsvs(tmp_path, train="0\t1\n0\t1\n1\t3\n")
  with warnings.catch_warnings():
    warnings.simplefilter("error")         # nothing is issued: the warnings are data
    out = readers.read(str(tmp_path))
  assert out.warnings == (f"{tmp_path}/train.tsv: dropped 1 duplicate (user, item) pairs "
                          "within split 'train'",)
