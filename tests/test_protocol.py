"""New-item split, missing masks and fills: fractions, determinism, no un-hiding."""
import numpy as np
import pytest

from jaxrec.data.dataset import l2_normalise
from jaxrec.data import protocol
from jaxrec.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data():
  return make_synthetic(n_users=200, n_items=150, feature_dims=(8, 6, 4), seed=0)


def test_new_item_split(data):
  split = protocol.new_item_split(data, seed=0)
  new, warm = split.eval_items, split.train_items
  assert new.sum() == 30 and (warm == ~new).all()
  val_items, test_items = set(split.val_pairs[:, 1]), set(split.test_pairs[:, 1])
  assert not val_items & test_items
  assert warm[split.train_pairs[:, 1]].all()
  assert new[split.val_pairs[:, 1]].all() and new[split.test_pairs[:, 1]].all()
  assert len(split.train_pairs) + len(split.val_pairs) + len(split.test_pairs) == len(data.pairs)
  np.testing.assert_array_equal(split.val_candidates, new)
  np.testing.assert_array_equal(split.test_candidates, new)


def test_own_half_candidates_rank_each_half_only(data):
  every = protocol.new_item_split(data, seed=0)
  own = protocol.new_item_split(data, seed=0, candidates="own_half")
  for name in ("train_pairs", "val_pairs", "test_pairs", "train_items", "eval_items"):
    np.testing.assert_array_equal(getattr(own, name), getattr(every, name), err_msg=name)
  assert not (own.val_candidates & own.test_candidates).any()
  np.testing.assert_array_equal(own.val_candidates | own.test_candidates, every.eval_items)
  assert own.val_candidates.sum() == own.test_candidates.sum() == 15
  assert own.val_candidates[own.val_pairs[:, 1]].all()
  assert own.test_candidates[own.test_pairs[:, 1]].all()


def test_own_half_of_data_with_its_own_cold_items(data):
  cold = np.array([3, 5, 7, 9])
  own_splits = {"cold_items": cold, "train": np.array([[0, 1], [1, 2]]),
                "val": np.array([[0, 3], [1, 5]]), "test": np.array([[0, 7], [1, 7]])}
  every = protocol.own_new_item_split(data, own_splits)
  halves = protocol.own_new_item_split(data, own_splits, candidates="own_half")
  np.testing.assert_array_equal(np.flatnonzero(every.val_candidates), cold)
  np.testing.assert_array_equal(np.flatnonzero(halves.val_candidates), [3, 5])
  np.testing.assert_array_equal(np.flatnonzero(halves.test_candidates), [7])


def test_unknown_candidates_is_refused(data):
  with pytest.raises(protocol.InputError, match="own_half"):
    protocol.new_item_split(data, seed=0, candidates="half")


def test_split_and_masks_are_seeded(data):
  a, b = protocol.new_item_split(data, seed=0), protocol.new_item_split(data, seed=0)
  c = protocol.new_item_split(data, seed=1)
  np.testing.assert_array_equal(a.eval_items, b.eval_items)
  assert not np.array_equal(a.eval_items, c.eval_items)
  mask = lambda seed: protocol.missing_masks(available=data.available, split=a,
                                             setting="mm", rate=0.5, seed=seed)[0]
  np.testing.assert_array_equal(mask(3), mask(3))
  assert not np.array_equal(mask(3), mask(4))


@pytest.mark.parametrize("setting,rate,new_lost,warm_lost", [
    ("ff", None, 0.0, 0.0), ("fm", None, 0.5, 0.0), ("mf", None, 0.0, 0.3),
    ("mm", None, 0.5, 0.3), ("fm", 0.9, 0.9, 0.0), ("mm", 0.1, 0.1, 0.1),
    ("mm", 0.0, 0.0, 0.0)])
def test_missing_settings_and_rates(data, setting, rate, new_lost, warm_lost):
  split = protocol.new_item_split(data, seed=0)
  mask, eval_mask = protocol.missing_masks(available=data.available, split=split,
                                           setting=setting, rate=rate, seed=0)
  np.testing.assert_array_equal(mask, eval_mask)     # items are disjoint: one mask
  lost = mask.sum(axis=1) < data.n_modalities
  assert (mask.sum(axis=1) >= data.n_modalities - 1).all()   # exactly one modality each
  new, warm = split.eval_items, split.train_items
  assert lost[new].sum() == round(new_lost * new.sum())
  assert lost[warm].sum() == round(warm_lost * warm.sum())


