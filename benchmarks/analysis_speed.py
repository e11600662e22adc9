"""Analysis speed: vmapped per-task gradients vs a loop of jax.grad, and a replayed step vs a training step.

  JAX_PLATFORMS=cpu python -m benchmarks.analysis_speed [--steps=N] [--checkpoint_every=N] [--seeds=S]
      [--n_per_task=N] [--task_chunk=C] [--window_steps=N] [--repeats=R] [--out=FILE.json]

Trains a shrunk configs/injection.py:demo (34 tasks, widths 16..128, `seeds` members per width)
in a temporary workdir, then, in this one process:
  1. Per-task gradients of every (checkpoint, member, task): `gradients.group_gradients` (one
     jitted program, vmapped over tasks and members, as the analysis runs it) against a Python loop
     of `jax.grad` calls, one per member per task on the same examples (`speedup`), and against the
     same loop with each call jitted (`speedup_vs_jitted_loop`: the best a loop can do). Params and
     examples are sliced before timing; results are collected and blocked on once. The results
     must agree to float tolerance, else the benchmark fails.
  2. `Replayer.split_segment` (the replay's jitted step program, on carries built as
     `Replayer.replay` builds them at the first default window's start) against the engine's
     `train_segment` from the same states, same groups, same batches, both `scan_steps` steps.
Every program is compiled by a warm-up call first (compile time is excluded from both sides),
then timed in interleaved rounds keeping each one's best (benchmarks/timing.py).
"""

import platform
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import scaling_interference as si
from benchmarks.timing import Timed, machine, publish, time_interleaved
from configs import injection
from scaling_interference.analysis import classes as classes_lib
from scaling_interference.analysis import gradients
from scaling_interference.analysis.replay import Replayer, copy_states, padded
from scaling_interference.analysis.split_update import flatten, initial_buffers

