"""Model registry: every `Model` defined at module level in this package.

A new model is one file here that defines a `Model` (see base.py); it is found
and registered under its name, so configs and sweeps can use `model=<name>`.
"""
import importlib
import pkgutil

from jaxrec.errors import InputError
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                StepContext)
from jaxrec.models.i3mrec import I3MREC
from jaxrec.models.milk import MILK

__all__ = ["Batch", "HParam", "Hooks", "Model", "ModelInputs", "ModelSpec", "Run", "State",
           "StepContext", "MILK", "I3MREC", "REGISTRY",
           "register_model", "get_model"]

REGISTRY: dict[str, Model] = {}


def register_model(model: Model) -> Model:
  """Makes `model` available to configs and sweeps as `model=<model.name>`."""
  REGISTRY[model.name] = model
  return model


def _discover() -> None:
  for info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f"{__name__}.{info.name}")
    for value in vars(module).values():
      if isinstance(value, Model):
        register_model(value)


def get_model(name: str) -> Model:
  if name not in REGISTRY:
    raise InputError(f"unknown model {name!r}; available: {sorted(REGISTRY)}")
  return REGISTRY[name]


_discover()
