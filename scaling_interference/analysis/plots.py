"""Figures of the study, drawn from tidy tables. Each function returns a matplotlib Figure (Agg canvas,
no pyplot state); `save(fig, path)` writes it as PNG.
"""

import io

import numpy as np
import pandas as pd
from etils import epath
from matplotlib import cm, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from scaling_interference import storage

CONTINUOUS_KINDS = ("share", "per_batch")
MAX_EVENT_LINES = 40
TERM_STYLES = {"own": "-", "common": "--", "history": ":"}  # replay attribution terms drawn, and their line styles


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


def save(fig: Figure, path: epath.Path, dpi: int = 110) -> epath.Path:
  """Writes fig as a PNG at path (an epath; folders made as needed); returns path."""
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=dpi, format="png")
  path.parent.mkdir(parents=True, exist_ok=True)
  storage.write_bytes(path, buffer.getvalue())
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
  for ax, task in zip(axes, tasks, strict=True):
    mine = trajectories[trajectories.task == task]
    for width, rows in mine.groupby("width"):
      mean = rows.groupby("step").signal.mean()
      ax.plot(mean.index, mean.values, color=colour(width), lw=1.2, label=f"width {width}")
    _mark_events(ax, task, events)
    ax.set(title=_event_title(task, events), xlabel="step", ylabel="signal (0 chance, 1 learned)")
    ax.legend(fontsize=8)
  fig.suptitle("Injected tasks: signal vs step per width (mean over members)")
  return fig


def loss_near_events(trajectories: pd.DataFrame, events: pd.DataFrame, shown: int = 6) -> Figure:
  """Loss of each injected task with event schedules over `shown` events from the middle of the run, one panel
  per (task, width) with its own y scale (mean over the width's members), the events marked."""
  timed = events[~events.kind.isin(CONTINUOUS_KINDS)]
  traced = trajectories[trajectories.task.isin(timed.task.unique()) & trajectories.loss.notna()]
  panels = sorted(traced.groupby(["task", "width"]).groups)
  fig, axes = new_figure(max(len(panels), 1), 4.5, 3.2, max_cols=3)
  for ax, (task, width) in zip(axes, panels, strict=True):
    event_S = np.sort(timed[timed.task == task].step.unique())
    middle = max(len(event_S) // 2 - shown // 2, 0)
    first = event_S[middle]
    last = event_S[middle + shown] if middle + shown < len(event_S) else traced.step.max()
    rows = traced[(traced.task == task) & (traced.width == width) & traced.step.between(first, last)]
    mean = rows.groupby("step").loss.mean()
    ax.plot(mean.index, mean.values, "o-", ms=2, lw=1.0)
    for i, step in enumerate(event_S[middle : middle + shown]):
      ax.axvline(step, color="crimson", lw=0.8, ls="--", alpha=0.7, label="injection" if i == 0 else None)
    ax.set(title=f"task {task}, width {width}", xlabel="step", ylabel="task loss (mean over members)")
  if panels:
    axes[0].legend(fontsize=8)
  fig.suptitle(f"Injected tasks: loss over {shown} injection events from the middle of the run")
  return fig


def event_average(average: pd.DataFrame) -> Figure:
  """Event-triggered mean change vs lag per event schedule and measure, one line per width (mean over members)."""
  average = average[average.part == "all"]
  panels = sorted(average.groupby(["schedule", "measure"]).groups)
  fig, axes = new_figure(max(len(panels), 1), 6.0, 4.0)
  colour, _ = _scale(average.width.unique())
  for ax, (name, measure) in zip(axes, panels, strict=True):
    mine = average[(average.schedule == name) & (average.measure == measure)]
    for width, rows in mine.groupby("width"):
      mean = rows.groupby("lag").change.mean()
      ax.plot(mean.index, mean.values, "o-", ms=2, color=colour(width), lw=1.2, label=f"width {width}")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set(
      title=f"{name} (task {int(mine.task.iloc[0])}): {measure}, {int(mine.events.max())} events",
      xlabel="steps after the injection",
      ylabel=f"mean change of the {measure} since the event",
    )
    ax.legend(fontsize=8)
  fig.suptitle("Event-triggered average: the injected task after each injection, per width")
  return fig


def final_signal_vs_width(final: pd.DataFrame) -> Figure:
  """Final signal vs width, one line per task, coloured by the task's frequency."""
  fig, (ax,) = new_figure()
  colour, mappable = _scale(final.frequency)
  for _, rows in final.sort_values("width").groupby("task"):
    ax.plot(rows.width, rows.signal, "o-", ms=3, lw=1, color=colour(rows.frequency.iloc[0]))
  _width_axis(ax, final.width)
  ax.set(ylabel="final signal (mean over members)", title="Final signal per task vs width")
  fig.colorbar(mappable, ax=ax, label="task frequency")
  return fig


def loss_vs_width(final: pd.DataFrame, fits: pd.DataFrame) -> Figure:
  """Final loss per task vs width (log-log), with the fitted floor + prefactor * width^-exponent."""
  fig, (ax,) = new_figure()
  colour, mappable = _scale(final.frequency)
  grid_N = np.geomspace(final.width.min(), final.width.max(), 50)
  fits = fits.set_index("task")
  for task, rows in final.sort_values("width").groupby("task"):
    c = colour(rows.frequency.iloc[0])
    ax.plot(rows.width, rows.loss.clip(lower=1e-12), "o", ms=3, color=c)
    if task in fits.index:
      fit = fits.loc[task]
      ax.plot(grid_N, fit.floor + fit.prefactor * grid_N**-fit.exponent, "-", lw=0.8, color=c)
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
    ax.scatter(
      never.frequency,
      np.full(len(never), top),
      marker="x",
      color="crimson",
      label="never learned (drawn at 2x the largest)",
    )
  ax.set_xscale("log")
  ax.set_yscale("log", base=2)
  ax.get_yaxis().set_major_formatter("{x:.0f}")
  ax.set(
    xlabel="task frequency",
    ylabel=f"emergence width (signal >= {threshold})",
    title="Smallest width that learns a task vs its frequency",
  )
  ax.legend(fontsize=8)
  return fig


def grad_norm_vs_width(gradients: pd.DataFrame) -> Figure:
  """Per-task gradient norm vs width at the last step, one line per task coloured by frequency."""
  fig, (ax,) = new_figure()
  last = _last_step(gradients)
  colour, mappable = _scale(last.frequency)
  for _, rows in last.groupby("task"):
    mean = rows.groupby("width").grad_norm.mean()
    ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(rows.frequency.iloc[0]))
  _width_axis(ax, last.width)
  ax.set_yscale("log")
  ax.set(
    ylabel="per-task gradient norm (eval examples)",
    title=f"Next-update estimate: gradient norm per task vs width (step {int(last.step.max())})",
  )
  fig.colorbar(mappable, ax=ax, label="task frequency")
  return fig


