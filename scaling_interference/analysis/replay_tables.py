"""The interference replay's tables: per window (`replay`), per step (`replay_steps`), `counterfactual`.

One analysis per run replays the default windows (classes.py) twice: as training did, and with
the common classes' gradients left out of the update (the counterfactual). The attribution terms
of a task k's loss change are grouped by their class's role for k: its own class (`own`), the
common classes (`common`), the other injected tasks' classes (`injected`), the remaining tasks
(`other`), the first moment carried into the window (`history`) and weight decay.
"""

import dataclasses
import functools

import numpy as np
import pandas as pd

from scaling_interference.analysis import classes as classes_lib
from scaling_interference.analysis.replay import TOLERANCE, Replayer, WindowReplay
from scaling_interference.reader import Run

TERMS = ("own", "common", "injected", "other", "history", "weight_decay")
DEFAULTS = dict(
  events=3, max_steps=200, after=0, by="class", n_common=2, tolerance=TOLERANCE
)  # replay_analysis's options


@dataclasses.dataclass(frozen=True)
class ReplayAnalysis:
  classes: classes_lib.Classes
  interest_K: list
  windows: list
  replays: list  # WindowReplay per window, as training did
  counterfactuals: list  # WindowReplay per window, the common classes' gradients removed


def _frequencies(run: Run) -> np.ndarray:
  return run.tasks.sort_values("id").frequency.to_numpy(np.float64)


@functools.lru_cache(maxsize=4)
def _analysis(
  path: str, metrics_step: int, events: int, max_steps: int, after: int, by: str, n_common: int, tolerance: float
):
  """The ReplayAnalysis, or the exception the replay raised (so the three tables fail once, not thrice)."""
  del metrics_step  # part of the key: a run trained further is analysed again
  try:
    return _replay_all(_RUNS[path], events, max_steps, after, by, n_common, tolerance)
  except Exception as e:  # noqa: BLE001 - re-raised by replay_analysis for each table
    return e


def _replay_all(
  run: Run, events: int, max_steps: int, after: int, by: str, n_common: int, tolerance: float
) -> ReplayAnalysis:
  p_K = _frequencies(run)
  classes = classes_lib.task_classes(run.problem, p_K, by)
  interest = classes_lib.interest_tasks(run.problem, p_K, n_common)
  windows = classes_lib.default_windows(run.problem, run.config.train.steps, events, max_steps, after)
  replayer = Replayer(run, classes, interest, max((w.stop - w.start for w in windows), default=1), tolerance)
  replays, counterfactuals = [], []
  for w in windows:  # the counterfactual right after its plain replay starts from the state that one reached
    replays.append(replayer.replay(w))
    counterfactuals.append(replayer.replay(w, removed=classes.common_C))
  return ReplayAnalysis(classes, interest, windows, replays, counterfactuals)


_RUNS: dict = {}


def replay_analysis(run: Run, **options) -> ReplayAnalysis:
  """The run's replays and counterfactuals (options: DEFAULTS' keys), computed once per process per options."""
  unknown = set(options) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"replay options: unknown {sorted(unknown)}; choose from {sorted(DEFAULTS)}")
  _RUNS[run.path] = run
  found = _analysis(run.path, int(run.metrics.step.max()), **{**DEFAULTS, **options})
  if isinstance(found, Exception):
    raise found
  return found


def term_matrix(classes: classes_lib.Classes, task: int, injected: list) -> np.ndarray:
  """(U, len(TERMS)) 0/1: which attribution term each update term (classes, history, wd) feeds for `task`."""
  num_classes = len(classes.names)
  out = np.zeros((num_classes + 2, len(TERMS)))
  injected_C = np.zeros(num_classes, bool)
  injected_C[[classes.of(t) for t in injected]] = True
  for c in range(num_classes):
    role = (
      "own"
      if c == classes.of(task)
      else "common"
      if classes.common_C[c]
      else ("injected" if injected_C[c] else "other")
    )
    out[c, TERMS.index(role)] = 1.0
  out[num_classes, TERMS.index("history")] = 1.0
  out[num_classes + 1, TERMS.index("weight_decay")] = 1.0
  return out


def _members(run: Run) -> pd.DataFrame:
  return run.members.sort_values("id")[["id", "width"]].reset_index(drop=True)


def _window_columns(w: int, r: WindowReplay) -> dict:
  win = r.window
  return {"window": w, "schedule": win.schedule, "event": win.event, "start": win.start, "stop": win.stop}


