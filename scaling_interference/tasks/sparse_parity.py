"""Multitask sparse parity (after Michaud et al. 2023, "The quantization model").

Each task has its own random subset of k of the n bits. An example of task t is the
one-hot code of t followed by n uniform random bits; its label is the parity of the
bits in t's subset. The model outputs 2 logits.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling_interference import defaults
from scaling_interference.checks import is_int, require_int, value_of
from scaling_interference.errors import ConfigError
from scaling_interference.tasks.base import Array, Batch, Family, check_frequencies, frequencies_from_config, register


def draw_subsets(seed: int, num_tasks: int, n_bits: int, k: int) -> np.ndarray:
  """(K, k) sorted bit indices from `seed`; distinct across tasks when C(n, k) >= K."""
  rng = np.random.default_rng(seed)
  distinct = math.comb(n_bits, k) >= num_tasks
  subsets, seen = [], set()
  while len(subsets) < num_tasks:
    subset = tuple(sorted(rng.choice(n_bits, size=k, replace=False).tolist()))
    if distinct and subset in seen:
      continue
    seen.add(subset)
    subsets.append(subset)
  return np.asarray(subsets, dtype=np.int64)


@register
class SparseParity(Family):
  """K sparse parity tasks sharing n input bits, told apart by a one-hot task code."""

  name = "sparse_parity"
  has_accuracy = True

  def __init__(self, task_config):
    k_tasks, n = task_config.num_tasks, task_config.n_bits
    self.num_tasks, self.n_bits = k_tasks, n
    self.input_dim, self.output_dim = k_tasks + n, 2
    self.frequencies = frequencies_from_config(task_config)
    self.subsets_KxJ = draw_subsets(task_config.seed, k_tasks, n, task_config.k)
    self.mask_KxD = np.zeros((k_tasks, n), dtype=np.float32)
    np.put_along_axis(self.mask_KxD, self.subsets_KxJ, 1.0, axis=1)
    self.complexities = np.full(k_tasks, float(task_config.k))

  @classmethod
  def default_config(cls):
    return defaults.sparse_parity_task()

  @classmethod
  def validate_config(cls, task_config) -> None:
    check_frequencies(task_config)
    require_int(task_config, "task.n_bits", 1)
    n, k = task_config.n_bits, value_of(task_config, "task.k")
    if not is_int(k) or not 1 <= k <= n:
      raise ConfigError(f"task.k: must be an integer with 1 <= k <= n_bits ({n}), got {k!r}")

  def sample(self, key: Array, task_B: Array) -> Batch:
    b = task_B.shape[0]
    bits_BxD = jax.random.bernoulli(key, 0.5, (b, self.n_bits)).astype(jnp.float32)
    code_BxK = jax.nn.one_hot(task_B, self.num_tasks, dtype=jnp.float32)
    count_B = jnp.sum(bits_BxD * jnp.asarray(self.mask_KxD)[task_B], axis=-1)
    return Batch(
      x=jnp.concatenate([code_BxK, bits_BxD], axis=-1), y=count_B.astype(jnp.int32) % 2, task=task_B.astype(jnp.int32)
    )

  def loss(self, out_BxO: Array, batch: Batch) -> Array:
    """Softmax cross-entropy of the 2 logits against the parity label."""
    return optax.softmax_cross_entropy_with_integer_labels(out_BxO, batch.y)

  def accuracy(self, out_BxO: Array, batch: Batch) -> Array:
    return (jnp.argmax(out_BxO, axis=-1) == batch.y).astype(jnp.float32)

  def signal(self, task_T: Array, loss_T: Array, accuracy_T: Array | None, linear_fn=None) -> Array:
    """2 * accuracy - 1: 0 at chance, 1 when perfect."""
    return 2.0 * accuracy_T - 1.0

  def describe_example(self, x_I: np.ndarray, y, task: int) -> str:
    """The n bits, the task's subset and the parity."""
    bits = "".join(str(int(b)) for b in x_I[self.num_tasks :])
    return f"bits={bits} subset={self.subsets_KxJ[task].tolist()} -> parity={int(y)}"

  def probe_features(self, batch: Batch) -> list[tuple[np.ndarray, dict]]:
    """Fitted on task k's examples (the other bits act as noise), accuracy each.

    bit{b}: each bit b of the task's subset (ridge on 0/1, threshold 0.5); answer: the parity.
    """
    x, y, task_N = np.asarray(batch.x, np.float64), np.asarray(batch.y, np.float64), np.asarray(batch.task)
    k = self.num_tasks
    return [
      (
        task_N == t,
        {(t, f"bit{b}"): ("accuracy", x[:, k + b : k + b + 1]) for b in self.subsets_KxJ[t]}
        | {(t, "answer"): ("accuracy", y[:, None])},
      )
      for t in range(k)
    ]

  def task_inputs(self) -> list[np.ndarray]:
    """Task k's code bit and the k bits of its subset; bits shared by subsets count for each task."""
    k = self.num_tasks
    return [np.concatenate([[t], k + self.subsets_KxJ[t]]) for t in range(k)]
