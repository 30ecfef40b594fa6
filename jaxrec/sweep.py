"""Runs a grid of configurations: groups, trains each group in one program, writes results.

`run_sweep` plans the grid (groups of identical shapes, chunks that fit the
device), checks it and its data before the work directory is created, then
trains each unfinished group and appends its records (jaxrec.workdir).
Re-running the same sweep on the same directory skips finished runs and
resumes a group from its checkpoint; a different grid is refused rather than
mixed in. Runs recorded elsewhere (`done`, e.g. results/<table>/) are taken
instead of trained. Every record carries the reference scorers' test metrics
on its split (`reference`), the floor the report checks cells against.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from jaxrec.config import RunConfig
from jaxrec.engine import memory
from jaxrec.engine.inputs import (GroupInputs, build_group, dataset_for, loaded_for, run_inputs,
                                  split_for)
from jaxrec.engine.train import GroupOutcome, train_group
from jaxrec.grid import Grid
from jaxrec.models import get_model
from jaxrec.reference_scorers import reference_metrics
from jaxrec.workdir import WorkDir, curve_line, data_key, is_writer


def train_inputs(inputs: GroupInputs, *, devices=None, on_epoch=None, on_start=None,
                 checkpoint_dir: str | None = None) -> GroupOutcome:
  """Trains a built group (see `train_group`)."""
  return train_group(inputs.model, inputs.spec, inputs.settings, inputs.data, inputs.runs,
                     devices=devices, on_epoch=on_epoch, on_start=on_start,
                     checkpoint_dir=checkpoint_dir)


def train_configs(configs: Sequence[RunConfig], *, devices=None, on_epoch=None,
                  on_start=None, checkpoint_dir: str | None = None,
                  **settings_overrides) -> GroupOutcome:
  """Trains configs that share a group key as one vmapped, sharded group.

  `settings_overrides` replace `TrainSettings` fields that have no config field
  (e.g. `compact_at=0` to keep stopped runs on the runs axis).
  """
  return train_inputs(build_group(configs, **settings_overrides), devices=devices,
                      on_epoch=on_epoch, on_start=on_start, checkpoint_dir=checkpoint_dir)


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


def plan_groups(grid: Grid) -> list[list[tuple[dict, RunConfig]]]:
  """The grid's runs split into groups of identical shapes, in grid order."""
  groups: dict[tuple, list] = {}
  for coords, cfg in grid.expand():
    groups.setdefault(cfg.group_key(), []).append((coords, cfg))
  return list(groups.values())


def check_data(groups: Sequence[list[tuple[dict, RunConfig]]]) -> tuple[dict, dict]:
  """Reads and splits every group's data (cached) and builds every run's masks
  and fills, so a data error is raised before the work directory exists or
  anything compiles.

  Returns ({data key: {file: sha256}}, {data key: warnings}) of the grid's data.
  """
  data_files, warnings = {}, {}
  for group in groups:
    first = group[0][1]
    loaded = loaded_for(first)
    data_files[data_key(first)] = loaded.fingerprint
    warnings[data_key(first)] = list(loaded.warnings)
    model, dataset, split = get_model(first.model), dataset_for(first), split_for(first)
    if dataset.n_modalities < model.min_modalities:
      raise ValueError(
          f"model {model.name!r} needs at least {model.min_modalities} modalities; "
          f"{first.data} has {dataset.n_modalities} ({', '.join(dataset.modality_names)})")
    run_inputs(model, [cfg for _, cfg in group], dataset, split)
    reference_metrics(first)    # the runs' floor, before anything trains (cached)
  return data_files, warnings


def chunk_sizes(inputs: GroupInputs, budget_bytes: int | None, n_devices: int) -> int:
  """Runs per chunk so that a chunk fits `budget_bytes` per device (memory.py)."""
  if budget_bytes is None:
    return inputs.n_runs
  est = memory.estimate(inputs.model, inputs.spec, inputs.settings, inputs.data,
                        inputs.one_run())
  size = memory.runs_per_chunk(est, inputs.n_runs, budget_bytes, n_devices)
  print(f"memory: {memory.describe(est)}; budget {budget_bytes / 2**30:.2f} GiB per "
        f"device -> {inputs.n_runs} runs in {-(-inputs.n_runs // size)} chunks of <= "
        f"{size} runs")
  return size


