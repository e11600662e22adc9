"""The report's figures: each one's caption, the tables it needs, and how plots.py draws it from them.

A caption describes what is plotted; `numbers`, where given, appends what the tables measured.
"""

import dataclasses
from collections.abc import Callable

import pandas as pd
from etils import epath

from scaling_interference.analysis import claims, plots, retention


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  name: str
  caption: str
  needs: tuple
  draw: Callable
  numbers: Callable | None = None  # tables -> the measured numbers appended to the caption


def _last_signal(t: dict) -> str:
  """The injected tasks' last observed signal per width (mean over members)."""
  trajectories = retention.best_trajectories(t["signal"])
  last = trajectories.sort_values("step").groupby(["member", "task"]).tail(1)
  parts = [
    f"task {task}: " + ", ".join(f"{w}: {v:.3g}" for w, v in rows.groupby("width").signal.mean().items())
    for task, rows in last[last.task.isin(t["events"].task.unique())].groupby("task")
  ]
  return "Last observed signal per width: " + "; ".join(parts) + "."


def _loss_numbers(t: dict) -> str:
  """Per event schedule and width, means over its events: loss before, lowest after, at the window end; retained."""
  loss = t["retention"][(t["retention"].measure == "loss") & ~t["retention"].kind.isin(retention.CONTINUOUS_KINDS)]
  parts = []
  for name, rows in loss.groupby("schedule"):
    means = rows.groupby("width")[["pre", "peak", "final", "retained"]].mean()
    widths = "; ".join(
      f"width {w}: {r.pre:.3g} -> {r.peak:.3g} -> {r.final:.3g} (retained {r.retained:.2f})"
      for w, r in means.iterrows()
    )
    parts.append(f"{name} (task {rows.task.iloc[0]}, {rows.event_step.nunique()} events): {widths}")
  return (
    (
      "Measured over every event, means over events and members: loss before the event -> lowest after it -> "
      "just before the next; " + " | ".join(parts) + "."
    )
    if parts
    else "No event schedule has a loss trace."
  )


def _average_numbers(t: dict) -> str:
  """Per event schedule, measure and width (means over members): gain, its lag, kept, retained; then per part."""
  summary = retention.average_summary(t["event_average"])
  every, parts = summary[summary.part == "all"], []
  for (name, measure), rows in every.groupby(["schedule", "measure"]):
    means = rows.groupby("width")[["gain", "gain_lag", "kept", "retained"]].mean()
    widths = "; ".join(
      f"width {w}: gain {r.gain:.3g} at lag {r.gain_lag:.3g}, kept {r.kept:.3g} (retained {r.retained:.2f})"
      for w, r in means.iterrows()
    )
    mine = summary[(summary.schedule == name) & (summary.measure == measure) & (summary.part != "all")]
    by_part = "; ".join(
      f"events {part}: " + ", ".join(f"{w}: {v:.2f}" for w, v in r.groupby("width").retained.mean().items())
      for part, r in mine.groupby("part", sort=False)
    )
    parts.append(
      f"{name} {measure} (kept at lag {int(rows.last_lag.max())}): {widths}; retained per width over "
      f"each quarter of the run: {by_part}"
    )
  return "Measured (a gain is an improvement: a fall of the loss, a rise of the signal): " + " | ".join(parts) + "."


def _width_numbers(width: int, replay: pd.DataFrame, counterfactual: pd.DataFrame) -> str:
  r, c = replay.mean(numeric_only=True), counterfactual.mean(numeric_only=True)
  return (
    f"width {width}: signal {r.signal_start:.3g} -> peak {r.signal_peak:.3g} -> end {r.signal_end:.3g} "
    f"(end without common updates {c.signal_end_without:.3g}), dL_own {r.dL_own:+.3g}, "
    f"dL_common {r.dL_common:+.3g}, dL_history {r.dL_history:+.3g}"
  )


def _replay_numbers(t: dict) -> str:
  """Per schedule and width: start -> peak -> end signal, the attributed terms and the counterfactual end signal."""
  rows, parts = t["replay"][t["replay"].window_task.astype(bool)], []
  for name, mine in rows.groupby("schedule"):
    cf = t["counterfactual"][t["counterfactual"].schedule == name]
    widths = "; ".join(_width_numbers(w, r, cf[cf.width == w]) for w, r in mine.groupby("width"))
    starts = ", ".join(str(int(s)) for s in sorted(mine.start.unique()))
    parts.append(f"{name} (task {mine.task.iloc[0]}, windows from steps {starts}): {widths}")
  return "Measured, means over the windows and members (dL: summed over each window): " + " | ".join(parts) + "."


