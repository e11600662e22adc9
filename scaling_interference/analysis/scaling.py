"""How task loss and signal scale with width: power-law fits, emergence widths, the oracle, sizing.

Every table here reads the last eval of the metrics (mean over a width's members) and the
tasks' realised frequencies (run.tasks: injection included); final_table's `projection` reads the
linear members' maps at the last checkpoint. Functions that take `runs` accept one Run or a list;
their tables carry a `run` column (the workdir's name).

  power law    loss_k(N) - floor_k ~= prefactor * N^(-exponent), fitted by least squares on
               log(loss - floor) vs log(N); floor_k is the oracle's irreducible loss (label noise) for a
               family with an oracle (regression), 0 otherwise. Tasks with fewer than 3 widths of
               positive loss - floor, or a flat loss, are skipped. exponent > 0: the loss falls with width.
  emergence    a task's emergence width: the smallest width whose final signal (mean over the width's
               members) reaches `threshold`; NaN if no width does.
  sizing       per frequency bin (half decades) and complexity: the smallest width that learned every
               task of the bin (width_all) and some task of it (width_any).
"""

import typing

import numpy as np
import pandas as pd

from scaling_interference.analysis import learned, oracle
from scaling_interference.reader import Run
from scaling_interference.tasks.regression import Regression

FINAL_COLUMNS = ["width", "task", "loss", "signal", "projection", "frequency", "complexity"]
FIT_COLUMNS = ["run", "task", "frequency", "complexity", "exponent", "prefactor", "r2", "n", "floor"]
EMERGENCE_COLUMNS = ["run", "task", "frequency", "complexity", "emergence_width", "max_signal"]
LEARNED_COLUMNS = ["run", "width", "n_learned", "n_tasks"]
ORACLE_COLUMNS = [
  "run",
  "width",
  "task",
  "frequency",
  "complexity",
  "trained_signal",
  "oracle_signal",
  "trained_loss",
  "oracle_loss",
  "zero_loss",
]
ORACLE_TOTAL_COLUMNS = ["run", "width", "eval_loss", "oracle_loss", "zero_loss", "ratio", "signal_gap"]
SIZING_COLUMNS = [
  "run",
  "frequency_bin",
  "frequency_low",
  "frequency_high",
  "complexity",
  "n_tasks",
  "n_learned",
  "width_any",
  "width_all",
]


def run_name(run: Run) -> str:
  return run.path.name


def _each(runs, table_fn, columns) -> pd.DataFrame:
  """table_fn(run) for each run, concatenated, with the run's name in column `run`."""
  runs = [runs] if isinstance(runs, Run) else list(runs)
  frames = [table_fn(r).assign(run=run_name(r)) for r in runs]
  frames = [f for f in frames if len(f)]
  return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def family_name(run: Run) -> str:
  """The run's task family (config.task.family), or "language" for language-model runs."""
  return str(run.config.task.family) if "task" in run.config else "language"


def task_table(run: Run) -> pd.DataFrame:
  """Task id, realised frequency and complexity."""
  return run.tasks.rename(columns={"id": "task"})[["task", "frequency", "complexity"]]


def final_means(run: Run, step: int | None = None) -> pd.DataFrame:
  """Per (width, task): mean final loss and signal over the width's members, with frequency and complexity."""
  rows = learned.final_task_metrics(run, step)
  means = rows.groupby(["width", "task"], as_index=False)[["loss", "signal"]].mean()
  return means.merge(task_table(run), on="task")


def final_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """final_means with `projection` beside the signal: the mean of the members' learned.projection_rows.

  That is <M_kk, W*_k>_F / ||W*_k||_F^2 of each linear member's map at the last checkpoint (at or
  before `step`); NaN for non-linear members and families without target maps (Family.projection).
  """
  means = final_means(run, step)
  rows = learned.projection_rows(run, step)
  projection = (
    rows.groupby(["width", "task"], as_index=False).projection.mean()
    if len(rows)
    else means[["width", "task"]].assign(projection=np.nan)
  )
  return means.merge(projection, on=["width", "task"], how="left")[FINAL_COLUMNS]


