"""TensorBoard event files of a run, written by process 0 while it trains: DIR/tensorboard/<member>/.

One TensorBoard run per member, named by what a sweep varies, e.g. "width_64/seed_1/lr_0.003/member_7"
(language models: "size_20M/..."), so the run selector's filter groups members by width, seed or lr.
Series per member:
  train/loss          the mean training loss of each dispatch, at its last step (live runs), or of each eval
                      interval (export_metrics, from the workdir's metrics)
  eval/loss/TASK, eval/signal/TASK, eval/accuracy/TASK   every eval; TASK = "task_004" plus the task's name
                      and "_heldout" for held-out tuples of token tasks
and the member's hyperparameters (width, size, depth, seed, lr) for the HParams dashboard.
A resumed run opens its writers with purge_step = the step it resumed from + 1, so TensorBoard hides
what an interrupted process wrote past its last checkpoint: no step appears twice. Written with
tensorboardX (protobuf only, no TensorFlow; it also writes the purge marker and the hparams summary).
Each eval is one event per member holding all its scalars. On cloud storage the files are written to
a local folder and copied into the workdir at an eval at most every minute, and at the end (an
object store cannot append).
"""
import dataclasses
import math
import pathlib
import shutil
import tempfile
import time

from etils import epath

from scaling_interference import storage

FOLDER = "tensorboard"
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


class TensorBoardLog:
  """Per-member SummaryWriters under workdir/tensorboard (see the module docstring)."""

  def __init__(self, workdir: epath.Path, members, tasks, resumed_from: int | None):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboardX.summary import hparams as hparams_summary  # pylint: disable=g-import-not-at-top
    self._summary_pb2, self.copied = summary_pb2, time.time()
    self.remote = workdir / FOLDER if storage.is_remote(workdir) else None
    self.root = pathlib.Path(tempfile.mkdtemp(prefix="tensorboard_")) if self.remote else workdir / FOLDER
    self.members, self.tags = list(members), {t.id: task_tag(t) for t in tasks}
    purge = None if resumed_from is None else resumed_from + 1
    # tensorboardX names a file by the second it opened and the host: two processes within one second
    # (a quick resume) would write one file, so each process adds its own start time in nanoseconds.
    suffix = f".{time.time_ns()}"
    self.writers = {m.id: SummaryWriter(str(self.root / run_name(m)), purge_step=purge, flush_secs=30,
                                        filename_suffix=suffix) for m in self.members}
    if resumed_from is None:
      for m in self.members:
        for summary in hparams_summary(hparams(m), {"eval/mean_signal": 0.0}):
          self.writers[m.id].file_writer.add_summary(summary)

  def train_loss(self, step: int, loss_M) -> None:
    """Each member's mean training loss over the dispatch that ended at `step` (members in sweep order)."""
    for member, loss in zip(self.members, loss_M):
      if math.isfinite(float(loss)):
        self.writers[member.id].add_scalar("train/loss", float(loss), step)

  def eval_rows(self, rows: list[dict], train_loss: bool = False) -> None:
    """Metric rows (workdir.metric_rows), one event per (member, step) holding all its scalars; train_loss: also
    write the "all" rows' loss as train/loss."""
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
      summary = self._summary_pb2.Summary(value=[self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                                                 for k, v in values.items()])
      self.writers[member].file_writer.add_summary(summary, step)
    if self.remote is not None and time.time() - self.copied >= COPY_SECONDS:
      self.flush()

  def flush(self) -> None:
    """Writes the buffered events; on cloud storage also copies the files into the workdir."""
    for writer in self.writers.values():
      writer.flush()
    if self.remote is not None:
      for path in self.root.rglob("*"):  # a local folder
        if path.is_file():
          storage.write_bytes(self.remote / path.relative_to(self.root).as_posix(), path.read_bytes())
      self.copied = time.time()

  def close(self) -> None:
    for writer in self.writers.values():
      writer.close()
    self.flush()
    if self.remote is not None:
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
  log.eval_rows([{**r, "task": r["task"] if r["task"] == "all" else int(r["task"])}
                 for r in metrics.to_dict("records")], train_loss=True)
  log.close()
  return root / FOLDER


def _task(row: dict):
  from scaling_interference.tasks import TaskInfo  # pylint: disable=g-import-not-at-top
  return TaskInfo(**{f.name: row[f.name] for f in dataclasses.fields(TaskInfo) if f.name in row})