def run_sweep(grid: Grid, workdir: str, *, devices=None, progress: bool = True,
              memory_budget_bytes: int | None = None, done: Sequence[str] = ()) -> list[dict]:
  """Runs every unfinished run of `grid`, appending to `workdir`; returns all records.

  Each group is checkpointed at every evaluation under `workdir/checkpoints/`,
  so re-running after an interruption resumes mid-group with the same results.
  Groups are cut into chunks that fit `memory_budget_bytes` per device (default:
  the accelerator's memory; no planning where JAX reports none, as on CPU).
  `done`: work directories (e.g. results/<table>/) whose records of this grid's
  runs are taken instead of training them (`WorkDir.import_finished`).
  """
  work = WorkDir(workdir)
  groups = plan_groups(grid)            # every config built and checked
  data_files, data_warnings = check_data(groups)
  work.check(grid.to_json(), data_files)
  work.create(grid.to_json(), data_files)
  work.log_command()
  if done:
    print(f"done: {work.import_finished(done, [c for g in groups for _, c in g], data_files)} "
          f"run(s) taken from {', '.join(done)}")
  for data, lines in data_warnings.items():
    for line in lines:
      print(f"data: {data}: {line}")
  done = work.done_ids()
  devices = list(devices or jax.devices())
  budget = memory_budget_bytes or memory.device_budget_bytes(jax.local_devices()[0])
  n_runs = sum(len(g) for g in groups)
  todo = [(index, [(c, cfg) for c, cfg in group if cfg.run_id not in done])
          for index, group in enumerate(groups)]
  todo = [(index, left) for index, left in todo if left]
  print(f"sweep: {n_runs} runs in {len(groups)} group(s); "
        f"{n_runs - sum(len(g) for _, g in todo)} already done; "
        f"devices: {len(devices)} x {jax.default_backend()}")
  bar = _progress(total=sum(g[0][1].max_epochs for _, g in todo),
                  enabled=progress and is_writer())
  for step, (index, group) in enumerate(todo):
    coords, configs = zip(*group)
    inputs = build_group(configs)
    chunks = memory.chunk(list(range(len(configs))), chunk_sizes(inputs, budget, len(devices)))
    bar.total += (len(chunks) - 1) * configs[0].max_epochs
    name = f"g{index:03d}-{configs[0].model}"
    pending, k = list(chunks), 0
    while pending:
      rows = pending.pop(0)
      bar.set_description(f"group {step + 1}/{len(todo)} ({len(rows)} runs)")
      # Each chunk has its own curves and history, so one never cuts another's.
      chunk_name = name if len(chunks) == 1 and not k else f"{name}-c{k}"
      k += 1
      try:
        _train_chunk(work, name, chunk_name, inputs.chunk(rows), [coords[r] for r in rows],
                     [configs[r] for r in rows], devices, bar,
                     data_warnings[data_key(configs[0])])
      except Exception as err:  # pylint: disable=broad-except
        # The plan is an estimate: a chunk that still does not fit is halved and
        # retrained (its finished runs are already in results.jsonl).
        if not memory.is_out_of_memory(err) or len(rows) == 1:
          raise
        print(f"memory: {len(rows)} runs did not fit the device; retrying as two chunks "
              f"of {len(rows) // 2} and {len(rows) - len(rows) // 2}")
        bar.total += configs[0].max_epochs
        pending[:0] = [rows[:len(rows) // 2], rows[len(rows) // 2:]]
  bar.close()
  if not is_writer():
    return []
  from jaxrec.analysis import write_reports   # scipy and tensorboardX only at the end
  print(write_reports(workdir, layouts=list(grid.layouts) or None))
  print(f"plots: {workdir}/plots  report (selected on validation): {workdir}/report/"
        f"README.md  tensorboard --logdir {workdir}/tensorboard")
  return work.records()


def _train_chunk(work: WorkDir, group: str, name: str, inputs: GroupInputs, coords, configs,
                 devices, bar, data_warnings: list[str]) -> None:
  """Trains one chunk (`name`) of a group with curves, progress and a checkpoint;
  appends its records and drops the checkpoint."""
  checkpoint_dir = work.checkpoint_dir(name, [c.run_id for c in configs])
  curves, start = None, bar.n

  def on_start(epoch):
    nonlocal curves
    curves = work.open_curves(name, epoch)
    bar.update(epoch)

  def on_epoch(epoch, terms):
    bar.update(1)
    bar.set_postfix(loss=f"{float(np.nanmean(terms['loss'])):.4f}")   # NaN: stopped
    if curves is not None:
      curves.write(curve_line(epoch, terms))

  outcome = train_inputs(inputs, devices=devices, on_epoch=on_epoch, on_start=on_start,
                         checkpoint_dir=checkpoint_dir)
  bar.update(configs[0].max_epochs - (bar.n - start))
  if curves is not None:
    curves.close()
  work.write_eval_history(name, outcome.eval_history)
  extra = {**({"curves": name} if name != group else {}),
           **({"data_warnings": data_warnings} if data_warnings else {})}
  work.append([{**rec, **extra, "reference": reference_metrics(cfg)}
               for rec, cfg in zip(run_records(coords, configs, outcome, group), configs)])
  work.drop_checkpoint(checkpoint_dir)


def _progress(total: int, enabled: bool):
  from tqdm.auto import tqdm
  return tqdm(total=total, unit="epoch", disable=not enabled, dynamic_ncols=True)
