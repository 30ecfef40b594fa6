"""What pairing over seeds rests on: the same seed gives every model the same split
and the same masks (the model is only a config field to the protocol)."""
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.models import get_model
from jaxrec.engine.inputs import dataset_for, run_inputs, split_for

MODELS = ("milk", "i3mrec", "heater", "duif")
SMALL = dict(synthetic_users=80, synthetic_items=60, synthetic_dims=(8, 4),
             synthetic_interactions=8.0)


def protocol_of(model: str, **fields):
  """(split, train masks, eval masks, keys) that run 0 of a group of `model` gets."""
  cfg = make_config(model=model, **SMALL, **fields)
  dataset, split = dataset_for(cfg), split_for(cfg)
  runs = run_inputs(get_model(model), [cfg], dataset, split)
  return split, runs.train_available[0], runs.eval_available[0], runs.key[0]


@pytest.mark.parametrize("protocol,setting", [("new_item", "fm"), ("new_item", "mm"),
                                              ("warm", "mm")])
def test_same_seed_same_split_and_masks_for_every_model(protocol, setting):
  fields = dict(protocol=protocol, setting=setting, seed=3, split_seed=1)
  ref_split, ref_train, ref_eval, ref_key = protocol_of(MODELS[0], **fields)
  assert (~ref_train).any() and (~ref_eval).any()    # something is hidden
  for model in MODELS[1:]:
    split, train, eval_mask, key = protocol_of(model, **fields)
    for name in ("train_pairs", "val_pairs", "test_pairs", "val_candidates",
                 "test_candidates", "train_items"):
      np.testing.assert_array_equal(getattr(split, name), getattr(ref_split, name),
                                    err_msg=f"{model}: {name}")
    np.testing.assert_array_equal(train, ref_train, err_msg=model)
    np.testing.assert_array_equal(eval_mask, ref_eval, err_msg=model)
    np.testing.assert_array_equal(key, ref_key, err_msg=model)


def test_another_seed_or_split_seed_changes_them():
  fields = dict(protocol="new_item", setting="mm")
  split, train, _, _ = protocol_of("milk", seed=0, split_seed=0, **fields)
  _, other_train, _, _ = protocol_of("milk", seed=1, split_seed=0, **fields)
  other_split, _, _, _ = protocol_of("milk", seed=0, split_seed=1, **fields)
  assert not np.array_equal(train, other_train)
  assert not np.array_equal(split.test_pairs, other_split.test_pairs)
