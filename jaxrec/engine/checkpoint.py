"""Checkpoints of a run group's stacked state with orbax-checkpoint.

One directory per group, holding the last `KEEP` evaluations' states (orbax
writes to a temporary directory and renames it, so a killed process leaves
either the old or the new checkpoint, never a torn one). Host-side
bookkeeping (evaluation history, timings) is saved beside the arrays as JSON in
the same step.

A checkpoint damaged after it was written (a truncated array file, edited
metadata, a disk that filled up) is skipped: `restore` falls back to the
previous one, deletes the damaged ones so that training can write them again,
and says so in `skipped`. Only when none can be read does it stop, with the
directory and what to do.
"""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrec.errors import InputError

KEEP = 2


class _Damaged(Exception):
  """A checkpoint step that cannot be read back."""


@contextlib.contextmanager
def _quiet_unraisable():
  """Orbax leaves a failed read's sibling reads un-awaited, and Python would print
  each one's traceback when it is collected; the failure itself is reported."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda _: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook


def _one_line(err: BaseException, most: int = 160) -> str:
  # TensorStore appends its whole spec after this phrase; the first part says it.
  text = " ".join(str(err).split("See full TensorStore")[0].split()) or type(err).__name__
  return text if len(text) <= most else text[:most - 3] + "..."


class GroupCheckpointer:
  """Save / restore (epoch, stacked TrainState, metadata) for one group.

  Attributes:
    directory: the group's checkpoint directory.
    skipped: after `restore`, one line per damaged checkpoint it skipped.
  """

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.skipped: tuple[str, ...] = ()
    self.manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=KEEP,
                                             enable_async_checkpointing=False))

  def save(self, epoch: int, state, meta: dict) -> None:
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def _restore_step(self, epoch: int, abstract):
    try:
      with _quiet_unraisable():
        return self.manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except ValueError as e:
      if "tree structures do not match" not in str(e):
        raise _Damaged(_one_line(e)) from e
      raise InputError(
          f"the checkpoint {self.directory} (epoch {epoch}) holds a training state of a "
          "different structure than this version of jaxrec trains (written by an older "
          "version, or the model's state changed). Finish it with the version that wrote it, "
          "or move the directory away to restart this group; finished runs' results are "
          f"kept either way. Orbax says: {_one_line(e)}") from e
    except Exception as e:    # tensorstore raises bare Exceptions; KeyError: a part is gone
      raise _Damaged(_one_line(e)) from e

  def _drop(self, epochs) -> None:
    for epoch in epochs:
      shutil.rmtree(os.path.join(self.directory, str(epoch)), ignore_errors=True)
    self.manager.close()
    self.manager = self._open()

  def restore(self, like_state):
    """(epoch, state, meta) of the latest readable checkpoint, or None if there is none.

    `like_state` gives the structure, shapes, dtypes and shardings to restore to.
    Damaged checkpoints newer than the one restored are deleted and listed in
    `skipped`; if none can be read, `InputError` names the directory.
    """
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state)
    damaged = []
    for epoch in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self._restore_step(epoch, abstract)
      except _Damaged as e:
        damaged.append((epoch, str(e)))
        continue
      if damaged:
        self._drop(e for e, _ in damaged)
      self.skipped = tuple(f"{self.directory}: the checkpoint of epoch {e} is damaged "
                           f"({why}); resumed from epoch {epoch} instead"
                           for e, why in damaged)
      return epoch, restored.state, restored.meta
    if not damaged:
      return None
    epochs = ", ".join(str(e) for e, _ in damaged)
    raise InputError(
        f"{self.directory}: no checkpoint can be read (epochs {epochs}; epoch "
        f"{damaged[0][0]}: {damaged[0][1]}); delete that directory to restart this group "
        "from epoch 0 (finished runs' results are kept)")

  def delete(self) -> None:
    self.manager.close()
    shutil.rmtree(self.directory, ignore_errors=True)


def to_json(tree):
  """Host arrays -> lists, for the JSON metadata."""
  return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