FIGURES = [
  FigureSpec(
    "replay",
    "The study's figure, from exact replays of the training windows after injection events. "
    "Per injection schedule: its task's signal over the replayed steps (top left; one line per width, "
    "mean over members; dashed red lines: the events opening the windows), the cumulative attribution "
    "of its loss change to its own updates (solid), the common tasks' updates (dashed) and the first "
    "moment carried into the window (dotted) (bottom left; > 0 raises the loss), and its signal at the "
    "window start and end, as trained and replayed without the common tasks' updates (right).",
    ("replay", "replay_steps", "counterfactual"),
    lambda t: plots.replay_windows(t["replay_steps"], t["counterfactual"]),
    _replay_numbers,
  ),
  FigureSpec(
    "injection_signal",
    "Signal of each injected task vs step, one line per width (mean over members; "
    "dense traces where the run traced them); dashed lines mark burst/every injections.",
    ("signal", "events"),
    lambda t: plots.signal_vs_step(retention.best_trajectories(t["signal"]), t["events"]),
    _last_signal,
  ),
  FigureSpec(
    "injection_loss",
    "Loss of each injected task with event schedules (burst/every) over 6 of its "
    "events from the middle of the run, one panel per width with its own scale (mean over members; dense "
    "traces where the run traced them); dashed lines mark the injections. A spike is a fall at an "
    "injection, forgetting the climb after it.",
    ("signal", "events", "retention"),
    lambda t: plots.loss_near_events(retention.best_trajectories(t["signal"]), t["events"]),
    _loss_numbers,
  ),
  FigureSpec(
    "event_average",
    "Event-triggered average of each event schedule's task: the mean over its events "
    "of the change in loss (and signal) since the level before each event, against the steps after it, "
    "one line per width (mean over members). A spike-and-forget falls (rises) after the injection and "
    "returns towards 0 before the next one; what is left at the last lag is what each event adds.",
    ("event_average",),
    lambda t: plots.event_average(t["event_average"]),
    _average_numbers,
  ),
  FigureSpec(
    "retention",
    "Retained share of the injected tasks' gain vs width, mean over events (event "
    "schedules and loss: (final - pre) / (peak - pre); signal of continuous schedules: final / peak); "
    "solid: loss, dashed: signal.",
    ("retention",),
    lambda t: plots.retention_vs_width(t["retention"]),
  ),
  FigureSpec(
    "final_signal",
    "Final signal per task vs width, one line per task, coloured by task frequency.",
    ("final",),
    lambda t: plots.final_signal_vs_width(t["final"]),
  ),
  FigureSpec(
    "loss_fits",
    "Final loss per task vs width (log-log) with power-law fits "
    "(floor + a * width^-b; floor = the oracle's irreducible loss for regression).",
    ("final",),
    lambda t: plots.loss_vs_width(t["final"], t.get("power_law", pd.DataFrame(columns=["task"]))),
  ),
  FigureSpec(
    "emergence",
    "Emergence width (smallest width with signal >= 0.5) vs task frequency, "
    "coloured by complexity; x: tasks no width learned.",
    ("emergence",),
    lambda t: plots.emergence_vs_frequency(t["emergence"]),
  ),
  FigureSpec(
    "oracle",
    "Regression: trained signal vs the analytic oracle's (best rank-width map), "
    "one point per (width, task); the dashed diagonal is a perfect match.",
    ("oracle",),
    lambda t: plots.oracle_vs_trained(t["oracle"]),
  ),
  FigureSpec(
    "next_update_grad_norm",
    "Next-update estimate at the last checkpoint (per-task gradients on fixed "
    "eval examples: a description of the state there, not of the training dynamics): per-task gradient "
    "norm vs width, one line per task coloured by frequency.",
    ("next_update",),
    lambda t: plots.grad_norm_vs_width(t["next_update"]),
  ),
  FigureSpec(
    "next_update_overwrite",
    "Next-update estimate at each checkpoint (fixed eval examples: a description "
    "of the state, not of the training dynamics): the share of the injected (else the rarest) tasks' "
    "first-order loss change that comes from the other tasks' updates, vs width.",
    ("next_update", "final"),
    lambda t: plots.overwrite_vs_width(t["next_update"], claims.rare_tasks(t)[0]),
  ),
  FigureSpec(
    "owned_neurons",
    "Neurons owned per task (left) and its feature capacity (right) vs its frequency at "
    "the last checkpoint, one line per width.",
    ("allocation",),
    lambda t: plots.owned_neurons_vs_frequency(t["allocation"]),
  ),
  FigureSpec(
    "decodable",
    "Task features decodable by probes vs width, one line per layer: at the last checkpoint "
    "(solid) and at initialisation (step 0, dashed).",
    ("decodable",),
    lambda t: plots.decodable_vs_width(t["decodable"]),
  ),
]


def draw_figures(out: epath.Path, label: str, t: dict, notes: list) -> list[tuple[str, str]]:
  """Writes figures/<label>-<name>.png for each figure whose tables exist; returns (path, caption).

  A figure that fails to draw is left out, with a line in notes.
  """
  drawn = []
  for spec in FIGURES:
    if not all(n in t and len(t[n]) for n in spec.needs):
      continue
    try:
      fig = spec.draw(t)
      caption = spec.caption + (" " + spec.numbers(t) if spec.numbers else "")
    except Exception as e:  # noqa: BLE001 - one bad figure must not stop the report
      notes.append(f"figure {spec.name} of {label} failed: {type(e).__name__}: {e}")
      continue
    name = f"{label}-{spec.name}.png"
    plots.save(fig, out / "figures" / name)
    drawn.append((f"figures/{name}", caption))
  return drawn
