"""Test session setup: a persistent XLA compilation cache shared by all tests
and the commands they run.

The engine builds fresh `jit`s for each group, so tests that train the same
group shape twice (a group, then its runs alone) would compile identical
programs again; the on-disk cache turns the repeats into loads. Results do not
change: the cache stores the compiled program, keyed by its HLO and options.
"""
import os
import tempfile

import jax

# One directory for all pytest-xdist workers (JAX writes entries atomically).
_CACHE_DIR = os.path.join(tempfile.gettempdir(), "jaxrec-test-xla-cache")
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
# The same cache for the commands the tests run as subprocesses (sweeps killed and
# resumed, the README's commands, the GPU check's dry run): a program one of them
# compiled is loaded by the next. A test that needs a cold cache sets its own.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def pytest_sessionfinish(session, exitstatus):
  """Frees JAX's compiled programs and freezes what is left before the session
  reports that it finished: pytest-xdist's controller then gives each worker 5 s
  to exit before it sends SIGINT, and a garbage collection over the heap of a
  whole test session (with JAX's callback on every one) could outlast that and
  end a passing run with a `KeyboardInterrupt` traceback. Frozen objects are
  not traversed by the collections during teardown."""
  import gc
  jax.clear_caches()
  gc.collect()
  gc.freeze()
