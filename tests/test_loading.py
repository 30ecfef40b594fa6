"""Real-data loading through the sweep: layouts, protocols, the content-keyed cache."""
import os
import time

import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.data import cache, loading
from jaxrec.engine.inputs import split_for
from jaxrec.sweep import train_configs
from tests.helpers import SHARED

TIKTOK = os.path.join(SHARED, "data", "tiktok-diffmm")
MOVIELENS = os.path.join(SHARED, "data", "movielens100k-posters")


def write_pair_tsvs(folder, seed=0, n_users=60, n_items=50):
  """A small pair-TSV dataset with a planted signal (a user likes items of its cluster)."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  user_cluster, item_cluster = rng.integers(0, 4, n_users), rng.integers(0, 4, n_items)
  pairs = {(u, i) for u in range(n_users) for i in range(n_items)
           if user_cluster[u] == item_cluster[i] and rng.random() < 0.5}
  pairs = np.array(sorted(pairs))
  part = rng.choice(3, len(pairs), p=[0.8, 0.1, 0.1])
  part[np.unique(pairs[:, 0], return_index=True)[1]] = 0   # every user has training data
  for k, name in enumerate(("train", "val", "test")):
    with open(os.path.join(folder, f"{name}.tsv"), "w") as f:
      f.write("userID\titemID\n")
      f.writelines(f"{u}\t{i}\n" for u, i in pairs[part == k])
  centers = rng.standard_normal((4, 6))
  for m in ("image", "text"):
    feats = centers[item_cluster] + 0.3 * rng.standard_normal((n_items, 6))
    np.save(os.path.join(folder, f"{m}_feat.npy"), feats.astype(np.float16))
  return folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))


def test_cache_hit_and_invalidation(tmp_path):
  folder = write_pair_tsvs(str(tmp_path / "d"))
  calls = []
  build = lambda: calls.append(1) or {"x": np.arange(3)}
  key = cache.content_key(folder, {"a": 1})
  assert cache.cached_arrays(key, build)[1] is False
  assert cache.cached_arrays(key, build)[1] is True and len(calls) == 1
  assert cache.content_key(folder, {"a": 2}) != key           # arguments are in the key
  with open(os.path.join(folder, "test.tsv"), "a") as f:
    f.write("0\t1\n")
  assert cache.content_key(folder, {"a": 1}) != key           # so is every byte


def test_changed_file_is_never_served_stale(tmp_path):
  folder = write_pair_tsvs(str(tmp_path / "d"))
  first = loading.load(folder)
  assert len(os.listdir(os.environ["JAXREC_CACHE"])) == 1
  assert loading.load(folder) is first                        # in-process memo
  lines = open(os.path.join(folder, "val.tsv")).read().splitlines()
  time.sleep(0.01)
  with open(os.path.join(folder, "val.tsv"), "w") as f:
    f.write("\n".join(lines[:-1]) + "\n")                     # drop one pair
  second = loading.load(folder)
  assert len(second.dataset.pairs) == len(first.dataset.pairs) - 1
  assert len(os.listdir(os.environ["JAXREC_CACHE"])) == 2


def test_warm_and_new_item_protocols_on_files(tmp_path):
  folder = write_pair_tsvs(str(tmp_path / "d"))
  base = dict(data=folder, embed_dim=8, batch_size=64, max_epochs=4, eval_every=2)
  warm = split_for(make_config(**base, protocol="warm"))
  loaded = loading.load(folder)
  np.testing.assert_array_equal(warm.test_pairs, loaded.own_splits["test"])
  assert warm.val_candidates.all() and warm.test_candidates.all()
  new = split_for(make_config(**base, protocol="new_item", split_seed=3))
  again = split_for(make_config(**base, protocol="new_item", split_seed=3))
  other = split_for(make_config(**base, protocol="new_item", split_seed=4))
  np.testing.assert_array_equal(new.eval_items, again.eval_items)
  assert not np.array_equal(new.eval_items, other.eval_items)
  out = train_configs([make_config(**base, protocol="warm", setting="mm", seed=s)
                       for s in (0, 1)])
  assert np.all(np.isfinite(out.test["recall@20"]))


def test_unknown_modality_and_protocol(tmp_path):
  folder = write_pair_tsvs(str(tmp_path / "d"))
  with pytest.raises(ValueError, match="unknown modality"):
    loading.load(folder, modalities="image,audio")
  with pytest.raises(ValueError, match="unknown protocol 'cold'"):
    split_for(make_config(data=folder, protocol="cold"))


@pytest.mark.skipif(not os.path.isdir(TIKTOK), reason="shared TikTok data absent")
def test_tiktok_through_the_loader():
  loaded = loading.load(TIKTOK)
  assert (loaded.dataset.n_users, loaded.dataset.n_items) == (9308, 6710)
  assert len(loaded.dataset.pairs) == 68722
  split = split_for(make_config(data=TIKTOK))
  assert split.eval_items.sum() == round(0.2 * 6710)


@pytest.mark.skipif(not os.path.isdir(MOVIELENS), reason="shared MovieLens data absent")
def test_movielens_natural_missingness_is_kept():
  loaded = loading.load(MOVIELENS)
  assert loaded.dataset.available.sum(axis=0).tolist() == [1663, 1664]
  from jaxrec.data import protocol
  split = split_for(make_config(data=MOVIELENS))
  mask, _ = protocol.missing_masks(available=loaded.dataset.available, split=split,
                                   setting="mm", rate=0.5, seed=0)
  assert not (mask & ~loaded.dataset.available).any()


@pytest.mark.skipif(not os.path.isdir(TIKTOK), reason="shared TikTok data absent")
def test_tiktok_warnings_and_fingerprint():
  loaded = loading.load(TIKTOK)
  assert [w.split(": ", 1)[1] for w in loaded.warnings] == [
      "5 users of split 'val' (5 pairs) have no training pairs; evaluation on the data's "
      "own split leaves them out",
      "5 users of split 'test' (5 pairs) have no training pairs; evaluation on the data's "
      "own split leaves them out"]
  assert sorted(loaded.fingerprint) == ["audio_feat.npy", "image_feat.npy", "test.tsv",
                                        "train.tsv", "val.tsv"]
  warm = split_for(make_config(data=TIKTOK, protocol="warm"))
  assert (len(warm.val_pairs), len(warm.test_pairs)) == (3046, 6125)


def test_the_cache_key_is_the_layouts_files(tmp_path):
  folder = write_pair_tsvs(str(tmp_path / "d"))
  first = loading.load(folder)
  with open(os.path.join(folder, "notes.txt"), "w") as f:    # not a file the layout reads
    f.write("hello\n")
  assert loading.load(folder).key == first.key
  assert "notes.txt" not in loading.data_fingerprint(folder)
