"""Shared test helpers: paths to the spec fixtures and the shared data."""
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "spec", "fixtures")


def load_fixture(name: str) -> dict:
  with open(os.path.join(FIXTURES, name)) as f:
    return json.load(f)


def fixture_available(name: str) -> bool:
  return os.path.exists(os.path.join(FIXTURES, name))


def one_run(cfg):
  """(model, spec, settings, data, split, hp, train inputs) of one run, outside the engine.

  For tests that call a model's pure functions directly: the same data, masks,
  fills and hyper-parameters the engine would give run 0 of a group.
  """
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
  return model, spec, settings, data, split, hp, inputs


def step_context(key, epoch: int = 0, first_stage_epochs: int = 0):
  """The `StepContext` the engine would pass at `epoch` (its `run_key` fixed)."""
  import jax
  import jax.numpy as jnp
  from jaxrec.models.base import StepContext
  return StepContext(key=key, run_key=jax.random.PRNGKey(12345), epoch=jnp.int32(epoch),
                     first_stage_epochs=first_stage_epochs)
