"""Which runs the device rows of a group hold (compaction of the runs axis).

A stopped run still costs a full row of every vmapped step, so once the runs
still training fit in `TrainSettings.compact_at` of the rows, the rows of the
runs still training are gathered into a shorter axis (one recompilation) and
the stopped runs' states are parked on the host, where they no longer change.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxrec.engine import sharding


class RunsLayout:
  """Which runs the device rows hold, and the final states of runs taken off them.

  Rows are the first `len(active)` entries of the runs axis (padded to the
  device count with copies of the last). `compact` gathers the rows of runs
  still training into a shorter axis and parks the stopped runs' states on the
  host, where they no longer change; `merge` puts them back in run order.
  """

  def __init__(self, n_runs: int, mesh: jax.sharding.Mesh, runs):
    self.n_runs, self.mesh = n_runs, mesh
    self.active = np.arange(n_runs)
    self.runs = runs              # device RunInputs of the active rows
    self.parked = None            # host TrainState of all runs, once any is parked
    self._gather = jax.jit(lambda tree, rows: jax.tree.map(lambda x: x[rows], tree),
                           out_shardings=sharding.runs_sharding(mesh))

  @property
  def compacted(self) -> bool:
    return self.parked is not None

  def host(self, tree):
    """Host copy of a tree on the full (uncompacted) axis, padding dropped."""
    return jax.tree.map(lambda x: x[:self.n_runs], sharding.to_host(tree))

  def rows(self, tree):
    """Host copy of a device tree's rows that hold active runs."""
    return jax.tree.map(lambda x: x[:len(self.active)], sharding.to_host(tree))

  def merge(self, base, active_rows):
    """`base` (host, all runs) with the active runs' rows replaced."""
    def put(full, part):
      full = np.array(full, copy=True)
      full[self.active] = part
      return full
    return jax.tree.map(put, base, active_rows)

  def full_state(self, state, pick=lambda s: s):
    """Host `pick(state)` for all runs, in run order."""
    if not self.compacted:
      return self.host(pick(state))
    return self.merge(pick(self.parked), self.rows(pick(state)))

  def should_compact(self, state, compact_at: float) -> np.ndarray | None:
    """The active rows to keep, if so few still train that compacting pays."""
    keep = ~self.rows(state.stopped)
    n_rows = sharding.padded_size(len(self.active), self.mesh)
    if not keep.any() or sharding.padded_size(int(keep.sum()), self.mesh) > compact_at * n_rows:
      return None
    return keep

  def compact(self, state, keep: np.ndarray):
    """Keeps the rows `keep` (bool over active rows); parks the others' states."""
    self.parked = self.full_state(state)
    kept = np.flatnonzero(keep)
    rows = sharding.pad_runs(kept, len(kept), sharding.padded_size(len(kept), self.mesh))
    rows = sharding.to_device(rows, sharding.replicated(self.mesh))
    self.active = self.active[kept]
    self.runs = self._gather(self.runs, rows)
    return self._gather(state, rows)

  def all_runs(self, tree, parked_values=None):
    """Host arrays of all runs from a device tree of active rows; the parked
    runs take `parked_values` (a host tree of all runs), or NaN."""
    rows = self.rows(tree)
    if parked_values is None:
      parked_values = jax.tree.map(
          lambda x: np.full((self.n_runs,) + x.shape[1:], np.nan, x.dtype), rows)
    return self.merge(parked_values, rows)

  def to_device_full(self, host_tree):
    """A host tree of all runs, padded and sharded like the uncompacted runs axis."""
    target = sharding.padded_size(self.n_runs, self.mesh)
    return sharding.to_device(sharding.pad_runs(host_tree, self.n_runs, target),
                              sharding.runs_sharding(self.mesh))
