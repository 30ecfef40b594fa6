"""What the command lines share: one line per problem, exit codes, field help.

A mistake in a flag, a value or a data file (an `InputError`, the one type the
project raises for them) or a file the system refuses (`OSError`, which names
the path) is reported as one line on stderr, with exit code 2, before anything
is compiled; `--verbose` adds the traceback. Anything else (a KeyError, a
ValueError from inside a computation) is a bug: its traceback, then one line,
with exit code 1.
"""
from __future__ import annotations

import sys
import traceback
from typing import Callable

from jaxrec.errors import InputError

USAGE_ERROR = 2     # the user's flags, values or data
CRASH = 1           # anything else: a bug to report


def one_line(err: BaseException) -> str:
  text = " ".join(str(err).split()) or type(err).__name__
  return text if len(text) <= 600 else text[:597] + "..."


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort", "--helpfull",
              "-helpfull", "--helpxml", "-helpxml")


def _close_progress_bars() -> None:
  """Ends a progress bar's line, so that the message after it starts its own."""
  tqdm = sys.modules.get("tqdm")
  for bar in list(getattr(tqdm, "tqdm", None) and tqdm.tqdm._instances or ()):
    bar.close()


def run(command: Callable[[], object], *, verbose: bool = False) -> int:
  """Runs `command`; returns the process exit code, printing failures as one line."""
  try:
    command()
  except (InputError, OSError) as err:
    _close_progress_bars()
    if verbose:
      traceback.print_exc()
    print(f"error: {one_line(err)}", file=sys.stderr)
    return USAGE_ERROR
  except KeyboardInterrupt:
    _close_progress_bars()
    print("interrupted: run the same command again to resume", file=sys.stderr)
    return 130
  except Exception as err:      # pylint: disable=broad-except
    _close_progress_bars()
    traceback.print_exc()         # a bug: the traceback is what to report
    print(f"crash ({type(err).__name__}): {one_line(err)}", file=sys.stderr)
    return CRASH
  return 0


def parse_flags_or_exit(argv: list[str]) -> list[str]:
  """absl's flag parsing with a bad flag as one line and exit code 2 (no --help dump),
  and the help flags with exit code 0 (absl's own exit with 1 after printing it)."""
  from absl import flags
  argv = [argv[0]] + ["--help" if arg == "-h" else arg for arg in argv[1:]]
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    print(f"error: {one_line(err)} (see --help)", file=sys.stderr)
    sys.exit(USAGE_ERROR)
  except SystemExit:
    if any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
      sys.exit(0)
    raise


def describe_fields() -> str:
  """Every settable field: the shared ones, then each model's, with defaults and sources."""
  from jaxrec.config import SHARED_FIELDS, shared_field
  from jaxrec.models import REGISTRY
  lines = ["shared fields (every run):"]
  for name in SHARED_FIELDS:
    decl = shared_field(name)
    per_run = "per run" if decl.per_run else "per group"
    lines.append(f"  {name} = {decl.default!r}  [{per_run}{_range(decl)}]")
  for model in sorted(REGISTRY.values(), key=lambda m: m.name):
    lines.append(f"{model.name} (--set {model.name}.FIELD=V):")
    for h in model.hparams:
      per_run = "per run" if h.per_run else "per group"
      searched = (f"  --tune: {list(model.search_space[h.name])}"
                  if h.name in model.search_space else "")
      lines.append(f"  {h.name} = {h.default!r}  [{per_run}{_range(h)}]  {h.help}"
                   f"  (default: {h.source}){searched}")
  return "\n".join(lines)


def _range(h) -> str:
  if h.names_modality:
    return "; a modality name of the data"
  if h.choices:
    return f"; one of {list(h.choices)}"
  interval = h.interval()
  return f"; {interval}" if interval else ""
