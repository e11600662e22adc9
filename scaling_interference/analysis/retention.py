"""Signal and retention of injected tasks: trajectories aligned to the injection events.

A trajectory is one member's signal of one task over steps. Signal at step s is measured on
the state after s training steps, so an injection in the batch of step e shows first at s = e + 1.

Event-like schedules (kind "burst", "every"): each step e with injected examples is an event;
its window is the steps s with e < s <= e_next (e_next: the next event, else the last step).
  pre        signal at the last observation s <= e (before the event's update)
  peak       the largest signal in the window; peak_step its step (the first, on ties)
  steps_to_peak  peak_step - e
  half_life  steps from peak_step until the signal first falls to pre + (peak - pre) / 2 or
             below, inside the window; NaN if it never does (or peak <= pre)
  final      signal at the window's last observation (just before the next event, or at the end)
  retained   (final - pre) / (peak - pre): the share of the event's gain still there; NaN if peak <= pre
Continuous schedules (kind "share", "per_batch"): one row for the whole run, event_step = the
first injection step, window = every observation after it; pre, peak, peak_step, half_life and
final as above, and retained = final / peak (NaN if peak <= 0).

Two measures of the same windows (column `measure`): "signal" (chance 0, learned 1; for token
tasks from answer accuracy, so coarse: a plateaued answer does not move it) and "loss" (the
task's loss, continuous), read with the sign turned so that a gain is a fall: pre, peak and final
are losses, peak the lowest in the window, half_life the steps until the loss climbs back halfway
to pre, and retained = (pre - final) / (pre - peak) for every kind of schedule.

The event-triggered average (`event_average_table`) reads every event of an event-like
schedule at once: per lag k (steps after the event, up to the shortest gap between its events),
the mean over the events of value(e + k) - pre. One event's change is within the noise of a
32-example trace; the mean over hundreds of events is not. Its gain is the largest improvement
of that mean (a fall for the loss), kept its improvement at the last lag, retained = kept / gain.
Rows with part "all" average every event; the others the events of one quarter of the run's
steps ("0-999": events at steps 0 to 999), so retention can be followed through training.

Sources: the dense traces (traces.npz, for traced tasks) when a task has them, else the eval
metrics; metrics rows earlier than a task's first trace (step 0) are kept in front of its traces.
"""

import numpy as np
import pandas as pd

from scaling_interference import storage
from scaling_interference.reader import Run
from scaling_interference.sweep import workdir as wd

EVENT_KINDS = ("burst", "every")
CONTINUOUS_KINDS = ("share", "per_batch")
MEASURES = {"signal": 1.0, "loss": -1.0}  # measure -> the sign that makes a gain a rise
TRACE_COLUMNS = ["step", "member", "width", "task", "signal", "loss", "source"]
EVENT_COLUMNS = ["schedule", "task", "kind", "step", "count"]
AVERAGE_COLUMNS = ["member", "width", "task", "schedule", "kind", "measure", "part", "lag", "change", "events"]
AVERAGE_PARTS = 4  # the event-triggered average is also taken over each quarter of the run
RETENTION_COLUMNS = [
  "member",
  "width",
  "task",
  "schedule",
  "kind",
  "measure",
  "event_step",
  "pre",
  "peak",
  "peak_step",
  "steps_to_peak",
  "half_life",
  "final",
  "retained",
]


def _with_width(frame: pd.DataFrame, run: Run) -> pd.DataFrame:
  widths = run.members.set_index("id").width
  return frame.assign(width=frame.member.map(widths).astype(int))


def metric_signal(run: Run) -> pd.DataFrame:
  """Per-task eval signal from the workdir's metrics, tidy, source "metrics"."""
  rows = run.metrics[run.metrics.task != "all"]
  frame = rows[["step", "member", "task", "signal", "loss"]].astype({"task": int, "step": int, "member": int})
  return _with_width(frame, run).assign(source="metrics")[TRACE_COLUMNS]


def dense_signal(run: Run) -> pd.DataFrame:
  """The dense traces of traces.npz, tidy, source "traces" (empty when the run traced nothing).

  Runs written before losses were traced have no "loss" array: their trace loss is NaN.
  """
  path = run.path / wd.TRACES
  if not path.exists():
    return pd.DataFrame(columns=TRACE_COLUMNS)
  f = storage.read_npz(path)
  step_S, signal_SxMxT, member_M, task_T = f["step"], f["signal"], f["member"], f["task"]
  loss_SxMxT = f.get("loss", np.full(signal_SxMxT.shape, np.nan))
  s, m, t = signal_SxMxT.shape
  frame = pd.DataFrame(
    {
      "step": np.repeat(step_S, m * t).astype(int),
      "member": np.tile(np.repeat(member_M, t), s).astype(int),
      "task": np.tile(task_T, s * m).astype(int),
      "signal": signal_SxMxT.reshape(-1).astype(float),
      "loss": loss_SxMxT.reshape(-1).astype(float),
    }
  )
  return _with_width(frame, run).assign(source="traces")[TRACE_COLUMNS]


