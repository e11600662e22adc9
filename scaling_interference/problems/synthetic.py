"""The synthetic problem: a task family (regression, sparse parity, ...) and its mixture.

Batches are generated on device from (data seed, step); the eval set holds the same number of
examples of every task, so rare tasks are measured as precisely as common ones.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference.checks import is_int
from scaling_interference.data import Mixture, schedules
from scaling_interference.errors import ConfigError
from scaling_interference.problems.base import Problem
from scaling_interference.tasks import Batch, Family

TRAIN_STREAM, EVAL_STREAM = 0, 1
EVAL_DATA_MAX_BYTES = 128 * 2**20  # the eval set kept on device (per device) up to this size


def data_keys(data_seed: int):
  """Independent keys for the training stream and for the fixed eval set."""
  base = jax.random.key(data_seed)
  return jax.random.fold_in(base, TRAIN_STREAM), jax.random.fold_in(base, EVAL_STREAM)


def train_batch(family: Family, mixture: Mixture, train_key, step, batch_size: int) -> Batch:
  """The batch every member sees at `step`."""
  task_key, example_key = jax.random.split(jax.random.fold_in(train_key, step))
  return family.sample(example_key, mixture.task_ids(task_key, step, batch_size))


def eval_examples(family: Family, eval_key, task_T, n: int) -> Batch:
  """n examples of each task in task_T, task-major; task t's examples depend on t alone."""

  def one_task(t):
    return family.sample(jax.random.fold_in(eval_key, t), jnp.full((n,), t, jnp.int32))

  stacked = jax.vmap(one_task)(task_T)
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), stacked)


def trace_tasks(config, found: list[schedules.Schedule], valid: range) -> list[int]:
  """Tasks whose signal is traced densely: `train.trace_tasks` (ids in `valid`), else the injected ones."""
  explicit = list(config.train.trace_tasks)
  for t in explicit:
    if not is_int(t) or t not in valid:
      raise ConfigError(f"train.trace_tasks: every entry must be a task id in [{valid.start}, {valid.stop}), got {t!r}")
  return explicit or sorted({s.task for s in found})


def linear_fn(model, params):
  """x -> model(x) - model(0) for linear members (their map, applied), else None."""
  return model.linear_part(params) if model.is_linear else None