def fit_power_law(width_N, loss_N) -> dict:
  """Least squares of log(loss) on log(width): loss ~= prefactor * width^(-exponent)."""
  x_N, y_N = np.log(np.asarray(width_N, float)), np.log(np.asarray(loss_N, float))
  slope, intercept = np.polyfit(x_N, y_N, 1)
  residual = y_N - (intercept + slope * x_N)
  ss_tot = float(np.square(y_N - y_N.mean()).sum())
  r2 = 1.0 - float(np.square(residual).sum()) / ss_tot if ss_tot > 0 else np.nan
  return dict(exponent=float(-slope), prefactor=float(np.exp(intercept)), r2=r2, n=int(len(x_N)))


realised_family = learned.realised_family
has_oracle = learned.has_oracle


def loss_floor(run: Run) -> np.ndarray:
  """(K,) irreducible loss per task: the oracle's loss with every direction kept (families with one), else 0."""
  if not has_oracle(run):
    return np.zeros(len(run.tasks))
  family = typing.cast(Regression, run.family)  # a family with the oracle has Regression's spectrum
  return oracle.oracle(family, int(family.singular_values_KxR.size)).loss_K


def _fits(run: Run) -> pd.DataFrame:
  final, floor_K = final_means(run), loss_floor(run)
  rows = []
  for task, points in final.groupby("task"):
    excess = points.loss.to_numpy() - floor_K[task]
    ok = np.isfinite(excess) & (excess > 0)
    if ok.sum() < 3 or np.ptp(np.log(excess[ok])) < 1e-9:
      continue
    fit = fit_power_law(points.width.to_numpy()[ok], excess[ok])
    rows.append(
      dict(
        task=task,
        frequency=points.frequency.iloc[0],
        complexity=points.complexity.iloc[0],
        floor=float(floor_K[task]),
        **fit,
      )
    )
  return pd.DataFrame(rows, columns=[c for c in FIT_COLUMNS if c != "run"])


def power_law_table(runs) -> pd.DataFrame:
  """Per task: exponent, prefactor, R^2 and number of widths of the fit of final loss vs width."""
  return _each(runs, _fits, FIT_COLUMNS)


