"""Replay of training windows, the update split by task class, and counterfactual replays.

A window [start, stop) of training steps is replayed from the newest checkpoint at or before
`start` (or from the seeded init), with the same batches (a pure function of the data seed and
the step; host streams resume from the checkpoint's iterator state), the same optimizer states
and the same step code (`Engine.train_segment` up to `start`, `Engine.apply_gradient` inside the
window, on the batch gradient summed from its class parts), for every member of every group,
vmapped as in training. Inside the window each step's batch gradient is split into task classes
(`Problem.class_losses`, one `jax.jacrev`) and the update into class terms (split_update.py),
and the loss change of each task of interest, on the
eval examples the recorded metrics use, is attributed to the terms by the trapezoid rule

  dL_k(term, t) = 0.5 (g_k(theta_t) + g_k(theta_t+1)) . u_term(t).

The replay is checked against what training recorded: eval losses at the eval steps it passes
(all tasks where a dispatch ends there, the tasks of interest inside the window), parameters at
the checkpoints it passes. When the window holds none, its end parameters are compared with the
engine's own training (`Engine.train_segment`, the program training ran, which resumes bit for
bit) of the same steps from the same start state and stream position: going on to a distant eval
step instead would compare float noise grown over hundreds of steps (5% on a transformer after
175 steps at lr 3e-3), not the replay. Even inside a long window that noise grows (the replay sums
the batch gradient from class parts, in another order than training), so the engine also trains
the window from the start parameters nudged by one part in 1e7 (`NUDGE`); how far that lands from
training is the window's `noise_floor`. `max_diff` is the largest max|replayed - recorded| /
max|recorded| over the compared arrays; above max(`tolerance`, NOISE_FACTOR x noise_floor) the
replay raises ReplayError.

A counterfactual replays the window with some classes' gradients removed from the update (their
examples still count in the batch mean, so the other classes keep their weights).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference.analysis.classes import Classes, Window
from scaling_interference.analysis.split_update import flatten, initial_buffers, split_update
from scaling_interference.errors import ReplayError
from scaling_interference.reader import Run
from scaling_interference.sweep.loop import is_eval_step, next_boundary

TOLERANCE = 1e-4
NUDGE = 1e-7  # relative float perturbation of the start parameters that measures the noise floor
NOISE_FACTOR = 10.0


@dataclasses.dataclass
class WindowReplay:
  """What one window's replay measured, members of all groups concatenated (M) in member-id order.

  Per-step arrays (S leading) hold values after step t's update, at theta_{t+1}; U indexes the
  update terms (classes, then history and weight decay).
  """

  window: Window
  removed: tuple  # classes whose gradient the update left out (counterfactual), else ()
  checkpoint: int  # the step replayed from (0: the seeded init)
  loss_start_MxK: np.ndarray
  signal_start_MxK: np.ndarray
  loss_SxMxK: np.ndarray
  signal_SxMxK: np.ndarray
  dL_SxMxKxU: np.ndarray
  residual_SxM: np.ndarray  # max|sum of terms - applied update| / max|applied update|
  common_norm_SxM: np.ndarray  # ||gradient of the common classes|| on the step's real batch
  common_along_SxMxK: np.ndarray  # the common classes' update along g_k / ||g_k|| (trapezoid midpoint)
  max_diff: float = np.nan
  compared: int = 0
  noise_floor: float = 0.0  # training vs training from start parameters nudged by NUDGE (windows without evals)
  end_states: list | None = None  # every group's state at the window's end

  @property
  def steps(self) -> np.ndarray:
    return np.arange(self.window.start, self.window.stop)


class Replayer:
  """Replays windows of one run; the tasks of interest and the classes are fixed per replayer."""

  def __init__(self, run: Run, classes: Classes, interest_K, scan_steps: int, tolerance: float = TOLERANCE):
    self.run, self.problem, self.groups, self.engine = run, run.problem, run.groups, run.engine
    self.train, self.classes, self.tolerance = run.config.train, classes, tolerance
    self.interest_K = [int(k) for k in interest_K]
    self.interest = self.problem.task_batch(np.asarray(self.interest_K), self.train.eval_examples_per_task)
    self.class_K = jnp.asarray(classes.class_K, jnp.int32)
    self.checkpoint_steps = sorted(run.steps())
    self.recorded = recorded_losses(run)
    self.scan_steps = scan_steps  # the longest split segment; shorter ones run scan_length(n) steps
    self.split_segment = jax.jit(self._split_segment, static_argnums=4)  # drop_C is traced: one program for both
    self.task_state = jax.jit(self._task_state)
    self._host_start = self.problem.host_state()
    self._resume: dict = {}  # step -> (states, host state): the start of the last plain replay

  # ---- one member, one step ---------------------------------------------------------------
  def _task_values(self, model, params):
    """(loss_K, grads leaves (K, ...), signal_K) of the tasks of interest on their eval examples."""
    value_and_grad = jax.value_and_grad(functools.partial(self.problem.task_loss, model))
    loss_K, grad_K = jax.vmap(value_and_grad, in_axes=(None, 0))(params, self.interest)
    return loss_K, grad_K, self.problem.signal_of(model, params, self.interest_K)

  def _member_split_step(self, index: int, carry: dict, batch, drop_C):
    model, state = self.groups[index].model, carry["state"]
    params = state["params"]
    num_classes = len(self.classes.names)

    def class_losses(p):  # (what jacrev differentiates, its value as aux)
      loss_C = self.problem.class_losses(model, p, batch, self.class_K, num_classes)
      return loss_C, loss_C

    g_C, loss_C = jax.jacrev(class_losses, has_aux=True)(params)
    loss, g = loss_C.sum(), jax.tree.map(lambda c: c.sum(0), g_C)  # the batch loss and its gradient
    common_C = jnp.asarray(self.classes.common_C, jnp.float32)
    common_norm = jnp.sqrt(sum(jnp.sum(jnp.square(jnp.tensordot(common_C, c, 1))) for c in jax.tree.leaves(g_C)))
    g = jax.tree.map(lambda a, c: a - jnp.tensordot(drop_C, c, 1), g, g_C)  # drop_C all 0: g as it is, exactly
    g_C = jax.tree.map(lambda c: c * (1.0 - drop_C).reshape((-1,) + (1,) * (c.ndim - 1)), g_C)
    new_state, applied = self.engine.apply_gradient(index, state, loss, g)
    terms, buffers = split_update(
      self.train, model, state["opt_state"], new_state["opt_state"], params, g, g_C, carry["buffers"]
    )
    active = new_state["active"]
    terms = jax.tree.map(lambda u: jnp.where(active, u, 0.0), terms)
    buffers = jax.tree.map(lambda n, o: jnp.where(active, n, o), buffers, carry["buffers"])
    loss_K, grad_K, signal_K = self._task_values(model, new_state["params"])
    mid_KxP = 0.5 * (flatten(carry["grad_K"], 1) + flatten(grad_K, 1))
    terms_UxP, applied_P = flatten(terms, 1), flatten(applied)
    residual = jnp.max(jnp.abs(terms_UxP.sum(0) - applied_P)) / jnp.maximum(jnp.max(jnp.abs(applied_P)), 1e-30)
    common_P = jnp.asarray(self.classes.common_C + (False, False), jnp.float32) @ terms_UxP
    along_K = mid_KxP @ common_P / jnp.maximum(jnp.linalg.norm(mid_KxP, axis=1), 1e-30)
    out = {
      "loss": loss_K,
      "signal": signal_K,
      "dL": mid_KxP @ terms_UxP.T,
      "residual": residual,
      "common_norm": common_norm,
      "common_along": along_K,
    }
    return {"state": new_state, "buffers": buffers, "grad_K": grad_K}, out

  def _split_segment(self, carries, start, stop, drop_C, length: int, host=None):
    """Split steps start..stop-1 of every group (`length` steps, the ones past stop leave the carry as
    it is, so segments of similar lengths share one program); outputs stacked (length, M, ...)."""

    def one_step(carries, step_and_host):
      step, h = step_and_host
      batch = self.problem.batch(step, h)
      new, outs = [], []
      for index, carry in enumerate(carries):
        step_fn = functools.partial(self._member_split_step, index)
        n, o = jax.vmap(step_fn, in_axes=(0, None, None))(carry, batch, drop_C)
        new.append(jax.tree.map(lambda a, b: jnp.where(step < stop, a, b), n, carry))
        outs.append(o)
      return new, outs

    steps = start + jnp.arange(length, dtype=jnp.int32)
    return jax.lax.scan(one_step, carries, (steps, host))

  def _task_state(self, states):
    """Per group: (loss_MxK, grads (M, K, ...), signal_MxK) at the states given."""
    return [
      jax.vmap(functools.partial(self._task_values, g.model))(s["params"])
      for g, s in zip(self.groups, states, strict=True)
    ]

  # ---- reaching the window and checking against training ----------------------------------
  def _restore(self, step: int):
    """(step, states) of the newest checkpoint at or before `step` (0: the seeded init), host stream placed."""
    found = [c for c in self.checkpoint_steps if c <= step]
    resumable = [s for s in self._resume if s <= step and (not found or s >= found[-1])]
    if resumable:
      states, host = self._resume[max(resumable)]
      self.problem.restore_host_state(host)
      return max(resumable), copy_states(states)
    if not found:
      self.problem.restore_host_state(self._host_start)
      return 0, self.engine.init_states()
    states, meta = self.run.restore_all(found[-1])
    self.problem.restore_host_state(meta["data"])
    return found[-1], self.engine.place(states)  # laid out as training's outputs: one program for every window

  def _advance(self, states, step: int, stop: int, diffs: list, blocks: list | None = None):
    """Training's own dispatches from step to stop, checking eval steps and checkpoints on the way.

    blocks: host blocks per dispatch; those it lacks are read from the stream and appended, so a
    second call with the same list trains on the same batches."""
    dispatch = 0
    while step < stop:
      end = min(stop, next_boundary(step, self.train))
      if blocks is None or dispatch == len(blocks):
        host = self.problem.host_batches(end - step)
        if blocks is not None:
          blocks.append(host)
      else:
        host = blocks[dispatch]
      dispatch += 1
      states, _, _ = self.engine.train_segment(states, jnp.int32(step), end - step, host)
      step = end
      diffs += self._check(step, states)
    return states

  def _check(self, step: int, states) -> list[float]:
    """Relative differences to training at `step`: all tasks' eval losses, and parameters at a checkpoint."""
    diffs = []
    if step in self.recorded and is_eval_step(step, self.train):
      loss_MxT = np.concatenate([r.loss for r in self.engine.evaluate(states)])
      diffs.append(relative_diff(loss_MxT, self.recorded[step]))
    if step in self.checkpoint_steps:
      saved, _ = self.run.restore_all(step)
      diffs += [
        relative_diff(flatten(a["params"], 1), flatten(b["params"], 1)) for a, b in zip(states, saved, strict=True)
      ]
    return diffs

  # ---- a window ------------------------------------------------------------------------------
  def replay(self, window: Window, removed: tuple = ()) -> WindowReplay:
    """Replays `window` (with `removed` classes' gradients left out of the update, for a counterfactual)."""
    removed = tuple(bool(r) for r in removed) or (False,) * len(self.classes.names)
    checkpoint, states = self._restore(window.start)
    diffs: list[float] = []
    states = self._advance(states, checkpoint, window.start, diffs)
    plain = not any(removed)
    if plain:
      self._resume = {window.start: (copy_states(states), self.problem.host_state())}
    values = self.task_state(states)
    carries = [
      {
        "state": s,
        "buffers": jax.vmap(functools.partial(initial_buffers, num_classes=len(removed)))(s["opt_state"], s["params"]),
        "grad_K": v[1],
      }
      for s, v in zip(states, values, strict=True)
    ]
    outs, step, drop_C = [], window.start, jnp.asarray(removed, jnp.float32)
    inside: list[float] = []  # the window's own checks (the advance above is training's program)
    for end in self._segment_ends(window):
      length = scan_length(end - step, self.scan_steps)
      host = padded(self.problem.host_batches(end - step), length)
      carries, out = self.split_segment(carries, jnp.int32(step), jnp.int32(end), drop_C, length, host)
      outs.append(jax.tree.map(lambda a, n=end - step: a[:n], out))
      step = end
      if plain and end in self.checkpoint_steps:
        inside += self._check(end, [c["state"] for c in carries])
    result = self._result(window, removed, checkpoint, values, outs)
    states = result.end_states = [c["state"] for c in carries]
    if plain:  # a window's end is no resume point: its float differences would grow over a long advance
      inside += self._check_interest(result)
      if not inside:
        against, result.noise_floor = self._check_against_training(window, states)
        inside += against
    diffs += inside
    result.max_diff, result.compared = (max(diffs) if diffs else np.nan), len(diffs)
    allowed = max(self.tolerance, NOISE_FACTOR * result.noise_floor)
    if diffs and result.max_diff > allowed:
      raise ReplayError(
        f"the replay of window [{window.start}, {window.stop}) of {self.run.path} differs from "
        f"training by {result.max_diff:.3g} (relative; tolerance {self.tolerance:g}, float noise "
        f"floor {result.noise_floor:.2g}): the replay does not reproduce training, so its "
        "attribution would not describe it"
      )
    return result

  def _segment_ends(self, window: Window) -> list[int]:
    """Split segments end at the window's checkpoints (to compare parameters) and at its stop."""
    inside = [c for c in self.checkpoint_steps if window.start < c < window.stop]
    return inside + [window.stop]

  def _check_interest(self, result: WindowReplay) -> list[float]:
    """The tasks of interest's replayed losses against the recorded metrics at the eval steps inside the window."""
    diffs = []
    for step in range(result.window.start + 1, result.window.stop + 1):
      if step in self.recorded:
        replayed = result.loss_SxMxK[step - result.window.start - 1]
        diffs.append(relative_diff(replayed, self.recorded[step][:, self.interest_K]))
    return diffs

  def _check_against_training(self, window: Window, states) -> tuple[list[float], float]:
    """Parameters at the window's end against the engine's training of [start, stop) from the same start;
    and the noise floor: that training against the same from start parameters nudged by NUDGE."""
    start_states, start_host = self._resume[window.start]
    self.problem.restore_host_state(start_host)
    blocks: list = []
    trained = self._advance(copy_states(start_states), window.start, window.stop, [], blocks)
    nudged = [{**s, "params": jax.tree.map(lambda p: p * (1 + NUDGE), s["params"])} for s in start_states]
    nudged = self._advance(copy_states(nudged), window.start, window.stop, [], blocks)

    def params_diff(a, b):
      return [relative_diff(flatten(x["params"], 1), flatten(y["params"], 1)) for x, y in zip(a, b, strict=True)]

    return params_diff(states, trained), max(params_diff(nudged, trained))

  def _result(self, window, removed, checkpoint, values, outs) -> WindowReplay:
    """Concatenates groups (members) and segments (steps) into one WindowReplay."""
    host = jax.device_get((values, outs))

    def members(arrays, axis):
      return np.concatenate([np.asarray(a) for a in arrays], axis=axis)

    def per_step(key):
      return np.concatenate([members([o[key] for o in seg], 1) for seg in host[1]], axis=0)

    return WindowReplay(
      window,
      removed if any(removed) else (),
      checkpoint,
      members([v[0] for v in host[0]], 0),
      members([v[2] for v in host[0]], 0),
      per_step("loss"),
      per_step("signal"),
      per_step("dL"),
      per_step("residual"),
      per_step("common_norm"),
      per_step("common_along"),
    )