class FamilyProblem(Problem):
  """A task family's mixture with injection schedules, all on device."""

  probe_examples_per_task = 512
  shared_model_input = True

  def __init__(self, config, family: Family):
    train = config.train
    self.family = family
    self.input_dim, self.output_dim = family.input_dim, family.output_dim
    self.schedules = schedules.from_config(config.inject, train.batch_size, family.num_tasks)
    self.mixture = Mixture(family.frequencies, self.schedules)
    self.batch_size, self.eval_n, self.trace_n = train.batch_size, train.eval_examples_per_task, train.trace_examples
    most = max(1, min(family.num_tasks, train.eval_chunk_examples // self.eval_n))
    self.eval_chunk = -(-family.num_tasks // -(-family.num_tasks // most))  # equal chunks: the least padding
    self.train_key, self.eval_key = data_keys(train.data_seed)
    self.trace_T = trace_tasks(config, self.schedules, range(family.num_tasks))
    p = self.mixture.realised_frequencies(train.steps, train.batch_size)
    self.tasks = [dataclasses.replace(t, frequency=float(p[t.id])) for t in family.info()]

  def batch(self, step, host=None):
    return train_batch(self.family, self.mixture, self.train_key, step, self.batch_size)

  def loss_shares(self, step_S) -> np.ndarray:
    """(K,) each task's expected share of the training loss's terms (examples) over steps step_S."""
    injected_Z = np.array([s.counts(np.asarray(step_S, np.int64), xp=np).mean() for s in self.schedules])
    shares = self.mixture.base * (1.0 - injected_Z.sum() / self.batch_size)
    for s, count in zip(self.schedules, injected_Z, strict=True):
      shares[s.task] += count / self.batch_size
    return shares

  def loss(self, model, params, batch):
    return self.family.loss(model.apply(params, batch.x), batch).mean()

  def model_input(self, batch):
    """The batch's inputs, which every member's model reads (sweep/packed.py)."""
    return batch.x

  def class_losses(self, model, params, batch, class_K, num_classes: int):
    loss_B = self.family.loss(model.apply(params, batch.x), batch) / batch.task.shape[0]
    return jax.ops.segment_sum(loss_B, class_K[batch.task], num_classes)

  def signal_of(self, model, params, task_T):
    task_T = jnp.asarray(task_T, jnp.int32)
    batch = eval_examples(self.family, self.eval_key, task_T, self.eval_n)
    loss_T, acc_T = self._task_metrics(model, params, batch, task_T.size)
    return self.family.signal(task_T, loss_T, acc_T, linear_fn(model, params))

  def _task_metrics(self, model, params, batch: Batch, num_tasks: int):
    out = model.apply(params, batch.x)
    loss_T = self.family.loss(out, batch).reshape(num_tasks, -1).mean(axis=1)
    acc = self.family.accuracy(out, batch)
    return loss_T, None if acc is None else acc.reshape(num_tasks, -1).mean(axis=1)

  def _eval_tasks(self):
    """(X, chunk) the task of every eval slot, chunk by chunk; the last chunk repeats task K-1 as padding."""
    k, chunk = self.family.num_tasks, self.eval_chunk
    num_chunks = -(-k // chunk)
    return jnp.minimum(jnp.arange(num_chunks * chunk, dtype=jnp.int32), k - 1).reshape(num_chunks, chunk)

  def _chunk_examples(self, task_XxT) -> Batch:
    """Every chunk's eval examples, each leaf (X, chunk * n, ...)."""
    return jax.lax.map(lambda task_T: eval_examples(self.family, self.eval_key, task_T, self.eval_n), task_XxT)

  def eval_data(self):
    """The eval examples of every chunk, made once where they fit in EVAL_DATA_MAX_BYTES: drawing them
    at every eval, for every group, took most of an eval's time (benchmarks/sweep_profile.py)."""
    task_XxT = self._eval_tasks()
    shapes = jax.eval_shape(self._chunk_examples, task_XxT)
    size = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(shapes))
    return self._chunk_examples(task_XxT) if size <= EVAL_DATA_MAX_BYTES else None

  def evaluate(self, model, params, data=None):
    k, chunk = self.family.num_tasks, self.eval_chunk

    def chunk_metrics(task_and_examples):
      task_T, batch = task_and_examples
      if batch is None:
        batch = eval_examples(self.family, self.eval_key, task_T, self.eval_n)
      return self._task_metrics(model, params, batch, chunk)

    loss_XxT, acc_XxT = jax.lax.map(chunk_metrics, (self._eval_tasks(), data))
    loss_T = loss_XxT.reshape(-1)[:k]
    acc_T = None if acc_XxT is None else acc_XxT.reshape(-1)[:k]
    return loss_T, acc_T, self.family.signal(jnp.arange(k), loss_T, acc_T, linear_fn(model, params))

  def task_batch(self, task_T, n: int):
    batch = eval_examples(self.family, self.eval_key, jnp.asarray(task_T, jnp.int32), n)
    return jax.tree.map(lambda a: a.reshape((len(task_T), n) + a.shape[1:]), batch)

  def task_loss(self, model, params, batch):
    return self.family.loss(model.apply(params, batch.x), batch).mean()

  def trace(self, model, params):
    task_T = jnp.asarray(self.trace_T, jnp.int32)
    batch = eval_examples(self.family, self.eval_key, task_T, self.trace_n)
    loss_T, acc_T = self._task_metrics(model, params, batch, task_T.size)
    return loss_T, self.family.signal(task_T, loss_T, acc_T, linear_fn(model, params))
