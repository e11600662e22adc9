"""JAX's persistent compilation cache, on for training and analysis alike.

A second process on the same programs (a resumed run, a report rebuilt, the analysis of a run whose
members share shapes with an earlier one) loads them instead of compiling them again.
"""

import os

import jax

DEFAULT_CACHE = os.path.join("~", ".cache", "scaling_interference", "jax")
CACHE_ENV = "SCALING_INTERFERENCE_JAX_CACHE"


def enable_compilation_cache(path: str | None = None) -> None:
  """Turns on JAX's persistent compilation cache, small programs included."""
  path = os.path.expanduser(path or os.environ.get(CACHE_ENV, DEFAULT_CACHE))
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
