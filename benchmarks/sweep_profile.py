"""Where the time of one sweep process goes, from interpreter start to exit, cold and warm cache.

  JAX_PLATFORMS=cpu python -m benchmarks.sweep_profile [--steps=500] [--widths=32,64,128,256,512]
      [--workdir_root=DIR] [--out=FILE.json]

Runs `python -m launch.train` on the multitask sparse parity sweep (100 tasks, n=50, k=3,
alpha 1.4, batch 2000, eval every 100 steps) twice, each in a fresh process and a fresh workdir:
first with an empty persistent compilation cache (cold), then with the cache the first run
filled (warm). Each process's wall time is taken from outside, from just before it starts to
its exit. Inside, a small driver (`child`) runs launch.train's own main on the same flags, with
timers wrapped around the framework functions that do each phase and listeners on JAX's
tracing and compile events. A phase nested in another counts once, in the inner one, so the
rows sum to the wall time; "other" is the time no timer saw. Training steps include the wait
for the device; exit is from train() returning to the process being gone (interpreter teardown).
The parent imports JAX only after both runs: importing it sets environment variables
(TF_CPP_MIN_LOG_LEVEL) that the runs would inherit.
"""

import collections
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import app, flags

_STEPS = flags.DEFINE_integer("steps", 500, "Training steps of the sweep.")
_WIDTHS = flags.DEFINE_list("widths", ["32", "64", "128", "256", "512"], "MLP widths of the sweep.")
_WORKDIR_ROOT = flags.DEFINE_string(
  "workdir_root", None, "Folder for the runs' workdirs and cache; default: a temporary one, removed afterwards."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

REPO = Path(__file__).resolve().parents[1]
BATCH, EVAL_EVERY = 2000, 100
PHASES_ENV = "SWEEP_PROFILE_PHASES"  # where the child writes its timers
CHILD_CODE = (  # launch.train first, as `python -m` does, then what its main imports on first use (jax, orbax, ...)
  "import time; started = time.time(); import launch.train; import scaling_interference.sweep.loop; "
  "from benchmarks.sweep_profile import child; child(started)"
)
ROWS = {
  "interpreter": "interpreter start",
  "imports": "imports",
  "config": "config and validation",
  "setup": "run setup (problem, workdir, engine, init)",
  "tracing": "tracing and lowering",
  "compile": "XLA compile or cache load",
  "train": "training steps",
  "loop": "loop host work",
  "eval": "evaluation",
  "metrics": "metric rows and writing",
  "checkpoint": "checkpoint saves and wait",
  "exit": "exit (train returned to process gone)",
  "other": "other",
}
SPANS = {
  "/jax/core/compile/jaxpr_trace_duration": "tracing",  # JAX records each span's start as a scalar
  "/jax/core/compile/jaxpr_to_mlir_module_duration": "tracing",
  "/jax/core/compile/backend_compile_duration": "compile",
}
CACHE_EVENTS = ("/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses")


# ---- inside the profiled process ---------------------------------------------------------
class Phases:
  """Exclusive seconds per phase: a wrapped call's time minus the timed calls and JAX spans inside it."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.counts = collections.Counter()
    self.marks = {}
    self._inner = [0.0]  # per open timed call: seconds of what was timed inside it
    self._span_depth = 0

  def _add(self, phase: str, seconds: float) -> None:
    self.seconds[phase] += seconds
    self._inner[-1] += seconds

  def timed(self, phase: str, fn, block: bool = False):
    """fn, its time charged to `phase`; block: wait for its arrays, so their device time counts too."""
    import jax

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      self._inner.append(0.0)
      start = time.perf_counter()
      try:
        out = fn(*args, **kwargs)
        return jax.block_until_ready(out) if block else out
      finally:
        total, inner = time.perf_counter() - start, self._inner.pop()
        self.seconds[phase] += total - inner
        self._inner[-1] += total

    return wrapper

  def marked(self, name: str, fn):
    """fn, noting the time it returns."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      try:
        return fn(*args, **kwargs)
      finally:
        self.marks[name] = time.time()

    return wrapper

  def _span_started(self, event: str, value, **kwargs) -> None:
    if event in SPANS and threading.current_thread() is threading.main_thread():
      self._span_depth += 1

  def _span_ended(self, event: str, seconds: float, **kwargs) -> None:
    if event in SPANS and threading.current_thread() is threading.main_thread():
      self._span_depth -= 1
      if self._span_depth == 0:  # outermost only: jits traced inside a jit report their own spans
        self._add(SPANS[event], seconds)
      self.counts["programs"] += SPANS[event] == "compile"
    elif event == "/jax/compilation_cache/cache_retrieval_time_sec":
      self.counts["cache_read_s"] += seconds

  def _event(self, event: str, **kwargs) -> None:
    if event in CACHE_EVENTS:
      self.counts[event.rsplit("/", 1)[1]] += 1

  def install(self) -> None:
    """Wraps the framework's phase functions and listens to JAX's compile events."""
    import jax

    import scaling_interference
    from scaling_interference.sweep import build, checkpoint, engine, loop

    targets = [
      (build, "validate", "config"),
      (loop.Trainer, "__init__", "setup"),
      (loop.Trainer, "_start", "setup"),
      (engine.Engine, "train_segment", "train"),
      (loop.Trainer, "_loop", "loop"),
      (engine.Engine, "evaluate", "eval"),
      (loop.Trainer, "_write_eval", "metrics"),
      (checkpoint.Checkpoints, "__init__", "checkpoint"),
      (loop.Trainer, "_save", "checkpoint"),
      (checkpoint.Checkpoints, "close", "checkpoint"),
    ]
    for owner, name, phase in targets:
      # train_segment's outputs are waited for at once by the loop (device_get of the losses) anyway
      setattr(owner, name, self.timed(phase, getattr(owner, name), block=name == "train_segment"))
    scaling_interference.train = self.marked("trained", scaling_interference.train)  # launch.train's main imports it
    jax.monitoring.register_scalar_listener(self._span_started)
    jax.monitoring.register_event_duration_secs_listener(self._span_ended)
    jax.monitoring.register_event_listener(self._event)


def child(started: float) -> None:
  """The profiled process: launch.train's main on this process's flags, timed; writes $SWEEP_PROFILE_PHASES."""
  from launch import train  # imported already by CHILD_CODE, and the framework's training modules with it

  phases = Phases()
  phases.marks.update(started=started, imported=time.time())

  def main(argv):
    phases.marks["parsed"] = time.time()  # absl has parsed the flags: the config file is loaded
    phases.install()
    try:
      train.main(argv)
    finally:
      Path(os.environ[PHASES_ENV]).write_text(
        json.dumps({"marks": phases.marks, "seconds": phases.seconds, "counts": phases.counts})
      )

  app.run(main)


# ---- the parent ----------------------------------------------------------------------------
def sweep_flags(steps: int, widths: list[int], workdir: Path) -> list[str]:
  """launch.train's flags for the sweep."""
  overrides = {
    "task.num_tasks": 100,
    "task.n_bits": 50,
    "task.k": 3,
    "task.alpha": 1.4,
    "model.widths": f"({','.join(map(str, widths))},)",
    "train.steps": steps,
    "train.batch_size": BATCH,
    "train.eval_every": EVAL_EVERY,
  }
  return [
    "--config=configs/sparse_parity.py:reference",
    *(f"--config.{k}={v}" for k, v in overrides.items()),
    f"--workdir={workdir}",
  ]


def check_workdir(workdir: Path, steps: int) -> None:
  """Raises unless the run left its normal workdir: config, every eval's metrics, the last checkpoint."""
  evals = len(list((workdir / "metrics").glob("*.jsonl")))
  want = len(set(range(0, steps, EVAL_EVERY)) | {steps})
  if not (workdir / "config.json").exists() or evals != want or not (workdir / "checkpoints" / str(steps)).is_dir():
    raise RuntimeError(f"{workdir}: expected config.json, {want} evals and checkpoints/{steps}; found {evals} evals")


def profile_process(name: str, steps: int, widths: list[int], root: Path, cache: Path) -> dict:
  """One whole training process, timed from outside and attributed to phases; seconds per row."""
  workdir, phases_file, log = root / name, root / f"{name}_phases.json", root / f"{name}.log"
  env = {**os.environ, "SCALING_INTERFERENCE_JAX_CACHE": str(cache), PHASES_ENV: str(phases_file)}
  with open(log, "w") as out:
    t0 = time.time()
    proc = subprocess.run(
      [sys.executable, "-c", CHILD_CODE, *sweep_flags(steps, widths, workdir)],
      cwd=REPO,
      env=env,
      stdout=out,
      stderr=subprocess.STDOUT,
    )
    end = time.time()
  if proc.returncode:
    raise RuntimeError(f"{name} run exited {proc.returncode}:\n{log.read_text()[-3000:]}")
  check_workdir(workdir, steps)
  inside = json.loads(phases_file.read_text())
  marks, seconds = inside["marks"], inside["seconds"]
  rows = {
    "interpreter": marks["started"] - t0,
    "imports": marks["imported"] - marks["started"],
    "config": marks["parsed"] - marks["imported"] + seconds.pop("config", 0.0),
    **seconds,
    "exit": end - marks["trained"],
  }
  rows = {k: rows.get(k, 0.0) for k in ROWS if k != "other"}
  rows["other"] = end - t0 - sum(rows.values())
  print(f"{name} cache: {end - t0:.1f} s", file=sys.stderr)
  return {"wall_s": end - t0, "rows": rows, "counts": inside["counts"]}


def report(results: dict) -> str:
  """A markdown table of the phases, cold and warm, with the compile counts below."""
  cold, warm = results["runs"]["cold"], results["runs"]["warm"]
  lines = [
    " ".join(f"{k}={v}" for k, v in results["machine"].items()),
    f"sweep: widths {results['widths']}, {results['steps']} steps of batch {BATCH}, eval every {EVAL_EVERY}",
    "",
    "| phase | cold cache s | warm cache s | share of warm |",
    "|---|---:|---:|---:|",
  ]
  lines += [
    f"| {label} | {cold['rows'][k]:.2f} | {warm['rows'][k]:.2f} | {100 * warm['rows'][k] / warm['wall_s']:.1f}% |"
    for k, label in ROWS.items()
  ]
  lines.append(
    f"| **whole process (wall, from outside)** | **{cold['wall_s']:.2f}** | **{warm['wall_s']:.2f}** | 100% |"
  )
  for name, run in results["runs"].items():
    c = run["counts"]
    hits, misses = c.get("cache_hits", 0), c.get("cache_misses", 0)
    lines.append(
      f"{name}: {c.get('programs', 0)} programs compiled or loaded, {hits + misses} through the "
      f"persistent cache ({hits} hits, {misses} misses, {c.get('cache_read_s', 0.0):.2f} s reading it)"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  steps, widths = _STEPS.value, [int(w) for w in _WIDTHS.value]
  if _WORKDIR_ROOT.value:
    os.makedirs(_WORKDIR_ROOT.value, exist_ok=True)
  root = Path(tempfile.mkdtemp(prefix="sweep_profile_", dir=_WORKDIR_ROOT.value))
  try:
    cache = root / "jax_cache"  # empty for the cold run, filled by it for the warm one
    runs = {name: profile_process(name, steps, widths, root, cache) for name in ("cold", "warm")}
  finally:
    if not _WORKDIR_ROOT.value:
      shutil.rmtree(root, ignore_errors=True)
  from benchmarks.timing import machine, publish  # imports JAX: only now (see the docstring)

  results = dict(machine=machine(), steps=steps, widths=widths, runs=runs)
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
