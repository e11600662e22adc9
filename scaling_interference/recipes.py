"""Recipes that check themselves: the results a config module's presets produced, measured again.

A config module states them next to its docstring as
    EXPECTED = {preset: [Expect(...), ...]}
each one a number read from a finished run's recorded evals (its metrics/) with an absolute
tolerance. `check(run, expectations)` measures them; `python -m launch.check_recipes` trains every
preset that has expectations and exits non-zero when one does not hold.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # config files import Expect: without jax and pandas, a bad flag is answered at once
  import pandas as pd

  from scaling_interference.reader import Run

METRICS = ("loss", "accuracy", "signal")
CHECK_COLUMNS = ["expectation", "expected", "tolerance", "measured", "holds"]


@dataclasses.dataclass(frozen=True)
class Expect:
  """One number of a run: `metric` of `task` at eval `step`, averaged over the selected members.

  task: a task id, or None with `count_above` set: the number of tasks whose member-mean
  metric exceeds count_above. Members: those of `width`, or of ladder `size`, or all.
  step: an eval step (default: the last one).
  """

  metric: str
  value: float
  tol: float
  task: int | None = None
  width: int | None = None
  size: str | None = None
  step: int | None = None
  count_above: float | None = None

  def __post_init__(self):
    if self.metric not in METRICS:
      raise ValueError(f"Expect.metric: must be one of {METRICS}, got {self.metric!r}")
    if (self.task is None) == (self.count_above is None):
      raise ValueError("Expect: give exactly one of task= and count_above=")

  def describe(self) -> str:
    who = f"width {self.width}" if self.width is not None else f"size {self.size}" if self.size else "all members"
    what = (
      f"tasks with {self.metric} > {self.count_above:g}"
      if self.count_above is not None
      else f"{self.metric} of task {self.task}"
    )
    return f"{what}, {who}, step {'last' if self.step is None else self.step}"


def members_of(run: Run, expect: Expect) -> list[int]:
  members = run.members
  if expect.width is not None:
    members = members[members.width == expect.width]
  if expect.size is not None:
    members = members[members["size"] == expect.size]
  if members.empty:
    raise ValueError(f"{expect.describe()}: the run has no such members")
  return members.id.tolist()


def measure(run: Run, expect: Expect) -> float:
  """The number `expect` names, read from the run's recorded evals."""
  rows = run.metrics[(run.metrics.task != "all") & run.metrics.member.isin(members_of(run, expect))]
  step = int(rows.step.max()) if expect.step is None else expect.step
  rows = rows[rows.step == step]
  if rows.empty:
    raise ValueError(f"{expect.describe()}: the run has no eval at step {step}")
  by_task = rows.assign(task=rows.task.astype(int)).groupby("task")[expect.metric].mean()
  if expect.count_above is not None:
    return float(np.sum(by_task.values > expect.count_above))
  if expect.task not in by_task.index:
    raise ValueError(f"{expect.describe()}: the run has no task {expect.task}")
  return float(by_task[expect.task])


def check(run: Run, expectations) -> pd.DataFrame:
  """One row per expectation: what it says, the stated value and tolerance, what was measured, whether it holds."""
  import pandas as pd

  rows = []
  for expect in expectations:
    measured = measure(run, expect)
    rows.append(
      {
        "expectation": expect.describe(),
        "expected": expect.value,
        "tolerance": expect.tol,
        "measured": measured,
        "holds": bool(abs(measured - expect.value) <= expect.tol),
      }
    )
  return pd.DataFrame(rows, columns=CHECK_COLUMNS)
