"""Orbax checkpoints of a sweep: one item per group (restorable alone) plus JSON metadata."""

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from scaling_interference.errors import CheckpointError
from scaling_interference.storage import describe_error

log = logging.getLogger("scaling_interference")

META = "meta"


def group_item(index: int) -> str:
  return f"group_{index}"


class Checkpoints:
  """A CheckpointManager over `directory` (an epath: local or gs://, ...), saving asynchronously."""

  def __init__(self, directory: epath.Path, num_groups: int, max_to_keep: int = 3, keep_every: int = 0):
    self.num_groups, self.directory = num_groups, directory
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, keep_period=keep_every or None, create=True, enable_async_checkpointing=True
    )
    names = tuple(group_item(i) for i in range(num_groups)) + (META,)
    self.manager = ocp.CheckpointManager(directory, options=options, item_names=names)
    self.saving: int | None = None  # the step of the newest save started
    self._unchecked = False  # whether that save's outcome is still to be checked

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def newest_complete(self) -> int | None:
    """The newest checkpoint on disk that a resume would restore (a failed save's temporary folder is not one)."""
    try:
      self.manager.reload()
    except Exception:  # noqa: BLE001 - a directory that cannot be listed holds no checkpoint we can name
      return None
    return self.manager.latest_step()

  def _failed(self, step: int | None, e: Exception) -> CheckpointError:
    return CheckpointError(f"could not write the checkpoint of step {step} in {self.directory}: {describe_error(e)}")

  def save(self, step: int, states, meta: dict) -> None:
    """Starts an async save; Orbax writes to a temporary directory and renames it when complete."""
    self.check_for_errors()
    items = {group_item(i): ocp.args.StandardSave(s) for i, s in enumerate(states)}
    items[META] = ocp.args.JsonSave(meta)
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # noqa: BLE001 - whatever the writer raised, the save failed
      raise self._failed(step, e) from e
    self.saving, self._unchecked = step, True

  def check_for_errors(self) -> None:
    """Raises CheckpointError when an asynchronous save has failed (on any process); never waits for one.

    Called at every dispatch boundary, so a failed save stops the run within a dispatch of failing.
    """
    error = self._finished_save_error()
    if any_process(error is not None):
      raise self._failed(self.saving, error or RuntimeError("another process could not write its part")) from error

  def _finished_save_error(self) -> Exception | None:
    if not self._unchecked or self.manager.is_saving_in_progress():
      return None
    try:
      self.manager.wait_until_finished()  # the save is over: returns at once, or raises its error
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001 - the background save's error, whatever its type
      return e
    self._unchecked = False
    return None

  def restore(self, step: int, abstract_states):
    """All groups' states (shaped like abstract_states) and the metadata at `step`."""
    items = {group_item(i): ocp.args.StandardRestore(a) for i, a in enumerate(abstract_states)}
    items[META] = ocp.args.JsonRestore()
    out = self.manager.restore(step, args=ocp.args.Composite(**items))
    return [out[group_item(i)] for i in range(self.num_groups)], out[META]

  def restore_group(self, step: int, index: int, abstract_state=None):
    """One group's state; as NumPy-backed arrays when no abstract target is given."""
    args = ocp.args.StandardRestore(abstract_state)
    return self.manager.restore(step, args=ocp.args.Composite(**{group_item(index): args}))[group_item(index)]

  def restore_newest_readable(self, abstract_states):
    """(step, states, meta) of the newest checkpoint that restores; unreadable ones are set aside.

    A truncated or corrupt checkpoint is named in the log and renamed to STEP.corrupt, so the
    run resumes from the newest good one. With many processes a checkpoint any process cannot
    read is unreadable for all: process 0 sets it aside once, behind a barrier, and every process
    then tries the same previous step. Returns None when there is no checkpoint at all.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        states, meta = self.restore(step, abstract_states)
        error = None
      except Exception as e:  # any unreadable file: try the previous checkpoint
        error = e
      if not any_process(error is not None):
        return step, states, meta
      self._set_aside(step, error)
    return None

  def _set_aside(self, step: int, error: Exception | None) -> None:
    path = self.directory / str(step)
    if jax.process_index() == 0:
      why = (
        f"{type(error).__name__}: {str(error).splitlines()[0][:200]}" if error else "another process could not read it"
      )
      log.warning("checkpoint %s is unreadable (%s); set aside as %s.corrupt, trying the previous one", path, why, path)
      path.rename(self.directory / f"{step}.corrupt")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"scaling_interference: checkpoint {step} set aside")
    self.manager.reload()

  def close(self) -> None:
    """Waits for the pending save and closes the manager; raises CheckpointError when the save failed."""
    error = None
    for step in (self.manager.wait_until_finished, self.manager.check_for_errors, self.manager.close):
      try:
        step()
      except Exception as e:  # noqa: BLE001 - the background save's error, whatever its type
        error = error or e
    if error is not None:
      raise self._failed(self.saving, error) from error


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process (the same answer on every process)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.max(np.asarray(multihost_utils.process_allgather(np.int32(flag)))))