def overwrite_vs_width(gradients: pd.DataFrame, tasks) -> Figure:
  """Overwrite share of the given (injected or rare) tasks vs width, one line per checkpoint step."""
  tasks = list(tasks)
  fig, axes = new_figure(max(len(tasks), 1))
  colour, mappable = _scale(gradients.step.unique(), log=False)
  for ax, task in zip(axes, tasks, strict=True):
    for step, rows in gradients[gradients.task == task].groupby("step"):
      mean = rows.groupby("width").overwrite_share.mean()
      ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(step))
    _width_axis(ax, gradients.width)
    ax.set(
      ylabel="overwrite share (next-update estimate)",
      title=f"task {task}: other tasks' share of its next-update loss change",
    )
  fig.colorbar(mappable, ax=axes, label="checkpoint step")
  return fig


def owned_neurons_vs_frequency(allocation: pd.DataFrame) -> Figure:
  """Neurons a task owns, and its feature capacity, vs its frequency at the last step, one line per width."""
  fig, axes = new_figure(2)
  last = _last_step(allocation)
  colour, _ = _scale(last.width)
  for ax, column, label in zip(axes, ("owned_neurons", "capacity"), ("owned neurons", "feature capacity"), strict=True):
    for width, rows in last.groupby("width"):
      mean = rows.groupby("frequency")[column].mean()
      ax.plot(mean.index, mean.values, "o-", ms=3, lw=1, color=colour(width), label=f"width {width}")
    ax.set_xscale("log")
    ax.set(xlabel="task frequency", ylabel=label, title=f"{label.capitalize()} per task vs frequency")
    ax.legend(fontsize=8)
  fig.suptitle(f"Neuron allocation at step {int(last.step.max())}")
  return fig


def decodable_vs_width(counts: pd.DataFrame) -> Figure:
  """Decodable task features vs width, one line per layer (mean over members): last step solid, step 0 dashed."""
  fig, (ax,) = new_figure()
  last, init = _last_step(counts), counts[counts.step == 0]
  for i, (layer, rows) in enumerate(last.groupby("layer")):
    mean = rows.groupby("width").n_decodable.mean()
    ax.plot(mean.index, mean.values, "o-", ms=4, color=f"C{i}", label=f"layer {layer}")
    at_init = init[init.layer == layer].groupby("width").n_decodable.mean()
    ax.plot(at_init.index, at_init.values, "o--", ms=3, lw=0.8, color=f"C{i}")
  _width_axis(ax, last.width)
  ax.set(
    ylabel="decodable features (probes)",
    title=f"Probe-decodable task features vs width (step {int(last.step.max())}; dashed: step 0)",
  )
  ax.legend(fontsize=8)
  return fig


