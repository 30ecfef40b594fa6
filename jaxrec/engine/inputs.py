"""A group's inputs, built once: from configs to the engine's stacked arrays.

`build_group(configs)` reads the data (cached), splits it, and stacks every
run's masks, fills, hyper-parameters and keys on a leading runs axis. The same
`GroupInputs` serves memory planning (`one_run`) and training (`chunk`), so a
group's data is never built twice.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import RunConfig
from jaxrec.data import loading, protocol
from jaxrec.data.dataset import Dataset
from jaxrec.engine import sampler
from jaxrec.engine.train import GroupData, RunInputs, TrainSettings
from jaxrec.eval import make_eval_split
from jaxrec.graph import Graph
from jaxrec.models import Model, ModelSpec, get_model


def loaded_for(cfg: RunConfig) -> loading.Loaded:
  return loading.load(cfg.data, modalities=cfg.modalities, min_rating=cfg.min_rating,
                      synthetic_users=cfg.synthetic_users,
                      synthetic_items=cfg.synthetic_items,
                      synthetic_dims=tuple(cfg.synthetic_dims),
                      synthetic_interactions=cfg.synthetic_interactions, data_seed=cfg.data_seed,
                      remap_users=cfg.remap_users)


def dataset_for(cfg: RunConfig) -> Dataset:
  return loaded_for(cfg).dataset


def split_for(cfg: RunConfig) -> protocol.Split:
  return loading.make_split(loaded_for(cfg), protocol_name=cfg.protocol,
                            split_seed=cfg.split_seed, new_fraction=cfg.new_fraction,
                            candidates=cfg.candidates)


def group_data(dataset: Dataset, split: protocol.Split,
               feature_dtype: str = "float32") -> GroupData:
  """Shared device data of a group: normalised features, train pairs, eval splits.

  Features are normalised in float32 and then stored as `feature_dtype`.
  """
  common = dict(train_pairs=split.train_pairs, n_users=dataset.n_users,
                n_items=dataset.n_items)
  return GroupData(
      features=tuple(jnp.asarray(f, dtype=feature_dtype)
                     for f in dataset.normalised_features),
      train_pairs=jnp.asarray(split.train_pairs),
      positives=sampler.PositiveIndex.from_pairs(split.train_pairs, dataset.n_users),
      graph=Graph.from_pairs(split.train_pairs, dataset.n_users, dataset.n_items),
      val=make_eval_split(eval_pairs=split.val_pairs, candidates=split.val_candidates,
                          **common),
      test=make_eval_split(eval_pairs=split.test_pairs, candidates=split.test_candidates,
                           **common))


def run_masks(cfg: RunConfig, dataset: Dataset, split: protocol.Split):
  """(train mask, eval mask) (I, M) of one run: its seed, setting and rates."""
  return protocol.missing_masks(available=dataset.available, split=split,
                                setting=cfg.setting, rate=cfg.missing_rate, seed=cfg.seed,
                                test_rate=cfg.test_missing_rate)


def run_inputs(model: Model, configs: Sequence[RunConfig], dataset: Dataset,
               split: protocol.Split) -> RunInputs:
  """Stacks per-run masks, fills, hyper-parameters and keys along axis 0."""
  features = dataset.normalised_features
  train_masks, eval_masks, fills = [], [], []
  for cfg in configs:
    train_mask, eval_mask = run_masks(cfg, dataset, split)
    train_masks.append(train_mask)
    eval_masks.append(eval_mask)
    fills.append(protocol.fill_values(features, train_mask, split.train_items, cfg.fill))
  keys = np.stack([np.asarray(jax.random.PRNGKey(cfg.seed)) for cfg in configs])
  hp = {name: np.array([cfg.hp[name] for cfg in configs], np.float32)
        for name in model.per_run_hparams}
  run_keys = np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(c.seed), 1))
                       for c in configs])
  return RunInputs(train_available=np.stack(train_masks),
                   eval_available=np.stack(eval_masks),
                   fill=tuple(np.stack(f) for f in zip(*fills)), hp=hp, key=keys,
                   run_key=run_keys)


def group_settings(cfg: RunConfig) -> tuple[ModelSpec, TrainSettings]:
  """The group's static model description and training settings."""
  dataset = dataset_for(cfg)
  model = get_model(cfg.model)
  static = tuple((h.name, cfg.hp[h.name]) for h in model.hparams if not h.per_run)
  spec = ModelSpec(n_users=dataset.n_users, n_items=dataset.n_items,
                   feature_dims=dataset.feature_dims, embed_dim=cfg.embed_dim,
                   options=static, modality_names=dataset.modality_names)
  settings = TrainSettings(batch_size=cfg.batch_size, max_epochs=cfg.max_epochs,
                           eval_every=cfg.eval_every, patience=cfg.patience,
                           eval_chunk=cfg.eval_chunk or None,
                           first_stage_epochs=model.first_stage_length(cfg.hp))
  return spec, settings


@dataclasses.dataclass(frozen=True)
class GroupInputs:
  """Everything `train_group` takes for one group, on the host."""
  model: Model
  spec: ModelSpec
  settings: TrainSettings
  data: GroupData
  runs: RunInputs

  @property
  def n_runs(self) -> int:
    return int(self.runs.key.shape[0])

  def chunk(self, rows: Sequence[int]) -> "GroupInputs":
    """The same group with only runs `rows` (host slicing; nothing is rebuilt)."""
    rows = np.asarray(rows)
    return dataclasses.replace(self, runs=jax.tree.map(lambda x: x[rows], self.runs))

  def one_run(self) -> RunInputs:
    return jax.tree.map(lambda x: x[:1], self.runs)


def check_group(configs: Sequence[RunConfig]) -> None:
  keys = {c.group_key() for c in configs}
  if len(keys) != 1:
    raise ValueError("configs differ in group-level fields; split them into groups (only "
                     "per-run fields, see jaxrec.config, may vary inside a group)")


def build_group(configs: Sequence[RunConfig], **settings_overrides) -> GroupInputs:
  """One group's inputs from configs that share a group key.

  `settings_overrides` replace `TrainSettings` fields that have no config field
  (e.g. `compact_at=0` to keep stopped runs on the runs axis).
  """
  check_group(configs)
  first = configs[0]
  model = get_model(first.model)
  dataset, split = dataset_for(first), split_for(first)
  spec, settings = group_settings(first)
  return GroupInputs(model=model, spec=spec,
                     settings=dataclasses.replace(settings, **settings_overrides),
                     data=group_data(dataset, split, first.feature_dtype),
                     runs=run_inputs(model, configs, dataset, split))
