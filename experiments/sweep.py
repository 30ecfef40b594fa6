"""Runs a named grid of jaxrec runs, vmapped and sharded, and prints a results table.

  python -m experiments.sweep --grid missing_rates
  python -m experiments.sweep --grid smoke --seeds 3 --set lr=0.005 --axis alpha=0.01,0.1,1
  python -m experiments.sweep --grid newitem_compare --axis milk.penalty_weight=10,50
  python -m experiments.sweep --grid milk_main --tune     # every model over its search space
  python -m experiments.sweep --fields          # every field, its default and its source
  python -m experiments.sweep --grid milk_main --plan   # groups, memory, estimated wall
  python -m experiments.sweep --grid milk_main --done results/milk_main   # finish a table
  python -m experiments.sweep --grid milk_main --done runs/a,runs/b --notrain  # join, no training

Writes WORKDIR/results.jsonl (one line per run), WORKDIR/summary.{md,csv} and
per-group loss curves in WORKDIR/curves/. Re-running the same command resumes:
finished runs are kept, the rest are trained; `--done DIR` also takes the runs
recorded in DIR (e.g. results/<table>/ from an earlier session or machine). Shared fields apply to every run;
a model's field (`--set alpha=0.1`) to every run whose model reads it, and
`--set MODEL.FIELD=V` / `--axis MODEL.FIELD=...` to that model's runs only.
A bad flag, value or data file is one line on stderr and exit code 2.
"""
from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging

from experiments import configs
from jaxrec import cli
from jaxrec.errors import InputError
from jaxrec.grid import Grid, apply_overrides
from jaxrec.sweep import run_sweep

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
                          "Set a field: FIELD=VALUE (every run that reads it), or "
                          "MODEL.FIELD=VALUE (that model's runs, e.g. i3mrec.max_epochs=60).")
flags.DEFINE_multi_string("axis", [],
                          "Sweep a field: FIELD=V1,V2,... or MODEL.FIELD=V1,V2,... (a "
                          "per-model search space; replaces the grid's axis).")
flags.DEFINE_boolean("tune", False,
                     "Add every model's declared search space as its per-model axes (the "
                     "fields not set with --set; see --fields); the report then chooses each "
                     "model's point on validation.")
flags.DEFINE_list("done", [], "Work directories or results/<table>/ folders whose records of "
                  "this grid's runs are taken instead of training them (same configuration "
                  "and data files; the data folder's path may differ).")
flags.DEFINE_boolean("train", True,
                     "Train the runs not yet done. --notrain takes the --done records into "
                     "WORKDIR and writes its report only: a table finished over several "
                     "sessions or machines is joined this way, the runs still to train "
                     "named as missing in the report.")
flags.DEFINE_boolean("fields", False, "List every field (shared and per model) and exit.")
flags.DEFINE_boolean("plan", False,
                     "Print the groups, runs, compiled programs, memory per group and an "
                     "estimated wall time (each group compiled and a few steps timed), then "
                     "exit: nothing is trained or written (jaxrec/plan.py).")
flags.DEFINE_boolean("progress", True, "Show a progress bar.")
flags.DEFINE_boolean("verbose", False, "Print the traceback of a user error too (a bug always "
                     "prints it).")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, to run one sweep over several processes/hosts "
                    "(jax.distributed.initialize); every process runs the same command.")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.DEFINE_float("memory_budget_gb", None,
                   "Device memory per device for planning how many runs to train at once "
                   "(default: the accelerator's memory; no planning on CPU).")


def grid_from_flags() -> Grid:
  """The named grid with every command-line override applied."""
  return apply_overrides(
      configs.get_grid(FLAGS.grid), models=(FLAGS.model or "").split(","),
      seeds=FLAGS.seeds, epochs=FLAGS.epochs, data=FLAGS.data, sets=FLAGS.set,
      axes=FLAGS.axis, tune=FLAGS.tune)


def sweep() -> None:
  if FLAGS.fields:
    print(cli.describe_fields())
    return
  if FLAGS.memory_budget_gb is not None and FLAGS.memory_budget_gb <= 0:
    raise InputError(f"--memory_budget_gb {FLAGS.memory_budget_gb}: expected > 0")
  grid = grid_from_flags()
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  workdir = FLAGS.workdir or os.path.join("runs", FLAGS.grid)
  budget = int(FLAGS.memory_budget_gb * 2**30) if FLAGS.memory_budget_gb else None
  if FLAGS.plan:
    from jaxrec.plan import describe, plan_sweep
    print(describe(plan_sweep(grid, workdir, memory_budget_bytes=budget)))
    return
  run_sweep(grid, workdir, progress=FLAGS.progress, memory_budget_bytes=budget,
            done=FLAGS.done, train=FLAGS.train)
  if jax.process_index() == 0:
    print(f"results: {os.path.join(workdir, 'results.jsonl')}  "
          f"summary: {os.path.join(workdir, 'summary.md')}")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
    sys.exit(cli.USAGE_ERROR)
  logging.set_verbosity(logging.WARNING)   # keep JAX's backend probing out of the output
  sys.exit(cli.run(sweep, verbose=FLAGS.verbose))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags_or_exit)
