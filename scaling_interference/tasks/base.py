"""The task interface: a family is K tasks of one kind, defined by its config alone.

A family instance knows its tasks' definitions (built from `task.seed`), their base
frequencies and complexities, and how to sample examples of given tasks on device.
Everything it exposes to the engine is a pure function of JAX arrays, so it can run
inside the jitted, vmapped train step.

To add a family, subclass `Family` in one module and decorate it with `@register`. Analysis asks
the family, never its name: how to show an example, what a probe decodes, which inputs are a
task's features, whether an analytic oracle exists. The defaults say "not available".
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import jax
import ml_collections
import numpy as np

from scaling_interference.checks import is_number, require_int, require_number
from scaling_interference.errors import ConfigError

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Batch:
  """Examples of a batch: model inputs, targets and the task id of each example."""

  x: Array  # (B, input_dim) float
  y: Array  # (B, ...) targets, family specific
  task: Array  # (B,) int32 task ids


jax.tree_util.register_dataclass(Batch, data_fields=["x", "y", "task"], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """Metadata of one task, as written to the workdir and read by analysis."""

  id: int
  family: str
  frequency: float
  complexity: float
  name: str = ""  # e.g. the token task's config name
  split: str = "train"  # "heldout": evaluated on operand tuples never trained on


class Family(abc.ABC):
  """K tasks of one kind. Subclasses set the class attributes and implement the methods."""

  name: ClassVar[str]
  has_accuracy: ClassVar[bool]
  has_oracle: ClassVar[bool] = False  # analysis/oracle.py gives its best rank-width maps

  num_tasks: int
  input_dim: int  # width of the model input
  output_dim: int  # width of the model output
  frequencies: np.ndarray  # (K,) base mixture, sums to 1
  complexities: np.ndarray  # (K,) larger is harder

  @abc.abstractmethod
  def __init__(self, task_config: ml_collections.ConfigDict) -> None:
    """Builds the family from its validated `task` section alone."""

  @classmethod
  @abc.abstractmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """Every field of the family's `task` section with its default (`family` included)."""

  @classmethod
  @abc.abstractmethod
  def validate_config(cls, task_config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first bad field of `task_config`."""

  @abc.abstractmethod
  def sample(self, key: Array, task_B: Array) -> Batch:
    """Fresh examples of the given tasks (one per entry of task_B), on device."""

  @abc.abstractmethod
  def loss(self, out_BxO: Array, batch: Batch) -> Array:
    """Per-example loss, shape (B,)."""

  def accuracy(self, out_BxO: Array, batch: Batch) -> Array | None:
    """Per-example 0/1 correctness, shape (B,), or None where accuracy does not apply."""
    return None

  @abc.abstractmethod
  def signal(
    self, task_T: Array, loss_T: Array, accuracy_T: Array | None, linear_fn: Callable[[Array], Array] | None = None
  ) -> Array:
    """Signal of the tasks task_T on a scale where 0 is chance and 1 is perfect, shape (T,).

    loss_T, accuracy_T: the member's eval means on those tasks. linear_fn: for a linear member,
    x_NxI -> its output minus its output at 0 (so linear_fn(x) = x @ M); else None.
    """

  def projection(self, map_IxO: np.ndarray) -> np.ndarray | None:
    """(K,) a linear member's end-to-end map M along each task's target map; None: the family has none.

    M is the member's f(x) = x @ M + f(0) (host array). 1 on target, 0 for an unrelated map.
    """
    del map_IxO
    return None

  def describe_example(self, x_I: np.ndarray, y: Any, task: int) -> str:
    """One example as text (preview); by default its whole input and target."""
    return f"x={np.array2string(x_I, precision=2, threshold=16)} -> y={y}"

  def probe_features(self, batch: Batch) -> list[tuple[np.ndarray, dict]]:
    """What linear probes decode: [(rows_N bool, {(task, feature): (metric, targets (N, O))})].

    The features of one entry are fitted together on its rows of `batch` (host arrays, task-major
    eval examples); metric "r2" or "accuracy". Default: none (probes read task identity only).
    """
    del batch
    return []

  def task_inputs(self) -> list[np.ndarray] | None:
    """Per task, the input coordinates that are its features (capacity); None: not available."""
    return None

  def info(self) -> list[TaskInfo]:
    return [
      TaskInfo(k, self.name, float(self.frequencies[k]), float(self.complexities[k])) for k in range(self.num_tasks)
    ]


FAMILIES: dict[str, type[Family]] = {}


FamilyType = TypeVar("FamilyType", bound=type[Family])


def register(cls: FamilyType) -> FamilyType:
  """Class decorator: makes `cls` available as `task.family = cls.name`."""
  FAMILIES[cls.name] = cls
  return cls


def family_class(name: str) -> type[Family]:
  if name not in FAMILIES:
    raise ConfigError(f"task.family: unknown family {name!r}; choose one of {sorted(FAMILIES)}")
  return FAMILIES[name]


def make_family(task_config: ml_collections.ConfigDict) -> Family:
  """Builds the family named by `task_config.family` from the config alone."""
  cls = family_class(task_config.family)
  cls.validate_config(task_config)
  return cls(task_config)


def zipf_frequencies(num_tasks: int, alpha: float) -> np.ndarray:
  """p_k proportional to k^(-alpha), k = 1..K."""
  p = np.arange(1, num_tasks + 1, dtype=np.float64) ** (-alpha)
  return p / p.sum()


def frequencies_from_config(task_config: ml_collections.ConfigDict) -> np.ndarray:
  """Explicit `task.frequencies` when given, else Zipf with `task.alpha`."""
  explicit = tuple(task_config.frequencies)
  if explicit:
    return np.asarray(explicit, dtype=np.float64)
  return zipf_frequencies(task_config.num_tasks, task_config.alpha)


def check_frequencies(task_config: ml_collections.ConfigDict) -> None:
  """Shared checks of num_tasks, alpha, seed and explicit frequencies."""
  require_int(task_config, "task.num_tasks", 1)
  require_int(task_config, "task.seed", 0)
  k = task_config.num_tasks
  require_number(task_config, "task.alpha", 0)
  explicit = tuple(task_config.frequencies)
  if not explicit:
    return
  if len(explicit) != k:
    raise ConfigError(f"task.frequencies: needs one entry per task ({k}), got {len(explicit)}")
  if not all(is_number(v) and v >= 0 for v in explicit):
    raise ConfigError(f"task.frequencies: entries must be numbers >= 0, got {list(explicit)}")
  total = float(np.sum(explicit))
  if abs(total - 1.0) > 1e-6:
    raise ConfigError(f"task.frequencies: must sum to 1, got sum {total:.6g}")
