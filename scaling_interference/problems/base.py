"""What the engine trains on: a Problem gives batches, the member loss, eval metrics and traces.

The engine is the same for every problem: it stacks members, vmaps them, scans over steps and
evaluates on device. A problem owns the data (a task family with its mixture, or a token stream
with injected token tasks) and the task list that metrics rows refer to.
"""

import abc
from typing import Any

import jax
import numpy as np

from scaling_interference.data.schedules import Schedule
from scaling_interference.tasks import TaskInfo

Array = jax.Array
ModelDef = Any  # a model definition of models/ (MLPDef, OLMoDef): it builds, applies and counts itself
PyTree = Any  # a member's parameters, or a batch: nested containers of arrays


class Problem(abc.ABC):
  """The data side of a sweep. All methods used inside jit are pure functions of arrays."""

  tasks: list[TaskInfo]  # what metrics rows refer to, with realised frequencies
  schedules: list[Schedule]
  trace_T: list[int]  # task ids traced densely
  on_device: bool = True  # batches made on device; else `host_batches` feeds the scan
  shared_model_input: bool = False  # True: it has model_input(batch), what every member's model reads (sweep/packed.py)
  probe_examples_per_task: int  # analysis/probes.py's default examples per task
  eval_key: jax.Array  # the key of the fixed eval (and analysis) examples

  @abc.abstractmethod
  def batch(self, step: Array | int, host: PyTree | None = None) -> PyTree:
    """The batch every member sees at `step` (host: this step's host data, if any)."""

  @abc.abstractmethod
  def loss(self, model: ModelDef, params: PyTree, batch: PyTree) -> Array:
    """A member's mean training loss on `batch` (scalar)."""

  @abc.abstractmethod
  def class_losses(self, model: ModelDef, params: PyTree, batch: PyTree, class_K: Array, num_classes: int) -> Array:
    """The training loss of `batch` split by task class, shape (C,), summing to `loss`.

    class_K: (K,) int32, the class of every task id (K = len(self.tasks)). Entry c sums the
    terms of the batch mean whose example (token position, for language models) belongs to a
    task of class c, so its gradient is class c's part of the batch gradient.
    """

  @abc.abstractmethod
  def signal_of(self, model: ModelDef, params: PyTree, task_T: tuple[int, ...] | list[int]) -> Array:
    """Signal of the tasks task_T (static ids) of one member, on the eval examples, shape (T,)."""

  def eval_data(self) -> PyTree | None:
    """The fixed eval set's examples, computed once (on device, by the engine) and passed to every
    evaluate; None, the default, where evaluate makes its own each time."""
    return None

  @abc.abstractmethod
  def evaluate(self, model: ModelDef, params: PyTree, data: PyTree | None = None) -> tuple[Array, Array | None, Array]:
    """Per-task (loss_T, accuracy_T or None, signal_T) of one member on the fixed eval set.

    data: what eval_data() returned, or None to make the examples here (the same values)."""

  @abc.abstractmethod
  def trace(self, model: ModelDef, params: PyTree) -> tuple[Array, Array]:
    """(loss_T, signal_T) of the traced tasks (trace_T) of one member, on trace_examples examples each."""

  @abc.abstractmethod
  def task_batch(self, task_T: Array | np.ndarray, n: int) -> PyTree:
    """n fixed examples of each task in task_T, every leaf with leading axes (T, n): for analysis."""

  @abc.abstractmethod
  def task_loss(self, model: ModelDef, params: PyTree, batch: PyTree) -> Array:
    """A member's mean loss on one task's examples (one slice of task_batch): for analysis."""

  @abc.abstractmethod
  def loss_shares(self, step_S: np.ndarray) -> np.ndarray:
    """(K,) each task id's expected share of the training loss's terms over the steps step_S."""

  def host_batches(self, num_steps: int) -> PyTree | None:
    """(num_steps, ...) host data for the next dispatch; None for on-device problems."""
    return None

  def host_block_spec(self, num_steps: int) -> jax.ShapeDtypeStruct | None:
    """jax.ShapeDtypeStruct of the global host block of num_steps steps; None for on-device problems."""
    return None

  def host_state(self) -> dict | None:
    """The host iterator's position, saved in checkpoints; None when there is none."""
    return None

  def restore_host_state(self, state: dict | None) -> None:
    del state
