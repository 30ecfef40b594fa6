"""Runs a grid of configurations: groups, trains each group in one program, writes results.

A work directory holds `sweep.json` (the grid it was started with),
`results.jsonl` (one line per finished run, appended as groups finish),
`curves/` (per-epoch loss terms per group), `summary.md` and `summary.csv`.
Re-running the same sweep on the same directory skips finished runs; a
different grid is refused rather than mixed in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import results
from jaxrec.config import PER_RUN_FIELDS, RunConfig, make_config
from jaxrec.data import loading, protocol
from jaxrec.data.dataset import Dataset
from jaxrec.engine import memory, sampler
from jaxrec.engine.train import (GroupData, GroupOutcome, RunInputs, TrainSettings,
                                 train_group)
from jaxrec.eval import make_eval_split
from jaxrec.graph import Graph
from jaxrec.models import Model, ModelSpec, get_model


@dataclasses.dataclass(frozen=True)
class Grid:
  """A base configuration and the axes to cross (field -> list of values).

  `per_model` holds fields that apply only to runs of one model (model name ->
  {field: value}), e.g. MILK's TikTok hyper-parameters in a grid that compares it
  with baselines that keep their own defaults. Precedence: base < per_model <
  axes.
  """
  base: dict
  axes: dict
  per_model: dict = dataclasses.field(default_factory=dict)

  def expand(self) -> list[tuple[dict, RunConfig]]:
    """All (coordinates, config) pairs, in a stable order."""
    names = list(self.axes)
    out = []
    for values in itertools.product(*(self.axes[n] for n in names)):
      coords = dict(zip(names, values))
      model = coords.get("model", self.base.get("model", RunConfig.model))
      fields = {**self.base, **self.per_model.get(model, {}), **coords}
      out.append((coords, make_config(**fields)))
    return out

  def to_json(self) -> dict:
    out = {"base": {k: self.base[k] for k in sorted(self.base)},
           "axes": {k: list(self.axes[k]) for k in sorted(self.axes)}}
    if self.per_model:       # absent when empty, so older sweep.json files still match
      out["per_model"] = {m: {k: v[k] for k in sorted(v)}
                          for m, v in sorted(self.per_model.items())}
    return out


def loaded_for(cfg: RunConfig) -> loading.Loaded:
  return loading.load(cfg.data, modalities=cfg.modalities, min_rating=cfg.min_rating,
                      synthetic_users=cfg.synthetic_users,
                      synthetic_items=cfg.synthetic_items,
                      synthetic_dims=tuple(cfg.synthetic_dims),
                      synthetic_interactions=cfg.synthetic_interactions, data_seed=cfg.data_seed)


def dataset_for(cfg: RunConfig) -> Dataset:
  return loaded_for(cfg).dataset


def split_for(cfg: RunConfig) -> protocol.Split:
  return loading.make_split(loaded_for(cfg), protocol_name=cfg.protocol,
                            split_seed=cfg.split_seed, new_fraction=cfg.new_fraction)


def group_data(dataset: Dataset, split: protocol.Split,
               feature_dtype: str = "float32") -> GroupData:
  """Shared device data of a group: normalised features, train pairs, eval splits.

  Features are normalised in float32 and then stored as `feature_dtype`.
  """
  common = dict(train_pairs=split.train_pairs, candidates=split.candidates,
                n_users=dataset.n_users, n_items=dataset.n_items)
  return GroupData(
      features=tuple(jnp.asarray(f, dtype=feature_dtype)
                     for f in dataset.normalised_features),
      train_pairs=jnp.asarray(split.train_pairs),
      positives=sampler.PositiveIndex.from_pairs(split.train_pairs, dataset.n_users),
      graph=Graph.from_pairs(split.train_pairs, dataset.n_users, dataset.n_items),
      val=make_eval_split(eval_pairs=split.val_pairs, **common),
      test=make_eval_split(eval_pairs=split.test_pairs, **common))


def run_inputs(model: Model, configs: Sequence[RunConfig], dataset: Dataset,
               split: protocol.Split) -> RunInputs:
  """Stacks per-run masks, fills, hyper-parameters and keys along axis 0."""
  features = dataset.normalised_features
  train_masks, eval_masks, fills = [], [], []
  for cfg in configs:
    train_mask, eval_mask = protocol.missing_masks(
        available=dataset.available, split=split, setting=cfg.setting,
        rate=cfg.missing_rate, seed=cfg.seed)
    train_masks.append(train_mask)
    eval_masks.append(eval_mask)
    fills.append(protocol.fill_values(features, train_mask, split.train_items, cfg.fill))
  keys = np.stack([np.asarray(jax.random.PRNGKey(cfg.seed)) for cfg in configs])
  hp = {name: np.array([getattr(cfg, name) for cfg in configs], np.float32)
        for name in model.default_hparams}
  hp["fixed_key"] = np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(c.seed), 1))
                              for c in configs])
  return RunInputs(train_available=np.stack(train_masks),
                   eval_available=np.stack(eval_masks),
                   fill=tuple(np.stack(f) for f in zip(*fills)), hp=hp, key=keys)


def group_settings(cfg: RunConfig) -> tuple[ModelSpec, TrainSettings]:
  dataset = dataset_for(cfg)
  spec = ModelSpec(n_users=dataset.n_users, n_items=dataset.n_items,
                   feature_dims=dataset.feature_dims, embed_dim=cfg.embed_dim,
                   penalty=cfg.penalty)
  settings = TrainSettings(batch_size=cfg.batch_size, max_epochs=cfg.max_epochs,
                           eval_every=cfg.eval_every, patience=cfg.patience,
                           eval_chunk=cfg.eval_chunk or None,
                           pretrain_epochs=cfg.pretrain_epochs)
  return spec, settings


def train_configs(configs: Sequence[RunConfig], *, devices=None, on_epoch=None,
                  on_start=None, checkpoint_dir: str | None = None,
                  **settings_overrides) -> GroupOutcome:
  """Trains configs that share a group key as one vmapped, sharded group.

  `settings_overrides` replace `TrainSettings` fields that have no config field
  (e.g. `compact_at=0` to keep stopped runs on the runs axis).
  """
  keys = {c.group_key() for c in configs}
  if len(keys) != 1:
    raise ValueError("configs differ in group-level fields; split them into groups "
                     f"(only {PER_RUN_FIELDS} may vary inside a group)")
  first = configs[0]
  model = get_model(first.model)
  dataset = dataset_for(first)
  split = split_for(first)
  spec, settings = group_settings(first)
  return train_group(model, spec, dataclasses.replace(settings, **settings_overrides),
                     group_data(dataset, split, first.feature_dtype),
                     run_inputs(model, configs, dataset, split),
                     devices=devices, on_epoch=on_epoch, on_start=on_start,
                     checkpoint_dir=checkpoint_dir)


def run_records(coords: Sequence[dict], configs: Sequence[RunConfig],
                outcome: GroupOutcome, group_name: str) -> list[dict]:
  records = []
  for r, (coord, cfg) in enumerate(zip(coords, configs)):
    records.append({
        "run_id": cfg.run_id, "group": group_name, "coords": coord,
        "config": cfg.to_dict(),
        "selected_epoch": int(outcome.selected_epoch[r]),
        "epochs_trained": int(outcome.epochs_trained[r]),
        # 0 = finite throughout; else the epoch whose update went non-finite
        # (the run kept its state from before that epoch).
        "diverged_epoch": int(outcome.diverged_epoch[r]),
        "val": {k: float(v[r]) for k, v in outcome.val.items()},
        "test": {k: float(v[r]) for k, v in outcome.test.items()},
        "timing": {"group_train_s": outcome.train_seconds,
                   "group_eval_s": outcome.eval_seconds,
                   "group_first_epoch_s": outcome.first_epoch_seconds,
                   "group_runs": len(configs),
                   "resumed_from_epoch": outcome.resumed_from_epoch,
                   "compactions": [list(c) for c in outcome.compactions]}})
  return records


def _is_writer() -> bool:
  """Only process 0 writes results; every process trains its share of the runs."""
  return jax.process_index() == 0


def _check_workdir(workdir: str, grid: Grid) -> None:
  path = os.path.join(workdir, "sweep.json")
  wanted = json.loads(json.dumps(grid.to_json(), default=list))
  if os.path.exists(path):
    with open(path) as f:
      found = json.load(f)
    if found != wanted:
      raise ValueError(
          f"{workdir} holds a different sweep (see {path}); resume it with the same "
          "grid and flags, or pass a new --workdir")
    return
  if _is_writer():
    os.makedirs(os.path.join(workdir, "curves"), exist_ok=True)
    with open(path, "w") as f:
      json.dump(wanted, f, indent=1)


def plan_groups(grid: Grid) -> list[list[tuple[dict, RunConfig]]]:
  """The grid's runs split into groups of identical shapes, in grid order."""
  groups: dict[tuple, list] = {}
  for coords, cfg in grid.expand():
    groups.setdefault(cfg.group_key(), []).append((coords, cfg))
  return list(groups.values())