def _window_rows(analysis: ReplayAnalysis, run: Run, w: int) -> list[dict]:
  r, members = analysis.replays[w], _members(run)
  injected = classes_lib.injected_tasks(run.problem)
  rows = []
  for k, task in enumerate(analysis.interest_K):
    terms_MxU = r.dL_SxMxKxU[:, :, k].sum(axis=0) @ term_matrix(analysis.classes, task, injected)
    signal_SxM = np.concatenate([r.signal_start_MxK[None, :, k], r.signal_SxMxK[:, :, k]])
    for m, member in members.iterrows():
      terms = dict(zip((f"dL_{t}" for t in TERMS), terms_MxU[m], strict=True))
      total, actual = sum(terms.values()), r.loss_SxMxK[-1, m, k] - r.loss_start_MxK[m, k]
      scale = sum(abs(v) for v in terms.values())
      rows.append(
        {
          **_window_columns(w, r),
          "checkpoint": r.checkpoint,
          "member": int(member.id),
          "width": int(member.width),
          "task": task,
          "window_task": task == r.window.task,
          "loss_start": r.loss_start_MxK[m, k],
          "loss_end": r.loss_SxMxK[-1, m, k],
          "dL_actual": actual,
          **terms,
          "dL_sum": total,
          "closure_error": abs(total - actual) / scale if scale > 0 else 0.0,
          "common_grad_norm": r.common_norm_SxM[:, m].mean(),
          "common_along": r.common_along_SxMxK[:, m, k].mean(),
          "signal_start": signal_SxM[0, m],
          "signal_peak": _peak(signal_SxM[:, m]),
          "signal_end": signal_SxM[-1, m],
          "replay_max_diff": r.max_diff,
          "replay_compared": r.compared,
          "replay_noise_floor": r.noise_floor,
          "update_residual": r.residual_SxM[:, m].max(),
        }
      )
  return rows


def _peak(signal_S) -> float:
  """The largest signal; NaN where the task has none (the base stream of a language run)."""
  return float(np.nanmax(signal_S)) if np.isfinite(signal_S).any() else np.nan


def replay_table(run: Run, **options) -> pd.DataFrame:
  """One row per (window, member, task of interest): the window's attributed loss changes (module docstring)."""
  analysis = replay_analysis(run, **options)
  rows = [row for w in range(len(analysis.windows)) for row in _window_rows(analysis, run, w)]
  return pd.DataFrame(rows, columns=REPLAY_COLUMNS)


def _step_rows(analysis: ReplayAnalysis, run: Run, w: int) -> list[pd.DataFrame]:
  r, members = analysis.replays[w], _members(run)
  injected = classes_lib.injected_tasks(run.problem)
  steps = np.arange(r.window.start, r.window.stop + 1)  # steps done: the window's start, then after each update
  frames = []
  for k, task in enumerate(analysis.interest_K):
    terms_SxMxU = r.dL_SxMxKxU[:, :, k] @ term_matrix(analysis.classes, task, injected)
    loss_SxM = np.concatenate([r.loss_start_MxK[None, :, k], r.loss_SxMxK[:, :, k]])
    signal_SxM = np.concatenate([r.signal_start_MxK[None, :, k], r.signal_SxMxK[:, :, k]])
    nan_1xM = np.full((1, len(members)), np.nan)
    for m, member in members.iterrows():
      columns = {f"dL_{t}": np.concatenate([[np.nan], terms_SxMxU[:, m, i]]) for i, t in enumerate(TERMS)}
      frames.append(
        pd.DataFrame(
          {
            **_window_columns(w, r),
            "member": int(member.id),
            "width": int(member.width),
            "step": steps,
            "task": task,
            "loss": loss_SxM[:, m],
            "signal": signal_SxM[:, m],
            "dL_actual": np.concatenate([[np.nan], np.diff(loss_SxM[:, m])]),
            **columns,
            "common_grad_norm": np.concatenate([nan_1xM, r.common_norm_SxM])[:, m],
            "common_along": np.concatenate([nan_1xM, r.common_along_SxMxK[:, :, k]])[:, m],
          }
        )
      )
  return frames


def replay_steps_table(run: Run, **options) -> pd.DataFrame:
  """One row per (window, member, step, task of interest); `step` counts the updates done."""
  analysis = replay_analysis(run, **options)
  frames = [f for w in range(len(analysis.windows)) for f in _step_rows(analysis, run, w)]
  return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=STEP_COLUMNS)


