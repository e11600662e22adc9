"""The analysis report of one or more workdirs: cached tables, figures, and index.html with the study's claims.

  build(["runs/a", "runs/b"], "out")  ->  out/tables/*.csv (+ README.md), out/figures/*.png, out/index.html
  build(..., options={"replay": dict(events=2, max_steps=50)})  # keywords of the replay tables' functions

Work is split into jobs (workdir, step, table); per-step tables run at each checkpoint (or the last),
the probes also at step 0 (the seeded init). A job's result is cached as CSV under
out/cache/<config hash>/<table>-<code version>[-<options hash>]/<key>.csv, key "step-<S>" for
per-checkpoint tables and "metrics-<S>" (the last eval step) for per-run tables, so building again
computes only what is new (new checkpoints, a run trained further, other options, or a table whose
module's source, or that of an analysis module it uses, changed). The tables
(tables.py) are made by other modules' public functions, guarded: a failing function leaves a note in
index.html (html.py), and a failed job is retried on the next build. figures.py draws the figures,
claims.py checks the study's claims.
"""

import dataclasses
import functools
import hashlib
import inspect
import io
import json
import sys
import time
from collections.abc import Callable

import pandas as pd
from etils import epath
from tqdm import auto as tqdm

from scaling_interference import storage
from scaling_interference.analysis import claims, figures, html, scaling, tables
from scaling_interference.compile_cache import enable_compilation_cache
from scaling_interference.reader import Run, load_run

ANALYSIS = "scaling_interference.analysis"


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
  options: dict = dataclasses.field(default_factory=dict)  # table options, by TableSpec.options name
  seconds: float = 0.0
  table_seconds: dict = dataclasses.field(default_factory=dict)  # computing time per table


def config_hash(run: Run) -> str:
  """The workdir's identity: a hash of its resolved config."""
  text = json.dumps(run.config.to_dict(), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_labels(runs: list[Run]) -> list[str]:
  """Workdir names, with the config hash appended where two runs share a name."""
  names = [scaling.run_name(r) for r in runs]
  return [f"{n}-{config_hash(r)[:6]}" if names.count(n) > 1 else n for n, r in zip(names, runs, strict=True)]


def _options(spec: tables.TableSpec, options: dict) -> dict:
  """The keywords of a table's function: its option group's defaults, then what the build was given."""
  return {**tables.OPTION_DEFAULTS[spec.options], **options.get(spec.options, {})} if spec.options else {}


def _call(spec: tables.TableSpec, run: Run, step: int | None, options: dict) -> pd.DataFrame:
  kwargs = _options(spec, options)
  frame = spec.fn(run, **kwargs) if step is None else spec.fn(run, step, **kwargs)
  return frame.drop(columns="run", errors="ignore")


def analysis_modules(module) -> dict:
  """{name: module}: `module` and the scaling_interference.analysis modules it uses, directly or through them."""
  found, todo = {}, [module]
  while todo:
    current = todo.pop()
    if current is None or current.__name__ in found:
      continue
    found[current.__name__] = current
    for value in vars(current).values():
      used = value if inspect.ismodule(value) else inspect.getmodule(value)
      if used is not None and used.__name__.startswith(ANALYSIS):
        todo.append(used)
  return found


@functools.cache
def code_version(fn: Callable) -> str:
  """A hash of the source of fn's module and the analysis modules it uses: editing them invalidates the cache."""
  try:
    modules = analysis_modules(inspect.getmodule(fn))
    text = "".join(inspect.getsource(modules[name]) for name in sorted(modules))
  except (OSError, TypeError):
    return "nosource"
  return hashlib.sha256(text.encode()).hexdigest()[:8]


def options_hash(options: dict) -> str:
  return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]


def cache_path(out: epath.Path, run: Run, job: Job, options: dict) -> epath.Path:
  """out/cache/<config hash>/<table>-<code version>[-<options hash>]/<step-S | metrics-S>.csv."""
  spec = tables.SPECS[job.table]
  key = f"step-{job.step}" if job.step is not None else f"metrics-{int(run.metrics.step.max())}"
  folder = f"{job.table}-{code_version(spec.fn)}"
  if spec.options:
    folder += f"-{options_hash(_options(spec, options))}"
  return out / "cache" / config_hash(run) / folder / f"{key}.csv"


def plan(runs: list[Run], specs: list[tables.TableSpec], steps: str) -> list[Job]:
  """Jobs: per-run tables once, per-step tables at each checkpoint (or the last), at_init ones at step 0 too."""
  jobs = []
  for i, run in enumerate(runs):
    checkpoint_steps = run.steps()
    chosen = checkpoint_steps[-1:] if steps == "last" else checkpoint_steps
    for spec in specs:
      at = sorted(set(chosen) | {0}) if spec.at_init else chosen
      jobs += [Job(i, spec.name, None)] if spec.scope == "run" else [Job(i, spec.name, s) for s in at]
  return jobs


