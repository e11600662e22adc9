"""The training loop: validate, claim or resume the workdir, step, evaluate, checkpoint.

Dispatches end at every eval step and checkpoint step (and at most `steps_per_dispatch`
apart), so a resumed run walks exactly the segments an uninterrupted run walks.
"""

import dataclasses
import logging
import signal
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from scaling_interference import storage
from scaling_interference.compile_cache import enable_compilation_cache
from scaling_interference.config import as_json
from scaling_interference.data.schedules import realised_counts
from scaling_interference.errors import NonFiniteLossError, WriteError
from scaling_interference.models.kinds import model_kind
from scaling_interference.sweep import background, memory
from scaling_interference.sweep.build import build
from scaling_interference.sweep.checkpoint import Checkpoints
from scaling_interference.sweep.engine import Engine
from scaling_interference.sweep.members import Member, all_members
from scaling_interference.sweep.tensorboard import TensorBoardLog
from scaling_interference.sweep.wandb_log import WandbLog
from scaling_interference.sweep.workdir import TRACES, Workdir, metric_rows, stats_line

log = logging.getLogger("scaling_interference")

PROGRESS_SECONDS = 30.0  # the longest gap between progress lines (more often at eval steps)


def next_boundary(step: int, train) -> int:
  """The end of the dispatch that starts at `step`."""
  return min(
    train.steps,
    step + train.steps_per_dispatch,
    (step // train.eval_every + 1) * train.eval_every,
    (step // train.checkpoint_every + 1) * train.checkpoint_every,
  )


def is_eval_step(step: int, train) -> bool:
  return step % train.eval_every == 0 or step == train.steps


def is_checkpoint_step(step: int, train) -> bool:
  return step % train.checkpoint_every == 0 or step == train.steps


@dataclasses.dataclass
class TrainLossTracker:
  """Sum of per-step training losses per member since the last eval (kept in checkpoints)."""

  sums: np.ndarray
  count: int = 0

  def add(self, losses_SxM: np.ndarray) -> None:
    self.sums = self.sums + losses_SxM.astype(np.float64).sum(axis=0)
    self.count += losses_SxM.shape[0]

  def take_mean(self):
    mean = self.sums / self.count if self.count else None
    self.sums, self.count = np.zeros_like(self.sums), 0
    return mean

  def meta(self) -> dict:
    return {"train_loss_sums": [float(v) for v in self.sums], "train_loss_count": self.count}


def first_non_finite(losses_SxM: np.ndarray, first_step: int, skip: set[int]) -> dict[int, int]:
  """{member index: first step with a non-finite loss} for members not in `skip`."""
  found = {}
  for s, m in np.argwhere(~np.isfinite(losses_SxM)):
    if int(m) not in skip and int(m) not in found:
      found[int(m)] = first_step + int(s)
  return found


class Preemption:
  """Turns SIGTERM and SIGINT into a request to checkpoint and stop after the current dispatch.

  With many processes a signal may reach only some of them: at every dispatch boundary all
  processes gather their requests (`agreed`), so every one stops at the same step and saves the
  same checkpoint together.
  """

  def __init__(self):
    self.signal_name = None
    self.signum = 0
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._request)
    return self

  def _request(self, signum, frame):
    del frame
    self.signum, self.signal_name = signum, signal.Signals(signum).name

  def agreed(self) -> str | None:
    """The stop request every process sees at this boundary: any process's signal stops them all."""
    if jax.process_count() == 1:
      return self.signal_name
    signum_N = np.asarray(multihost_utils.process_allgather(np.int32(self.signum)))
    senders = np.flatnonzero(signum_N)
    if not senders.size:
      return None
    if self.signal_name is None:
      self.signal_name = f"{signal.Signals(int(signum_N[senders[0]])).name} (sent to process {senders[0]})"
    return self.signal_name

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


class TraceLog:
  """Dense traces of the traced tasks: steps (S,), answer loss and signal (S, M, T) each, in traces.npz."""

  def __init__(self, path: epath.Path, every: int, task_ids, member_ids):
    self.path, self.every = path, every
    self.task_ids, self.member_ids = np.asarray(task_ids, np.int32), np.asarray(member_ids, np.int32)
    self.steps: list[int] = []
    self.loss: list[np.ndarray] = []
    self.signal: list[np.ndarray] = []

  @property
  def enabled(self) -> bool:
    return bool(self.every) and self.task_ids.size > 0

  def add(self, first_step: int, traces) -> None:
    """traces: per group (loss, signal), each (S, M, T), from a segment starting at first_step; keeps traced steps."""
    if not self.enabled:
      return
    loss_SxMxT = np.concatenate([np.asarray(loss) for loss, _ in traces], axis=1)
    signal_SxMxT = np.concatenate([np.asarray(signal) for _, signal in traces], axis=1)
    for i, (loss_MxT, signal_MxT) in enumerate(zip(loss_SxMxT, signal_SxMxT, strict=True)):
      if (first_step + i + 1) % self.every == 0:
        self.steps.append(first_step + i + 1)
        self.loss.append(loss_MxT)
        self.signal.append(signal_MxT)

  def load(self, last_step: int) -> None:
    """Reads the traces a previous process saved, up to last_step (loss NaN in files written before it was traced)."""
    if self.enabled and self.path.exists():
      f = storage.read_npz(self.path)
      keep = f["step"] <= last_step
      loss = f["loss"] if "loss" in f else np.full(f["signal"].shape, np.nan, np.float32)
      self.steps = [int(v) for v in f["step"][keep]]
      self.loss, self.signal = list(loss[keep]), list(f["signal"][keep])

  def save(self) -> None:
    if self.enabled and jax.process_index() == 0:
      empty = np.zeros((0, self.member_ids.size, self.task_ids.size))
      loss, signal = (np.stack(v) if v else empty for v in (self.loss, self.signal))
      storage.write_npz(
        self.path,
        step=np.asarray(self.steps, np.int64),
        loss=loss.astype(np.float32),
        signal=signal.astype(np.float32),
        task=self.task_ids,
        member=self.member_ids,
      )


@dataclasses.dataclass(frozen=True)
class RunResult:
  workdir: str
  step: int
  members: list[Member]
  resumed_from: int | None
  preempted_by: str | None = None  # the signal that stopped the run early
  dropped: dict | None = None  # member id -> step of its first non-finite loss (policy "drop")


class Trainer:
  """One run of a sweep in one workdir."""

  def __init__(self, config, workdir: str):
    self.problem, self.groups = build(config)
    self.config, self.train = config, config.train
    self.members = all_members(self.groups)
    self.workdir = Workdir(workdir, writer=jax.process_index() == 0)
    self.resuming = self.workdir.check_config(as_json(config))
    if jax.process_count() > 1:  # every process has read the workdir before process 0 writes to it
      multihost_utils.sync_global_devices("scaling_interference: workdir checked")
    self.engine = Engine(config, self.problem, self.groups)
    self.traces = TraceLog(
      self.workdir.file(TRACES), self.engine.trace_every, self.problem.trace_T, [m.id for m in self.members]
    )
    self.dropped: dict[int, int] = {}  # member index -> first non-finite step
    self.loggers: list = []  # process 0's TensorBoard files and W&B runs, opened once the workdir is claimed

  def _write_eval(self, step: int, states, train_loss_M) -> None:
    results = self.engine.evaluate(states)
    rows, task_ids = [], range(len(self.problem.tasks))
    for group, result in zip(self.groups, results, strict=True):
      ids = [m.id for m in group.members]
      group_loss_M = None if train_loss_M is None else train_loss_M[ids]
      rows += metric_rows(step, ids, task_ids, result, group_loss_M)
    self.workdir.write_metrics(step, rows)
    for logger in self.loggers:
      logger.eval_rows(rows)

  def _schedule(self) -> dict:
    """The realised schedule: injected examples per schedule at every step that has any."""
    found = self.problem.schedules
    counts_SxZ = realised_counts(found, self.train.steps)
    steps = np.nonzero(counts_SxZ.sum(axis=1))[0]
    return {
      "step": steps,
      "count": counts_SxZ[steps],
      "task": np.asarray([s.task for s in found], np.int32),
      "name": np.asarray([s.name for s in found], dtype=str),
    }

  def _start(self, checkpoints: Checkpoints):
    found = checkpoints.restore_newest_readable(self.engine.placed_abstract_states()) if self.resuming else None
    tracker = TrainLossTracker(np.zeros(len(self.members)))
    if found is None:
      self.workdir.claim(as_json(self.config), self.members, self.problem.tasks, self._schedule())
      self.workdir.drop_metrics_after(-1)
      self.workdir.drop_tensorboard()  # an earlier start's events, from a run that never completed a checkpoint
      self._open_loggers(None)
      states = self.engine.init_states()
      self._write_eval(0, states, None)
      return states, 0, tracker
    latest, states, meta = found
    self._open_loggers(latest)
    tracker.sums, tracker.count = np.asarray(meta["train_loss_sums"]), meta["train_loss_count"]
    self.dropped = {int(k): v for k, v in meta.get("dropped", {}).items()}
    self.problem.restore_host_state(meta.get("data"))
    self.traces.load(latest)
    self.workdir.drop_metrics_after(latest)
    log.info("resuming %s from step %d", self.workdir.path, latest)
    return states, latest, tracker

  def run(self) -> RunResult:
    log.info(
      "sweep: %d members in %d groups, %d tasks, %d steps of batch %d",
      len(self.members),
      len(self.groups),
      len(self.problem.tasks),
      self.train.steps,
      self.train.batch_size,
    )
    for line in memory_lines(self.groups, self.train.batch_size, self.config):
      log.info(line)
    self._compile_and_check_memory()  # before the workdir is claimed: a program that does not fit writes nothing
    checkpoints = Checkpoints(
      self.workdir.checkpoint_dir, len(self.groups), self.train.max_to_keep, self.train.keep_every
    )
    background.divert_background_errors()  # a failed save is one line of ours, not Orbax's tracebacks
    failure = None
    try:
      with Preemption() as preemption:
        states, step, tracker = self._start(checkpoints)
        resumed_from = step if step else None
        step, stopped_by = self._loop(states, step, tracker, checkpoints, preemption)
    except WriteError as e:
      failure = e
    finally:
      failure = self._close(checkpoints, failure)
    if failure is not None:
      raise type(failure)(f"{failure}; {_resume_hint(checkpoints.newest_complete())}") from failure
    dropped = {self.members[m].id: s for m, s in self.dropped.items()}
    return RunResult(str(self.workdir.path), step, self.members, resumed_from, stopped_by, dropped or None)

  def _close(self, checkpoints: Checkpoints, failure: WriteError | None) -> WriteError | None:
    """Waits for the pending save and closes the loggers; returns the first write error (`failure` if given)."""
    for close in [checkpoints.close, *(logger.close for logger in self.loggers)]:
      try:
        close()
      except WriteError as e:
        failure = failure or e
    return failure

  def _open_loggers(self, resumed_from: int | None) -> None:
    if not self.workdir.writer:
      return
    if self.train.tensorboard:
      self.loggers.append(TensorBoardLog(self.workdir.path, self.members, self.problem.tasks, resumed_from))
    if self.train.wandb_project:
      self.loggers.append(WandbLog(self.train.wandb_project, self.workdir.path, self.members, self.problem.tasks))

  def _compile_and_check_memory(self) -> None:
    """Compiles the usual segment's program ahead of time and stops (ConfigError) if one device cannot hold it."""
    num_steps = next_boundary(0, self.train)
    log.info("compiling the training program (%d steps per dispatch) ...", num_steps)
    t0 = time.time()
    compiled = self.engine.compile_segment(num_steps, self.problem.host_block_spec(num_steps))
    device = self.engine.mesh.devices.flat[0]
    needed, available = memory.program_bytes(compiled), memory.available_bytes(device)
    log.info("compiled in %.1fs; it needs %s per device (%s free)", time.time() - t0, _gib(needed), _gib(available))
    memory.check_fits(needed, available, self.groups, self.engine.abstract_states(), device)

  def _save(self, checkpoints: Checkpoints, step: int, states, tracker: TrainLossTracker) -> None:
    self.traces.save()
    meta = {"step": step, "data": self.problem.host_state(), "dropped": self.dropped, **tracker.meta()}
    checkpoints.save(step, states, meta)

  def _handle_non_finite(self, found: dict[int, int], step: int, states, tracker, checkpoints) -> None:
    """Policy "halt": checkpoint (diverged members frozen at their last good state) and stop; "drop": go on."""
    self.dropped.update(found)
    names = "; ".join(
      f"{self.members[m].describe()}: training loss is not finite at step {s}" for m, s in found.items()
    )
    if self.train.nonfinite == "drop":
      log.warning("%s; member frozen at its last good state, the others train on", names)
      self.workdir.write_members(self.members, {self.members[m].id: s for m, s in self.dropped.items()})
      return
    self._save(checkpoints, step, states, tracker)
    raise NonFiniteLossError(
      f"{names} (train.nonfinite=halt; the last good state is in the checkpoint of step {step}, "
      "or set train.nonfinite=drop to train the other members on)"
    )

  def _loop(
    self, states, step: int, tracker: TrainLossTracker, checkpoints: Checkpoints, preemption
  ) -> tuple[int, str | None]:
    """Trains to the last step, or until a signal asks to stop; returns the step reached and the signal."""
    t0, first = time.time(), step
    last_line = t0
    while step < self.train.steps:
      end = next_boundary(step, self.train)
      host = self.problem.host_batches(end - step)
      states, losses, traces = self.engine.train_segment(states, jnp.int32(step), end - step, host)
      losses, traces = jax.device_get((losses, traces))
      checkpoints.check_for_errors()  # a failed asynchronous save stops the run here, not at the next save
      losses_SxM = np.concatenate([np.asarray(loss) for loss in losses], axis=1)
      found = first_non_finite(losses_SxM, step, set(self.dropped))
      tracker.add(losses_SxM)
      self.traces.add(step, traces)
      step = end
      for logger in self.loggers:
        logger.train_loss(step, dispatch_mean(losses_SxM))
      if found:
        self._handle_non_finite(found, step, states, tracker, checkpoints)
      if is_eval_step(step, self.train):
        mean_M = tracker.take_mean()
        self._write_eval(step, states, mean_M)
        self._log_progress(step, first, t0, mean_M)
        last_line = time.time()
      elif time.time() - last_line >= PROGRESS_SECONDS:  # a line at a steady cadence between evals too
        self._log_progress(step, first, t0, dispatch_mean(losses_SxM))
        last_line = time.time()
      stop = preemption.agreed()
      if is_checkpoint_step(step, self.train) or stop:
        self._save(checkpoints, step, states, tracker)
      if stop:
        log.warning("%s received: checkpoint of step %d saved; run the same command to resume", stop, step)
        return step, stop
    return step, None

  def _log_progress(self, step: int, first: int, t0: float, loss_M) -> None:
    rate = (step - first) / max(time.time() - t0, 1e-9)
    eta = (self.train.steps - step) / max(rate, 1e-9)
    log.info(
      "step %d/%d (%.0f%%) | %.1f steps/s | ETA %.0fs | train loss %s",
      step,
      self.train.steps,
      100 * step / max(self.train.steps, 1),
      rate,
      eta,
      stats_line(loss_M),
    )


def _resume_hint(newest: int | None) -> str:
  if newest is None:
    return "no checkpoint is complete yet: once the write can succeed (free space), the same command starts afresh"
  return (
    f"the newest complete checkpoint is step {newest}: once the write can succeed (free space), "
    "the same command resumes from it"
  )


def dispatch_mean(losses_SxM) -> np.ndarray:
  """Each member's mean finite training loss over a dispatch; NaN for a member with none (frozen)."""
  finite_SxM = np.isfinite(losses_SxM)
  count_M = finite_SxM.sum(axis=0)
  return np.where(count_M > 0, np.where(finite_SxM, losses_SxM, 0.0).sum(axis=0) / np.maximum(count_M, 1), np.nan)


def _gib(n: int | None) -> str:
  return "? GiB" if n is None else f"{n / memory.GIB:.2f} GiB"


def memory_lines(groups, batch_size: int, config) -> list[str]:
  """Per-group training memory estimate where the model kind gives one (language models)."""
  kind = model_kind(config.model.name)
  lines = [kind.memory_line(g.shape, batch_size, g.size) for g in groups]
  return [line for line in lines if line]


def show_progress_lines() -> None:
  """Lets our INFO progress lines through where nobody chose otherwise (a notebook, a plain script): the
  package's logger at INFO when its level is unset, and a stderr handler when no logger has one (a notebook
  shows them through the handler Orbax's import gives the root logger)."""
  package = logging.getLogger("scaling_interference")
  if package.level == logging.NOTSET:
    package.setLevel(logging.INFO)
  if not package.handlers and not logging.getLogger().handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    package.addHandler(handler)


def train(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
  """Trains (or resumes) the sweep `config` describes in `workdir`."""
  show_progress_lines()
  enable_compilation_cache()  # before Trainer: building the problem compiles its data keys
  return Trainer(config, workdir).run()
