"""MILK learns the planted signal: it beats random and popularity on new items."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import reference_scorers
from jaxrec.config import make_config
from jaxrec.eval import evaluate
from jaxrec.engine.inputs import dataset_for, group_data, split_for
from jaxrec.sweep import train_configs

CFG = dict(synthetic_users=600, synthetic_items=500, synthetic_dims=(24, 16),
           embed_dim=32, batch_size=512, max_epochs=40, eval_every=5, setting="ff")


@pytest.fixture(scope="module")
def trained():
  configs = [make_config(**CFG, seed=s) for s in (0, 1)]
  return configs[0], train_configs(configs)


def _test_recall(cfg, scorer):
  dataset = dataset_for(cfg)
  split = split_for(cfg)
  users, items = scorer(dataset, split)
  res = evaluate(jnp.asarray(users), jnp.asarray(items), group_data(dataset, split).test)
  return float(res["recall@20"])


def test_milk_beats_random_and_popularity(trained):
  cfg, outcome = trained
  milk = float(np.mean(outcome.test["recall@20"]))
  random = _test_recall(cfg, lambda d, s: reference_scorers.random_scorer(
      d.n_users, d.n_items))
  popular = _test_recall(cfg, lambda d, s: reference_scorers.popularity_scorer(
      s.train_pairs, d.n_users, d.n_items))
  content_pop = _test_recall(cfg, lambda d, s: reference_scorers.content_popularity_scorer(
      d.features, s.train_pairs, s.train_items, d.n_users))
  print(f"recall@20 milk {milk:.3f} random {random:.3f} popularity {popular:.3f} "
        f"content-popularity {content_pop:.3f}")
  assert milk > 2.0 * random
  assert milk > 2.0 * popular
  assert milk > 1.3 * content_pop


def test_missing_modalities_hurt_milk():
  base = {**CFG, "max_epochs": 20}
  del base["setting"]
  full = train_configs([make_config(**base, seed=0, setting="ff")])
  missing = train_configs([make_config(**base, seed=0, setting="fm", missing_rate=1.0,
                                       fill="zero")])
  assert missing.test["recall@20"][0] < full.test["recall@20"][0] - 0.02
