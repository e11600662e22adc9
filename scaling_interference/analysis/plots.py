"""Figures of the study, drawn from tidy tables. Each function returns a matplotlib Figure (Agg canvas,
no pyplot state); `save(fig, path)` writes it as PNG.
"""
import os

import numpy as np
import pandas as pd
from matplotlib import cm, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CONTINUOUS_KINDS = ("share", "per_batch")
MAX_EVENT_LINES = 40


def new_figure(n_axes: int = 1, width: float = 6.0, height: float = 4.0, max_cols: int = 2):
  """A Figure on an Agg canvas with n_axes panels, max_cols to a row; returns (fig, list of axes)."""
  cols = min(n_axes, max_cols)
  rows = -(-n_axes // cols)
  fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
  FigureCanvasAgg(fig)
  axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
  for extra in axes[n_axes:]:
    extra.set_visible(False)
  return fig, axes[:n_axes]


def save(fig: Figure, path: str, dpi: int = 110) -> str:
  """Writes fig as a PNG at path (folders made as needed); returns path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi, format="png")
  return path


def _scale(values, log: bool = True):
  """A colour map over values (log-normed when log) and its ScalarMappable for a colour bar."""
  values = np.asarray(values, float)
  values = values[np.isfinite(values) & ((values > 0) if log else True)]
  lo, hi = (values.min(), values.max()) if values.size else (1.0, 10.0)
  hi = hi if hi > lo else lo * 1.01 + 1e-12
  norm = colors.LogNorm(lo, hi) if log else colors.Normalize(lo, hi)
  mappable = cm.ScalarMappable(norm=norm, cmap="viridis")
  return mappable.to_rgba, mappable


def _width_axis(ax, widths) -> None:
  ax.set_xscale("log", base=2)
  ax.set_xticks(sorted(set(int(w) for w in widths)))
  ax.get_xaxis().set_major_formatter("{x:.0f}")
  ax.set_xlabel("width")


def _last_step(frame: pd.DataFrame) -> pd.DataFrame:
  return frame[frame.step == frame.step.max()]


def _event_title(task: int, events: pd.DataFrame) -> str:
  mine = events[events.task == task]
  parts = []
  for (name, kind), rows in mine.groupby(["schedule", "kind"]):
    if kind in CONTINUOUS_KINDS:
      parts.append(f"{name}: {kind}, {rows['count'].sum() / max(rows.step.max() + 1, 1):.3g} per step")
    else:
      parts.append(f"{name}: {kind}, {len(rows)} event(s) of {int(rows['count'].max())}")
  return f"task {task} ({'; '.join(parts)})" if parts else f"task {task}"


def _mark_events(ax, task: int, events: pd.DataFrame) -> None:
  steps = events[(events.task == task) & ~events.kind.isin(CONTINUOUS_KINDS)].step.to_numpy()
  for i, step in enumerate(steps[:MAX_EVENT_LINES]):
    ax.axvline(step, color="crimson", lw=0.8, ls="--", alpha=0.7, label="injection" if i == 0 else None)


def signal_vs_step(trajectories: pd.DataFrame, events: pd.DataFrame, tasks=None) -> Figure:
  """Signal vs step of the injected tasks, one line per width (mean over its members), events marked."""
  tasks = sorted(events.task.unique()) if tasks is None else list(tasks)
  fig, axes = new_figure(max(len(tasks), 1), 6.5, 4.2)
  colour, _ = _scale(trajectories.width.unique())
  for ax, task in zip(axes, tasks):
    mine = trajectories[trajectories.task == task]
    for width, rows in mine.groupby("width"):
      mean = rows.groupby("step").signal.mean()
      ax.plot(mean.index, mean.values, color=colour(width), lw=1.2, label=f"width {width}")
    _mark_events(ax, task, events)
    ax.set(title=_event_title(task, events), xlabel="step", ylabel="signal (0 chance, 1 learned)")
    ax.legend(fontsize=8)
  fig.suptitle("Injected tasks: signal vs step per width (small widths spike and forget, large ones retain)")
  return fig


def final_signal_vs_width(final: pd.DataFrame) -> Figure:
  """Final signal vs width, one line per task, coloured by the task's frequency."""
  fig, (ax,) = new_figure()
  colour, mappable = _scale(final.frequency)
  for task, rows in final.sort_values("width").groupby("task"):
    ax.plot(rows.width, rows.signal, "o-", ms=3, lw=1, color=colour(rows.frequency.iloc[0]))
  _width_axis(ax, final.width)
  ax.set(ylabel="final signal (mean over members)", title="Final signal per task vs width")
  fig.colorbar(mappable, ax=ax, label="task frequency")
  return fig


def loss_vs_width(final: pd.DataFrame, fits: pd.DataFrame) -> Figure:
  """Final loss per task vs width (log-log), with the fitted floor + prefactor * width^-exponent."""
  fig, (ax,) = new_figure()
  colour, mappable = _scale(final.frequency)
  grid_W = np.geomspace(final.width.min(), final.width.max(), 50)
  fits = fits.set_index("task")
  for task, rows in final.sort_values("width").groupby("task"):
    c = colour(rows.frequency.iloc[0])
    ax.plot(rows.width, rows.loss.clip(lower=1e-12), "o", ms=3, color=c)
    if task in fits.index:
      fit = fits.loc[task]
      ax.plot(grid_W, fit.floor + fit.prefactor * grid_W ** -fit.exponent, "-", lw=0.8, color=c)
  _width_axis(ax, final.width)
  ax.set_yscale("log")
  ax.set(ylabel="final loss (mean over members)", title="Per-task loss vs width with power-law fits")
  fig.colorbar(mappable, ax=ax, label="task frequency")
  return fig


def emergence_vs_frequency(emergence: pd.DataFrame, threshold: float = 0.5) -> Figure:
  """Emergence width vs task frequency (log-log); tasks no width learned drawn as x above the top."""
  fig, (ax,) = new_figure()
  learned, never = emergence[emergence.emergence_width.notna()], emergence[emergence.emergence_width.isna()]
  ax.scatter(learned.frequency, learned.emergence_width, c=learned.complexity, cmap="viridis", s=22, label="learned")
  top = 2 * float(learned.emergence_width.max()) if len(learned) else 1.0
  if len(never):
    ax.scatter(never.frequency, np.full(len(never), top), marker="x", color="crimson",
               label="never learned (drawn at 2x the largest)")
  ax.set_xscale("log")
  ax.set_yscale("log", base=2)
  ax.get_yaxis().set_major_formatter("{x:.0f}")
  ax.set(xlabel="task frequency", ylabel=f"emergence width (signal >= {threshold})",
         title="Smallest width that learns a task vs its frequency")
  ax.legend(fontsize=8)
  return fig


def grad_norm_vs_width(gradients: pd.DataFrame) -> Figure:
  """Per-task gradient norm vs width at the last step, one line per task coloured by frequency."""
  fig, (ax,) = new_figure()
  last = _last_step(gradients)
  colour, mappable = _scale(last.frequency)
  for task, rows in last.groupby("task"):
    mean = rows.groupby("width").grad_norm.mean()
    ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(rows.frequency.iloc[0]))
  _width_axis(ax, last.width)
  ax.set_yscale("log")
  ax.set(ylabel="per-task gradient norm", title=f"Gradient norm per task vs width (step {int(last.step.max())})")
  fig.colorbar(mappable, ax=ax, label="task frequency")
  return fig


