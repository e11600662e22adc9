"""TensorBoard event files of a run, written by process 0 while it trains: DIR/tensorboard/<member>/.

One TensorBoard run per member, named by what a sweep varies, e.g. "width_64/seed_1/lr_0.003/member_7"
(language models: "size_20M/..."), so the run selector's filter groups members by width, seed or lr.
Series per member:
  train/loss          the mean training loss of each dispatch, at its last step (live runs), or of each eval
                      interval (export_metrics, from the workdir's metrics)
  eval/loss/TASK, eval/signal/TASK, eval/accuracy/TASK   every eval; TASK = "task_004" plus the task's name
                      and "_heldout" for held-out tuples of token tasks
and the member's hyperparameters (width, size, depth, seed, lr) for the HParams dashboard.
A resumed run's files start with a session-start event at the step it resumed from + 1 (a purge
step), so TensorBoard hides what an interrupted process wrote past its last checkpoint: no step
appears twice. The events are tensorboardX's protos (protobuf only, no TensorFlow; its hparams
summary too), written and flushed at every eval in the trainer's own thread, so a full disk is one
error the trainer reports, not a background thread's traceback. Each eval is one event per member
holding all its scalars. On cloud storage the files are written to a local folder and copied into
the workdir at an eval at most every minute, and at the end (an object store cannot append).
"""

import contextlib
import dataclasses
import math
import pathlib
import shutil
import socket
import struct
import tempfile
import time

from etils import epath

from scaling_interference import storage
from scaling_interference.errors import WriteError
from scaling_interference.sweep.workdir import TENSORBOARD

FOLDER = TENSORBOARD
COPY_SECONDS = 60.0  # on cloud storage: the longest wait between copies of the event files (and at the end)


def run_name(member) -> str:
  """The member's TensorBoard run: what varies across a sweep, outermost first."""
  shape = f"size_{member.size.replace('/', '-')}" if member.size else f"width_{member.width}"
  return f"{shape}/seed_{member.seed}/lr_{member.lr:g}/member_{member.id}"


def task_tag(task) -> str:
  name = f"_{task.name}" if task.name else ""
  split = "_heldout" if task.split == "heldout" else ""
  return f"task_{task.id:03d}{name}{split}"


def hparams(member) -> dict:
  found = {"width": member.width, "depth": member.depth, "seed": member.seed, "lr": member.lr}
  return {**found, "size": member.size} if member.size else found


class EventFile:
  """One TensorBoard run's event file, written in the calling thread (no background writer, no exit hook), so a
  failed write raises where the trainer can report it. Records are TFRecord-framed Event protos."""

  def __init__(self, folder: pathlib.Path, event_pb2, masked_crc32c):
    folder.mkdir(parents=True, exist_ok=True)
    # named by the process's start in nanoseconds: a resumed process never writes over the first one's file
    self.path = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{time.time_ns()}"
    self._event_pb2, self._crc = event_pb2, masked_crc32c
    self.file = open(self.path, "wb")  # noqa: SIM115 - open for the run, closed by TensorBoardLog.close
    self.write(file_version="brain.Event:2")

  def write(self, **fields) -> None:
    data = self._event_pb2.Event(wall_time=time.time(), **fields).SerializeToString()
    header = struct.pack("Q", len(data))
    self.file.write(header + struct.pack("I", self._crc(header)) + data + struct.pack("I", self._crc(data)))


