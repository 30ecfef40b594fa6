"""The one error type for problems a user can fix: a bad file, id, value or directory."""
from __future__ import annotations


class InputError(ValueError):
  """A user-facing problem with the input, stated in one line.

  The message names the file (and the line, row or id), what was found and
  what was expected, and where it helps, what to do; the command line prints
  `str(err)` alone, without a traceback. A `ValueError` so that callers that
  caught the older errors keep working.
  """
