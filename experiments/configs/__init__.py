"""Named grids. Each module defines `get_config() -> jaxrec.Grid`.

`python -m experiments.sweep --grid NAME` runs the grid in `NAME.py`.
"""
import importlib
import pkgutil

from jaxrec.errors import InputError, did_you_mean
from jaxrec.grid import Grid


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__))


def get_grid(name: str) -> Grid:
  if name not in available():
    raise InputError(f"unknown grid {name!r}{did_you_mean(name, available())}; available: "
                     f"{available()}")
  return importlib.import_module(f"{__name__}.{name}").get_config()