def counterfactual_table(run: Run, **options) -> pd.DataFrame:
  """One row per (window, member): the window's task with and without the common classes' updates."""
  analysis = replay_analysis(run, **options)
  members, rows = _members(run), []
  for w, (r, cf) in enumerate(zip(analysis.replays, analysis.counterfactuals, strict=True)):
    k = analysis.interest_K.index(r.window.task)
    for m, member in members.iterrows():
      with_S = np.concatenate([[r.signal_start_MxK[m, k]], r.signal_SxMxK[:, m, k]])
      without_S = np.concatenate([[cf.signal_start_MxK[m, k]], cf.signal_SxMxK[:, m, k]])
      rows.append(
        {
          **_window_columns(w, r),
          "member": int(member.id),
          "width": int(member.width),
          "task": r.window.task,
          "removed": "common",
          "signal_start": with_S[0],
          "signal_end": with_S[-1],
          "signal_end_without": without_S[-1],
          "signal_peak": np.nanmax(with_S),
          "signal_peak_without": np.nanmax(without_S),
          "loss_end": r.loss_SxMxK[-1, m, k],
          "loss_end_without": cf.loss_SxMxK[-1, m, k],
          "signal_kept_by_removal": without_S[-1] - with_S[-1],
          "loss_saved_by_removal": r.loss_SxMxK[-1, m, k] - cf.loss_SxMxK[-1, m, k],
        }
      )
  return pd.DataFrame(rows, columns=COUNTERFACTUAL_COLUMNS)


WINDOW = {
  "window": "window index (replays of one run)",
  "schedule": "injection schedule whose event opens the window",
  "event": "the event's index in its schedule (0: first)",
  "start": "first batch step of the window",
  "stop": "the window ends before this batch step",
}
TERM_DOCS = {
  "dL_own": "attributed change of the task's loss by its own class's updates",
  "dL_common": "by the common tasks' updates",
  "dL_injected": "by the other injected tasks' updates",
  "dL_other": "by the remaining tasks' updates",
  "dL_history": "by the first moment carried into the window",
  "dL_weight_decay": "by weight decay (AdamW)",
}
REPLAY_DOCS = {
  **WINDOW,
  "checkpoint": "the step the replay started from (0: the seeded init)",
  "member": "member id",
  "width": "the member's width",
  "task": "task of interest (injected tasks, then the most frequent others)",
  "window_task": "the task is the one the window's event injects",
  "loss_start": "eval loss at the window start",
  "loss_end": "eval loss at the window end",
  "dL_actual": "loss_end - loss_start",
  **TERM_DOCS,
  "dL_sum": "sum of the attributed terms",
  "closure_error": "|dL_sum - dL_actual| / sum of |terms| (trapezoid rule; small means the attribution closes)",
  "common_grad_norm": "||gradient of the common classes|| on the real batches, mean over the window's steps",
  "common_along": "the common classes' update along the task's unit gradient, mean per step (> 0 raises its loss)",
  "signal_start": "signal at the window start",
  "signal_peak": "largest signal in the window",
  "signal_end": "signal at the window end",
  "replay_max_diff": "largest relative difference between the replay and what training recorded",
  "replay_compared": "recorded arrays the replay was compared with",
  "replay_noise_floor": "training against training from start parameters nudged by 1e-7 (relative), where the "
  "window held no eval or checkpoint; the replay may differ by up to 10 times it",
  "update_residual": "max |sum of the split update - optimizer's update| / max |update| over the window",
}
STEP_DOCS = {
  **WINDOW,
  "member": "member id",
  "width": "the member's width",
  "step": "updates done (the window's start, then after each of its updates)",
  "task": "task of interest",
  "loss": "eval loss after `step` updates",
  "signal": "signal after `step` updates",
  "dL_actual": "loss change of this step's update",
  **{k: v + " (this step)" for k, v in TERM_DOCS.items()},
  "common_grad_norm": "||gradient of the common classes|| on this step's batch",
  "common_along": "the common classes' update along the task's unit gradient (this step)",
}
COUNTERFACTUAL_DOCS = {
  **WINDOW,
  "member": "member id",
  "width": "the member's width",
  "task": "the window's injected task",
  "removed": "the classes whose gradients the counterfactual update leaves out",
  "signal_start": "signal at the window start",
  "signal_end": "signal at the window end, as trained",
  "signal_end_without": "signal at the window end without the removed classes' updates",
  "signal_peak": "peak signal in the window, as trained",
  "signal_peak_without": "peak signal, counterfactual",
  "loss_end": "loss at the window end, as trained",
  "loss_end_without": "loss at the window end, counterfactual",
  "signal_kept_by_removal": "signal_end_without - signal_end (> 0: the removed updates erased signal)",
  "loss_saved_by_removal": "loss_end - loss_end_without (> 0: the removed updates raised the loss)",
}
REPLAY_COLUMNS, STEP_COLUMNS, COUNTERFACTUAL_COLUMNS = list(REPLAY_DOCS), list(STEP_DOCS), list(COUNTERFACTUAL_DOCS)
