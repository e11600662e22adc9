"""Task classes, tasks of interest and replay windows: what an interference replay splits and where.

Classes (`by="class"`): each injected task is a class of its own; the most frequent of the other
tasks, whose base frequencies first reach `common_mass` of their total, are the "common" class;
the rest are "other". With `by="task"` every task is a class (for runs with few tasks).

Windows: after each of the first `events` events at or after step `after` of every injection
schedule, from the event's batch step up to the schedule's next event (at most `max_steps` steps).
A continuous schedule (share, per_batch) injects at nearly every step; it gets one window from its
first injection at or after `after`.
"""

import dataclasses

import numpy as np

from scaling_interference.data.schedules import realised_counts

COMMON_MASS = 0.9
CONTINUOUS_KINDS = ("share", "per_batch")
BY = ("class", "task")


@dataclasses.dataclass(frozen=True)
class Window:
  """Training steps [start, stop): batches start..stop-1 move theta_start to theta_stop."""

  schedule: str  # the injection schedule whose event opens the window
  task: int  # the task it injects
  event: int  # the event's index within its schedule (0: the first)
  start: int
  stop: int


@dataclasses.dataclass(frozen=True)
class Classes:
  names: tuple  # class names, e.g. ("task 32", "task 33", "common", "other")
  class_K: np.ndarray  # (K,) the class of every task id
  common_C: tuple  # (C,) bool: the classes that make up the common tasks

  def of(self, task: int) -> int:
    return int(self.class_K[task])


def common_tasks(p_T: np.ndarray, mass: float = COMMON_MASS) -> np.ndarray:
  """(T,) bool: the most frequent tasks whose frequencies first reach `mass` of the total."""
  order = np.argsort(-p_T, kind="stable")
  before = np.cumsum(p_T[order]) - p_T[order]
  common = np.zeros(p_T.shape, bool)
  common[order[before < mass * p_T.sum()]] = True
  return common & (p_T > 0)


def injected_tasks(problem) -> list[int]:
  return sorted({s.task for s in problem.schedules})


def task_classes(problem, frequency_K: np.ndarray, by: str = "class", common_mass: float = COMMON_MASS) -> Classes:
  """The classes of `problem`'s tasks; frequency_K: each task's realised share (injected tasks are not common)."""
  if by not in BY:
    raise ValueError(f"by: must be one of {list(BY)}, got {by!r}")
  injected = injected_tasks(problem)
  p_K = np.asarray(frequency_K, np.float64).copy()
  p_K[injected] = 0.0
  common_K = common_tasks(p_K, common_mass)
  num_tasks = len(p_K)
  if by == "task":
    return Classes(tuple(f"task {k}" for k in range(num_tasks)), np.arange(num_tasks), tuple(bool(c) for c in common_K))
  class_K = np.where(common_K, len(injected), len(injected) + 1)
  class_K[injected] = np.arange(len(injected))
  names = tuple(f"task {t}" for t in injected) + ("common", "other")
  return Classes(names, class_K, (False,) * len(injected) + (True, False))


def interest_tasks(problem, frequency_K: np.ndarray, n_common: int = 2) -> list[int]:
  """The injected tasks, then the n_common most frequent other tasks: whose loss changes are attributed."""
  injected = injected_tasks(problem)
  others = [int(k) for k in np.argsort(-np.asarray(frequency_K), kind="stable") if k not in injected]
  return injected + others[:n_common]


def default_windows(problem, total_steps: int, events: int = 3, max_steps: int = 200, after: int = 0) -> list[Window]:
  """Windows after the first `events` events at or after step `after` of every schedule, sorted by start."""
  counts_SxZ = realised_counts(problem.schedules, total_steps)
  windows = []
  for n, schedule in enumerate(problem.schedules):
    steps = np.flatnonzero(counts_SxZ[:, n])
    first = int(np.searchsorted(steps, after))
    numbers, steps = np.arange(first, len(steps)), steps[first:]
    if schedule.kind in CONTINUOUS_KINDS:
      steps = steps[:1]
    for e, start in enumerate(steps[:events]):
      nxt = steps[e + 1] if e + 1 < len(steps) else total_steps
      stop = int(min(nxt, start + max_steps, total_steps))
      windows.append(Window(schedule.name, schedule.task, int(numbers[e]), int(start), stop))
  return sorted(windows, key=lambda w: (w.start, w.schedule))
