"""The mixture: which task each training example of a step comes from.

Base frequencies give the i.i.d. draw of every example; injection schedules then overwrite a
schedule-determined number of examples, at random positions, with their task. Tasks that a
schedule targets are taken out of the base mixture (their base frequency is 0 and the rest are
renormalised), so they appear exactly as often as their schedules say. Task ids of a batch are a
pure function of (key, step): runs are deterministic and resumable by construction.
"""

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference.data.schedules import Schedule, realised_counts
from scaling_interference.errors import ConfigError


def base_frequencies(frequencies_K: np.ndarray, schedules: list[Schedule]) -> np.ndarray:
  p = np.asarray(frequencies_K, np.float64).copy()
  p[[s.task for s in schedules]] = 0.0
  if p.sum() <= 0:
    raise ConfigError(
      "inject: every task with a base frequency is injected; leave at least one task in the base mixture"
    )
  return p / p.sum()


class Mixture:
  """Base frequencies plus injection schedules."""

  def __init__(self, frequencies_K: np.ndarray, schedules: list[Schedule] = ()):
    self.schedules = list(schedules)
    self.base = base_frequencies(frequencies_K, self.schedules)
    cdf_K = np.cumsum(self.base)
    cdf_K[np.flatnonzero(self.base)[-1] :] = 1.0  # u < 1 never lands past the last task with mass
    self.cdf_K = jnp.asarray(cdf_K, jnp.float32)

  def task_ids(self, key, step, batch_size: int):
    """(B,) int32 task id of each example at `step`."""
    base_key, slot_key = jax.random.split(key)
    u_B = jax.random.uniform(base_key, (batch_size,))
    task_B = jnp.searchsorted(self.cdf_K, u_B, side="right").astype(jnp.int32)  # one uniform per example
    if not self.schedules:
      return task_B
    rank_B = jax.random.permutation(slot_key, batch_size)  # slot order: injected examples take the lowest ranks
    start = jnp.int32(0)
    for schedule in self.schedules:
      stop = start + schedule.counts(jnp.asarray(step, jnp.int32))
      task_B = jnp.where((rank_B >= start) & (rank_B < stop), schedule.task, task_B)
      start = stop
    return task_B

  def realised_frequencies(self, steps: int, batch_size: int) -> np.ndarray:
    """Long-run share of each task over `steps` steps: base draws in the slots injection leaves."""
    counts_SxZ = realised_counts(self.schedules, steps)
    total = max(steps * batch_size, 1)
    injected_Z = counts_SxZ.sum(axis=0) / total
    p = self.base * (1.0 - injected_Z.sum())
    for schedule, share in zip(self.schedules, injected_Z, strict=True):
      p[schedule.task] += share
    return p
