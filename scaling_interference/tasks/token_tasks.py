"""Token tasks over random tokens: modular addition and comparison.

An example is the token sequence [marker, operand_1, ..., operand_n, separator, answer].
Numbers (addition) and items (comparison) are token ids drawn at random from the model's
vocabulary by `task.seed`, together with the task's marker and separator tokens: novel by
construction. A task's tokens never go below `task.reserved_tokens` (ids kept for a base
stream's special tokens) and never collide with the `exclude` ids passed to it;
`make_token_tasks` passes each task the tokens of the tasks listed before it, so the
tasks of one run never share a token.

  modular_addition (modulus P, n_operands n): operands are values in [0, P), the answer
    is their sum mod P. Complexity: P * (n - 1), the number of values times the number of
    additions the answer needs.
  comparison (n_items n): operands are two distinct items, the answer is the one that
    comes later in a hidden random order of the n items (drawn from the seed).
    Complexity: n.

Every field of a task config, with its default, is in `defaults.token_task`.

Loss and accuracy apply to the answer token only: the logits at position seq_len - 2
predict it.

Split: the operand tuples (P^n for addition, n (n - 1) ordered pairs for comparison) fall into
operand SETS, the tuples that are orderings of one another (multisets of n values for addition,
unordered pairs for comparison). Both answers are the same for every ordering of a set, so the
split holds out whole sets: a held-out tuple's reorderings are never trained either. Sets are
drawn uniformly at random from the seed, in order, until their orderings number as near as
possible to round(heldout_fraction x tuples) (ties: fewer); so `heldout_fraction` is the share of
operand TUPLES held out, off by at most half a set's orderings (one tuple for pairs), and every
set, so every tuple, is about equally likely to be held out. Only the sorted indices of the held-out tuples are kept
on device (memory: about heldout_fraction x tuples, at most 2 x 2**22 ints); a train tuple is
drawn exactly uniformly as the j-th index not held out, found by a binary search over them.
"""

import abc
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference.checks import is_number, require_int
from scaling_interference.errors import ConfigError
from scaling_interference.tasks.base import Array, TaskInfo

KINDS = ("modular_addition", "comparison")
SPLITS = ("train", "heldout")
MAX_TUPLES = 2**31 - 1  # tuple indices are int32 on device
MAX_HELDOUT = 2**22
MAX_HELDOUT_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class TaskTokens:
  """The token ids of one task; value v is written as token values[v]."""

  marker: int
  separator: int
  values: np.ndarray  # (num_values,) int32

  def ids(self) -> np.ndarray:
    return np.concatenate([[self.marker, self.separator], self.values]).astype(np.int32)


