"""New-item split, missing masks and fills: fractions, determinism, no un-hiding."""
import numpy as np
import pytest

from jaxrec.data import protocol
from jaxrec.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data():
  return make_synthetic(n_users=200, n_items=150, feature_dims=(8, 6, 4), seed=0)


def test_new_item_split(data):
  split = protocol.new_item_split(data, seed=0)
  assert split.new.sum() == 30 and (split.warm == ~split.new).all()
  val_items, test_items = set(split.val_pairs[:, 1]), set(split.test_pairs[:, 1])
  assert not val_items & test_items
  assert split.warm[split.train_pairs[:, 1]].all()
  assert split.new[split.val_pairs[:, 1]].all() and split.new[split.test_pairs[:, 1]].all()
  assert len(split.train_pairs) + len(split.val_pairs) + len(split.test_pairs) == len(data.pairs)
  np.testing.assert_array_equal(split.candidates, split.new)


def test_split_and_masks_are_seeded(data):
  a, b = protocol.new_item_split(data, seed=0), protocol.new_item_split(data, seed=0)
  c = protocol.new_item_split(data, seed=1)
  np.testing.assert_array_equal(a.new, b.new)
  assert not np.array_equal(a.new, c.new)
  mask = lambda seed: protocol.missing_mask(available=data.available, split=a,
                                            setting="mm", rate=0.5, seed=seed)
  np.testing.assert_array_equal(mask(3), mask(3))
  assert not np.array_equal(mask(3), mask(4))


@pytest.mark.parametrize("setting,rate,new_lost,warm_lost", [
    ("ff", None, 0.0, 0.0), ("fm", None, 0.5, 0.0), ("mf", None, 0.0, 0.3),
    ("mm", None, 0.5, 0.3), ("fm", 0.9, 0.9, 0.0), ("mm", 0.1, 0.1, 0.1),
    ("mm", 0.0, 0.0, 0.0)])
def test_missing_settings_and_rates(data, setting, rate, new_lost, warm_lost):
  split = protocol.new_item_split(data, seed=0)
  mask = protocol.missing_mask(available=data.available, split=split, setting=setting,
                               rate=rate, seed=0)
  lost = mask.sum(axis=1) < data.n_modalities
  assert (mask.sum(axis=1) >= data.n_modalities - 1).all()   # exactly one modality each
  assert lost[split.new].sum() == round(new_lost * split.new.sum())
  assert lost[split.warm].sum() == round(warm_lost * split.warm.sum())


def test_never_unhides_natural_missingness(data):
  split = protocol.new_item_split(data, seed=0)
  rng = np.random.default_rng(0)
  natural = rng.random(data.available.shape) > 0.2
  mask = protocol.missing_mask(available=natural, split=split, setting="mm", rate=0.7,
                               seed=0)
  assert not (mask & ~natural).any()
  assert (mask.sum(1) >= np.minimum(natural.sum(1), 1)).all()   # nothing left empty


def test_bad_setting_and_rate(data):
  split = protocol.new_item_split(data, seed=0)
  with pytest.raises(ValueError, match="unknown missing setting 'xx'"):
    protocol.missing_mask(available=data.available, split=split, setting="xx",
                          rate=None, seed=0)
  with pytest.raises(ValueError, match="missing rate must be in"):
    protocol.missing_mask(available=data.available, split=split, setting="fm",
                          rate=1.5, seed=0)


def test_fills():
  feats = (np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], np.float32),)
  normed = tuple(protocol.l2_normalise(f) for f in feats)
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
