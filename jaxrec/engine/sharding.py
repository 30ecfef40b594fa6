"""The runs axis, sharded over every device of every process (`jax.sharding`).

Runs are independent, so sharding their leading axis needs no communication;
shared data (features, splits) is replicated. A group whose size does not divide
the device count is padded with copies of its last run, discarded afterwards.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUNS_AXIS = "runs"


def runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices), (RUNS_AXIS,))


def runs_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh: each device trains its own runs."""
  return NamedSharding(mesh, PartitionSpec(RUNS_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def padded_size(n_runs: int, mesh: Mesh) -> int:
  n_dev = mesh.devices.size
  return -(-n_runs // n_dev) * n_dev


def pad_runs(tree, n_runs: int, target: int):
  """Pads every leaf's leading axis from n_runs to target by repeating the last run."""
  if target == n_runs:
    return tree
  idx = np.minimum(np.arange(target), n_runs - 1)
  return jax.tree.map(lambda x: np.asarray(x)[idx], tree)