class TokenTask(abc.ABC):
  """One token task, built from its config alone (plus the ids it must avoid)."""

  kind: str
  symbol: str  # how `decode` shows the marker
  num_values: int  # numbers or items
  n_operands: int

  def __init__(self, task_config, exclude=()):
    validate_task(task_config)
    self._configure(task_config)
    self.seed = task_config.seed
    self.vocab_size = task_config.vocab_size
    self.reserved_tokens = task_config.reserved_tokens
    self.heldout_fraction = task_config.heldout_fraction
    self.n_tuples = self.count_tuples()
    rng = np.random.default_rng(self.seed)
    self.tokens = draw_tokens(rng, task_config, self.num_values, exclude)
    self._draw_structure(rng)
    self.heldout_N = self._draw_heldout(rng)
    self.n_heldout = self.heldout_N.size
    self._value_tokens = jnp.asarray(self.tokens.values)
    self._heldout = jnp.asarray(self.heldout_N, jnp.int32)
    self._gaps = jnp.asarray(self.heldout_N - np.arange(self.n_heldout), jnp.int32)

  @abc.abstractmethod
  def _configure(self, task_config) -> None:
    """Reads the family's own fields (already validated)."""

  def _draw_structure(self, rng: np.random.Generator) -> None:  # noqa: B027 - an optional hook, empty by default
    """Draws what the family hides besides tokens and split (nothing by default)."""

  @abc.abstractmethod
  def count_tuples(self) -> int:
    """Number of operand tuples."""

  @abc.abstractmethod
  def count_sets(self) -> int:
    """Number of operand sets (tuples up to ordering)."""

  @abc.abstractmethod
  def set_operands(self, rank_A: np.ndarray) -> np.ndarray:
    """(A, J) sorted operand values of set ranks in [0, count_sets()), numpy."""

  @abc.abstractmethod
  def operands_of(self, index_N, xp=jnp):
    """(N, J) operand values of tuple indices, with jax.numpy or numpy."""

  @abc.abstractmethod
  def index_of(self, operands_NxJ: np.ndarray) -> np.ndarray:
    """(N,) int64 tuple indices of operand values, numpy: the inverse of operands_of."""

  @abc.abstractmethod
  def answer_of(self, operands_NxJ, xp=jnp):
    """(N,) answer values of operand values, with jax.numpy or numpy."""

  @abc.abstractmethod
  def complexity(self) -> float:
    """Larger is harder; see the module docstring."""

  def _draw_heldout(self, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of every ordering of random operand sets, about heldout_fraction of the tuples."""
    target = int(round(self.heldout_fraction * self.n_tuples))
    sets_AxJ = draw_sets(rng, self.count_sets(), self.set_operands, target)
    return np.sort(self.index_of(arrangements(sets_AxJ)))  # distinct sets: distinct tuples

  @property
  def seq_len(self) -> int:
    return self.n_operands + 3

  @property
  def answer_position(self) -> int:
    """The position whose logits predict the answer token."""
    return self.seq_len - 2

  def sample(self, key: Array, n: int, split: str = "train") -> dict:
    """n examples of `split`, on device: tokens (n, seq_len), operands (n, J), answer (n,)."""
    index_N = self._sample_index(key, n, split)
    operands_NxJ = self.operands_of(index_N)
    answer_N = self.answer_of(operands_NxJ)
    marker_Nx1 = jnp.full((n, 1), self.tokens.marker, jnp.int32)
    separator_Nx1 = jnp.full((n, 1), self.tokens.separator, jnp.int32)
    tokens_NxQ = jnp.concatenate(
      [marker_Nx1, self._value_tokens[operands_NxJ], separator_Nx1, self._value_tokens[answer_N][:, None]], axis=1
    )
    return dict(tokens=tokens_NxQ, operands=operands_NxJ, answer=answer_N)

  def _sample_index(self, key: Array, n: int, split: str) -> Array:
    if split not in SPLITS:
      raise ConfigError(f"split: must be one of {list(SPLITS)}, got {split!r}")
    if split == "heldout":
      if self.n_heldout == 0:
        raise ConfigError(
          f"task.heldout_fraction: {self.heldout_fraction} holds out no tuple "
          f"of {self.n_tuples}; raise it to sample split='heldout'"
        )
      return self._heldout[jax.random.randint(key, (n,), 0, self.n_heldout)]
    j_N = jax.random.randint(key, (n,), 0, self.n_tuples - self.n_heldout)
    return j_N + jnp.searchsorted(self._gaps, j_N, side="right").astype(jnp.int32)

  def heldout_operands(self) -> np.ndarray:
    """(n_heldout, J) operand values of the held-out tuples."""
    return self.operands_of(self.heldout_N.astype(np.int64), xp=np)

  def decode(self, tokens_Q) -> str:
    """One example as readable values, e.g. '<add> 17 5 = 22'."""
    index_of = {int(t): v for v, t in enumerate(self.tokens.values)}
    names = {self.tokens.marker: self.symbol, self.tokens.separator: "="}
    words = [names.get(t, str(index_of.get(t, f"#{t}"))) for t in np.asarray(tokens_Q).tolist()]
    return " ".join(words)

  def info(self, task_id: int, frequency: float) -> TaskInfo:
    return TaskInfo(task_id, self.kind, float(frequency), float(self.complexity()))


class ModularAddition(TokenTask):
  """(a_1 + ... + a_n) mod P over P random number tokens."""

  kind = "modular_addition"
  symbol = "<add>"

  def _configure(self, task_config) -> None:
    self.modulus = task_config.modulus
    self.n_operands = task_config.n_operands
    self.num_values = self.modulus

  def count_tuples(self) -> int:
    return self.modulus**self.n_operands

  def count_sets(self) -> int:
    return math.comb(self.modulus + self.n_operands - 1, self.n_operands)

  def set_operands(self, rank_A: np.ndarray) -> np.ndarray:
    """Multiset a_1 <= ... <= a_n as the combination a_i + i - 1 of P + n - 1 values."""
    n = self.n_operands
    return unrank_combinations(rank_A, self.modulus + n - 1, n) - np.arange(n)

  def _powers(self) -> np.ndarray:
    """(n_operands,) place values of the operands in a tuple index: P^(n-1), ..., P, 1."""
    return self.modulus ** np.arange(self.n_operands - 1, -1, -1, dtype=np.int64)

  def operands_of(self, index_N, xp=jnp):
    return ((index_N[:, None] // xp.asarray(self._powers(), index_N.dtype)) % self.modulus).astype(xp.int32)

  def index_of(self, operands_NxJ: np.ndarray) -> np.ndarray:
    return np.asarray(operands_NxJ, np.int64) @ self._powers()

  def answer_of(self, operands_NxJ, xp=jnp):
    return (xp.sum(operands_NxJ, axis=1) % self.modulus).astype(xp.int32)

  def complexity(self) -> float:
    return float(self.modulus * (self.n_operands - 1))


class Comparison(TokenTask):
  """Which of two distinct items comes later in a hidden order of n random item tokens."""

  kind = "comparison"
  symbol = "<cmp>"
  n_operands = 2

  def _configure(self, task_config) -> None:
    self.n_items = task_config.n_items
    self.num_values = self.n_items

  def _draw_structure(self, rng: np.random.Generator) -> None:
    self.item_rank_N = rng.permutation(self.n_items).astype(np.int32)  # item v's place in the order
    self._rank = jnp.asarray(self.item_rank_N)

  def count_tuples(self) -> int:
    return self.n_items * (self.n_items - 1)

  def count_sets(self) -> int:
    return math.comb(self.n_items, 2)

  def set_operands(self, rank_A: np.ndarray) -> np.ndarray:
    return unrank_combinations(rank_A, self.n_items, 2)

  def operands_of(self, index_N, xp=jnp):
    """Pair t = a (n - 1) + r, with b = r, or r + 1 when r >= a (b != a)."""
    a_N, r_N = index_N // (self.n_items - 1), index_N % (self.n_items - 1)
    return xp.stack([a_N, r_N + (r_N >= a_N)], axis=1).astype(xp.int32)

  def index_of(self, operands_NxJ: np.ndarray) -> np.ndarray:
    a_N, b_N = np.asarray(operands_NxJ, np.int64).T
    return a_N * (self.n_items - 1) + b_N - (b_N > a_N)

  def answer_of(self, operands_NxJ, xp=jnp):
    rank = self._rank if xp is jnp else self.item_rank_N
    a_N, b_N = operands_NxJ[:, 0], operands_NxJ[:, 1]
    return xp.where(rank[a_N] > rank[b_N], a_N, b_N).astype(xp.int32)

  def complexity(self) -> float:
    return float(self.n_items)


TASKS = {cls.kind: cls for cls in (ModularAddition, Comparison)}


def make_token_task(task_config, exclude=()) -> TokenTask:
  """The task of `task_config.kind`, avoiding the token ids in `exclude`."""
  if task_config.kind not in TASKS:
    raise ConfigError(f"task.kind: must be one of {list(KINDS)}, got {task_config.kind!r}")
  return TASKS[task_config.kind](task_config, exclude)


def make_token_tasks(task_configs) -> list[TokenTask]:
  """The tasks of one run in order; each avoids the tokens of the tasks before it."""
  tasks, used = [], np.zeros(0, np.int32)
  for task_config in task_configs:
    tasks.append(make_token_task(task_config, exclude=used))
    used = np.concatenate([used, tasks[-1].tokens.ids()])
  return tasks


def validate_task(task_config) -> None:
  """Raises ConfigError naming the first bad field of a token task config."""
  kind = task_config.kind
  if kind not in KINDS:
    raise ConfigError(f"task.kind: must be one of {list(KINDS)}, got {kind!r}")
  require_int(task_config, "task.seed", 0)
  require_int(task_config, "task.vocab_size", 1)
  require_int(task_config, "task.reserved_tokens", 0)
  if kind == "modular_addition":
    require_int(task_config, "task.modulus", 2)
    require_int(task_config, "task.n_operands", 2)
    n_tuples = task_config.modulus**task_config.n_operands
  else:
    require_int(task_config, "task.n_items", 2)
    n_tuples = task_config.n_items * (task_config.n_items - 1)
  _check_split(task_config, kind, n_tuples)


def _check_split(task_config, kind: str, n_tuples: int) -> None:
  size_field = "modulus" if kind == "modular_addition" else "n_items"
  if n_tuples > MAX_TUPLES:
    raise ConfigError(f"task.{size_field}: gives {n_tuples} operand tuples; at most {MAX_TUPLES} are supported")
  fraction = task_config.heldout_fraction
  if not is_number(fraction) or not 0 <= fraction <= MAX_HELDOUT_FRACTION:
    raise ConfigError(f"task.heldout_fraction: must be a number in [0, {MAX_HELDOUT_FRACTION}], got {fraction!r}")
  if round(fraction * n_tuples) > MAX_HELDOUT:
    raise ConfigError(
      f"task.heldout_fraction: holds out {round(fraction * n_tuples)} of "
      f"{n_tuples} tuples; at most {MAX_HELDOUT} are supported"
    )


def draw_tokens(rng: np.random.Generator, task_config, num_values: int, exclude) -> TaskTokens:
  """Marker, separator and value tokens: distinct, >= reserved_tokens, not in `exclude`."""
  reserved = task_config.reserved_tokens
  free = np.setdiff1d(np.arange(reserved, task_config.vocab_size), np.asarray(exclude, np.int64))
  need = num_values + 2
  if free.size < need:
    raise ConfigError(
      f"task.vocab_size: {task_config.kind} needs {need} free token ids ({num_values} values, "
      f"a marker and a separator) at or above reserved_tokens={reserved} and outside the "
      f"{len(exclude)} ids of earlier tasks; vocab_size={task_config.vocab_size} leaves {free.size}"
    )
  chosen = rng.choice(free, size=need, replace=False).astype(np.int32)
  return TaskTokens(marker=int(chosen[0]), separator=int(chosen[1]), values=chosen[2:])


def unrank_combinations(rank_A: np.ndarray, n_values: int, size: int) -> np.ndarray:
  """(A, size) increasing values in [0, n_values): the combinations of colex rank rank_A.

  Colex rank of c_1 < ... < c_size is sum_i C(c_i, i); c_i is the largest c with C(c, i) <= what
  is left of the rank, taken from i = size down.
  """
  rest_A = np.asarray(rank_A, np.int64).copy()
  values_AxJ = np.zeros((rest_A.size, size), np.int64)
  for i in range(size, 0, -1):
    comb_N = np.array([math.comb(c, i) for c in range(n_values)], np.int64)
    values_AxJ[:, i - 1] = np.searchsorted(comb_N, rest_A, side="right") - 1
    rest_A -= comb_N[values_AxJ[:, i - 1]]
  return values_AxJ


def orbit_sizes(sets_AxJ: np.ndarray) -> np.ndarray:
  """(A,) distinct orderings of each sorted row, n! / prod(multiplicity!), built up one position at a time."""
  size_A, run_A = np.ones(len(sets_AxJ), np.int64), np.ones(len(sets_AxJ), np.int64)
  for i in range(1, sets_AxJ.shape[1]):
    run_A = np.where(sets_AxJ[:, i] == sets_AxJ[:, i - 1], run_A + 1, 1)
    size_A = size_A * (i + 1) // run_A
  return size_A


def arrangements(sets_AxJ: np.ndarray) -> np.ndarray:
  """(A, J) every distinct ordering of every sorted row: each position takes each distinct value left."""
  prefix_AxJ, rest_AxJ = sets_AxJ[:, :0], sets_AxJ
  while rest_AxJ.shape[1]:
    first_AxJ = np.ones(rest_AxJ.shape, bool)
    first_AxJ[:, 1:] = rest_AxJ[:, 1:] != rest_AxJ[:, :-1]
    row_A, slot_A = np.nonzero(first_AxJ)
    prefix_AxJ = np.concatenate([prefix_AxJ[row_A], rest_AxJ[row_A, slot_A][:, None]], axis=1)
    keep_AxJ = np.arange(rest_AxJ.shape[1]) != slot_A[:, None]
    rest_AxJ = rest_AxJ[row_A][keep_AxJ].reshape(len(row_A), rest_AxJ.shape[1] - 1)
  return prefix_AxJ


def draw_sets(rng: np.random.Generator, n_sets: int, sets_of, target: int) -> np.ndarray:
  """(A, J) distinct uniformly random sets, in draw order, whose orderings number nearest to target (ties: fewer).

  sets_of: set ranks in [0, n_sets) -> their sorted operand rows.
  """
  rank_A, sets_AxJ, size_A = np.zeros(0, np.int64), sets_of(np.zeros(0, np.int64)), np.zeros(0, np.int64)
  while size_A.sum() < target:
    drawn_N = rng.integers(0, n_sets, size=target - size_A.sum())
    first_N = np.unique(np.concatenate([rank_A, drawn_N]), return_index=True)[1]
    new_N = drawn_N[np.sort(first_N[first_N >= rank_A.size]) - rank_A.size]
    new_AxJ = sets_of(new_N)
    rank_A, sets_AxJ = np.concatenate([rank_A, new_N]), np.concatenate([sets_AxJ, new_AxJ])
    size_A = np.concatenate([size_A, orbit_sizes(new_AxJ)])
  total_A = np.concatenate([[0], np.cumsum(size_A)])
  reach = int(np.searchsorted(total_A, target))  # the first prefix reaching target: `reach` sets
  return sets_AxJ[: reach if reach == 0 or total_A[reach] - target < target - total_A[reach - 1] else reach - 1]