def scan_length(steps: int, longest: int) -> int:
  """Steps a split segment of `steps` steps runs: the next power of two, at most `longest` (few programs)."""
  return min(longest, 1 << max(steps - 1, 0).bit_length())


def padded(host, steps: int):
  """Host batches (n, ...) padded with zeros to `steps` rows (None stays None)."""
  if host is None:
    return None
  return np.concatenate([host, np.zeros((steps - host.shape[0],) + host.shape[1:], host.dtype)])


def copy_states(states):
  """A copy the engine may donate without touching the original."""
  return jax.tree.map(jnp.copy, states)


def relative_diff(replayed, recorded) -> float:
  """max|replayed - recorded| / max|recorded| (absolute where the recorded values are all 0)."""
  a, b = np.asarray(replayed, np.float64), np.asarray(recorded, np.float64)
  scale = np.nanmax(np.abs(b)) if b.size else 0.0
  return float(np.nanmax(np.abs(a - b)) / (scale if scale > 0 else 1.0))


def recorded_losses(run: Run) -> dict[int, np.ndarray]:
  """{eval step: (members, tasks) eval loss from the recorded metrics}, members in id order."""
  rows = run.metrics[run.metrics.task != "all"].astype({"task": int})
  out = {}
  for step, frame in rows.groupby("step"):
    table = frame.pivot(index="member", columns="task", values="loss").sort_index()
    out[int(step)] = table.to_numpy(np.float64)
  return out