def emergence_widths(final: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
  """From a final_table: per task the smallest width whose mean signal reaches `threshold` (NaN: none)."""
  rows = []
  for task, points in final.groupby("task"):
    learned = points[points.signal >= threshold]
    rows.append(
      dict(
        task=task,
        frequency=points.frequency.iloc[0],
        complexity=points.complexity.iloc[0],
        emergence_width=float(learned.width.min()) if len(learned) else np.nan,
        max_signal=float(points.signal.max()),
      )
    )
  return pd.DataFrame(rows, columns=[c for c in EMERGENCE_COLUMNS if c != "run"])


def emergence_table(runs, threshold: float = 0.5) -> pd.DataFrame:
  """Per task: emergence width (smallest width with mean final signal >= threshold), frequency, complexity."""
  return _each(runs, lambda r: emergence_widths(final_means(r), threshold), EMERGENCE_COLUMNS)


def learned_counts(runs, threshold: float = 0.5) -> pd.DataFrame:
  """Per width: how many tasks reach `threshold` (mean final signal over the width's members)."""

  def counts(run):
    final = final_means(run)
    return (
      final.assign(learned=final.signal >= threshold)
      .groupby("width", as_index=False)
      .agg(n_learned=("learned", "sum"), n_tasks=("task", "nunique"))
    )

  return _each(runs, counts, LEARNED_COLUMNS)


def _oracle_rows(run: Run) -> pd.DataFrame:
  if not has_oracle(run):
    return pd.DataFrame(columns=ORACLE_COLUMNS[1:])
  final, family = final_means(run), realised_family(run)
  best = {int(w): oracle.oracle(family, int(w)) for w in final.width.unique()}
  zero_K = oracle.oracle(family, 0).loss_K
  return final.assign(
    trained_signal=final.signal,
    trained_loss=final.loss,
    zero_loss=zero_K[final.task],
    oracle_signal=[best[w].signal_K[t] for w, t in zip(final.width, final.task, strict=True)],
    oracle_loss=[best[w].loss_K[t] for w, t in zip(final.width, final.task, strict=True)],
  )[ORACLE_COLUMNS[1:]]


def oracle_comparison(runs) -> pd.DataFrame:
  """Per (width, task) the trained mean signal and loss beside the oracle's (empty for a family without one)."""
  return _each(runs, _oracle_rows, ORACLE_COLUMNS)


def oracle_totals(comparison: pd.DataFrame) -> pd.DataFrame:
  """Per (run, width): frequency-weighted eval loss vs the oracle's and the zero map's, ratio, mean |signal gap|."""
  keys = [c for c in ("run", "width") if c in comparison.columns]
  columns = [c for c in ORACLE_TOTAL_COLUMNS if c in keys or c not in ("run", "width")]
  if comparison.empty:
    return pd.DataFrame(columns=columns)
  p = comparison.frequency
  frame = comparison.assign(
    eval_part=p * comparison.trained_loss,
    oracle_part=p * comparison.oracle_loss,
    zero_part=p * comparison.zero_loss,
    gap=(comparison.trained_signal - comparison.oracle_signal).abs(),
  )
  totals = frame.groupby(keys, as_index=False).agg(
    eval_loss=("eval_part", "sum"),
    oracle_loss=("oracle_part", "sum"),
    zero_loss=("zero_part", "sum"),
    signal_gap=("gap", "mean"),
  )
  totals["ratio"] = totals.eval_loss / totals.oracle_loss.where(totals.oracle_loss > 0)
  return totals[columns]


def frequency_bins(frequency_K) -> pd.DataFrame:
  """Half-decade bins of frequency: low, high and a label per task (a frequency of 0 gets the bin [0, 0])."""
  frequency_K = np.asarray(frequency_K, float)
  seen_K = frequency_K > 0
  exponent_K = np.floor(2 * np.log10(np.where(seen_K, frequency_K, 1.0)))
  low_K = np.where(seen_K, 10 ** (exponent_K / 2), 0.0)
  high_K = np.where(seen_K, 10 ** ((exponent_K + 1) / 2), 0.0)
  labels = [f"[{lo:.2g}, {hi:.2g})" if lo > 0 else "[0, 0]" for lo, hi in zip(low_K, high_K, strict=True)]
  return pd.DataFrame({"frequency_bin": labels, "frequency_low": low_K, "frequency_high": high_K})


def complexity_bins(complexity_K, max_levels: int = 6) -> np.ndarray:
  """Complexity as is when it takes few values, else the midpoint of its quantile bin."""
  values = pd.Series(np.round(np.asarray(complexity_K, float), 6))
  if values.nunique() <= max_levels:
    return values.to_numpy()
  binned = pd.qcut(values, max_levels, duplicates="drop")
  return np.asarray([interval.mid for interval in binned], float)


def sizing_from_emergence(emergence: pd.DataFrame) -> pd.DataFrame:
  """Per (frequency bin, complexity): tasks, tasks learned, smallest width that learned any / all of them."""
  frame = pd.concat([emergence.reset_index(drop=True), frequency_bins(emergence.frequency)], axis=1)
  frame["complexity"] = complexity_bins(frame.complexity)
  table = frame.groupby(["frequency_bin", "frequency_low", "frequency_high", "complexity"], as_index=False).agg(
    n_tasks=("task", "size"),
    n_learned=("emergence_width", "count"),
    width_any=("emergence_width", "min"),
    width_all=("emergence_width", "max"),
  )
  table.loc[table.n_learned < table.n_tasks, "width_all"] = np.nan
  return table.sort_values(["frequency_low", "complexity"], ascending=[False, True], ignore_index=True)


def sizing_table(runs, threshold: float = 0.5) -> pd.DataFrame:
  """For a frequency (binned) and complexity: the smallest width of the sweep that learned such tasks."""
  return _each(runs, lambda r: sizing_from_emergence(emergence_widths(final_means(r), threshold)), SIZING_COLUMNS)