def overwrite_vs_width(gradients: pd.DataFrame, tasks) -> Figure:
  """Overwrite share of the given (injected or rare) tasks vs width, one line per checkpoint step."""
  tasks = list(tasks)
  fig, axes = new_figure(max(len(tasks), 1))
  colour, mappable = _scale(gradients.step.unique(), log=False)
  for ax, task in zip(axes, tasks):
    for step, rows in gradients[gradients.task == task].groupby("step"):
      mean = rows.groupby("width").overwrite_share.mean()
      ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(step))
    _width_axis(ax, gradients.width)
    ax.set(ylabel="overwrite share of loss change", title=f"task {task}: loss change caused by other tasks")
  fig.colorbar(mappable, ax=axes, label="checkpoint step")
  return fig


def owned_neurons_vs_frequency(allocation: pd.DataFrame) -> Figure:
  """Neurons a task owns, and its feature capacity, vs its frequency at the last step, one line per width."""
  fig, axes = new_figure(2)
  last = _last_step(allocation)
  colour, _ = _scale(last.width)
  for ax, column, label in zip(axes, ("owned_neurons", "capacity"), ("owned neurons", "feature capacity")):
    for width, rows in last.groupby("width"):
      mean = rows.groupby("frequency")[column].mean()
      ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(width), label=f"width {width}")
    ax.set_xscale("log")
    ax.set(xlabel="task frequency", ylabel=label, title=f"{label.capitalize()} per task vs frequency")
    ax.legend(fontsize=8)
  fig.suptitle(f"Neuron allocation at step {int(last.step.max())}")
  return fig


def decodable_vs_width(counts: pd.DataFrame) -> Figure:
  """Decodable task features vs width at the last step, one line per layer (mean over members)."""
  fig, (ax,) = new_figure()
  last = _last_step(counts)
  for layer, rows in last.groupby("layer"):
    mean = rows.groupby("width").n_decodable.mean()
    ax.plot(mean.index, mean.values, "o-", ms=4, label=f"layer {layer}")
  _width_axis(ax, last.width)
  ax.set(ylabel="decodable features (probes)",
         title=f"Probe-decodable task features vs width (step {int(last.step.max())})")
  ax.legend(fontsize=8)
  return fig


def oracle_vs_trained(comparison: pd.DataFrame) -> Figure:
  """Trained vs oracle signal per (width, task); the diagonal is a perfect match."""
  fig, (ax,) = new_figure(1, 5.0, 4.5)
  colour, mappable = _scale(comparison.width)
  ax.scatter(comparison.oracle_signal, comparison.trained_signal, c=colour(comparison.width), s=16)
  ax.plot([0, 1], [0, 1], "k--", lw=0.8)
  ax.set(xlabel="oracle signal (best rank-width map)", ylabel="trained signal",
         title="Trained widths vs the analytic oracle")
  fig.colorbar(mappable, ax=ax, label="width")
  return fig


def retention_vs_width(retention: pd.DataFrame) -> Figure:
  """Retained share of each injected schedule's signal vs width (last event of event schedules)."""
  fig, (ax,) = new_figure()
  last = retention.sort_values("event_step").groupby(["member", "schedule"]).tail(1)
  for (name, task), rows in last.groupby(["schedule", "task"]):
    mean = rows.groupby("width").retained.mean()
    ax.plot(mean.index, mean.values, "o-", ms=4, label=f"{name} (task {task})")
  _width_axis(ax, last.width)
  ax.set(ylabel="retained (final vs peak)", title="Retention of injected tasks vs width")
  ax.legend(fontsize=8)
  return fig
