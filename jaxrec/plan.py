"""A sweep's plan: its groups, runs, programs, memory and an estimated wall time.

`python -m experiments.sweep --grid G --plan` prints it before anything trains,
so a user knows whether a grid fits the night. Nothing is trained to the end
and nothing is written: the work directory is only read (its finished runs are
left out of the plan, as the sweep would skip them).

Each unfinished group is built as the sweep builds it and its programs are
compiled and timed on the devices the sweep would use:
  setup     data to the device, the runs' `prepare` and `init` (compiled and run);
  epoch     the epoch program cut to `timed_steps` mini-batches (the same scan
            body as the full epoch, so the same compile), compiled, run once to
            warm up, then timed; seconds per step = that time / steps;
  evaluate  the validation program, compiled, then timed;
  select    the early-stopping update, compiled (its run is negligible).
The group's estimate is
  build + setup + compile + epochs x steps per epoch x seconds per step
  + 2 evaluation compiles (validation, test) + evaluations x seconds per evaluation,
per chunk (+ the memory planner's compiles where the sweep plans memory). With
`epochs` = max_epochs it is the ceiling (no run stops early); the floor is every
run stopping at the earliest epoch the early-stopping rule allows
(`earliest_stop`). Work a model does once per epoch (`pre_epoch`) is timed once
per `timed_steps` steps, so for such models the estimate leans high. The
report written at the end (seconds) is not included.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from jaxrec.engine import memory
from jaxrec.engine.inputs import GroupInputs, build_group
from jaxrec.engine.train import GroupLoop, GroupTrainer, TrainSettings, evaluation_due
from jaxrec.grid import Grid
from jaxrec.sweep import (check_data, chunk_sizes, format_seconds, plan_groups, sweep_line,
                          runs_left)
from jaxrec.workdir import WorkDir

TIMED_STEPS = 3          # mini-batches per timed call: enough to time, far less than an epoch
PROGRAMS_PER_CHUNK = 6   # prepare, init, epoch, select, evaluate on validation and on test
PLANNER_PROGRAMS = 4     # memory.estimate: epoch and evaluate at R = 1 and 2


@dataclasses.dataclass(frozen=True)
class GroupPlan:
  """One group of the plan, with what was measured for it (seconds)."""
  name: str
  runs: int
  chunks: tuple[int, ...]      # runs per chunk
  settings: TrainSettings
  steps_per_epoch: int
  memory_bytes: int            # the timed chunk's epoch or evaluation program, the larger
  planner_programs: int        # the memory planner's compiles (0 where there is no budget)
  build_s: float               # data and runs built on the host (once per group)
  planner_s: float             # the memory planner (once per group)
  setup_s: float               # to the device, prepare, init (per chunk)
  compile_s: float             # the epoch and the selection programs
  step_s: float                # one mini-batch of the chunk's runs
  eval_compile_s: float
  eval_s: float

  @property
  def programs(self) -> int:
    return PROGRAMS_PER_CHUNK * len(self.chunks) + self.planner_programs

  @property
  def epoch_s(self) -> float:
    return self.steps_per_epoch * self.step_s

  @property
  def earliest_stop(self) -> int:
    """Epochs after which every run has stopped at the earliest: its first
    validation sets the best score, then `patience` validations without a gain."""
    s = self.settings
    return min(s.max_epochs, s.first_stage_epochs + (1 + s.patience) * s.eval_every)

  def evaluations(self, epochs: int) -> int:
    """Validations in `epochs` epochs, and the final test."""
    return sum(evaluation_due(self.settings, e) for e in range(1, epochs + 1)) + 1

  def seconds(self, epochs: int | None = None) -> float:
    """Estimated wall of the group if every run trains `epochs` (default max_epochs)."""
    epochs = self.settings.max_epochs if epochs is None else epochs
    per_chunk = (self.setup_s + self.compile_s + epochs * self.epoch_s
                 + 2 * self.eval_compile_s + self.evaluations(epochs) * self.eval_s)
    return self.build_s + self.planner_s + len(self.chunks) * per_chunk


@dataclasses.dataclass(frozen=True)
class SweepPlan:
  header: str                  # the sweep's own first line (runs, groups, done, devices)
  check_s: float               # reading and checking the grid's data
  groups: list[GroupPlan]

  def ceiling_s(self) -> float:
    """Every run to max_epochs: the early-stopping rule can only shorten it."""
    return self.check_s + sum(g.seconds() for g in self.groups)

  def floor_s(self) -> float:
    """Every run stopped at the earliest epoch the rule allows."""
    return self.check_s + sum(g.seconds(g.earliest_stop) for g in self.groups)


def time_chunk(inputs: GroupInputs, devices, timed_steps: int) -> dict:
  """Compiles and times one chunk's programs (see the module doc); trains nothing to the end."""
  t0 = time.perf_counter()
  loop = GroupLoop(inputs.model, inputs.spec, inputs.settings, inputs.data, inputs.runs,
                   devices, checkpoint_dir=None)
  jax.block_until_ready(loop.state)
  setup_s = time.perf_counter() - t0
  settings, data = inputs.settings, loop.data
  n_train = int(data.train_pairs.shape[0])
  steps = min(timed_steps, loop.trainer.n_batches)
  few = GroupTrainer(inputs.model, inputs.spec, settings, min(n_train, steps * settings.batch_size),
                     loop.trainer.mesh)
  epoch = jnp.int32(0)
  t0 = time.perf_counter()
  program = few.epoch.lower(loop.state, loop.layout.runs, data, epoch).compile()
  compile_s = time.perf_counter() - t0
  state, terms = program(loop.state, loop.layout.runs, data, epoch)      # warm-up
  jax.block_until_ready(terms)
  t0 = time.perf_counter()
  state, terms = program(state, loop.layout.runs, data, epoch)
  jax.block_until_ready(terms)
  step_s = (time.perf_counter() - t0) / steps
  trainer = loop.trainer
  args = (state.params, trainer.hooks.embed_aux(state.aux), loop.layout.runs, data, data.val,
          trainer.eval_chunk(loop.n_runs, data.val.items.shape[0]))
  t0 = time.perf_counter()
  evaluate = trainer.evaluate.lower(*args).compile()
  eval_compile_s = time.perf_counter() - t0
  jax.block_until_ready(evaluate(*args[:-1]))                             # warm-up
  t0 = time.perf_counter()
  val = jax.block_until_ready(evaluate(*args[:-1]))
  eval_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  trainer.select.lower(state, val).compile()
  compile_s += time.perf_counter() - t0
  memory_bytes = max(memory._program_bytes(program), memory._program_bytes(evaluate))  # pylint: disable=protected-access
  return dict(setup_s=setup_s, compile_s=compile_s, step_s=step_s,
              steps_per_epoch=trainer.n_batches, eval_compile_s=eval_compile_s,
              eval_s=eval_s, memory_bytes=memory_bytes)