_STEPS = flags.DEFINE_integer("steps", 1000, "Training steps of the run analysed.")
_CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 250, "Checkpoint (and eval) interval; divides steps.")
_SEEDS = flags.DEFINE_integer("seeds", 2, "Members per width (seeds 0..S-1).")
_N_PER_TASK = flags.DEFINE_integer("n_per_task", 256, "Examples per task of the per-task gradients.")
_TASK_CHUNK = flags.DEFINE_integer("task_chunk", 16, "Tasks differentiated per vmapped call (the analysis default).")
_WINDOW_STEPS = flags.DEFINE_integer(
  "window_steps",
  50,
  "Longest replay window (default_windows' max_steps; the analysis uses 200): the steps per timed dispatch.",
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timing rounds; each program keeps its best.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

GRAD_GOAL = 10.0  # vmapped per-task gradients at least this many times faster than the loop
GRAD_RTOL = 1e-5  # max|loop - vmapped| / max|vmapped| allowed


def run_config(steps: int, every: int, seeds: int):
  """configs/injection.py:demo shrunk to `steps` steps, the burst at 0.4 steps, `seeds` seeds."""
  if steps <= 0 or every <= 0 or steps % every:
    raise ValueError(f"steps={steps} must be a positive multiple of checkpoint_every={every}")
  config = injection.get_config("demo")
  config.sweep.seeds = tuple(range(seeds))
  config.inject.burst.at = int(0.4 * steps)
  config.train.update(steps=steps, eval_every=every, checkpoint_every=every, keep_every=every, steps_per_dispatch=every)
  return config


# ---- 1. per-task gradients ------------------------------------------------------------------
def member_grad(model, problem, jit: bool):
  """One member's gradient of one task's mean loss, flattened as group_gradients flattens it."""
  grad = jax.grad(lambda p, b: problem.task_loss(model, p, b))

  def flat(p, b):
    return flatten(grad(p, b))

  return jax.jit(flat) if jit else flat


def gradient_programs(run: si.Run, n_per_task: int, task_chunk: int) -> tuple[list[Timed], dict]:
  """group_gradients, its task_gradients calls alone, and the loop, over every (checkpoint, group)."""
  num_tasks = len(run.problem.tasks)
  batch = gradients.task_examples(run, np.arange(num_tasks), n_per_task)
  example_T = jax.tree.map(lambda a: a.reshape((num_tasks, n_per_task) + a.shape[1:]), batch)
  per_task = [jax.tree.map(lambda a, t=t: a[t], example_T) for t in range(num_tasks)]
  work = [(g, run.restore(step, group=g.index)["params"]) for step in run.steps() for g in run.groups]
  members = [(g.index, jax.tree.map(lambda a, m=m: a[m], params_M)) for g, params_M in work for m in range(g.size)]
  calls = len(members) * num_tasks
  box = {}

  def vmapped():
    box["vmapped"] = [gradients.group_gradients(g.model, run.problem, p, batch, num_tasks, task_chunk) for g, p in work]

  def looped(jit: bool):
    grads = [member_grad(g.model, run.problem, jit) for g in run.groups]
    return lambda: box.__setitem__(jit, jax.block_until_ready([grads[g](p, b) for g, p in members for b in per_task]))

  eager, jitted = looped(False), looped(True)
  vmapped(), eager(), jitted()
  diff = max(loop_vs_vmapped(box[False], box["vmapped"]), loop_vs_vmapped(box[True], box["vmapped"]))
  figures = dict(
    checkpoints=len(run.steps()),
    groups=len(run.groups),
    members=sum(g.size for g in run.groups),
    tasks=num_tasks,
    n_per_task=n_per_task,
    task_chunk=task_chunk,
    gradients=calls,
    vmapped_calls=len(work),
    max_rel_diff=diff,
  )
  programs = (("vmapped", vmapped), ("loop", eager), ("jitted_loop", jitted))
  return [Timed(name, f, calls) for name, f in programs], figures


def loop_vs_vmapped(loop: list, vmapped: list) -> float:
  """max|loop - vmapped| / max|vmapped| over all gradients; raises when above GRAD_RTOL."""
  sizes = np.cumsum([0] + [g.shape[0] * g.shape[1] for g in vmapped])
  looped = [np.stack([np.asarray(x) for x in loop[a:b]]) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
  ref = [g.reshape(-1, g.shape[-1]) for g in vmapped]
  if [a.shape for a in looped] != [b.shape for b in ref]:
    raise RuntimeError(f"loop gradients {[a.shape for a in looped]} and vmapped {[b.shape for b in ref]} differ")
  looped, ref = np.concatenate([a.ravel() for a in looped]), np.concatenate([b.ravel() for b in ref])
  diff = float(np.max(np.abs(looped - ref)) / max(np.max(np.abs(ref)), 1e-30))
  if not diff <= GRAD_RTOL:
    raise RuntimeError(
      f"the loop's per-task gradients differ from group_gradients' by {diff:.3g} "
      f"(relative; tolerance {GRAD_RTOL:g}): the timings would not compare the same work"
    )
  return diff


# ---- 2. a replayed step vs a training step ---------------------------------------------------
def replayer_at_window(run: si.Run, window_steps: int) -> tuple[Replayer, classes_lib.Window, list]:
  """The Replayer replay_tables builds (default classes and interest tasks), and its states at the first window."""
  p_K = gradients.realised_frequencies(run)
  classes = classes_lib.task_classes(run.problem, p_K, "class")
  interest = classes_lib.interest_tasks(run.problem, p_K, 2)
  windows = classes_lib.default_windows(run.problem, run.config.train.steps, 3, window_steps)
  replayer = Replayer(run, classes, interest, max(w.stop - w.start for w in windows))
  window = windows[0]
  checkpoint, states = replayer._restore(window.start)  # pylint: disable=protected-access
  return replayer, window, replayer._advance(states, checkpoint, window.start, [])  # pylint: disable=protected-access


def replay_programs(run: si.Run, window_steps: int) -> tuple[Timed, Timed, dict]:
  """split_segment and train_segment over the same scan_steps steps from the same states."""
  replayer, window, states = replayer_at_window(run, window_steps)
  scan, num_classes = replayer.scan_steps, len(replayer.classes.names)
  values = replayer.task_state(states)
  carries = [
    {
      "state": s,
      "buffers": jax.vmap(lambda o, p: initial_buffers(o, p, num_classes=num_classes))(s["opt_state"], s["params"]),
      "grad_K": v[1],
    }
    for s, v in zip(states, values, strict=True)
  ]
  drop_C, start, stop = jnp.zeros(num_classes, jnp.float32), jnp.int32(window.start), jnp.int32(window.start + scan)
  host = run.problem.host_batches(scan)
  box = {"states": copy_states(states)}

  def replay():
    jax.block_until_ready(replayer.split_segment(carries, start, stop, drop_C, scan, padded(host, scan)))

  def train():  # train_segment donates its states: carry them on, the batches stay those of the window
    box["states"] = jax.block_until_ready(run.engine.train_segment(box["states"], start, scan, host)[0])

  replay(), train()
  figures = dict(
    window=f"{window.schedule} [{window.start}, {window.start + scan})",
    scan_steps=scan,
    classes=num_classes,
    class_names=list(replayer.classes.names),
    tasks_of_interest=len(replayer.interest_K),
    interest_K=replayer.interest_K,
    members=sum(g.size for g in run.groups),
    groups=len(run.groups),
    goal=2 + num_classes,
  )
  return Timed("replay", replay, scan), Timed("train", train, scan), figures


# ---- the benchmark ---------------------------------------------------------------------------
def measure(workdir: str, n_per_task: int, task_chunk: int, window_steps: int, repeats: int) -> dict:
  """Compiles all five programs, times them in interleaved rounds and returns the figures."""
  run = si.load_run(workdir)
  (vmapped, loop, jitted_loop), grad = gradient_programs(run, n_per_task, task_chunk)
  replay, train, rep = replay_programs(run, window_steps)
  time_interleaved([vmapped, jitted_loop, replay, train], repeats)
  time_interleaved([loop], 1)  # op-by-op dispatch: seconds per round
  for p in (vmapped, loop, jitted_loop):
    grad.update({f"{p.name}_s": p.best_s, f"{p.name}_cores": p.cores})
  grad.update(
    speedup=loop.best_s / vmapped.best_s, speedup_vs_jitted_loop=jitted_loop.best_s / vmapped.best_s, goal=GRAD_GOAL
  )
  grad["within_goal"] = bool(grad["speedup"] >= GRAD_GOAL)
  rep.update(
    replay_step_s=replay.best_s / replay.steps,
    train_step_s=train.best_s / train.steps,
    replay_cores=replay.cores,
    train_cores=train.cores,
  )
  rep["replay_step_over_train_step"] = rep["replay_step_s"] / rep["train_step_s"]
  rep["within_goal"] = bool(rep["replay_step_over_train_step"] <= rep["goal"])
  host = dict(machine(), processor=platform.processor(), devices=[str(d) for d in jax.devices()])
  return dict(
    machine=host,
    run=dict(
      config="configs/injection.py:demo shrunk",
      steps=run.config.train.steps,
      checkpoints=run.steps(),
      widths=list(run.config.model.widths),
      seeds=list(run.config.sweep.seeds),
    ),
    repeats=repeats,
    gradients=grad,
    replay=rep,
    speedup=grad["speedup"],
    replay_step_over_train_step=rep["replay_step_over_train_step"],
  )


def _ok(x: bool) -> str:
  return "yes" if x else "NO"


def gradient_lines(g: dict, repeats: int) -> list[str]:
  """The per-task gradients' table and verdict."""
  rows = (
    (
      f"group_gradients (one program per group and checkpoint, chunks of <= {g['task_chunk']} tasks)",
      "vmapped",
      g["vmapped_calls"],
    ),
    ("Python loop of jax.grad calls (best of 1)", "loop", g["gradients"]),
    ("Python loop of jitted jax.grad calls", "jitted_loop", g["gradients"]),
  )
  return [
    f"Per-task gradients: {g['checkpoints']} checkpoints x {g['members']} members x {g['tasks']} tasks = "
    f"{g['gradients']} gradients of {g['n_per_task']} examples each (compile excluded, best of {repeats})",
    "| way | calls | seconds | ms per gradient | cores used |",
    "|---|---:|---:|---:|---:|",
    *[
      f"| {label} | {calls} | {g[k + '_s']:.4f} | {1e3 * g[k + '_s'] / g['gradients']:.3f} | {g[k + '_cores']:.1f} |"
      for label, k, calls in rows
    ],
    f"speedup (loop / group_gradients): {g['speedup']:.2f}x, goal >= {g['goal']:g}x: {_ok(g['within_goal'])}; "
    f"against the jitted loop: {g['speedup_vs_jitted_loop']:.2f}x; max relative difference {g['max_rel_diff']:.2g}",
  ]


def replay_lines(p: dict) -> list[str]:
  """The replay's table and verdict."""
  return [
    f"Replay vs training: window {p['window']}, {p['members']} members in {p['groups']} groups, "
    f"{p['classes']} classes {p['class_names']}, {p['tasks_of_interest']} tasks of interest {p['interest_K']}",
    "| program | ms per step | cores used |",
    "|---|---:|---:|",
    f"| Replayer.split_segment | {1e3 * p['replay_step_s']:.3f} | {p['replay_cores']:.1f} |",
    f"| Engine.train_segment | {1e3 * p['train_step_s']:.3f} | {p['train_cores']:.1f} |",
    f"replay step / train step: {p['replay_step_over_train_step']:.2f}, goal <= 2 + classes = {p['goal']}: "
    f"{_ok(p['within_goal'])}",
  ]


def report(r: dict) -> str:
  """Two markdown tables, the machine above."""
  head = " ".join(f"{k}={v}" for k, v in r["machine"].items())
  return "\n".join([head, ""] + gradient_lines(r["gradients"], r["repeats"]) + [""] + replay_lines(r["replay"]))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
  with tempfile.TemporaryDirectory() as tmp:
    workdir = f"{tmp}/run"
    si.train(run_config(_STEPS.value, _CHECKPOINT_EVERY.value, _SEEDS.value), workdir)
    results = measure(workdir, _N_PER_TASK.value, _TASK_CHUNK.value, _WINDOW_STEPS.value, _REPEATS.value)
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