def oracle_vs_trained(comparison: pd.DataFrame) -> Figure:
  """Trained vs oracle signal per (width, task); the diagonal is a perfect match."""
  fig, (ax,) = new_figure(1, 5.0, 4.5)
  colour, mappable = _scale(comparison.width)
  ax.scatter(comparison.oracle_signal, comparison.trained_signal, c=colour(comparison.width), s=16)
  ax.plot([0, 1], [0, 1], "k--", lw=0.8)
  ax.set(
    xlabel="oracle signal (best rank-width map)", ylabel="trained signal", title="Trained widths vs the analytic oracle"
  )
  fig.colorbar(mappable, ax=ax, label="width")
  return fig


def retention_vs_width(retention: pd.DataFrame) -> Figure:
  """Retained share of each injected schedule's gain vs width, mean over the events; solid loss, dashed signal."""
  fig, (ax,) = new_figure()
  table = retention if "measure" in retention else retention.assign(measure="signal")
  for (name, task, measure), rows in table.groupby(["schedule", "task", "measure"]):
    mean = rows.groupby("width").retained.mean()
    ax.plot(
      mean.index, mean.values, "o-" if measure == "loss" else "o--", ms=4, label=f"{name} (task {task}), {measure}"
    )
  _width_axis(ax, table.width)
  ax.set(ylabel="retained share of the gain (mean over events)", title="Retention of injected tasks vs width")
  ax.legend(fontsize=8)
  return fig


def replay_windows(steps: pd.DataFrame, counterfactual: pd.DataFrame) -> Figure:
  """Per injection schedule: its task's signal over the replayed windows (top) and the cumulative attribution of
  its loss change (bottom), one line per width; beside them its window-end signal with and without common updates."""
  mine = steps.merge(counterfactual[["window", "task"]].drop_duplicates(), on=["window", "task"])
  schedules = sorted(mine.schedule.unique())
  mosaic = [row for s in schedules for row in ([f"signal {s}", f"cf {s}"], [f"terms {s}", f"cf {s}"])]
  fig = Figure(figsize=(13, 7 * len(schedules)), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplot_mosaic(mosaic, width_ratios=[2, 1])
  colour, _ = _scale(mine.width.unique())
  for s in schedules:
    rows = mine[mine.schedule == s]
    _replay_signal(axes[f"signal {s}"], rows, colour)
    _replay_terms(axes[f"terms {s}"], rows, colour)
    _counterfactual(axes[f"cf {s}"], counterfactual[counterfactual.schedule == s])
  return fig


def _replay_signal(ax, rows: pd.DataFrame, colour) -> None:
  """The window task's signal vs step, a line per (width, window), window starts marked."""
  for width, by_width in rows.groupby("width"):
    for i, (_, window) in enumerate(by_width.groupby("window")):
      mean = window.groupby("step").signal.mean()
      ax.plot(mean.index, mean.values, color=colour(width), lw=1.2, label=f"width {width}" if i == 0 else None)
  for i, start in enumerate(sorted(rows.start.unique())):
    ax.axvline(start, color="crimson", lw=0.8, ls="--", alpha=0.7, label="event (window start)" if i == 0 else None)
  first = rows.iloc[0]
  ax.set(
    title=f"{first.schedule}: task {first.task}, signal over {rows.window.nunique()} replayed window(s)",
    xlabel="training steps done",
    ylabel="signal (0 chance, 1 learned)",
  )
  ax.legend(fontsize=8)


def _replay_terms(ax, rows: pd.DataFrame, colour) -> None:
  """Cumulative attributed loss change per term over each window, a line per (width, window, term)."""
  columns = [f"dL_{term}" for term in TERM_STYLES]
  for width, by_width in rows.groupby("width"):
    for _, window in by_width.groupby("window"):
      cumulative = window.groupby("step")[columns].mean().fillna(0.0).cumsum()
      for term, style in TERM_STYLES.items():
        ax.plot(cumulative.index, cumulative[f"dL_{term}"], color=colour(width), ls=style, lw=1.1)
  ax.axhline(0.0, color="grey", lw=0.6)
  ax.legend(
    handles=[Line2D([], [], color="k", ls=style, label=f"{term} updates") for term, style in TERM_STYLES.items()],
    fontsize=8,
  )
  ax.set(
    xlabel="training steps done",
    ylabel="cumulative attributed loss change (> 0 raises it)",
    title="attribution of the task's loss change in each window",
  )


def _counterfactual(ax, counterfactual: pd.DataFrame) -> None:
  """Signal at the window start, and at its end as trained and without the common tasks' updates, vs width."""
  mean = counterfactual.groupby("width")[["signal_start", "signal_end", "signal_end_without"]].mean()
  ax.plot(mean.index, mean.signal_end, "o-", label="window end, as trained")
  ax.plot(mean.index, mean.signal_end_without, "s--", label="window end, without the common tasks' updates")
  ax.plot(mean.index, mean.signal_start, "^:", color="grey", label="window start")
  _width_axis(ax, mean.index)
  ax.set(
    ylabel="signal (mean over windows and members)", title=f"{counterfactual.schedule.iloc[0]}: counterfactual replay"
  )
  ax.legend(fontsize=8)
