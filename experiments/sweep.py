"""Runs a named grid of jaxrec runs, vmapped and sharded, and prints a results table.

  python -m experiments.sweep --grid missing_rates
  python -m experiments.sweep --grid smoke --seeds 3 --set lr=0.005 --axis alpha=0.01,0.1,1

Writes WORKDIR/results.jsonl (one line per run), WORKDIR/summary.{md,csv} and
per-group loss curves in WORKDIR/curves/. Re-running the same command resumes:
finished runs are kept, the rest are trained. Every RunConfig field can be set
with --set or swept with --axis (see jaxrec/config.py for the fields).
"""
from __future__ import annotations

import os

import jax
from absl import app, flags, logging

from experiments import configs
from jaxrec import config as jconfig
from jaxrec.models import get_model
from jaxrec.sweep import Grid, run_sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("grid", "missing_rates",
                    f"Named grid in experiments/configs/: {configs.available()}.")
flags.DEFINE_string("workdir", None,
                    "Output directory (default: runs/<grid>). Reusing it resumes the sweep.")
flags.DEFINE_string("model", None,
                    "Model name, or a comma list to compare models in one sweep.")
flags.DEFINE_integer("seeds", None, "Number of seeds (sets the seed axis to 0..N-1).")
flags.DEFINE_integer("epochs", None, "Maximum epochs per run (max_epochs).")
flags.DEFINE_string("data", None, "'synthetic' (default) or a dataset path.")
flags.DEFINE_multi_string("set", [],
                          "Override a config field for every run: FIELD=VALUE; or for one "
                          "model's runs only: MODEL.FIELD=VALUE (e.g. i3mrec.max_epochs=60).")
flags.DEFINE_multi_string("axis", [],
                          "Sweep a config field: FIELD=V1,V2,... (replaces the grid's axis).")
flags.DEFINE_boolean("progress", True, "Show a progress bar.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, to run one sweep over several processes/hosts "
                    "(jax.distributed.initialize); every process runs the same command.")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.DEFINE_float("memory_budget_gb", None,
                   "Device memory per device for planning how many runs to train at once "
                   "(default: the accelerator's memory; no planning on CPU).")


def _split(assignment: str) -> tuple[str, str]:
  if "=" not in assignment:
    raise app.UsageError(f"expected FIELD=VALUE, got {assignment!r}")
  name, value = assignment.split("=", 1)
  return name.strip(), value


def grid_from_flags() -> Grid:
  """The named grid with every command-line override applied."""
  try:
    grid = configs.get_grid(FLAGS.grid)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  base, axes = dict(grid.base), dict(grid.axes)
  per_model = {m: dict(v) for m, v in grid.per_model.items()}

  def drop_per_model(name):
    for fields in per_model.values():
      fields.pop(name, None)

  def set_field(name, value):
    base[name] = value
    axes.pop(name, None)
    drop_per_model(name)

  try:
    if FLAGS.epochs is not None:
      set_field("max_epochs", FLAGS.epochs)
    if FLAGS.data is not None:
      set_field("data", FLAGS.data)
    if FLAGS.seeds is not None:
      axes["seed"] = list(range(FLAGS.seeds))
    if FLAGS.model is not None:
      models = [m.strip() for m in FLAGS.model.split(",") if m.strip()]
      if len(models) == 1:
        set_field("model", models[0])
      else:
        axes["model"] = models
    for assignment in FLAGS.set:
      name, value = _split(assignment)
      if "." in name:                      # MODEL.FIELD=VALUE: one model's runs only
        model, name = name.split(".", 1)
        get_model(model)                   # an unknown model name is a usage error
        per_model.setdefault(model, {})[name] = jconfig.parse_value(name, value)
      else:
        set_field(name, jconfig.parse_value(name, value))
    for assignment in FLAGS.axis:
      name, values = _split(assignment)
      if jconfig.FIELD_TYPES.get(name, "").startswith("tuple"):
        raise app.UsageError(f"--axis {name}: tuple fields cannot be swept")
      axes[name] = [jconfig.parse_value(name, v) for v in values.split(",")]
      base.pop(name, None)
      drop_per_model(name)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  return Grid(base=base, axes=axes, per_model=per_model)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)   # keep JAX's backend probing out of the output
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  grid = grid_from_flags()
  workdir = FLAGS.workdir or os.path.join("runs", FLAGS.grid)
  budget = int(FLAGS.memory_budget_gb * 2**30) if FLAGS.memory_budget_gb else None
  run_sweep(grid, workdir, progress=FLAGS.progress, memory_budget_bytes=budget)
  if jax.process_index() == 0:
    print(f"results: {os.path.join(workdir, 'results.jsonl')}  "
          f"summary: {os.path.join(workdir, 'summary.md')}")


if __name__ == "__main__":
  app.run(main)
