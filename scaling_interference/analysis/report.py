"""The analysis report of one or more workdirs: cached tables, figures, and index.html with the study's claims.

  build(["runs/a", "runs/b"], "out")  ->  out/tables/*.csv (+ README.md), out/figures/*.png, out/index.html

Work is split into jobs (workdir, step, table). A job's result is cached as CSV under
out/cache/<config hash>/<table>-<code version>/<key>.csv, key "step-<S>" for per-checkpoint tables
and "metrics-<S>" (the last eval step) for per-run tables, so building again computes only what is
new (new checkpoints, a run trained further, or a table whose module's source changed). Tables of
other modules are called through their public functions, guarded: a missing or failing function
leaves a note in index.html, and a failed job is retried on the next build.
"""
import dataclasses
import functools
import hashlib
import html
import importlib
import inspect
import json
import os
import sys
import time
from typing import Callable

import numpy as np
import pandas as pd

from scaling_interference.analysis import plots, retention, scaling
from scaling_interference.run import Run, load_run


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One tidy table: per run ("run") or per checkpoint step ("step"), made by `source` (module:function)."""
  name: str
  scope: str
  source: str
  doc: str
  columns: dict


RUN = {"run": "the workdir's name (its folder; made unique when two share one)"}
STEP = {"step": "checkpoint step the table was computed at"}
MEMBER = {"member": "member id (members.json)", "width": "the member's hidden width"}
TASK = {"task": "task id", "frequency": "the task's realised share of training examples (injection included)",
        "complexity": "the task's complexity (family specific; larger is harder)"}

TABLES = [
    TableSpec("signal", "run", "scaling_interference.analysis.retention:trace_frame",
              "Signal of every task over training: eval metrics and dense traces (one row per observation).",
              {"step": "training steps done when the signal was measured", **MEMBER, "task": TASK["task"],
               "signal": "0 = chance, 1 = learned",
               "source": "metrics (eval every eval_every) or traces (traces.npz)"}),
    TableSpec("events", "run", "scaling_interference.analysis.retention:event_frame",
              "Injection events of schedule.npz: one row per (schedule, step with injected examples).",
              {"schedule": "schedule name (config.inject)", "task": "injected task id",
               "kind": "burst | every | share | per_batch", "step": "batch step of the injection",
               "count": "examples injected at that step"}),
    TableSpec("retention", "run", "scaling_interference.analysis.retention:retention_table",
              "Per (member, injected task, schedule, event): the signal around the event "
              "(definitions in retention.py).",
              {**MEMBER, "task": TASK["task"], "schedule": "schedule name", "kind": "schedule kind",
               "event_step": "event's batch step (continuous schedules: the first injection)",
               "pre": "signal at the last observation at or before event_step",
               "peak": "largest signal in the window after the event (until the next event or the end)",
               "peak_step": "step of the peak", "steps_to_peak": "peak_step - event_step",
               "half_life": "steps from the peak until the signal first falls halfway back to pre (NaN: never)",
               "final": "signal at the window's last observation",
               "retained": "events: (final - pre) / (peak - pre); continuous: final / peak"}),
    TableSpec("final", "run", "scaling_interference.analysis.scaling:final_table",
              "Per (width, task): loss and signal at the last eval, mean over the width's members.",
              {"width": "hidden width", "task": TASK["task"], "loss": "mean final eval loss",
               "signal": "mean final signal", "frequency": TASK["frequency"], "complexity": TASK["complexity"]}),
    TableSpec("power_law", "run", "scaling_interference.analysis.scaling:power_law_table",
              "Per task: least-squares fit of log(final loss - floor) on log(width); degenerate tasks skipped.",
              {**{k: TASK[k] for k in TASK}, "exponent": "b in loss - floor = a * width^-b (> 0: falls with width)",
               "prefactor": "a", "r2": "R^2 of the log-log fit", "n": "widths in the fit",
               "floor": "irreducible loss subtracted (regression: label noise; else 0)"}),
    TableSpec("emergence", "run", "scaling_interference.analysis.scaling:emergence_table",
              "Per task: the smallest width whose mean final signal reaches 0.5.",
              {**{k: TASK[k] for k in TASK}, "emergence_width": "smallest width with signal >= 0.5 (NaN: none)",
               "max_signal": "largest mean final signal over widths"}),
    TableSpec("learned", "run", "scaling_interference.analysis.scaling:learned_counts",
              "Per width: tasks learned (mean final signal >= 0.5).",
              {"width": "hidden width", "n_learned": "tasks with signal >= 0.5", "n_tasks": "tasks in the run"}),
    TableSpec("oracle", "run", "scaling_interference.analysis.scaling:oracle_comparison",
              "Regression: per (width, task) the trained mean beside the best rank-width linear map "
              "(realised frequencies).",
              {"width": "hidden width", **{k: TASK[k] for k in TASK}, "trained_signal": "mean final signal",
               "oracle_signal": "signal of the best rank-width map", "trained_loss": "mean final eval loss",
               "oracle_loss": "loss of the best rank-width map", "zero_loss": "loss of the zero map"}),
    TableSpec("sizing", "run", "scaling_interference.analysis.scaling:sizing_table",
              "For a task frequency (half-decade bin) and complexity: the smallest width of this sweep "
              "that learned it.",
              {"frequency_bin": "frequency range [low, high)", "frequency_low": "bin's lower edge",
               "frequency_high": "bin's upper edge", "complexity": "complexity (binned when it takes many values)",
               "n_tasks": "tasks in the bin", "n_learned": "of them, learned by some width",
               "width_any": "smallest width that learned some task of the bin",
               "width_all": "smallest width that learned every task of the bin (NaN: some never learned)"}),
    TableSpec("gradients", "step", "scaling_interference.analysis.gradients:gradient_table",
              "Per (member, task) at a checkpoint: per-task gradient norm and first-order loss changes "
              "of the next update.",
              {**STEP, **MEMBER, "task": TASK["task"], "frequency": "task share used for the mixture gradient",
               "common": "among the most frequent tasks covering 90% of the mixture", "grad_norm": "||g_k||",
               "dL_self": "task k's own update's change of its loss",
               "dL_carry": "change from the optimizer's momentum",
               "dL_mixture": "change from the whole update", "overwrite": "change caused by the other tasks' updates",
               "overwrite_common": "part of overwrite from common tasks", "overwrite_rare": "part from the other tasks",
               "overwrite_share": "overwrite / (|dL_carry| + |dL_self| + |overwrite|), in [-1, 1]"}),
    TableSpec("cosines", "step", "scaling_interference.analysis.gradients:cosine_table",
              "Per (member, task_i, task_j) at a checkpoint: gradient cosine and task j's update acting on task i.",
              {**STEP, **MEMBER, "task_i": "task whose loss changes", "task_j": "task whose update acts",
               "cosine": "cos(g_i, g_j)", "dL": "first-order change of task i's loss from task j's update"}),
    TableSpec("neurons", "step", "scaling_interference.analysis.allocation:neuron_table",
              "Per (member, layer, neuron, task) at a checkpoint: how much the neuron serves the task.",
              {**STEP, **MEMBER, "layer": "hidden layer", "neuron": "unit index", "task": TASK["task"],
               "attribution": "increase of the task's eval loss when the neuron is zeroed (ablation)"}),
    TableSpec("allocation", "step", "scaling_interference.analysis.allocation:allocation_table",
              "Per (member, task) at a checkpoint: neurons the task owns and its capacity.",
              {**STEP, **MEMBER, **TASK, "owned_neurons": "neurons owned by the task (most of their ablation loss)",
               "capacity": "sum of the dimensionalities D_i of the task's input features (Elhage et al. 2022)"}),
    TableSpec("probes", "step", "scaling_interference.analysis.probes:probe_table",
              "Per (member, layer, task, feature) at a checkpoint: a linear probe's score.",
              {**STEP, **MEMBER, "layer": "representation probed (MLP: input, hidden<i>, output; language model: embed, block<i>, the residual stream at the answer-predicting position)", "task": TASK["task"],
               "feature": "probed task feature",
               "metric": "the probe's score name", "value": "the score",
               "decodable": "the score passes the threshold"}),
]
DERIVED = {
    "decodable": TableSpec("decodable", "step", "scaling_interference.analysis.probes:decodable_counts",
                           "Per (member, layer) at a checkpoint: task features the probes decode (from probes).",
                           {**STEP, **MEMBER, "layer": "representation probed", "n_decodable": "decodable features"}),
    "claims": TableSpec("claims", "run", "scaling_interference.analysis.report:evaluate_claims",
                        "Per (run, claim): whether the study's claim held in this sweep, with the measured numbers.",
                        {"claim": "claim number (1..7)", "statement": "the claim",
                         "status": "held, did not hold, or not measurable", "evidence": "the measured numbers"}),
}
SPECS = {spec.name: spec for spec in TABLES} | DERIVED


@dataclasses.dataclass(frozen=True)
class Job:
  run_index: int
  table: str
  step: int | None  # None: a per-run table


@dataclasses.dataclass
class Report:
  """What a build did: paths, jobs computed / taken from the cache / failed, notes, claims, seconds."""
  out: str
  index: str
  computed: list = dataclasses.field(default_factory=list)
  cached: list = dataclasses.field(default_factory=list)
  failed: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)
  claims: pd.DataFrame | None = None
  seconds: float = 0.0
  table_seconds: dict = dataclasses.field(default_factory=dict)  # computing time per table


class Progress:
  """A progress bar on stderr: [#####.....] 5/10 label, redrawn in place on a terminal, a line per job elsewhere."""

  def __init__(self, total: int, stream=None, width: int = 28):
    self.total, self.done, self.width = max(total, 1), 0, width
    self.stream = sys.stderr if stream is None else stream
    self.live = bool(getattr(self.stream, "isatty", lambda: False)())
    self.start = time.time()

  def _line(self, label: str) -> str:
    filled = int(self.width * self.done / self.total)
    bar = "#" * filled + "." * (self.width - filled)
    return f"[{bar}] {self.done}/{self.total} {time.time() - self.start:5.0f}s {label[:60]}"

  def show(self, label: str) -> None:
    """Names the job now running (terminal only)."""
    if self.live:
      self.stream.write("\r" + self._line(label).ljust(110))
      self.stream.flush()

  def advance(self, label: str) -> None:
    """Counts a finished job."""
    self.done += 1
    self.stream.write(("\r" + self._line(label).ljust(110)) if self.live else self._line(label) + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.live:
      self.stream.write("\n")
      self.stream.flush()


def config_hash(run: Run) -> str:
  """The workdir's identity: a hash of its resolved config."""
  text = json.dumps(run.config.to_dict(), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_labels(runs: list[Run]) -> list[str]:
  """Workdir names, with the config hash appended where two runs share a name."""
  names = [scaling.run_name(r) for r in runs]
  return [f"{n}-{config_hash(r)[:6]}" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def resolve(source: str) -> Callable:
  """The function `module:name`; raises ImportError or AttributeError when it is missing."""
  module, name = source.split(":")
  return getattr(importlib.import_module(module), name)


def _call(spec: TableSpec, run: Run, step: int | None) -> pd.DataFrame:
  frame = resolve(spec.source)(run) if step is None else resolve(spec.source)(run, step)
  return frame.drop(columns="run", errors="ignore")


@functools.lru_cache(maxsize=None)
def code_version(source: str) -> str:
  """A hash of the source of the module that makes a table, so editing it invalidates its cached results."""
  module = importlib.import_module(source.split(":")[0])
  try:
    text = inspect.getsource(module)
  except (OSError, TypeError):
    return "nosource"
  return hashlib.sha256(text.encode()).hexdigest()[:8]


def cache_path(out: str, run: Run, job: Job) -> str:
  """out/cache/<config hash>/<table>-<code version>/<step-S | metrics-S>.csv."""
  key = f"step-{job.step}" if job.step is not None else f"metrics-{int(run.metrics.step.max())}"
  folder = f"{job.table}-{code_version(SPECS[job.table].source)}"
  return os.path.join(out, "cache", config_hash(run), folder, f"{key}.csv")


def plan(runs: list[Run], specs: list[TableSpec], steps: str) -> list[Job]:
  """Every (run, table, step) job: per-run tables once, per-step tables at each checkpoint (or the last)."""
  jobs = []
  for i, run in enumerate(runs):
    checkpoint_steps = run.steps()
    chosen = checkpoint_steps[-1:] if steps == "last" else checkpoint_steps
    for spec in specs:
      jobs += [Job(i, spec.name, None)] if spec.scope == "run" else [Job(i, spec.name, s) for s in chosen]
  return jobs


def _available(spec: TableSpec, notes: list) -> bool:
  try:
    resolve(spec.source)
    return True
  except (ImportError, AttributeError) as e:
    notes.append(f"{spec.name}: {spec.source} is not available ({type(e).__name__}: {e}); "
                 "table and its figures skipped")
    return False


def run_job(out: str, run: Run, job: Job, report: Report) -> pd.DataFrame | None:
  """The job's table from the cache, or computed and cached; None (and a note) when it fails."""
  path = cache_path(out, run, job)
  if os.path.exists(path):
    report.cached.append(job)
    return pd.read_csv(path)
  report.computed.append(job)
  start = time.time()
  try:
    frame = _call(SPECS[job.table], run, job.step)
  except Exception as e:  # noqa: BLE001 - another module's failure must not stop the report
    report.failed.append(job)
    report.notes.append(f"{job.table} at step {job.step} of {run.path} failed: {type(e).__name__}: {e}")
    return None
  finally:
    report.table_seconds[job.table] = report.table_seconds.get(job.table, 0.0) + time.time() - start
  os.makedirs(os.path.dirname(path), exist_ok=True)
  frame.to_csv(path + ".tmp", index=False)
  os.replace(path + ".tmp", path)
  return frame


def collect(out: str, runs: list[Run], labels: list[str], jobs: list[Job], report: Report) -> dict:
  """Runs every job under a progress bar; returns {table: {label: concatenated frame}}."""
  parts: dict = {}
  progress = Progress(len(jobs))
  for job in jobs:
    progress.show(f"{labels[job.run_index]} {job.table} step {job.step if job.step is not None else '-'}")
    frame = run_job(out, runs[job.run_index], job, report)
    progress.advance(f"{labels[job.run_index]} {job.table}")
    if frame is not None:
      parts.setdefault(job.table, {}).setdefault(labels[job.run_index], []).append(frame)
  progress.close()
  return {table: {label: pd.concat(frames, ignore_index=True) for label, frames in by_run.items()}
          for table, by_run in parts.items()}


def add_derived(tables: dict, report: Report) -> None:
  """Tables computed from others: decodable counts from probes."""
  if "probes" not in tables:
    return
  try:
    counts = resolve(DERIVED["decodable"].source)
    tables["decodable"] = {label: counts(frame) for label, frame in tables["probes"].items()}
  except Exception as e:  # noqa: BLE001
    report.notes.append(f"decodable: probes.decodable_counts failed: {type(e).__name__}: {e}")


def per_run(tables: dict, label: str) -> dict:
  """One run's tables: {table: frame}."""
  return {name: by_run[label] for name, by_run in tables.items() if label in by_run}


def fresh_folder(folder: str, extension: str) -> str:
  """Makes folder, removing the *.extension files a previous build left there."""
  os.makedirs(folder, exist_ok=True)
  for name in os.listdir(folder):
    if name.endswith(extension):
      os.remove(os.path.join(folder, name))
  return folder


def write_tables(out: str, tables: dict) -> list[str]:
  """tables/<name>.csv (all runs, a `run` column first) and tables/README.md; returns the CSV names."""
  folder = fresh_folder(os.path.join(out, "tables"), ".csv")
  written = []
  for name, by_run in tables.items():
    frame = pd.concat([f.assign(run=label) for label, f in by_run.items()], ignore_index=True)
    frame = frame[["run"] + [c for c in frame.columns if c != "run"]]
    frame.to_csv(os.path.join(folder, f"{name}.csv"), index=False)
    written.append(name)
  with open(os.path.join(folder, "README.md"), "w") as f:
    f.write(tables_readme(tables))
  return written


def tables_readme(tables: dict) -> str:
  """Markdown documenting each table and every column (one row per observation)."""
  lines = ["# Tables", "", "One row per observation (tidy); every table starts with `run`: " + RUN["run"] + ".", ""]
  for name, spec in SPECS.items():
    lines += [f"## {name}.csv", "", spec.doc + (" Per checkpoint step." if spec.scope == "step" else ""), ""]
    if name not in tables:
      lines += ["Not produced in this report (see the notes in index.html).", ""]
    columns = ["run"] + list(spec.columns)
    if name in tables:
      present = pd.concat(list(tables[name].values())).columns
      columns += [c for c in present if c not in spec.columns and c != "run"]
    lines += ["| column | meaning |", "| --- | --- |"]
    meaning = {"run": RUN["run"], **spec.columns}
    lines += [f"| {c} | {meaning.get(c, 'see ' + spec.source).replace('|', chr(92) + '|')} |" for c in columns]
    lines.append("")
  return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  name: str
  caption: str
  needs: tuple
  draw: Callable


FIGURES = [
    FigureSpec("injection_signal", "The study's figure: signal of each injected task vs step, one line per width "
               "(dense traces where the run traced them); dashed lines mark burst/every injections. Small widths "
               "spike at an injection and decay; large widths accumulate and keep the task.",
               ("signal", "events"),
               lambda t: plots.signal_vs_step(retention.best_trajectories(t["signal"]), t["events"])),
    FigureSpec("retention", "Retained share of the injected tasks' signal vs width (event schedules: "
               "(final - pre) / (peak - pre) after the last event; continuous: final / peak).",
               ("retention",), lambda t: plots.retention_vs_width(t["retention"])),
    FigureSpec("final_signal",
               "Final signal per task vs width, coloured by task frequency: rarer tasks need wider members.",
               ("final",), lambda t: plots.final_signal_vs_width(t["final"])),
    FigureSpec("loss_fits", "Final loss per task vs width (log-log) with power-law fits "
               "(floor + a * width^-b; floor = the oracle's irreducible loss for regression).",
               ("final",),
               lambda t: plots.loss_vs_width(t["final"], t.get("power_law", pd.DataFrame(columns=["task"])))),
    FigureSpec("emergence", "Emergence width (smallest width with signal >= 0.5) vs task frequency, "
               "coloured by complexity; x: tasks no width learned.",
               ("emergence",), lambda t: plots.emergence_vs_frequency(t["emergence"])),
    FigureSpec("oracle", "Regression: trained signal vs the analytic oracle's (best rank-width map), "
               "one point per (width, task); the dashed diagonal is a perfect match.",
               ("oracle",), lambda t: plots.oracle_vs_trained(t["oracle"])),
    FigureSpec("grad_norm", "Per-task gradient norm vs width at the last checkpoint, coloured by frequency: "
               "common tasks' gradients shrink in wider members.",
               ("gradients",), lambda t: plots.grad_norm_vs_width(t["gradients"])),
    FigureSpec("overwrite", "Overwrite share of the injected (else the rarest) tasks vs width at each checkpoint: "
               "the part of the task's loss change caused by the other tasks' updates.",
               ("gradients", "final"), lambda t: plots.overwrite_vs_width(t["gradients"], rare_tasks(t)[0])),
    FigureSpec("owned_neurons",
               "Neurons owned per task (left) and its feature capacity (right) vs its frequency at the "
               "last checkpoint, one line per width: small widths spend their neurons on frequent tasks.",
               ("allocation",), lambda t: plots.owned_neurons_vs_frequency(t["allocation"])),
    FigureSpec("decodable", "Task features decodable by probes vs width at the last checkpoint, one line per layer.",
               ("decodable",), lambda t: plots.decodable_vs_width(t["decodable"])),
]


def draw_figures(out: str, label: str, t: dict, report: Report) -> list[tuple[str, str]]:
  """Writes figures/<label>-<name>.png for each figure whose tables exist; returns (path, caption)."""
  drawn = []
  for spec in FIGURES:
    if not all(n in t and len(t[n]) for n in spec.needs):
      continue
    try:
      fig = spec.draw(t)
    except Exception as e:  # noqa: BLE001 - one bad figure must not stop the report
      report.notes.append(f"figure {spec.name} of {label} failed: {type(e).__name__}: {e}")
      continue
    path = plots.save(fig, os.path.join(out, "figures", f"{label}-{spec.name}.png"))
    drawn.append((os.path.relpath(path, out), spec.caption))
  return drawn


# ---- the study's claims -----------------------------------------------------------------------
HELD, NOT_HELD, NOT_MEASURABLE = "held", "did not hold", "not measurable"
RETAIN_MIN = 0.1  # an injected task counts as kept by a width whose retained share reaches this
CLAIMS = {
    1: "Larger widths learn rarer and more complex tasks: emergence width falls with task frequency, "
       "and the number of tasks learned grows with width.",
    2: "Trained widths match the analytic oracle (regression: the best rank-width map).",
    3: "Common-task gradient norms fall with width: interference is weaker in larger models.",
    4: "Overwrite: the loss change of a rare injected task caused by other tasks' updates is larger in small widths.",
    5: "Small widths give their neurons to frequent or simple tasks.",
    6: "Larger models embed more task features (linear probes).",
    7: "Injection protocol: small widths spike at an injection and forget; large widths retain the task.",
}


def rank_corr(x, y) -> float:
  """Spearman correlation (average ranks); NaN with fewer than 2 distinct values on a side."""
  rx, ry = pd.Series(np.asarray(x, float)).rank(), pd.Series(np.asarray(y, float)).rank()
  if rx.nunique() < 2 or ry.nunique() < 2:
    return np.nan
  return float(np.corrcoef(rx, ry)[0, 1])


def _by_width(values: pd.Series) -> str:
  """'16: 0.12, 32: 0.05' from a Series indexed by width (mean over members)."""
  mean = values.groupby(level="width").mean()
  return ", ".join(f"{int(w)}: {v:.3g}" for w, v in mean.items())


def _ends(values: pd.Series) -> tuple[float, float]:
  mean = values.groupby(level="width").mean()
  return float(mean.iloc[0]), float(mean.iloc[-1])


def _trend(values: pd.Series, sign: int) -> tuple[bool, float]:
  """Whether per-member values indexed by (member, width) move with width in direction `sign` (+1 / -1)."""
  rho = rank_corr(values.index.get_level_values("width"), values.values)
  small, large = _ends(values)
  return bool(sign * rho > 0 and sign * (large - small) > 0), rho


def _claim_learning(t: dict, run: Run) -> tuple[str, str]:
  if "emergence" not in t or "learned" not in t:
    return NOT_MEASURABLE, "the emergence tables were not computed"
  em, learned = t["emergence"], t["learned"].sort_values("width")
  if learned.width.nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  if em.emergence_width.isna().all():
    return NOT_MEASURABLE, "no width learned any task (signal >= 0.5)"
  smallest, n = learned.width.iloc[0], len(em)
  if (em.emergence_width == smallest).all():
    return NOT_MEASURABLE, f"every task was learned by the smallest width ({smallest}): nothing separates the widths"
  rho = rank_corr(em.emergence_width.fillna(np.inf), em.frequency)
  first, last = learned.iloc[0], learned.iloc[-1]
  text = (f"emergence width vs frequency: Spearman {rho:+.2f} over {n} tasks ({em.emergence_width.isna().sum()} "
          f"never learned); tasks learned: {first.n_learned}/{n} at width {first.width} -> {last.n_learned}/{n} "
          f"at width {last.width}")
  if em.complexity.nunique() > 1:
    rho_c = rank_corr(em.emergence_width.fillna(np.inf), em.complexity)
    text += f"; emergence width vs complexity: Spearman {rho_c:+.2f}"
  return (HELD if rho < 0 and last.n_learned > first.n_learned else NOT_HELD), text


def _claim_oracle(t: dict, run: Run) -> tuple[str, str]:
  family = scaling.family_name(run)
  if family != "regression":
    return NOT_MEASURABLE, f"the {family} family has no analytic oracle"
  if "oracle" not in t or t["oracle"].empty:
    return NOT_MEASURABLE, "the oracle table was not computed"
  totals = scaling.oracle_totals(t["oracle"]).set_index("width")
  excess = (totals.eval_loss - totals.oracle_loss).abs()
  close = (totals.ratio <= 1.1) | (excess <= 0.01 * totals.zero_loss)
  text = ("mixture loss trained / oracle per width: " + ", ".join(
      f"{w}: {r:.3f}" if np.isfinite(r) else f"{w}: {e:.2g} vs 0" for w, r, e in
      zip(totals.index, totals.ratio, totals.eval_loss)) + f"; largest mean |signal gap| {totals.signal_gap.max():.3f} "
          f"(held: each width within 10% of the oracle's loss or 1% of the zero map's, and signal gap <= 0.05)")
  if run.config.model.get("activation") != "linear":
    text += "; members are not linear, the oracle describes linear maps"
  return (HELD if close.all() and totals.signal_gap.max() <= 0.05 else NOT_HELD), text


def _last(frame: pd.DataFrame) -> pd.DataFrame:
  return frame[frame.step == frame.step.max()]


def _claim_gradients(t: dict, run: Run) -> tuple[str, str]:
  if "gradients" not in t or t["gradients"].empty:
    return NOT_MEASURABLE, "the gradient table was not computed"
  last = _last(t["gradients"])
  common = last[last.common.astype(bool)] if "common" in last else last[last.frequency >= last.frequency.quantile(0.75)]
  norms = common.groupby(["member", "width"]).grad_norm.mean()
  if norms.index.get_level_values("width").nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  ok, rho = _trend(norms, -1)
  text = (f"step {int(last.step.max())}, mean gradient norm of the {common.task.nunique()} common tasks per width: "
          f"{_by_width(norms)} (Spearman vs width {rho:+.2f})")
  if "cosines" in t and len(t["cosines"]):
    cos = _last(t["cosines"])
    cos = cos[cos.task_i != cos.task_j].assign(abs_cos=lambda f: f.cosine.abs())
    mean_cos = cos.groupby(["member", "width"]).abs_cos.mean()
    ok_cos, rho_cos = _trend(mean_cos, -1)
    ok = ok and ok_cos
    text += f"; mean |cosine| between task gradients: {_by_width(mean_cos)} (Spearman {rho_cos:+.2f})"
  return (HELD if ok else NOT_HELD), text


def rare_tasks(t: dict) -> tuple[list, str]:
  """The injected tasks, else the rarest tenth of the tasks (at least one); and which it is."""
  if "events" in t and len(t["events"]):
    return sorted(int(k) for k in t["events"].task.unique()), "injected tasks"
  final = t.get("final", pd.DataFrame(columns=["task", "frequency"]))
  tasks = final.drop_duplicates("task").sort_values("frequency")
  rare = [int(k) for k in tasks.task.head(max(1, len(tasks) // 10))]
  return rare, "no task is injected; measured on the rarest tasks"


def _claim_overwrite(t: dict, run: Run) -> tuple[str, str]:
  if "gradients" not in t or t["gradients"].empty:
    return NOT_MEASURABLE, "the gradient table was not computed"
  tasks, which = rare_tasks(t)
  rows = t["gradients"][t["gradients"].task.isin(tasks)]
  share = rows.groupby(["member", "width"]).overwrite_share.mean()
  if share.index.get_level_values("width").nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  ok, rho = _trend(share, -1)
  return (HELD if ok else NOT_HELD), (
      f"{which} {tasks}: overwrite share of their loss change, mean over {rows.step.nunique()} checkpoint(s), "
      f"per width: {_by_width(share)} (Spearman vs width {rho:+.2f})" + _checkpoints_after_events(t, rows.step))


def _checkpoints_after_events(t: dict, steps: pd.Series) -> str:
  """How close the checkpoints come after each event schedule's first injection (the overwrite window)."""
  events = t.get("events", pd.DataFrame(columns=["kind"]))
  parts = []
  for name, rows in events[~events.kind.isin(retention.CONTINUOUS_KINDS)].groupby("schedule"):
    first = int(rows.step.min())
    after = sorted(s for s in steps.unique() if s > first)
    parts.append(f"{name} injects first at step {first}; " +
                 (f"the next checkpoint is {after[0] - first} steps later" if after else "no checkpoint follows"))
  return "; " + "; ".join(parts) if parts else ""


def _claim_allocation(t: dict, run: Run) -> tuple[str, str]:
  if "allocation" not in t or t["allocation"].empty:
    return NOT_MEASURABLE, "the allocation table was not computed"
  last = _last(t["allocation"])
  column, what = "owned_neurons", "owned neurons"
  if run.config.model.get("activation") == "linear" or (last.owned_neurons <= 0).all():
    column, what = "capacity", "feature capacity (linear members, or no neuron with one owner: units are no basis)"
  total = last.groupby(["member", "width"])[column].sum()
  if (total <= 0).all():
    return NOT_MEASURABLE, "no task owns a neuron or holds capacity"
  frequent = last[last.frequency >= last.frequency.median()]
  share = frequent.groupby(["member", "width"])[column].sum().reindex(total.index, fill_value=0) / total
  ok, rho = _trend(share, -1)
  served = last[last[column] > 0.5].groupby(["member", "width"]).task.nunique().reindex(total.index, fill_value=0)
  return (HELD if ok else NOT_HELD), (
      f"step {int(last.step.max())}, share of {what} held by the more frequent half of the tasks, per width: "
      f"{_by_width(share)} (Spearman vs width {rho:+.2f}); tasks with {column} > 0.5: {_by_width(served)}")


def _claim_probes(t: dict, run: Run) -> tuple[str, str]:
  if "decodable" not in t or t["decodable"].empty:
    return NOT_MEASURABLE, "the probe tables were not computed"
  last = _last(t["decodable"])
  last = last[last.layer.astype(str) != "input"]  # the model's own layers: the input is the same for every width
  counts = last.groupby(["member", "width"]).n_decodable.sum()
  if counts.index.get_level_values("width").nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  ok, rho = _trend(counts, +1)
  return (HELD if ok else NOT_HELD), (f"step {int(last.step.max())}, decodable features (hidden and output layers) "
                                      f"per width: {_by_width(counts)} (Spearman vs width {rho:+.2f})")


def _schedule_verdict(rows: pd.DataFrame) -> tuple[int, str]:
  """+1 supports (larger widths keep more), -1 contradicts, 0 no width kept it; and the numbers."""
  per_member = rows.groupby(["member", "width"])
  retained, peak, half = per_member.retained.mean(), per_member.peak.mean(), per_member.half_life.mean()
  first = rows.iloc[0]
  events = "continuous" if first.kind in retention.CONTINUOUS_KINDS else f"{rows.event_step.nunique()} event(s)"
  text = (f"{first.schedule} (task {first.task}, {first.kind}, {events}): retained "
          f"{_by_width(retained)}; peak {_by_width(peak)}; half-life in steps {_by_width(half)}")
  if retained.groupby(level="width").mean().max() < RETAIN_MIN:
    return 0, text + f" (no width retains {RETAIN_MIN} of its peak)"
  ok, rho = _trend(retained, +1)
  return (1 if ok else -1), text + f" (Spearman vs width {rho:+.2f})"


def _claim_injection(t: dict, run: Run) -> tuple[str, str]:
  if "retention" not in t or t["retention"].empty:
    return NOT_MEASURABLE, "this run injects no task (config.inject is empty)"
  if t["retention"].width.nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  verdicts = [_schedule_verdict(rows) for _, rows in t["retention"].groupby("schedule")]
  signs = [v for v, _ in verdicts]
  status = HELD if 1 in signs and -1 not in signs else NOT_HELD
  return status, "; ".join(text for _, text in verdicts)


CLAIM_CHECKS = {1: _claim_learning, 2: _claim_oracle, 3: _claim_gradients, 4: _claim_overwrite,
                5: _claim_allocation, 6: _claim_probes, 7: _claim_injection}


def evaluate_claims(t: dict, run: Run) -> pd.DataFrame:
  """One row per claim for one run's tables: claim, statement, status, evidence."""
  rows = []
  for number, check in CLAIM_CHECKS.items():
    try:
      status, evidence = check(t, run)
    except Exception as e:  # noqa: BLE001 - a table of unexpected shape must not stop the report
      status, evidence = NOT_MEASURABLE, f"evaluating it failed: {type(e).__name__}: {e}"
    rows.append(dict(claim=number, statement=CLAIMS[number], status=status, evidence=evidence))
  return pd.DataFrame(rows)


STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:.9em}
.held{color:#176b2c;font-weight:bold}.did-not-hold{color:#a11;font-weight:bold}
.not-measurable{color:#777;font-weight:bold}"""


def _claims_html(verdicts: pd.DataFrame) -> list[str]:
  parts = ["<h2>Claims of the study, measured in this sweep</h2>", "<ol>"]
  for number, rows in verdicts.groupby("claim", sort=True):
    parts.append(f"<li><p><b>{html.escape(rows.statement.iloc[0])}</b></p><ul>")
    for r in rows.itertuples():
      css = r.status.replace(" ", "-")
      parts.append(f"<li>{html.escape(r.run)}: <span class='{css}'>{html.escape(r.status)}</span>. "
                   f"{html.escape(r.evidence)}</li>")
    parts.append("</ul></li>")
  return parts + ["</ol>"]


def write_index(out: str, runs: list[Run], labels: list[str], figures: dict, verdicts: pd.DataFrame,
                tables: list[str], report: Report) -> str:
  """out/index.html: the claims, the figures with captions, links to the tables, notes."""
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>scaling_interference report</title>"
           f"<style>{STYLE}</style></head><body><h1>scaling_interference report</h1>", "<ul>"]
  parts += [f"<li>{html.escape(l)}: {html.escape(r.path)} ({scaling.family_name(r)}, widths "
            f"{sorted(r.members.width.unique().tolist())}, {len(r.tasks)} tasks, "
            f"last step {int(r.metrics.step.max())})</li>"
            for l, r in zip(labels, runs)]
  spent = ", ".join(f"{name} {sec:.1f}s" for name, sec in report.table_seconds.items())
  parts.append(f"</ul><p>Jobs: {len(report.computed)} computed ({len(report.failed)} failed), "
               f"{len(report.cached)} from the cache. Computing time per table: {spent or 'none'}.</p>")
  parts += _claims_html(verdicts)
  for label in labels:
    parts.append(f"<h2>Figures: {html.escape(label)}</h2>")
    parts += [f"<figure><img src='{html.escape(p)}' alt='{html.escape(p)}'>"
              f"<figcaption>{html.escape(c)}</figcaption></figure>"
              for p, c in figures[label]]
  parts.append("<h2>Tables</h2><p>Column definitions: <a href='tables/README.md'>tables/README.md</a></p><ul>")
  parts += [f"<li><a href='tables/{n}.csv'>{n}.csv</a>: {html.escape(SPECS[n].doc)}</li>" for n in tables]
  parts.append("</ul>")
  if report.notes:
    parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in report.notes] + ["</ul>"]
  parts.append("</body></html>")
  path = os.path.join(out, "index.html")
  with open(path, "w") as f:
    f.write("\n".join(parts))
  return path


def build(workdirs, out: str, steps: str = "all", skip=()) -> Report:
  """Computes (or reads from the cache) every table of every workdir; writes tables, figures and index.html."""
  if steps not in ("all", "last"):
    raise ValueError(f"steps: must be 'all' or 'last', got {steps!r}")
  unknown = set(skip) - set(SPECS)
  if unknown:
    raise ValueError(f"skip: unknown tables {sorted(unknown)}; choose from {sorted(SPECS)}")
  start, out = time.time(), os.path.abspath(out)
  report = Report(out=out, index=os.path.join(out, "index.html"))
  runs = [load_run(w) for w in ([workdirs] if isinstance(workdirs, str) else workdirs)]
  labels = run_labels(runs)
  specs = [s for s in TABLES if s.name not in skip and _available(s, report.notes)]
  tables = collect(out, runs, labels, plan(runs, specs, steps), report)
  add_derived(tables, report)
  verdicts = pd.concat([evaluate_claims(per_run(tables, l), runs[i]).assign(run=l) for i, l in enumerate(labels)],
                       ignore_index=True)
  tables["claims"] = {l: verdicts[verdicts.run == l].drop(columns="run") for l in labels}
  fresh_folder(os.path.join(out, "figures"), ".png")
  figures = {l: draw_figures(out, l, per_run(tables, l), report) for l in labels}
  written = write_tables(out, tables)
  report.claims, report.seconds = verdicts, time.time() - start
  write_index(out, runs, labels, figures, verdicts, written, report)
  return report
