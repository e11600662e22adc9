"""The mixture: which task each training example of a step comes from.

The task ids of a batch are a pure function of (key, step): runs are deterministic and
resumable by construction.
"""
import jax
import jax.numpy as jnp
import numpy as np


class Mixture:
  """Base task frequencies, sampled i.i.d. per example."""

  def __init__(self, frequencies_K: np.ndarray):
    p = np.asarray(frequencies_K, np.float64)
    self.frequencies = p / p.sum()
    self.logits_K = jnp.asarray(np.where(p > 0, np.log(np.maximum(p, 1e-300)), -np.inf), jnp.float32)

  def task_ids(self, key, step, batch_size: int):
    """(B,) int32 task id of each example at `step`."""
    del step  # the base mixture does not change over time
    return jax.random.categorical(key, self.logits_K, shape=(batch_size,)).astype(jnp.int32)