class TensorBoardLog:
  """One EventFile per member under workdir/tensorboard (see the module docstring)."""

  def __init__(self, workdir: epath.Path, members, tasks, resumed_from: int | None):
    from tensorboardX.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboardX.record_writer import masked_crc32c  # pylint: disable=g-import-not-at-top
    from tensorboardX.summary import hparams as hparams_summary  # pylint: disable=g-import-not-at-top

    self._summary_pb2, self.copied = summary_pb2, time.time()
    self.remote = workdir / FOLDER if storage.is_remote(workdir) else None
    self.root = pathlib.Path(tempfile.mkdtemp(prefix="tensorboard_")) if self.remote else pathlib.Path(workdir / FOLDER)
    self.members, self.tags = list(members), {t.id: task_tag(t) for t in tasks}
    self.files: dict[int, EventFile] = {}
    with self._writing():
      for m in self.members:
        self.files[m.id] = EventFile(self.root / run_name(m), event_pb2, masked_crc32c)
        if resumed_from is not None:  # TensorBoard drops what an interrupted process wrote past this step
          self.files[m.id].write(
            step=resumed_from + 1, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)
          )
        else:
          for summary in hparams_summary(hparams(m), {"eval/mean_signal": 0.0}):
            self.files[m.id].write(summary=summary)

  @contextlib.contextmanager
  def _writing(self):
    """An OSError of the event files becomes one WriteError naming the folder."""
    try:
      yield
    except OSError as e:
      raise WriteError(
        f"could not write the TensorBoard files in {self.remote or self.root}: {storage.describe_error(e)}"
      ) from e

  def _summary(self, member: int, step: int, values: dict) -> None:
    value = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
    with self._writing():
      self.files[member].write(step=step, summary=self._summary_pb2.Summary(value=value))

  def train_loss(self, step: int, loss_M) -> None:
    """Each member's mean training loss over the dispatch that ended at `step` (members in sweep order)."""
    for member, loss in zip(self.members, loss_M, strict=True):
      if math.isfinite(float(loss)):
        self._summary(member.id, step, {"train/loss": float(loss)})

  def eval_rows(self, rows: list[dict], train_loss: bool = False) -> None:
    """Metric rows (workdir.metric_rows), one event per (member, step) holding all its scalars, then a flush;
    train_loss: also write the "all" rows' loss as train/loss."""
    scalars: dict = {}
    for row in rows:
      values = scalars.setdefault((row["member"], int(row["step"])), {})
      if row["task"] == "all":
        if train_loss and row["loss"] is not None:
          values["train/loss"] = row["loss"]
        continue
      tag = self.tags[int(row["task"])]
      values.update({f"eval/{f}/{tag}": row[f] for f in ("loss", "signal", "accuracy") if row[f] is not None})
    for (member, step), values in scalars.items():
      signals = [v for k, v in values.items() if k.startswith("eval/signal/")]
      if signals:
        values["eval/mean_signal"] = sum(signals) / len(signals)
      self._summary(member, step, values)
    with self._writing():
      for f in self.files.values():
        f.file.flush()
    if self.remote is not None and time.time() - self.copied >= COPY_SECONDS:
      self._copy()

  def _copy(self) -> None:
    """On cloud storage: copies the local event files into the workdir."""
    for path in self.root.rglob("*"):  # a local folder
      if path.is_file():
        storage.write_bytes(self.remote / path.relative_to(self.root).as_posix(), path.read_bytes())
    self.copied = time.time()

  def close(self) -> None:
    """Closes every file (each one, even when another fails), then copies them on cloud storage."""
    failed = None
    for f in self.files.values():
      try:
        f.file.close()
      except OSError as e:
        failed = failed or e
    if failed is not None:
      with self._writing():
        raise failed
    if self.remote is not None:
      self._copy()
      shutil.rmtree(self.root, ignore_errors=True)


def export_metrics(run, out: epath.Path | None = None) -> epath.Path:
  """Writes a finished or running workdir's metrics as event files (out: default workdir/tensorboard)."""
  from scaling_interference.sweep.members import Member  # pylint: disable=g-import-not-at-top

  root = run.path if out is None else out
  names = [f.name for f in dataclasses.fields(Member)]
  members = [Member(**{k: row[k] for k in names if k in row}) for row in run.members.to_dict("records")]
  tasks = [_task(row) for row in run.tasks.to_dict("records")]
  log = TensorBoardLog(root, members, tasks, resumed_from=None)
  metrics = run.metrics.astype(object).where(run.metrics.notna(), None)
  log.eval_rows(
    [{**r, "task": r["task"] if r["task"] == "all" else int(r["task"])} for r in metrics.to_dict("records")],
    train_loss=True,
  )
  log.close()
  return root / FOLDER


def _task(row: dict):
  from scaling_interference.tasks import TaskInfo  # pylint: disable=g-import-not-at-top

  return TaskInfo(**{f.name: row[f.name] for f in dataclasses.fields(TaskInfo) if f.name in row})
