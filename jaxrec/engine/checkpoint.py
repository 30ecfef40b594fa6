"""Checkpoints of a run group's stacked state with orbax-checkpoint.

One directory per group; the latest evaluation's state is kept (orbax writes to
a temporary directory and renames it, so a killed process leaves either the old
or the new checkpoint, never a torn one). Host-side bookkeeping (evaluation
history, timings) is saved beside the arrays as JSON in the same step.
"""
from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp


class GroupCheckpointer:
  """Save / restore (epoch, stacked TrainState, metadata) for one group."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=1,
                                             enable_async_checkpointing=False))

  def save(self, epoch: int, state, meta: dict) -> None:
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def restore(self, like_state):
    """(epoch, state, meta) of the latest checkpoint, or None if there is none.

    `like_state` gives the structure, shapes, dtypes and shardings to restore to.
    """
    epoch = self.manager.latest_step()
    if epoch is None:
      return None
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state)
    try:
      restored = self.manager.restore(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except ValueError as e:
      if "tree structures do not match" not in str(e):
        raise
      raise ValueError(
          f"the checkpoint {self.directory} (epoch {epoch}) holds a training state of a "
          "different structure than this version of jaxrec trains (written by an older "
          "version, or the model's state changed). Finish it with the version that wrote it, "
          "or move the directory away to restart this group; finished runs' results are "
          f"kept either way. Orbax says: {e}") from e
    return epoch, restored.state, restored.meta

  def delete(self) -> None:
    self.manager.close()
    shutil.rmtree(self.directory, ignore_errors=True)


def to_json(tree):
  """Host arrays -> lists, for the JSON metadata."""
  return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