def trace_frame(run: Run) -> pd.DataFrame:
  """Signal trajectories of every task: eval metrics (source "metrics") and dense traces ("traces")."""
  frames = [metric_signal(run), dense_signal(run)]  # an empty one left out: pandas 2 warns on its dtypes
  return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def best_trajectories(frame: pd.DataFrame) -> pd.DataFrame:
  """One trajectory per (member, task): traces where the task has them (metrics before them kept), else metrics."""
  traced = frame[frame.source == "traces"]
  first = traced.groupby("task").step.min()
  metrics = frame[frame.source == "metrics"]
  keep = metrics.step < metrics.task.map(first).fillna(np.inf)
  best = pd.concat([metrics[keep], traced], ignore_index=True)
  return best.sort_values(["member", "task", "step"], ignore_index=True)


def event_frame(run: Run) -> pd.DataFrame:
  """Injection events of schedule.npz: one row per (schedule, step with examples), with the schedule's kind."""
  path = run.path / wd.SCHEDULE
  if not path.exists():
    return pd.DataFrame(columns=EVENT_COLUMNS)
  f = storage.read_npz(path)
  step_S, count_SxZ, task_Z, name_Z = f["step"], f["count"], f["task"], f["name"]
  frames = []
  for s, name in enumerate(name_Z):
    hit = count_SxZ[:, s] > 0
    frames.append(
      pd.DataFrame(
        {
          "schedule": str(name),
          "task": int(task_Z[s]),
          "kind": schedule_kind(run, str(name)),
          "step": step_S[hit].astype(int),
          "count": count_SxZ[hit, s].astype(int),
        }
      )
    )
  return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EVENT_COLUMNS)


def schedule_kind(run: Run, name: str) -> str:
  return str(run.config.inject[name].kind) if name in run.config.inject else "share"


def _level_before(step_N, signal_N, at: int) -> float:
  i = np.searchsorted(step_N, at, side="right") - 1
  return float(signal_N[i]) if i >= 0 else np.nan


def window_stats(step_N, signal_N, start: int, stop: float) -> dict:
  """pre, peak, peak_step, half_life, final of one window (start, stop] of a sorted trajectory."""
  pre = _level_before(step_N, signal_N, start)
  inside = (step_N > start) & (step_N <= stop)
  if not inside.any():
    return dict(pre=pre, peak=np.nan, peak_step=np.nan, half_life=np.nan, final=np.nan)
  window_step_N, window_signal_N = step_N[inside], signal_N[inside]
  top = int(np.argmax(window_signal_N))
  peak, base = float(window_signal_N[top]), (0.0 if np.isnan(pre) else pre)
  half_life = np.nan
  if peak > base:
    fallen = np.nonzero(window_signal_N[top:] <= base + (peak - base) / 2)[0]
    half_life = float(window_step_N[top + fallen[0]] - window_step_N[top]) if fallen.size else np.nan
  return dict(
    pre=pre, peak=peak, peak_step=float(window_step_N[top]), half_life=half_life, final=float(window_signal_N[-1])
  )


def _ratio(num: float, den: float) -> float:
  return num / den if den > 0 and np.isfinite(num) else np.nan


def schedule_stats(step_N, signal_N, kind: str, event_S, measure: str = "signal") -> list[dict]:
  """Rows of one trajectory under one schedule: one per event, or one for a continuous schedule.

  measure "loss": signal_N holds losses; the stats are those of -loss, with pre, peak and final
  turned back into losses (see the module docstring).
  """
  sign = MEASURES[measure]
  rows = _signed_stats(step_N, sign * np.asarray(signal_N, float), kind, event_S, relative=sign < 0)
  for row in rows:
    row.update({k: sign * row[k] for k in ("pre", "peak", "final")})
  return rows


def _signed_stats(step_N, signal_N, kind: str, event_S, relative: bool) -> list[dict]:
  """schedule_stats of a trajectory where a gain is a rise; relative: continuous kinds retain (final - pre) / gain."""
  if len(event_S) == 0:
    return []
  end = float(step_N[-1]) if len(step_N) else 0.0
  if kind in CONTINUOUS_KINDS:
    row = dict(event_step=int(event_S[0]), **window_stats(step_N, signal_N, int(event_S[0]), end))
    row["retained"] = (
      _ratio(row["final"] - row["pre"], row["peak"] - row["pre"]) if relative else _ratio(row["final"], row["peak"])
    )
    return [row]
  rows = []
  for e, start in enumerate(event_S):
    stop = float(event_S[e + 1]) if e + 1 < len(event_S) else end
    row = dict(event_step=int(start), **window_stats(step_N, signal_N, int(start), stop))
    row["retained"] = _ratio(row["final"] - row["pre"], row["peak"] - row["pre"])
    rows.append(row)
  return rows


