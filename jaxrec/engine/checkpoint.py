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

A disk that fills up while a checkpoint is written stops the sweep with one
line naming the directory; the partial checkpoint is removed (and the group's
directory too if it holds no complete one). `check_room` refuses a group whose
checkpoints would not fit the free disk before it starts training.
"""
from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrec import errors
from jaxrec.errors import InputError

KEEP = 2
ROOM_SLACK = 16 * 2**20     # metadata, evaluation history, the filesystem's own blocks


class _Damaged(Exception):
  """A checkpoint step that cannot be read back."""


def _is_orbax_coroutine(unraisable) -> bool:
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and ("orbax" in code.co_filename or "tensorstore" in code.co_filename)


def _drop_orbax_coroutines(hook):
  def filtered(unraisable):
    if not _is_orbax_coroutine(unraisable):
      hook(unraisable)
  filtered.drops_orbax_coroutines = True
  return filtered


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax leaves a failed read's sibling reads un-awaited, and Python would print
  each one's traceback ("Exception ignored in: <coroutine ...>") when it is
  collected, now or at exit; it also logs each failure with its traceback. The
  failure itself is reported in one line by the caller."""
  if not getattr(sys.unraisablehook, "drops_orbax_coroutines", False):
    sys.unraisablehook = _drop_orbax_coroutines(sys.unraisablehook)   # for later collections
  hook, absl = sys.unraisablehook, logging.getLogger("absl")
  level = absl.level
  sys.unraisablehook = lambda _: None
  absl.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook
    absl.setLevel(level)


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
    with _quiet_orbax():      # it reads every step's metadata, which may be damaged
      return ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=KEEP,
                                               enable_async_checkpointing=False))

  def check_room(self, state) -> None:
    """Refuses, before a group trains, a disk without room for its checkpoints:
    `KEEP` kept and one being written, of `state`'s size each."""
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize
                      for x in jax.tree.leaves(state))
    need = (KEEP + 1) * state_bytes + ROOM_SLACK - _bytes_under(self.directory)
    free = errors.free_bytes(self.directory)
    if free < need:
      if not self.manager.all_steps():
        self.delete()                # nothing of this group is left behind
      raise InputError(
          f"{self.directory}: {errors.mib(free)} free on its disk, but this group's "
          f"checkpoints need about {errors.mib(need)} ({KEEP} kept + 1 being written, "
          f"{errors.mib(state_bytes)} each); free space there, or pass a --workdir on a "
          "disk with room")

  def save(self, epoch: int, state, meta: dict) -> None:
    try:
      with _quiet_orbax():
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()
    except Exception as err:    # pylint: disable=broad-except
      if not errors.is_disk_full(err):
        raise
      self._discard_partial(epoch)
      raise errors.disk_full(self.directory,
                             f"writing the checkpoint of epoch {epoch}") from None

  def _discard_partial(self, epoch: int) -> None:
    """Removes a checkpoint that failed mid-write (orbax's temporary directory),
    and the group's directory if no complete checkpoint is left in it."""
    for partial in glob.glob(os.path.join(self.directory, f"{epoch}.orbax-checkpoint-tmp*")):
      shutil.rmtree(partial, ignore_errors=True)
    self.manager.close()
    self.manager = self._open()
    if not self.manager.all_steps():
      self.delete()

  def _restore_step(self, epoch: int, abstract):
    try:
      with _quiet_orbax():
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
    with _quiet_orbax():
      steps = sorted(self.manager.all_steps(), reverse=True)
    for epoch in steps:
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


def _bytes_under(directory: str) -> int:
  return sum(os.path.getsize(os.path.join(root, n))
             for root, _, names in os.walk(directory) for n in names)


def to_json(tree):
  """Host arrays -> lists, for the JSON metadata."""
  return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
