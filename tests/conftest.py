"""Test session setup: a persistent XLA compilation cache shared by all tests.

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
