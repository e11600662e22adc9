"""The workdir contract: config.json, members.json, tasks.json, metrics.jsonl, checkpoints/.

metrics.jsonl is long format, one JSON object per (step, member, task):
{"step", "member", "task", "loss", "accuracy", "signal"}, null where a field does not apply;
rows with "task": "all" carry the mean training loss since the previous eval.
"""
import dataclasses
import json
import math
import os

import numpy as np

from scaling_interference.config import as_json, differing_fields, resolve_saved
from scaling_interference.errors import WorkdirError

CONFIG, MEMBERS, TASKS, METRICS, CHECKPOINTS = "config.json", "members.json", "tasks.json", "metrics.jsonl", "checkpoints"
SCHEDULE, TRACES = "schedule.npz", "traces.npz"


def _write_json_atomic(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)


def _finite_or_none(x):
  return None if x is None or not math.isfinite(x) else float(x)


def local_path(path: str) -> str:
  """The absolute local path of a workdir; a URL (gs://, s3://, ...) is refused, never made a local folder."""
  if "://" in str(path):
    raise WorkdirError(f"workdir {path}: URL workdirs (gs://, s3://, ...) are not supported yet; use a path on "
                       "a file system every process shares (for a bucket, a gcsfuse mount)")
  return os.path.abspath(path)


class Workdir:
  """One run's directory. Creating it writes nothing until `claim` accepts the config.

  In a run of many processes every process reads it, and only the writer (process 0) writes
  config, members, tasks, schedule and metrics; checkpoints are written by all (Orbax).
  """

  def __init__(self, path: str, writer: bool = True):
    self.path, self.writer = local_path(path), writer

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @property
  def checkpoint_dir(self) -> str:
    return self.file(CHECKPOINTS)

  def check_config(self, config_dict: dict) -> bool:
    """True when the workdir already holds this config (a resume); raises if it holds another."""
    path = self.file(CONFIG)
    if not os.path.exists(path):
      if os.path.isdir(self.path) and os.listdir(self.path):
        raise WorkdirError(f"workdir {self.path} is not empty and holds no {CONFIG}; choose an empty or new directory")
      return False
    with open(path) as f:
      old = json.load(f)
    fields = differing_fields(as_json(resolve_saved(old)), config_dict)
    if fields:
      shown = ", ".join(f"{k}" for k in fields[:8]) + (" ..." if len(fields) > 8 else "")
      raise WorkdirError(f"workdir {self.path} holds a different run (fields differ: {shown}); "
                         "use a new --workdir or the saved config")
    return True

  def claim(self, config_dict: dict, members, tasks, schedule: dict) -> None:
    """Writes config.json, members.json, tasks.json and schedule.npz of a new run."""
    os.makedirs(self.path, exist_ok=True)
    if not self.writer:
      return
    write_npz_atomic(self.file(SCHEDULE), **schedule)
    self.write_members(members)
    _write_json_atomic(self.file(TASKS), [dataclasses.asdict(t) for t in tasks])
    _write_json_atomic(self.file(CONFIG), config_dict)  # last: its presence marks a claimed workdir

  def write_members(self, members, dropped: dict | None = None) -> None:
    """members.json; a member dropped for a non-finite loss carries "dropped_at": its step."""
    if not self.writer:
      return
    rows = [dataclasses.asdict(m) | ({"dropped_at": dropped[m.id]} if dropped and m.id in dropped else {})
            for m in members]
    _write_json_atomic(self.file(MEMBERS), rows)

  def append_metrics(self, rows: list[dict]) -> None:
    """Appends rows and syncs, so a crash leaves at most a torn last line."""
    if not self.writer:
      return
    text = "".join(json.dumps(r) + "\n" for r in rows)
    with open(self.file(METRICS), "a") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())

  def truncate_metrics(self, last_step: int) -> None:
    """Keeps only whole rows with step <= last_step (drops what a killed run wrote past its checkpoint)."""
    path = self.file(METRICS)
    if not self.writer or not os.path.exists(path):
      return
    kept = [line for line in read_metric_lines(path) if json.loads(line)["step"] <= last_step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)


def write_npz_atomic(path: str, **arrays) -> None:
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def read_metric_lines(path: str) -> list[str]:
  """Whole lines of metrics.jsonl; a torn final line (crash mid-write) is skipped."""
  with open(path) as f:
    lines = f.readlines()
  if lines and not lines[-1].endswith("\n"):
    lines = lines[:-1]
  return lines


def metric_rows(step: int, member_ids, task_ids, result, train_loss_M) -> list[dict]:
  """Long-format rows of one group's eval at `step`, plus its training-loss rows."""
  rows = []
  for g, member in enumerate(member_ids):
    rows.append({"step": step, "member": member, "task": "all",
                 "loss": _finite_or_none(train_loss_M[g]) if train_loss_M is not None else None,
                 "accuracy": None, "signal": None})
    for t in task_ids:
      acc = None if result.accuracy is None else _finite_or_none(result.accuracy[g, t])
      rows.append({"step": step, "member": member, "task": int(t), "loss": _finite_or_none(result.loss[g, t]),
                   "accuracy": acc, "signal": _finite_or_none(result.signal[g, t])})
  return rows


def stats_line(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{np.median(v):.4g} (members {v.min():.4g} .. {v.max():.4g})"
