"""Reading a workdir back: config, members, tasks, metrics, and restoring checkpoints."""

import dataclasses
import functools
import os

import jax
import ml_collections
import pandas as pd
from etils import epath

from scaling_interference import storage
from scaling_interference.config import resolve_saved
from scaling_interference.problems import Problem
from scaling_interference.problems.synthetic import FamilyProblem
from scaling_interference.sweep import workdir as wd
from scaling_interference.sweep.build import build
from scaling_interference.sweep.checkpoint import Checkpoints
from scaling_interference.sweep.engine import Engine
from scaling_interference.sweep.members import Group
from scaling_interference.tasks import Family

METRIC_COLUMNS = ["step", "member", "task", "loss", "accuracy", "signal"]


def read_metrics(path: epath.Path) -> pd.DataFrame:
  """A workdir's metrics/ as one DataFrame; `task` keeps ints and the string "all"."""
  frame = pd.DataFrame(wd.read_metric_rows(path), columns=METRIC_COLUMNS)
  for col in ("loss", "accuracy", "signal"):
    frame[col] = frame[col].astype(float)
  return frame


@dataclasses.dataclass
class Run:
  """A workdir opened for analysis. Task definitions are rebuilt from the saved config."""

  path: epath.Path
  config: ml_collections.ConfigDict
  members: pd.DataFrame
  tasks: pd.DataFrame
  metrics: pd.DataFrame

  @functools.cached_property
  def _built(self) -> tuple[Problem, list[Group]]:
    return build(self.config)

  @property
  def problem(self) -> Problem:
    """The run's data side, rebuilt from the saved config (task definitions included)."""
    return self._built[0]

  @property
  def family(self) -> Family:
    """The task family of synthetic runs."""
    problem = self.problem
    if not isinstance(problem, FamilyProblem):
      raise AttributeError(f"run {self.path}: a language-model run has no task family")
    return problem.family

  @property
  def groups(self) -> list[Group]:
    return self._built[1]

  def checkpoints(self) -> Checkpoints:
    return Checkpoints(self.path / wd.CHECKPOINTS, len(self.groups))

  def steps(self) -> list[int]:
    ckpt = self.checkpoints()
    try:
      return sorted(ckpt.all_steps())
    finally:
      ckpt.close()

  @functools.cached_property
  def engine(self) -> Engine:
    """The run's engine on this process's devices, whatever mesh trained the run."""
    local = ml_collections.ConfigDict(self.config.to_dict())
    local.train.mesh = ()
    return Engine(local, self.problem, self.groups)

  def _abstract_states(self) -> list:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return [
      jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
      for abstract in self.engine.abstract_states()
    ]

  def restore(self, step: int | None = None, group: int | None = None, member: int | None = None) -> dict:
    """The state {"params", "opt_state", "active"} of one group (stacked) or one member, on the default device.

    step: a checkpoint step (default: the latest); 0 without a checkpoint 0 gives the seeded init
    (`Engine.init_states`), the state training started from. Give exactly one of group and member.
    """
    if (group is None) == (member is None):
      raise ValueError("restore: give exactly one of group= and member=")
    if member is not None:
      row = self.members.set_index("id").loc[member]
      group = int(row["group"])
      index = [m.id for m in self.groups[group].members].index(member)
    assert group is not None  # given, or the member's
    ckpt = self.checkpoints()
    try:
      step = ckpt.latest_step() if step is None else step
      state = (
        self.engine.init_states()[group]
        if step == 0 and 0 not in ckpt.all_steps()
        else ckpt.restore_group(step, group, self._abstract_states()[group])
      )
    finally:
      ckpt.close()
    return state if member is None else jax.tree.map(lambda a: a[index], state)

  def restore_all(self, step: int) -> tuple[list, dict]:
    """Every group's state at checkpoint `step`, and the checkpoint's metadata (data iterator state, ...).

    Step 0 without a checkpoint 0: the seeded init (`Engine.init_states`) and metadata {"step": 0}
    only (no data iterator state).
    """
    ckpt = self.checkpoints()
    try:
      if step == 0 and 0 not in ckpt.all_steps():
        return self.engine.init_states(), {"step": 0}
      return ckpt.restore(step, self._abstract_states())
    finally:
      ckpt.close()


def load_run(path: str | os.PathLike) -> Run:
  """Opens a workdir written by `launch.train` (a local path or a URL such as gs://bucket/run)."""
  folder = wd.workdir_path(path)
  if not (folder / wd.CONFIG).exists():
    raise FileNotFoundError(f"{folder} holds no {wd.CONFIG}: not a scaling_interference workdir")
  config = resolve_saved(storage.read_json(folder / wd.CONFIG))
  members = pd.DataFrame(storage.read_json(folder / wd.MEMBERS))
  tasks = pd.DataFrame(storage.read_json(folder / wd.TASKS))
  return Run(folder, config, members, tasks, read_metrics(folder))