def test_never_unhides_natural_missingness(data):
  split = protocol.new_item_split(data, seed=0)
  rng = np.random.default_rng(0)
  natural = rng.random(data.available.shape) > 0.2
  mask, _ = protocol.missing_masks(available=natural, split=split, setting="mm",
                                   rate=0.7, seed=0)
  assert not (mask & ~natural).any()
  assert (mask.sum(1) >= np.minimum(natural.sum(1), 1)).all()   # nothing left empty


def test_bad_setting_and_rate(data):
  split = protocol.new_item_split(data, seed=0)
  with pytest.raises(ValueError, match="unknown missing setting 'xx'"):
    protocol.missing_masks(available=data.available, split=split, setting="xx",
                           rate=None, seed=0)
  with pytest.raises(ValueError, match="missing rate must be in"):
    protocol.missing_masks(available=data.available, split=split, setting="fm",
                           rate=1.5, seed=0)
  two = make_synthetic(n_users=50, n_items=40, feature_dims=(4, 4), seed=0)
  with pytest.raises(ValueError, match="needs at least 3 modalities"):
    protocol.missing_masks(available=two.available,
                           split=protocol.new_item_split(two, seed=0), setting="mix",
                           rate=None, seed=0)


def test_fills():
  feats = (np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], np.float32),)
  normed = tuple(l2_normalise(f) for f in feats)
  np.testing.assert_allclose(normed[0][0], [0.6, 0.8])
  mask = np.array([[True], [True], [False]])
  rows = np.array([True, True, True])
  np.testing.assert_allclose(protocol.fill_values(normed, mask, rows, "mean")[0],
                             [0.3, 0.9])           # mean of observed rows only
  np.testing.assert_allclose(protocol.fill_values(normed, mask, rows, "zero")[0], [0, 0])
  with pytest.raises(ValueError, match="unknown fill"):
    protocol.fill_values(normed, mask, rows, "median")


def test_synthetic_is_seeded_and_content_predicts_interactions():
  a = make_synthetic(n_users=100, n_items=80, seed=5)
  b = make_synthetic(n_users=100, n_items=80, seed=5)
  np.testing.assert_array_equal(a.pairs, b.pairs)
  np.testing.assert_array_equal(a.features[0], b.features[0])
  assert len(np.unique(a.pairs, axis=0)) == len(a.pairs)
  assert a.feature_dims == (48, 32)


def test_tiktok_test_mix(data):
  split = protocol.new_item_split(data, seed=0)
  mask, _ = protocol.missing_masks(available=data.available, split=split, setting="mix",
                                   rate=None, seed=0)
  observed = mask[split.eval_items].sum(axis=1)
  n_new = split.eval_items.sum()
  assert (observed == 3).sum() == n_new - 2 * round(0.45 * n_new)
  assert (observed == 2).sum() == round(0.45 * n_new)
  assert (observed == 1).sum() == round(0.45 * n_new)
  assert mask[split.train_items].all()


@pytest.mark.parametrize("setting,train_lost,test_lost", [
    ("ff", 0.0, 0.0), ("fm", 0.0, 0.5), ("mm", 0.3, 0.5), ("mf", 0.3, 0.0)])
def test_warm_protocol_masks(data, setting, train_lost, test_lost):
  own = protocol.random_pair_split(data, seed=0)
  split = protocol.warm_split(data, own)
  assert split.val_candidates.all() and split.test_candidates.all()
  train_mask, eval_mask = protocol.missing_masks(
      available=data.available, split=split, setting=setting, rate=None, seed=1)
  lost = lambda mask, items: (mask[items].sum(axis=1) < data.n_modalities).sum()
  assert lost(eval_mask, split.eval_items) == round(test_lost * split.eval_items.sum())
  assert lost(train_mask, split.train_items) == round(train_lost * split.train_items.sum())
  # One modality index per item: where both masks hide one, it is the same one.
  both = (train_mask.sum(1) < 3) & (eval_mask.sum(1) < 3)
  np.testing.assert_array_equal(train_mask[both], eval_mask[both])


def test_random_pair_split_covers_every_pair(data):
  own = protocol.random_pair_split(data, seed=0)
  joined = np.concatenate([own["train"], own["val"], own["test"]])
  assert len(joined) == len(data.pairs)
  assert len(np.unique(joined, axis=0)) == len(data.pairs)
  assert 0.75 < len(own["train"]) / len(data.pairs) < 0.85