def retention_table(run: Run, frame: pd.DataFrame | None = None) -> pd.DataFrame:
  """Per (member, injected task, schedule, measure, event): pre, peak, peak_step, half_life, final, retained."""
  events = event_frame(run)
  best = best_trajectories(trace_frame(run) if frame is None else frame)
  rows = []
  for (name, task, kind), sched in events.groupby(["schedule", "task", "kind"], sort=True):
    for (member, width), traj in best[best.task == task].groupby(["member", "width"]):
      for measure in MEASURES:
        kept = traj[np.isfinite(traj[measure].to_numpy(float))]
        for row in schedule_stats(
          kept.step.to_numpy(), kept[measure].to_numpy(float), kind, sched.step.to_numpy(), measure
        ):
          rows.append(dict(member=member, width=width, task=task, schedule=name, kind=kind, measure=measure, **row))
  table = pd.DataFrame(rows, columns=[c for c in RETENTION_COLUMNS if c != "steps_to_peak"])
  table.insert(table.columns.get_loc("half_life"), "steps_to_peak", table.peak_step - table.event_step)
  return table


def _span(event_S, last_step: float) -> float:
  """Lags an event-triggered average covers: the shortest gap between events, else to the last observation."""
  return float(np.diff(event_S).min()) if len(event_S) > 1 else last_step - float(event_S[0])


def aligned_changes(step_N, value_N, event_S, span: float) -> pd.DataFrame:
  """Per lag 1..span after each event: the mean over events of value - pre, and how many events had that lag."""
  lags, changes = [], []
  for e in event_S:
    pre = _level_before(step_N, value_N, e)
    inside = (step_N > e) & (step_N <= e + span)
    lags.append(step_N[inside] - e)
    changes.append(value_N[inside] - pre)
  frame = pd.DataFrame({"lag": np.concatenate(lags), "change": np.concatenate(changes)}).dropna()
  grouped = frame.groupby("lag").change
  return pd.DataFrame({"change": grouped.mean(), "events": grouped.size()}).reset_index()


def event_average_table(run: Run, frame: pd.DataFrame | None = None) -> pd.DataFrame:
  """Per (member, task, event schedule, measure, lag): the event-triggered mean change (module docstring)."""
  events = event_frame(run)
  best = best_trajectories(trace_frame(run) if frame is None else frame)
  frames = []
  for (name, task, kind), sched in events.groupby(["schedule", "task", "kind"], sort=True):
    if kind in CONTINUOUS_KINDS:
      continue
    event_S = np.sort(sched.step.unique())
    for (member, width), traj in best[best.task == task].groupby(["member", "width"]):
      for measure in MEASURES:
        kept = traj[np.isfinite(traj[measure].to_numpy(float))]
        if kept.empty:
          continue
        step_N, value_N = kept.step.to_numpy(), kept[measure].to_numpy(float)
        span = _span(event_S, float(step_N[-1]))
        for part, events in _parts(event_S, int(run.config.train.steps)):
          changes = aligned_changes(step_N, value_N, events, span)
          frames.append(
            changes.assign(member=member, width=width, task=task, schedule=name, kind=kind, measure=measure, part=part)
          )
  return pd.concat(frames, ignore_index=True)[AVERAGE_COLUMNS] if frames else pd.DataFrame(columns=AVERAGE_COLUMNS)


def _parts(event_S, steps: int) -> list[tuple[str, np.ndarray]]:
  """("all", every event), then ("a-b", the events at steps a..b) for each quarter of the run that has events."""
  edges = np.linspace(0, steps, AVERAGE_PARTS + 1).round().astype(int)
  quarters = [
    (f"{a}-{b - 1}", event_S[(event_S >= a) & (event_S < b)]) for a, b in zip(edges[:-1], edges[1:], strict=True)
  ]
  return [("all", event_S)] + [(name, events) for name, events in quarters if len(events)]


def average_summary(average: pd.DataFrame) -> pd.DataFrame:
  """Per (member, width, schedule, measure, part) of an event_average table: gain, its lag, the lags observed,
  kept, retained."""
  rows = []
  for (member, width, schedule, measure, part), curve in average.groupby(
    ["member", "width", "schedule", "measure", "part"], sort=False
  ):
    gain_N = MEASURES[measure] * curve.change.to_numpy(float)
    top = int(np.argmax(gain_N))
    gain, kept = float(gain_N[top]), float(gain_N[-1])
    rows.append(
      dict(
        member=member,
        width=width,
        schedule=schedule,
        task=int(curve.task.iloc[0]),
        kind=curve.kind.iloc[0],
        measure=measure,
        part=part,
        events=int(curve.events.max()),
        gain=gain,
        gain_lag=float(curve.lag.iloc[top]),
        last_lag=float(curve.lag.iloc[-1]),
        lags=len(curve),
        kept=kept,
        retained=_ratio(kept, gain),
      )
    )
  return pd.DataFrame(rows)