# pandas 2's default float parser can read a float 1 ulp off what to_csv wrote; pandas 3's is exact and
# deprecates the argument
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def run_job(out: epath.Path, run: Run, job: Job, report: Report) -> pd.DataFrame | None:
  """The job's table from the cache, or computed and cached; None (and a note) when it fails."""
  path = cache_path(out, run, job, report.options)
  if path.exists():
    report.cached.append(job)
    return pd.read_csv(io.StringIO(path.read_text()), **EXACT_FLOATS)
  report.computed.append(job)
  start = time.time()
  try:
    frame = _call(tables.SPECS[job.table], run, job.step, report.options)
  except Exception as e:  # noqa: BLE001 - another module's failure must not stop the report
    report.failed.append(job)
    report.notes.append(f"{job.table} at step {job.step} of {run.path} failed: {type(e).__name__}: {e}")
    return None
  finally:
    report.table_seconds[job.table] = report.table_seconds.get(job.table, 0.0) + time.time() - start
  path.parent.mkdir(parents=True, exist_ok=True)
  storage.write_text(path, frame.to_csv(index=False))
  return frame


def progress_bar(total: int, stream=None):
  """A tqdm bar over the report's jobs (with its ETA; a widget in notebooks), on stderr."""
  return tqdm.tqdm(
    total=total, desc="report", unit="job", file=sys.stderr if stream is None else stream, dynamic_ncols=True
  )


def collect(out: epath.Path, runs: list[Run], labels: list[str], jobs: list[Job], report: Report) -> dict:
  """Runs every job under a progress bar; returns {table: {label: concatenated frame}}."""
  parts: dict = {}
  with progress_bar(len(jobs)) as progress:
    for job in jobs:
      progress.set_postfix_str(f"{labels[job.run_index]} {job.table} step {'-' if job.step is None else job.step}")
      frame = run_job(out, runs[job.run_index], job, report)
      progress.update()
      if frame is not None:
        parts.setdefault(job.table, {}).setdefault(labels[job.run_index], []).append(frame)
  return {
    table: {label: pd.concat(frames, ignore_index=True) for label, frames in by_run.items()}
    for table, by_run in parts.items()
  }


def add_derived(frames: dict, report: Report) -> None:
  """Tables computed from others: decodable counts from probes."""
  if "probes" not in frames:
    return
  try:
    counts = tables.SPECS["decodable"].fn
    frames["decodable"] = {label: counts(frame) for label, frame in frames["probes"].items()}
  except Exception as e:  # noqa: BLE001
    report.notes.append(f"decodable: probes.decodable_counts failed: {type(e).__name__}: {e}")


def per_run(frames: dict, label: str) -> dict:
  """One run's tables: {table: frame}."""
  return {name: by_run[label] for name, by_run in frames.items() if label in by_run}


def fresh_folder(folder: epath.Path, extension: str) -> epath.Path:
  """Makes folder, removing the *.extension files a previous build left there."""
  folder.mkdir(parents=True, exist_ok=True)
  for path in folder.iterdir() if folder.exists() else ():  # an object store has no empty folders
    if path.name.endswith(extension):
      path.unlink()
  return folder


def write_tables(out: epath.Path, frames: dict) -> list[str]:
  """tables/<name>.csv (all runs, a `run` column first) and tables/README.md; returns the CSV names."""
  folder = fresh_folder(out / "tables", ".csv")
  written = []
  for name, by_run in frames.items():
    frame = pd.concat([f.assign(run=label) for label, f in by_run.items()], ignore_index=True)
    frame = frame[["run"] + [c for c in frame.columns if c != "run"]]
    storage.write_text(folder / f"{name}.csv", frame.to_csv(index=False))
    written.append(name)
  storage.write_text(folder / "README.md", tables.tables_readme(frames))
  return written


def build(workdirs, out: str, steps: str = "all", skip=(), options: dict | None = None) -> Report:
  """Computes (or reads from the cache) every table of every workdir; writes tables, figures and index.html.

  options: {TableSpec.options name: keywords of those tables' functions}, e.g. {"replay": {"events": 2}}.
  """
  if steps not in ("all", "last"):
    raise ValueError(f"steps: must be 'all' or 'last', got {steps!r}")
  unknown = set(skip) - set(tables.SPECS)
  if unknown:
    raise ValueError(f"skip: unknown tables {sorted(unknown)}; choose from {sorted(tables.SPECS)}")
  known = sorted({s.options for s in tables.SPECS.values() if s.options})
  if set(options or {}) - set(known):
    raise ValueError(f"options: unknown names {sorted(set(options) - set(known))}; choose from {known}")
  enable_compilation_cache()  # a rebuilt report, or a second run of the same shapes, loads its programs
  start, out = time.time(), storage.as_path(out, "report folder")
  storage.check_reachable(out, "report folder")
  report = Report(out=str(out), index=str(out / "index.html"), options=dict(options or {}))
  runs = [load_run(w) for w in ([workdirs] if isinstance(workdirs, str) else workdirs)]
  labels = run_labels(runs)
  specs = [s for s in tables.TABLES if s.name not in skip]
  frames = collect(out, runs, labels, plan(runs, specs, steps), report)
  add_derived(frames, report)
  verdicts = pd.concat(
    [claims.evaluate_claims(per_run(frames, label), runs[i]).assign(run=label) for i, label in enumerate(labels)],
    ignore_index=True,
  )
  frames["claims"] = {label: verdicts[verdicts.run == label].drop(columns="run") for label in labels}
  fresh_folder(out / "figures", ".png")
  drawn = {label: figures.draw_figures(out, label, per_run(frames, label), report.notes) for label in labels}
  written = write_tables(out, frames)
  report.claims, report.seconds = verdicts, time.time() - start
  html.write_index(out, runs, labels, drawn, verdicts, written, report)
  return report