def _truncate_curves(path: str, epoch: int) -> None:
  """Keeps the curve lines up to `epoch` (a resumed group re-runs the rest)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f.read().splitlines() if l.strip()]
  kept = []
  for line in lines:
    try:
      if json.loads(line)["epoch"] <= epoch:
        kept.append(line)
    except json.JSONDecodeError:
      break                     # a torn last line from a killed writer
  with open(path, "w") as f:
    f.write("".join(l + "\n" for l in kept))


def plan_chunks(group: list, budget_bytes: int | None, n_devices: int) -> list[list]:
  """Cuts a group's runs into chunks that fit `budget_bytes` per device (memory.py)."""
  if budget_bytes is None:
    return [group]
  configs = [cfg for _, cfg in group]
  model = get_model(configs[0].model)
  dataset, split = dataset_for(configs[0]), split_for(configs[0])
  spec, settings = group_settings(configs[0])
  est = memory.estimate(model, spec, settings,
                        group_data(dataset, split, configs[0].feature_dtype),
                        run_inputs(model, configs[:1], dataset, split))
  size = memory.runs_per_chunk(est, len(group), budget_bytes, n_devices)
  chunks = memory.chunk(group, size)
  print(f"memory: {memory.describe(est)}; budget {budget_bytes / 2**30:.2f} GiB per "
        f"device -> {len(group)} runs in {len(chunks)} chunks of <= {size} runs")
  return chunks


