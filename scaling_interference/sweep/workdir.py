"""The workdir contract: config.json, members.json, tasks.json, metrics/, checkpoints/.

metrics/STEP.jsonl (STEP zero-padded to 9 digits) holds one eval in long format, one JSON object
per (step, member, task): {"step", "member", "task", "loss", "accuracy", "signal"}, null where a
field does not apply; rows with "task": "all" carry the mean training loss since the previous
eval. One file per eval, written whole, because object stores (gs://) cannot append. A workdir
is a local path or any URL `storage.as_path` accepts.
"""

import concurrent.futures
import dataclasses
import json
import math

import numpy as np
from etils import epath

from scaling_interference import storage
from scaling_interference.config import as_json, differing_fields, resolve_saved
from scaling_interference.errors import WorkdirError

CONFIG, MEMBERS, TASKS, METRICS, CHECKPOINTS = "config.json", "members.json", "tasks.json", "metrics", "checkpoints"
SCHEDULE, TRACES, TENSORBOARD = "schedule.npz", "traces.npz", "tensorboard"
READERS = 16  # concurrent reads of metric files


def _finite_or_none(x):
  return None if x is None or not math.isfinite(x) else float(x)


def workdir_path(path) -> epath.Path:
  """The workdir's epath; an unsupported scheme, a missing backend or an unreachable bucket is one line."""
  found = storage.as_path(path, "workdir")
  storage.check_reachable(found, "workdir")
  return found


def _left_by_a_claim(path: epath.Path) -> bool:
  """What a claim that stopped before config.json (a full disk, a kill) leaves: the next claim may write over it."""
  if path.name == CHECKPOINTS:
    return path.is_dir() and next(iter(path.iterdir()), None) is None  # made empty by the checkpoint manager
  return path.name.removesuffix(".tmp") in (SCHEDULE, MEMBERS, TASKS, CONFIG)


def metrics_file(folder: epath.Path, step: int) -> epath.Path:
  return folder / f"{step:09d}.jsonl"


def metric_files(path: epath.Path) -> list[tuple[int, epath.Path]]:
  """(step, file) of every eval written under the workdir's metrics/, in step order."""
  folder = path / METRICS
  if not folder.exists():
    return []
  found = [
    (int(f.name.split(".")[0]), f)
    for f in folder.iterdir()
    if f.name.endswith(".jsonl") and f.name.split(".")[0].isdigit()
  ]
  return sorted(found)


class Workdir:
  """One run's directory. Creating it writes nothing until `claim` accepts the config.

  In a run of many processes every process reads it, and only the writer (process 0) writes
  config, members, tasks, schedule and metrics; checkpoints are written by all (Orbax).
  """

  def __init__(self, path, writer: bool = True):
    self.path, self.writer = workdir_path(path), writer

  def file(self, name: str) -> epath.Path:
    return self.path / name

  @property
  def checkpoint_dir(self) -> epath.Path:
    return self.file(CHECKPOINTS)

  def check_config(self, config_dict: dict) -> bool:
    """True when the workdir already holds this config (a resume); raises if it holds another."""
    self._check_is_folder()
    path = self.file(CONFIG)
    if not path.exists():
      others = [p.name for p in self.path.iterdir() if not _left_by_a_claim(p)] if self.path.is_dir() else []
      if others:
        raise WorkdirError(
          f"workdir {self.path} is not empty and holds no {CONFIG} (it holds {', '.join(others[:5])}); "
          "choose an empty or new directory"
        )
      return False
    fields = differing_fields(as_json(resolve_saved(storage.read_json(path))), config_dict)
    if fields:
      shown = ", ".join(f"{k}" for k in fields[:8]) + (" ..." if len(fields) > 8 else "")
      raise WorkdirError(
        f"workdir {self.path} holds a different run (fields differ: {shown}); use a new --workdir or the saved config"
      )
    return True

  def _check_is_folder(self) -> None:
    """Raises when the workdir, or the nearest of its parents that exists, is a file."""
    for path in (self.path, *self.path.parents):
      if path.exists():
        if not path.is_dir():
          what = "the workdir" if path == self.path else f"its parent {path}"
          raise WorkdirError(f"workdir {self.path}: {what} is a file, not a directory; choose another --workdir")
        return

  def claim(self, config_dict: dict, members, tasks, schedule: dict) -> None:
    """Writes config.json, members.json, tasks.json and schedule.npz of a new run."""
    storage.make_folder(self.path)
    if not self.writer:
      return
    storage.write_npz(self.file(SCHEDULE), **schedule)
    self.write_members(members)
    storage.write_json(self.file(TASKS), [dataclasses.asdict(t) for t in tasks])
    storage.write_json(self.file(CONFIG), config_dict)  # last: its presence marks a claimed workdir

  def write_members(self, members, dropped: dict | None = None) -> None:
    """members.json; a member dropped for a non-finite loss carries "dropped_at": its step."""
    if not self.writer:
      return
    rows = [
      dataclasses.asdict(m) | ({"dropped_at": dropped[m.id]} if dropped and m.id in dropped else {}) for m in members
    ]
    storage.write_json(self.file(MEMBERS), rows)

  def write_metrics(self, step: int, rows: list[dict]) -> None:
    """The rows of the eval at `step`, as one whole file."""
    if not self.writer:
      return
    folder = self.file(METRICS)
    storage.make_folder(folder)
    storage.write_text(metrics_file(folder, step), "".join(json.dumps(r) + "\n" for r in rows))

  def drop_metrics_after(self, last_step: int) -> None:
    """Removes the evals past last_step (what a killed run wrote past its checkpoint)."""
    if not self.writer:
      return
    for step, path in metric_files(self.path):
      if step > last_step:
        path.unlink()

  def drop_tensorboard(self) -> None:
    """Removes tensorboard/ (a run starting afresh over an earlier start's events)."""
    folder = self.file(TENSORBOARD)
    if self.writer and folder.exists():
      folder.rmtree()


def read_metric_rows(path: epath.Path) -> list[dict]:
  """Every metric row of a workdir, in step order (files read concurrently: one request each on object stores)."""
  with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
    texts = list(pool.map(lambda f: f.read_text(), [f for _, f in metric_files(path)]))
  return [json.loads(line) for text in texts for line in text.splitlines()]


def metric_rows(step: int, member_ids, task_ids, result, train_loss_M) -> list[dict]:
  """Long-format rows of one group's eval at `step`, plus its training-loss rows."""
  rows = []
  for g, member in enumerate(member_ids):
    rows.append(
      {
        "step": step,
        "member": member,
        "task": "all",
        "loss": _finite_or_none(train_loss_M[g]) if train_loss_M is not None else None,
        "accuracy": None,
        "signal": None,
      }
    )
    for t in task_ids:
      acc = None if result.accuracy is None else _finite_or_none(result.accuracy[g, t])
      rows.append(
        {
          "step": step,
          "member": member,
          "task": int(t),
          "loss": _finite_or_none(result.loss[g, t]),
          "accuracy": acc,
          "signal": _finite_or_none(result.signal[g, t]),
        }
      )
  return rows


def stats_line(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{np.median(v):.4g} (members {v.min():.4g} .. {v.max():.4g})"
