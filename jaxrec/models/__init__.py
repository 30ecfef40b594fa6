"""Model registry: every model is a `Model` of three pure functions."""
from jaxrec.models.base import Batch, Model, ModelInputs, ModelSpec
from jaxrec.models.i3mrec import I3MREC
from jaxrec.models.milk import MILK

REGISTRY = {MILK.name: MILK, I3MREC.name: I3MREC}


def register_model(model: Model) -> Model:
  """Makes `model` available to configs and sweeps as `model=<model.name>`."""
  REGISTRY[model.name] = model
  return model


def get_model(name: str) -> Model:
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; available: {sorted(REGISTRY)}")
  return REGISTRY[name]