def run_sweep(grid: Grid, workdir: str, *, devices=None, progress: bool = True,
              memory_budget_bytes: int | None = None) -> list[dict]:
  """Runs every unfinished run of `grid`, appending to `workdir`; returns all records.

  Each group is checkpointed at every evaluation under `workdir/checkpoints/`,
  so re-running after an interruption resumes mid-group with the same results.
  Groups are cut into chunks that fit `memory_budget_bytes` per device (default:
  the accelerator's memory; no planning where JAX reports none, as on CPU).
  """
  _check_workdir(workdir, grid)
  results_path = os.path.join(workdir, "results.jsonl")
  done = {rec["run_id"] for rec in results.read_jsonl(results_path)}
  devices = list(devices or jax.devices())
  budget = memory_budget_bytes or memory.device_budget_bytes(jax.local_devices()[0])
  groups = plan_groups(grid)
  n_runs = sum(len(g) for g in groups)
  todo = []
  for index, group in enumerate(groups):
    left = [(c, cfg) for c, cfg in group if cfg.run_id not in done]
    todo += [(index, part) for part in (plan_chunks(left, budget, len(devices))
                                        if left else [])]
  print(f"sweep: {n_runs} runs in {len(groups)} group(s); "
        f"{n_runs - sum(len(g) for _, g in todo)} already done; "
        f"devices: {len(devices)} x {jax.default_backend()}")
  bar = _progress(total=sum(g[0][1].max_epochs for _, g in todo),
                  enabled=progress and _is_writer())
  for step, (index, group) in enumerate(todo):
    coords, configs = zip(*group)
    name = f"g{index:03d}-{configs[0].model}"
    runs_hash = hashlib.sha1("".join(c.run_id for c in configs).encode()).hexdigest()[:10]
    curves_path = os.path.join(workdir, "curves", f"{name}.jsonl")
    bar.set_description(f"group {step + 1}/{len(todo)} ({len(configs)} runs)")
    start = bar.n
    curves = None

    def on_start(epoch, curves_path=curves_path):
      nonlocal curves
      if _is_writer():
        _truncate_curves(curves_path, epoch)
        # Line-buffered, so a running sweep can be inspected with `tail -f`.
        curves = open(curves_path, "a", buffering=1)
      bar.update(epoch)

    def on_epoch(epoch, terms):
      bar.update(1)
      bar.set_postfix(loss=f"{float(np.nanmean(terms['loss'])):.4f}")   # NaN: stopped
      if curves is not None:
        curves.write(json.dumps({"epoch": epoch, **{k: np.asarray(v).tolist()
                                                    for k, v in terms.items()}}) + "\n")

    checkpoint_dir = os.path.join(workdir, "checkpoints", f"{name}-{runs_hash}")
    outcome = train_configs(list(configs), devices=devices, on_epoch=on_epoch,
                            on_start=on_start, checkpoint_dir=checkpoint_dir)
    bar.update(configs[0].max_epochs - (bar.n - start))
    if _is_writer():
      curves.close()
      results.append_jsonl(results_path, run_records(coords, configs, outcome, name))
      shutil.rmtree(checkpoint_dir, ignore_errors=True)
  bar.close()
  if not _is_writer():
    return []
  table = results.write_report(workdir)
  print(table)
  print(f"plots: {os.path.join(workdir, 'plots')}")
  return results.read_jsonl(results_path)


def _progress(total: int, enabled: bool):
  from tqdm.auto import tqdm
  return tqdm(total=total, unit="epoch", disable=not enabled, dynamic_ncols=True)
