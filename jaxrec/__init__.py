"""jaxrec: multimodal recommendation with missing modalities, swept on accelerators.

The public surface: losses and environments to build objectives from, the model
interface and registry, the one evaluator, and the sweep API. Reports
(selection on validation, significance, tables) are `jaxrec.analysis`, imported
on its own so that scipy loads only where it is used.
"""
from jaxrec import envs, losses
from jaxrec.config import RunConfig, make_config
from jaxrec.data.dataset import Dataset
from jaxrec.data.synthetic import make_synthetic
from jaxrec.errors import InputError
from jaxrec.eval import evaluate, make_eval_split
from jaxrec.models import (MILK, Batch, HParam, Model, ModelInputs, ModelSpec, StepContext,
                           get_model, register_model)
from jaxrec.grid import Grid
from jaxrec.sweep import run_sweep, train_configs

__all__ = [
    "envs", "losses", "InputError", "RunConfig", "make_config", "Dataset",
    "make_synthetic", "evaluate", "make_eval_split", "MILK", "Batch", "HParam", "Model", "ModelInputs",
    "ModelSpec", "StepContext", "get_model", "register_model", "Grid", "run_sweep", "train_configs",
]
__version__ = "0.1.0"
