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

import dataclasses
import sys
import time
import warnings
from typing import Callable, Sequence

import jax
import numpy as np

from jaxrec import errors, results
from jaxrec.config import RunConfig
from jaxrec.data import loading
from jaxrec.engine import memory
from jaxrec.engine.inputs import (GroupInputs, build_group, dataset_for, group_settings,
                                  loaded_for, run_inputs, split_for)
from jaxrec.engine.train import GroupOutcome, train_group
from jaxrec.grid import Grid
from jaxrec.models import get_model
from jaxrec.reference_scorers import reference_metrics
from jaxrec.workdir import WorkDir, curve_line, data_key, is_writer


def train_inputs(inputs: GroupInputs, *, devices=None, on_epoch=None, on_start=None,
                 on_eval=None, checkpoint_dir: str | None = None) -> GroupOutcome:
  """Trains a built group (see `train_group`)."""
  return train_group(inputs.model, inputs.spec, inputs.settings, inputs.data, inputs.runs,
                     devices=devices, on_epoch=on_epoch, on_start=on_start,
                     on_eval=on_eval, checkpoint_dir=checkpoint_dir)


def train_configs(configs: Sequence[RunConfig], *, devices=None, on_epoch=None,
                  on_start=None, on_eval=None, checkpoint_dir: str | None = None,
                  **settings_overrides) -> GroupOutcome:
  """Trains configs that share a group key as one vmapped, sharded group.

  `settings_overrides` replace `TrainSettings` fields that have no config field
  (e.g. `compact_at=0` to keep stopped runs on the runs axis).
  """
  return train_inputs(build_group(configs, **settings_overrides), devices=devices,
                      on_epoch=on_epoch, on_start=on_start, on_eval=on_eval,
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
    warnings[data_key(first)] = list(loading.warnings_for(loaded, first.protocol))
    model, dataset, split = get_model(first.model), dataset_for(first), split_for(first)
    loading.check_modalities(first.data, first.modalities, dataset, model.name,
                             model.min_modalities)
    spec = group_settings(first)[0]
    model.check_modality_options(spec)
    model.make(spec)            # a spec the model refuses, refused before anything compiles
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


def runs_left(groups: Sequence[list[tuple[dict, RunConfig]]], done: set[str]
               ) -> list[tuple[int, list[tuple[dict, RunConfig]]]]:
  """(group index, its runs not in `done`) of every group with runs left."""
  todo = [(index, [(c, cfg) for c, cfg in group if cfg.run_id not in done])
          for index, group in enumerate(groups)]
  return [(index, left) for index, left in todo if left]


def sweep_line(groups, todo, devices) -> str:
  n_runs = sum(len(g) for g in groups)
  return (f"sweep: {n_runs} runs in {len(groups)} group(s); "
          f"{n_runs - sum(len(g) for _, g in todo)} already done; "
          f"devices: {len(devices)} x {jax.default_backend()}")


def run_sweep(grid: Grid, workdir: str, *, devices=None, progress: bool = True,
              memory_budget_bytes: int | None = None, done: Sequence[str] = (),
              train: bool = True) -> list[dict]:
  """Runs every unfinished run of `grid`, appending to `workdir`; returns all records.

  Each group is checkpointed at every evaluation under `workdir/checkpoints/`,
  so re-running after an interruption resumes mid-group with the same results.
  Groups are cut into chunks that fit `memory_budget_bytes` per device (default:
  the accelerator's memory; no planning where JAX reports none, as on CPU).
  `done`: work directories (e.g. results/<table>/) whose records of this grid's
  runs are taken instead of training them (`WorkDir.import_finished`).
  `train=False`: nothing is trained; the report is written from the records
  there, and names the runs still to train as missing.
  """
  work = WorkDir(workdir)
  groups = plan_groups(grid)            # every config built and checked
  data_files, data_warnings = check_data(groups)
  work.check(grid.to_json(), data_files)
  work.create(grid.to_json(), data_files)
  unwritable = is_writer() and errors.not_writable(workdir)
  if not unwritable:
    work.log_command()
  if done:
    print(f"done: {work.import_finished(done, [run for g in groups for run in g], data_files)} "
          f"run(s) taken from {', '.join(done)}")
  for data, lines in data_warnings.items():
    for line in lines:
      print(f"data: {data}: {line}", file=sys.stderr)
  devices = list(devices or jax.devices())
  budget = memory_budget_bytes or memory.device_budget_bytes(jax.local_devices()[0])
  todo = runs_left(groups, work.done_ids())
  print(sweep_line(groups, todo, devices))
  if not train and todo:
    print(f"not trained (--notrain): {sum(len(g) for _, g in todo)} run(s) in "
          f"{len(todo)} group(s); the report names them as missing")
    todo = []
  if unwritable:
    return _report_unwritable(work, unwritable, sum(len(g) for _, g in todo))
  bar = SweepProgress(enabled=progress and is_writer())
  for _, group in todo:
    bar.add_chunk(len(group), group[0][1].max_epochs)
  for step, (index, group) in enumerate(todo):
    coords, configs = zip(*group)
    began = bar.clock()           # building the group is part of its first chunk's start
    inputs = build_group(configs)
    chunks = memory.chunk(list(range(len(configs))), chunk_sizes(inputs, budget, len(devices)))
    max_epochs = configs[0].max_epochs
    bar.more_chunks(len(chunks) - 1, max_epochs)
    name = f"g{index:03d}-{configs[0].model}"
    pending, k = list(chunks), 0
    while pending:
      rows = pending.pop(0)
      bar.start_chunk(len(rows), max_epochs,
                      f"group {step + 1}/{len(todo)} ({len(rows)} runs)",
                      began=None if k else began)
      # Each chunk has its own curves and history, so one never cuts another's.
      chunk_name = name if len(chunks) == 1 and not k else f"{name}-c{k}"
      k += 1
      try:
        _train_chunk(work, name, chunk_name, inputs.chunk(rows), [coords[r] for r in rows],
                     [configs[r] for r in rows], devices, bar,
                     data_warnings[data_key(configs[0])])
      except Exception as err:  # pylint: disable=broad-except
        if errors.is_disk_full(err) and not isinstance(err, errors.InputError):
          raise errors.disk_full(workdir, f"writing the results of {chunk_name}") from None
        # The plan is an estimate: a chunk that still does not fit is halved and
        # retrained (its finished runs are already in results.jsonl).
        if not memory.is_out_of_memory(err) or len(rows) == 1:
          raise
        work.drop_checkpoint(work.checkpoint_dir(chunk_name, [configs[r].run_id for r in rows]))
        print(f"memory: {len(rows)} runs did not fit the device; retrying as two chunks "
              f"of {len(rows) // 2} and {len(rows) - len(rows) // 2}")
        bar.end_chunk()
        pending[:0] = [rows[:len(rows) // 2], rows[len(rows) // 2:]]
        for half in pending[:2]:
          bar.add_chunk(len(half), max_epochs)
  bar.close()
  if not is_writer():
    return []
  from jaxrec.analysis import write_reports   # scipy and tensorboardX only at the end
  print(write_reports(workdir, layouts=list(grid.layouts) or None))
  print(f"plots: {workdir}/plots  report (selected on validation): {workdir}/report/"
        f"README.md  tensorboard --logdir {workdir}/tensorboard")
  return work.records()


def _report_unwritable(work: WorkDir, why: str, unfinished: int) -> list[dict]:
  """A work directory that cannot be written: refused if runs are left to train;
  if every run is done, its summary is printed instead of written."""
  if unfinished:
    raise errors.InputError(
        f"{work.path}: cannot be written ({why}), and {unfinished} runs are left to train; "
        "make it writable, or pass a --workdir that can be written")
  records = work.records()
  print(results.markdown_table(*results.summarize(records)))
  print(f"note: {work.path} cannot be written ({why}); every run is done, so its summary is "
        "printed above instead of written; for the full report copy the directory somewhere "
        "writable and run `python -m experiments.report COPY`", file=sys.stderr)
  return records


def _train_chunk(work: WorkDir, group: str, name: str, inputs: GroupInputs, coords, configs,
                 devices, bar, data_warnings: list[str]) -> None:
  """Trains one chunk (`name`) of a group with curves, progress and a checkpoint;
  appends its records and drops the checkpoint."""
  checkpoint_dir = work.checkpoint_dir(name, [c.run_id for c in configs])
  curves = None

  def on_start(epoch):
    nonlocal curves
    curves = work.open_curves(name, epoch)
    bar.resumed(epoch)

  def on_epoch(epoch, terms):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)     # all NaN: every run stopped
      bar.epoch_done(float(np.nanmean(terms["loss"])))
    if curves is not None:
      curves.write(curve_line(epoch, terms))

  outcome = train_inputs(inputs, devices=devices, on_epoch=on_epoch, on_start=on_start,
                         on_eval=bar.evaluated, checkpoint_dir=checkpoint_dir)
  bar.end_chunk()
  if curves is not None:
    curves.close()
  work.write_eval_history(name, outcome.eval_history)
  extra = {**({"curves": name} if name != group else {}),
           **({"data_warnings": data_warnings} if data_warnings else {})}
  work.append([{**rec, **extra, "reference": reference_metrics(cfg)}
               for rec, cfg in zip(run_records(coords, configs, outcome, group), configs)])
  work.drop_checkpoint(checkpoint_dir)


@dataclasses.dataclass
class SweepEta:
  """The time a sweep has left, from what it has measured so far.

  Two costs, timed separately because they differ by orders of magnitude on a
  small group: a chunk's *start* (data to the device, `prepare` and `init`, the
  epoch's compile and its first epoch) and a *run-epoch* after that (one run for
  one epoch, its evaluations and checkpoints included). The time left is
      run-epochs left after the chunks' first epochs x mean seconds per run-epoch
    + chunks not yet past their first epoch      x mean seconds per start,
  so a sweep whose next group has yet to compile counts that compile. None
  until a start and, if run-epochs are left, a later epoch have been timed.
  """
  run_epochs_left: int = 0
  starts_left: int = 0
  start_seconds: float = 0.0
  starts_done: int = 0
  run_epoch_seconds: float = 0.0
  run_epochs_done: int = 0

  def add_chunk(self, runs: int, max_epochs: int) -> None:
    """A chunk of `runs` runs of up to `max_epochs` epochs, still to train."""
    self.run_epochs_left += runs * (max_epochs - 1)
    self.starts_left += 1

  def started(self, seconds: float | None) -> None:
    """A chunk's first epoch ended `seconds` after the chunk began (None: the
    chunk ended without training an epoch, e.g. resumed at its last)."""
    self.starts_left -= 1
    if seconds is not None:
      self.starts_done += 1
      self.start_seconds += seconds

  def trained(self, run_epochs: int, seconds: float) -> None:
    self.run_epochs_left -= run_epochs
    self.run_epochs_done += run_epochs
    self.run_epoch_seconds += seconds

  def skipped(self, run_epochs: int) -> None:
    """Run-epochs that will not be trained (resumed past them, or every run stopped)."""
    self.run_epochs_left -= run_epochs

  def seconds_left(self) -> float | None:
    if not self.starts_done and self.starts_left:
      return None
    if not self.run_epochs_done and self.run_epochs_left:
      return None
    per_start = self.start_seconds / max(self.starts_done, 1)
    per_run_epoch = self.run_epoch_seconds / max(self.run_epochs_done, 1)
    return self.starts_left * per_start + self.run_epochs_left * per_run_epoch


def format_seconds(seconds: float | None) -> str:
  """H:MM:SS or MM:SS; '?' while unknown."""
  if seconds is None:
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclasses.dataclass
class _Chunk:
  runs: int
  max_epochs: int
  last: float                 # clock at its start, then at its latest epoch
  epochs: int = 0             # epochs counted on the bar
  started: bool = False       # its first epoch (the compiling one) has ended
  steady_left: int = 0        # its run-epochs still in the ETA
  training: int | None = None  # its runs not yet stopped, as of the latest validation


class SweepProgress:
  """The sweep's progress bar: epochs of all chunks, done / total, with
  `SweepEta`'s ETA (tqdm's own extrapolates the epoch rate so far, which knows
  nothing of the groups still to compile)."""

  def __init__(self, enabled: bool, clock: Callable[[], float] = time.perf_counter):
    from tqdm.auto import tqdm
    self.eta, self.clock, self.loss = SweepEta(), clock, None
    self.bar = tqdm(total=0, unit="epoch", disable=not enabled, dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    self.chunk: _Chunk | None = None

  def add_chunk(self, runs: int, max_epochs: int) -> None:
    self.bar.total += max_epochs
    self.eta.add_chunk(runs, max_epochs)
    self._show()

  def more_chunks(self, extra: int, max_epochs: int) -> None:
    """A group added as one chunk is cut into `extra` more (the same runs)."""
    self.bar.total += extra * max_epochs
    self.eta.starts_left += extra

  def start_chunk(self, runs: int, max_epochs: int, description: str,
                  began: float | None = None) -> None:
    """A chunk starts now (or at clock `began`, where its group began to be built)."""
    self.chunk = _Chunk(runs, max_epochs, self.clock() if began is None else began,
                        steady_left=runs * (max_epochs - 1))
    self.bar.set_description(description, refresh=False)
    self._show()

  def resumed(self, epoch: int) -> None:
    """The chunk continues after `epoch` epochs done before (no time spent here)."""
    c = self.chunk
    done = min(c.runs * epoch, c.steady_left)
    self.eta.skipped(done)
    c.steady_left -= done
    c.epochs += epoch
    self.bar.update(epoch)

  def epoch_done(self, loss: float) -> None:
    c, now = self.chunk, self.clock()
    if c.started:
      self.eta.trained(c.runs, now - c.last)
      c.steady_left -= c.runs
    else:
      self.eta.started(now - c.last)
      c.started = True
    c.last, c.epochs, self.loss = now, c.epochs + 1, loss
    self.bar.update(1)
    self._show()

  def evaluated(self, epoch: int, training: int) -> None:
    """A validation at `epoch` left `training` of the chunk's runs training (the
    stopping rule's progress: long sweeps otherwise show only the epoch ceiling)."""
    self.chunk.training = training
    self._show()

  def end_chunk(self) -> None:
    """The chunk ended (finished, all its runs stopped early, or it failed)."""
    c = self.chunk
    if not c.started:
      self.eta.started(None)
    self.eta.skipped(c.steady_left)
    self.bar.update(max(c.max_epochs - c.epochs, 0))
    self.chunk = None
    self._show()

  def _show(self) -> None:
    text = f"ETA {format_seconds(self.eta.seconds_left())}"   # tqdm puts ", " before it
    if self.loss is not None:
      text += f", loss={self.loss:.4f}"      # NaN: every run has stopped
    if self.chunk is not None and self.chunk.training is not None:
      text += f", {self.chunk.training}/{self.chunk.runs} runs training"
    self.bar.set_postfix_str(text)

  def close(self) -> None:
    self.bar.close()