def plan_group(name: str, configs, devices, budget: int | None,
               timed_steps: int = TIMED_STEPS) -> GroupPlan:
  """Builds, compiles and times one group as the sweep would run it."""
  t0 = time.perf_counter()
  inputs = build_group(configs)
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  size = chunk_sizes(inputs, budget, len(devices))
  planner_s = time.perf_counter() - t0
  chunks = memory.chunk(list(range(inputs.n_runs)), size)
  timed = time_chunk(inputs.chunk(chunks[0]), devices, timed_steps)
  return GroupPlan(name=name, runs=inputs.n_runs, chunks=tuple(len(c) for c in chunks),
                   settings=inputs.settings, planner_programs=PLANNER_PROGRAMS if budget else 0,
                   build_s=build_s, planner_s=planner_s, **timed)


def plan_sweep(grid: Grid, workdir: str, *, devices=None,
               memory_budget_bytes: int | None = None,
               timed_steps: int = TIMED_STEPS) -> SweepPlan:
  """The plan of `run_sweep(grid, workdir, ...)`.

  Checks the grid and its data as the sweep does; reads the work directory
  (a different grid there is refused; its finished runs are left out) and
  writes nothing.
  """
  t0 = time.perf_counter()
  groups = plan_groups(grid)
  data_files, _ = check_data(groups)
  check_s = time.perf_counter() - t0
  WorkDir(workdir).check(grid.to_json(), data_files)
  devices = list(devices or jax.devices())
  budget = memory_budget_bytes or memory.device_budget_bytes(jax.local_devices()[0])
  todo = runs_left(groups, WorkDir(workdir).done_ids())
  plans = [plan_group(f"g{index:03d}-{group[0][1].model}", [cfg for _, cfg in group],
                      devices, budget, timed_steps)
           for index, group in todo]
  return SweepPlan(header=sweep_line(groups, todo, devices).replace("sweep:", "plan:", 1),
                   check_s=check_s, groups=plans)


def describe(plan: SweepPlan) -> str:
  """The plan as the command prints it: a line, a markdown table, the estimate."""
  lines = [plan.header + "; nothing is trained or written",
           "| group | runs | chunks | programs | memory MiB | epochs (earliest stop) | "
           "steps/epoch | start s | s/epoch | evaluations | s/evaluation | estimate |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for g in plan.groups:
    lines.append(
        f"| {g.name} | {g.runs} | {'+'.join(map(str, g.chunks))} | {g.programs} | "
        f"{g.memory_bytes / 2**20:.1f} | {g.settings.max_epochs} ({g.earliest_stop}) | "
        f"{g.steps_per_epoch} | {g.setup_s + g.compile_s + 2 * g.eval_compile_s:.1f} | "
        f"{g.epoch_s:.3g} | {g.evaluations(g.settings.max_epochs)} | {g.eval_s:.3g} | "
        f"≤ {format_seconds(g.seconds())} |")
  lines.append(
      f"estimated wall: ≤ {format_seconds(plan.ceiling_s())} ({plan.ceiling_s():.1f} s) "
      "with every run to max_epochs "
      f"(the ceiling); ≥ {format_seconds(plan.floor_s())} if every run stops at the earliest "
      "epoch the early-stopping rule allows; the report at the end is not counted")
  return "\n".join(lines)
