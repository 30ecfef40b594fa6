"""The one error type for problems a user can fix: a bad file, id, value or directory."""
from __future__ import annotations

import difflib
import errno
import os
import shutil
import tempfile


class InputError(ValueError):
  """A user-facing problem with the input, stated in one line.

  The message names the file (and the line, row or id), what was found and
  what was expected, and where it helps, what to do; the command line prints
  `str(err)` alone, without a traceback. A `ValueError` so that callers that
  caught the older errors keep working.
  """


def did_you_mean(name: str, known) -> str:
  """" (did you mean 'x'?)" for the closest of `known` to a mistyped `name`, or ""."""
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


# How a full disk reads: Python's OSError, and TensorStore's (orbax's writer)
# "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']".
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded",
                   f"os_error_code='{errno.ENOSPC}'")


def _chain(err: BaseException):
  seen = set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    yield err
    err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
  """Whether `err` (or an error it was raised from) is a write to a full disk."""
  return any((isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS)
             or any(t in str(e) for t in _DISK_FULL_TEXT) for e in _chain(err))


def free_bytes(path: str) -> int:
  """Free bytes on the disk that holds `path` (or would: its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def not_writable(folder: str) -> str | None:
  """Why nothing can be written in the existing `folder` (e.g. "Read-only file
  system"), or None if it can be (or does not exist yet). Tried, not `os.access`,
  which root passes on many filesystems where writes then fail."""
  if not os.path.isdir(folder):
    return None
  try:
    with tempfile.TemporaryFile(dir=folder):
      return None
  except OSError as err:
    return err.strerror or str(err)


def mib(n: int) -> str:
  return f"{n / 2**20:.1f} MiB"


def disk_full(path: str, doing: str) -> InputError:
  """The one line for a disk that filled up while `doing` under `path`."""
  return InputError(
      f"{path}: the disk is full ({mib(free_bytes(path))} free) {doing}; free space on it and "
      "run the same command again (finished runs are kept, the group resumes from its last "
      "checkpoint), or start over with a --workdir on a disk with room")
