"""Shared test helpers: the authors' reference fixtures, the shared data, and
one run's inputs outside the engine."""
import dataclasses
import json
import os
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
# Reference values computed with the authors' code (copied from the project's
# spec, so they are part of every clone; see fixtures/README.md).
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def load_fixture(name: str) -> dict:
  with open(os.path.join(FIXTURES, name)) as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class OneRun:
  """Run 0 of a group, outside the engine: what a model's pure functions take.

  Attributes:
    model: the registered `Model`.
    spec, settings: the group's `ModelSpec` and `TrainSettings`.
    data: the group's `GroupData`; split: its protocol `Split`.
    hp: the run's per-run hyper-parameters (scalars).
    inputs: its training `ModelInputs` (masks, fills, graph; nothing prepared).
    hooks: the model's `Hooks` for the group (`model.make(spec)`).
  """
  model: Any
  spec: Any
  settings: Any
  data: Any
  split: Any
  hp: dict
  inputs: Any
  hooks: Any


def one_run(cfg) -> OneRun:
  """The same data, masks, fills and hyper-parameters the engine would give run
  0 of `cfg`'s group, for tests that call a model's pure functions directly."""
  import jax
  import jax.numpy as jnp
  from jaxrec.models.base import ModelInputs
  from jaxrec.engine.inputs import (dataset_for, group_data, group_settings, run_inputs,
                                    split_for)
  from jaxrec.models import get_model
  model = get_model(cfg.model)
  dataset, split = dataset_for(cfg), split_for(cfg)
  spec, settings = group_settings(cfg)
  data = group_data(dataset, split)
  runs = run_inputs(model, [cfg], dataset, split)
  hp = jax.tree.map(lambda x: jnp.asarray(x[0]), runs.hp)
  inputs = ModelInputs(features=data.features, available=jnp.asarray(runs.train_available[0]),
                       fill=tuple(jnp.asarray(f[0]) for f in runs.fill), graph=data.graph)
  return OneRun(model=model, spec=spec, settings=settings, data=data, split=split, hp=hp,
                inputs=inputs, hooks=model.make(spec))


def step_context(key, epoch: int = 0, first_stage_epochs: int = 0):
  """The `StepContext` the engine would pass at `epoch` (its `run_key` fixed)."""
  import jax
  import jax.numpy as jnp
  from jaxrec.models.base import StepContext
  return StepContext(key=key, run_key=jax.random.PRNGKey(12345), epoch=jnp.int32(epoch),
                     first_stage_epochs=first_stage_epochs)


def reference_recalls(cfg) -> dict:
  """Test Recall@20 of the reference scorers on `cfg`'s data and split: a random
  ranking, item popularity, and content popularity (new items by content)."""
  import jax.numpy as jnp
  from jaxrec import reference_scorers
  from jaxrec.engine.inputs import dataset_for, group_data, split_for
  from jaxrec.eval import evaluate
  dataset, split = dataset_for(cfg), split_for(cfg)
  test = group_data(dataset, split).test
  scorers = {
      "random": reference_scorers.random_scorer(dataset.n_users, dataset.n_items),
      "popularity": reference_scorers.popularity_scorer(split.train_pairs, dataset.n_users,
                                                        dataset.n_items),
      "content_popularity": reference_scorers.content_popularity_scorer(
          dataset.features, split.train_pairs, split.train_items, dataset.n_users)}
  return {name: float(evaluate(jnp.asarray(u), jnp.asarray(i), test)["recall@20"])
          for name, (u, i) in scorers.items()}


def prepared_runs(configs):
  """The group's per-run inputs after the model's `prepare` step, as the engine
  builds them (on device): `runs.prepared["train" | "eval"]` has a leading R axis."""
  from jaxrec.engine import sharding
  from jaxrec.engine.inputs import build_group
  from jaxrec.engine.train import GroupTrainer
  group = build_group(configs)
  mesh = sharding.runs_mesh()
  trainer = GroupTrainer(group.model, group.spec, group.settings,
                         int(group.data.train_pairs.shape[0]), mesh)
  data = sharding.to_device(group.data, sharding.replicated(mesh))
  return trainer.prepare(sharding.to_device(group.runs, sharding.runs_sharding(mesh)), data)


# Small warm-protocol data for the graph models' tests (FREEDOM, LATTICE, ...).
WARM_TINY = dict(protocol="warm", synthetic_users=150, synthetic_items=120,
                 synthetic_dims=(12, 8), embed_dim=8, batch_size=128, max_epochs=4,
                 eval_every=2, patience=5)


def assert_item_graphs_follow_each_runs_mask(model_name: str, tiny: dict) -> None:
  """The model's `prepare`'s kNN graphs (`prepared[...]["neighbours"]`, `["weights"]`) follow
  each run's own mask: ff has one graph for training and evaluation, mm's masked
  items change it, and a run's graphs in a vmapped group equal those built from
  its own inputs alone."""
  import jax.numpy as jnp
  import numpy as np
  from jaxrec.config import make_config
  # mm hides a modality of 30% of the training items and of half the test items.
  configs = [make_config(**tiny, model=model_name, setting="ff", seed=0),
             make_config(**tiny, model=model_name, setting="mm", seed=0)]
  runs = prepared_runs(configs)
  train_nb = np.asarray(runs.prepared["train"]["neighbours"])
  eval_nb = np.asarray(runs.prepared["eval"]["neighbours"])
  np.testing.assert_array_equal(train_nb[0], eval_nb[0])         # ff: one graph
  assert (train_nb[1] != train_nb[0]).any()                      # mm's masked items
  assert (eval_nb[1] != train_nb[1]).any()
  run = one_run(configs[1])
  hp, inputs = run.hp, run.inputs
  for split, available in (("train", runs.train_available[1]),
                           ("eval", runs.eval_available[1])):
    own = run.hooks.prepare(inputs.replace(available=jnp.asarray(available)), hp)
    np.testing.assert_array_equal(np.asarray(runs.prepared[split]["neighbours"][1]),
                                  own["neighbours"])
    np.testing.assert_allclose(np.asarray(runs.prepared[split]["weights"][1]),
                               own["weights"], rtol=1e-6)
