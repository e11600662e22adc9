"""The study's claims, each checked on one run's report tables: held, did not hold, or not measurable.

evaluate_claims({"emergence": ..., "learned": ..., ...}, run)  ->  one row per claim with its evidence
"""

import numpy as np
import pandas as pd

from scaling_interference.analysis import retention, scaling
from scaling_interference.models.kinds import model_kind
from scaling_interference.reader import Run

HELD, NOT_HELD, NOT_MEASURABLE = "held", "did not hold", "not measurable"
RETAIN_MIN = 0.1  # an injected task counts as kept by a width whose retained share reaches this
MIN_LAGS = 3  # observations between events the event-triggered average needs to show a spike and its decay
CLAIMS = {
  1: "Larger widths learn rarer and more complex tasks: emergence width falls with task frequency and, where task "
  "complexities differ, rises with complexity; the number of tasks learned grows with width.",
  2: "Trained widths match the analytic oracle (regression: the best rank-width map).",
  3: "Common-task gradients weaken with width: on the real training batches after injection events (replay), "
  "the common tasks' gradient norm falls with width.",
  4: "Overwrite: after an injection event the common tasks' updates raise the injected task's loss, and erase its "
  "signal, less in larger widths (replay attribution; counterfactual replay without those updates).",
  5: "Small widths give their neurons to frequent or simple tasks.",
  6: "Larger models embed more task features: linear probes decode more features above the same member at "
  "initialisation in larger widths.",
  7: "Injection protocol: an injection improves the task beyond its level before the event at every width; "
  "small widths then forget it and large widths retain it (judged on the task's loss, the continuous measure).",
}


def rank_corr(x, y) -> float:
  """Spearman correlation (average ranks); NaN with fewer than 2 distinct values on a side."""
  rx, ry = pd.Series(np.asarray(x, float)).rank(), pd.Series(np.asarray(y, float)).rank()
  if rx.nunique() < 2 or ry.nunique() < 2:
    return np.nan
  return float(np.corrcoef(rx, ry)[0, 1])


def _rho(rho: float) -> str:
  return f"{rho:+.2f}" if np.isfinite(rho) else "undefined (one side is constant)"


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
  emergence = em.emergence_width.fillna(np.inf)
  rho = rank_corr(emergence, em.frequency)
  first, last = learned.iloc[0], learned.iloc[-1]
  never = em.emergence_width.isna().sum()
  text = f"emergence width vs frequency: Spearman {_rho(rho)} over {n} tasks ({never} never learned)"
  failed = [] if rho < 0 else ["emergence width does not fall with frequency"]
  if em.complexity.nunique() > 1:
    rho_c = rank_corr(emergence, em.complexity)
    text += f"; emergence width vs complexity: Spearman {_rho(rho_c)}"
    failed += [] if rho_c > 0 else ["it does not rise with complexity"]
  else:
    text += "; every task has the same complexity"
  text += f"; tasks learned: {first.n_learned}/{n} at width {first.width} -> {last.n_learned}/{n} at width {last.width}"
  failed += [] if last.n_learned > first.n_learned else ["the number learned does not grow with width"]
  return (NOT_HELD, text + " (" + "; ".join(failed) + ")") if failed else (HELD, text)


def _claim_oracle(t: dict, run: Run) -> tuple[str, str]:
  if not scaling.has_oracle(run):
    return NOT_MEASURABLE, f"the {scaling.family_name(run)} family has no analytic oracle"
  if "oracle" not in t or t["oracle"].empty:
    return NOT_MEASURABLE, "the oracle table was not computed"
  totals = scaling.oracle_totals(t["oracle"]).set_index("width")
  excess = (totals.eval_loss - totals.oracle_loss).abs()
  close = (totals.ratio <= 1.1) | (excess <= 0.01 * totals.zero_loss)
  text = (
    "mixture loss trained / oracle per width: "
    + ", ".join(
      f"{w}: {r:.3f}" if np.isfinite(r) else f"{w}: {e:.2g} vs 0"
      for w, r, e in zip(totals.index, totals.ratio, totals.eval_loss, strict=True)
    )
    + f"; largest mean |signal gap| {totals.signal_gap.max():.3f} "
    f"(held: each width within 10% of the oracle's loss or 1% of the zero map's, and signal gap <= 0.05)"
  )
  if not model_kind(run.config.model.name).is_linear(run.config.model):
    text += "; members are not linear, the oracle describes linear maps"
  return (HELD if close.all() and totals.signal_gap.max() <= 0.05 else NOT_HELD), text


def _last(frame: pd.DataFrame) -> pd.DataFrame:
  return frame[frame.step == frame.step.max()]


def _no_replay(t: dict) -> str:
  """Why the replay tables cannot judge a claim ('' when they can)."""
  if "replay" not in t:
    return "the replay table was not computed (see the notes)"
  if t["replay"].empty:
    return "no replay windows: no injection event to replay (config.inject is empty or injects nothing)"
  if t["replay"].width.nunique() < 2:
    return "the sweep has one width"
  return ""


def _window_task_rows(replay: pd.DataFrame) -> pd.DataFrame:
  """The replay rows of each window's injected task."""
  return replay[replay.window_task.astype(bool)]


def _replay_scope(rows: pd.DataFrame) -> str:
  """'replay of 3 window(s) after injection events (burst at step(s) 7; rare at step(s) 5, 15)'."""
  windows = rows.drop_duplicates("window")
  parts = [f"{name} at step(s) {', '.join(str(int(s)) for s in w.start)}" for name, w in windows.groupby("schedule")]
  return f"replay of {len(windows)} window(s) after injection events ({'; '.join(parts)})"


def _next_update_norms(t: dict) -> str:
  """The next-update estimate's common-task gradient norms, quoted as a description ('' without the table)."""
  if "next_update" not in t or t["next_update"].empty:
    return ""
  last = _last(t["next_update"])
  norms = last[last.common.astype(bool)].groupby(["member", "width"]).grad_norm.mean()
  return (
    f"; for description only, the next-update estimate at checkpoint {int(last.step.max())} (fixed eval "
    f"examples: a state, not the dynamics) gives common-task gradient norms per width {_by_width(norms)}"
  )


def _claim_gradients(t: dict, run: Run) -> tuple[str, str]:
  why = _no_replay(t)
  if why:
    return NOT_MEASURABLE, why + _next_update_norms(t)
  rows = _window_task_rows(t["replay"])
  norms = rows.groupby(["member", "width"]).common_grad_norm.mean()
  ok, rho = _trend(norms, -1)
  return (HELD if ok else NOT_HELD), (
    f"{_replay_scope(rows)}: norm of the common tasks' gradient on the real training batches, mean over each "
    f"window's steps and over the windows, per width: {_by_width(norms)} (Spearman vs width {_rho(rho)})"
    + _next_update_norms(t)
  )


def rare_tasks(t: dict) -> tuple[list, str]:
  """The injected tasks, else the rarest tenth of the tasks (at least one); and which it is."""
  if "events" in t and len(t["events"]):
    return sorted(int(k) for k in t["events"].task.unique()), "injected tasks"
  final = t.get("final", pd.DataFrame(columns=["task", "frequency"]))
  tasks = final.drop_duplicates("task").sort_values("frequency")
  rare = [int(k) for k in tasks.task.head(max(1, len(tasks) // 10))]
  return rare, "no task is injected; measured on the rarest tasks"


def _next_update_overwrite(t: dict) -> str:
  """The next-update estimate's overwrite share of the rare tasks, quoted as a description ('' without it)."""
  if "next_update" not in t or t["next_update"].empty:
    return ""
  tasks, which = rare_tasks(t)
  rows = t["next_update"][t["next_update"].task.isin(tasks)]
  share = rows.groupby(["member", "width"]).overwrite_share.mean()
  return (
    f"; for description only, the next-update estimate (fixed eval examples: a state, not the dynamics) gives "
    f"tasks {tasks} ({which}) an overwrite share per width {_by_width(share)}, mean over "
    f"{rows.step.nunique()} checkpoint(s)"
  )


def _own_text(own: pd.Series) -> str:
  """The own-update term by width, and whether it overshoots (raises the task's loss) anywhere."""
  mean = own.groupby(level="width").mean()
  raised = [int(w) for w, v in mean.items() if v > 0]
  return f"; the task's own updates dL_own per width: {_by_width(own)}" + (
    f" (> 0 at width(s) {raised}: its own updates raised its loss, an overshoot)"
    if raised
    else " (<= 0 at every width: its own updates did not raise its loss)"
  )


def _claim_overwrite(t: dict, run: Run) -> tuple[str, str]:
  why = _no_replay(t)
  if why:
    return NOT_MEASURABLE, why + _next_update_overwrite(t)
  if "counterfactual" not in t or t["counterfactual"].empty:
    return NOT_MEASURABLE, "the counterfactual table was not computed (see the notes)"
  rows, by = _window_task_rows(t["replay"]), ["member", "width"]
  common, own = rows.groupby(by).dL_common.mean(), rows.groupby(by).dL_own.mean()
  kept = t["counterfactual"].groupby(by).signal_kept_by_removal.mean()
  ok_common, rho_common = _trend(common, -1)
  ok_kept, rho_kept = _trend(kept, -1)
  text = (
    f"{_replay_scope(rows)}, means over the windows: the common tasks' attributed change of the window task's "
    f"loss dL_common (> 0 erodes) per width: {_by_width(common)} (Spearman vs width {_rho(rho_common)})"
  )
  if (common.groupby(level="width").mean() <= 0).all():
    text += " (<= 0 at every width: the common updates did not raise its loss)"
  text += (
    f"; signal the counterfactual without the common tasks' updates keeps (signal_kept_by_removal, > 0: they "
    f"erased signal) per width: {_by_width(kept)} (Spearman vs width {_rho(rho_kept)})"
    + _own_text(own)
    + f"; the replay reproduced training to {rows.replay_max_diff.max():.1g} (relative; float noise floor "
    f"{rows.replay_noise_floor.max():.1g}) and its attribution "
    f"closes to {rows.closure_error.max():.1g}"
  )
  failed = [name for name, ok in (("dL_common", ok_common), ("signal_kept_by_removal", ok_kept)) if not ok]
  if not failed:
    return HELD, text + "; both fall with width"
  return NOT_HELD, text + f"; {' and '.join(failed)} {'does' if len(failed) == 1 else 'do'} not fall with width"


def _claim_allocation(t: dict, run: Run) -> tuple[str, str]:
  if "allocation" not in t or t["allocation"].empty:
    return NOT_MEASURABLE, "the allocation table was not computed"
  last = _last(t["allocation"])
  column, what = "owned_neurons", "owned neurons"
  if model_kind(run.config.model.name).is_linear(run.config.model) or (last.owned_neurons <= 0).all():
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
    f"{_by_width(share)} (Spearman vs width {_rho(rho)}); tasks with {column} > 0.5: {_by_width(served)}"
  )


def _claim_probes(t: dict, run: Run) -> tuple[str, str]:
  if "decodable" not in t or t["decodable"].empty:
    return NOT_MEASURABLE, "the probe tables were not computed"
  counts = t["decodable"][t["decodable"].layer.astype(str) != "input"]  # the input is the same for every width
  per_step = counts.groupby(["step", "member", "width"]).n_decodable.sum()
  steps = per_step.index.get_level_values("step")
  if 0 not in steps:
    return NOT_MEASURABLE, "the probes were not computed at initialisation (step 0)"
  last = int(steps.max())
  if last == 0:
    return NOT_MEASURABLE, "the probes ran at initialisation only"
  end, init = per_step.xs(last, level="step"), per_step.xs(0, level="step")
  gain = (end - init).dropna()
  if gain.index.get_level_values("width").nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  ok, rho = _trend(gain, +1)
  return (HELD if ok else NOT_HELD), (
    f"decodable features (hidden and output layers) at step {last} minus the same member's at initialisation "
    f"(step 0), per width: {_by_width(gain)} (Spearman vs width {_rho(rho)}); at step {last}: {_by_width(end)}; "
    f"at step 0: {_by_width(init)}"
  )


def _spikes(rows: pd.DataFrame, sign: float) -> tuple[str, list]:
  """'8: 3/3, 16: 2/3' events whose peak beats pre per width; and the widths where at most half do."""
  spiked = (sign * (rows.peak - rows.pre) > 0).groupby(rows.width).agg(["sum", "count"])
  text = ", ".join(f"{int(w)}: {int(r['sum'])}/{int(r['count'])}" for w, r in spiked.iterrows())
  return text, [int(w) for w, r in spiked.iterrows() if 2 * r["sum"] <= r["count"]]


def _schedule_verdict(rows: pd.DataFrame, measure: str) -> tuple[int, str]:
  """+1 supports (every width spikes, larger widths keep more), -1 contradicts, 0 no width kept it; the numbers."""
  per_member = rows.groupby(["member", "width"])
  retained, peak, half = per_member.retained.mean(), per_member.peak.mean(), per_member.half_life.mean()
  first = rows.iloc[0]
  events = "continuous" if first.kind in retention.CONTINUOUS_KINDS else f"{rows.event_step.nunique()} event(s)"
  spikes, flat = _spikes(rows, retention.MEASURES[measure])
  beat = "peak > pre" if measure == "signal" else "lowest loss < pre"
  text = (
    f"{first.schedule} (task {first.task}, {first.kind}, {events}), {measure}: events that beat the level "
    f"before them ({beat}) per width: {spikes}; retained {_by_width(retained)}; peak {_by_width(peak)}; "
    f"half-life in steps {_by_width(half)}"
  )
  if flat:
    return -1, text + f" (at width(s) {flat} at most half of the events beat it: no spike)"
  if retained.groupby(level="width").mean().max() < RETAIN_MIN:
    return 0, text + f" (no width retains {RETAIN_MIN} of its gain)"
  ok, rho = _trend(retained, +1)
  return (1 if ok else -1), text + f" (retained, Spearman vs width {_rho(rho)})"


def _average_verdict(rows: pd.DataFrame, measure: str) -> tuple[int, str]:
  """Like _schedule_verdict, on the event-triggered average (retention.average_summary rows of one schedule)."""
  per_member = rows.set_index(["member", "width"])
  first = rows.iloc[0]
  spiked = (per_member.gain > 0).groupby(level="width").agg(["sum", "count"])
  spikes = ", ".join(f"{int(w)}: {int(r['sum'])}/{int(r['count'])}" for w, r in spiked.iterrows())
  flat = [int(w) for w, r in spiked.iterrows() if 2 * r["sum"] <= r["count"]]
  retained = per_member.retained
  text = (
    f"{first.schedule} (task {first.task}, {first.kind}, {int(rows.events.max())} event(s)), {measure}, "
    f"mean change over the events: members whose {measure} improves after them per width: {spikes}; gain "
    f"{_by_width(per_member.gain)} at lag {_by_width(per_member.gain_lag)}; kept at lag "
    f"{int(first.last_lag)} {_by_width(per_member.kept)}; retained {_by_width(retained)}"
  )
  if rows.lags.min() < MIN_LAGS:
    return 0, text + (
      f" (not judged: {int(rows.lags.min())} observation(s) between events, too few to see a "
      "spike and its decay; trace the task more densely, train.trace_every)"
    )
  if flat:
    return -1, text + f" (at width(s) {flat} the mean change shows no improvement: no spike)"
  if retained.groupby(level="width").mean().max() < RETAIN_MIN:
    return 0, text + f" (no width retains {RETAIN_MIN} of its gain)"
  ok, rho = _trend(retained.dropna(), +1)
  return (1 if ok else -1), text + f" (retained, Spearman vs width {_rho(rho)})"


def _injection_verdicts(t: dict, measure: str) -> list[tuple[int, str]]:
  """Per schedule: the event-triggered average where the tables have it (event schedules), else per-event rows."""
  table = t["retention"] if "measure" in t["retention"] else t["retention"].assign(measure="signal")
  table = table[(table.measure == measure) & table.peak.notna()]
  average = t.get("event_average")
  summary = (
    retention.average_summary(average[(average.measure == measure) & (average.part == "all")])
    if average is not None and not average.empty
    else pd.DataFrame(columns=["schedule"])
  )
  verdicts = []
  for name in sorted(set(table.schedule) | set(summary.schedule)):
    mine = summary[summary.schedule == name]
    verdicts.append(
      _average_verdict(mine, measure) if len(mine) else _schedule_verdict(table[table.schedule == name], measure)
    )
  return verdicts


def _claim_injection(t: dict, run: Run) -> tuple[str, str]:
  """The verdict reads the injected task's loss (continuous) where the tables have it, else its signal;
  the other measure's numbers follow, for reference."""
  if "retention" not in t or t["retention"].empty:
    return NOT_MEASURABLE, "this run injects no task (config.inject is empty)"
  if t["retention"].width.nunique() < 2:
    return NOT_MEASURABLE, "the sweep has one width"
  measures = set(t["retention"].measure) if "measure" in t["retention"] else {"signal"}
  judged = "loss" if "loss" in measures else "signal"
  verdicts = _injection_verdicts(t, judged)
  others = [text for m in sorted(measures - {judged}) for _, text in _injection_verdicts(t, m)]
  signs = [v for v, _ in verdicts]
  status = HELD if 1 in signs and -1 not in signs else NOT_HELD
  text = "; ".join(text for _, text in verdicts)
  return status, text + ("" if not others else " | for reference, not judged: " + "; ".join(others))


CLAIM_CHECKS = {
  1: _claim_learning,
  2: _claim_oracle,
  3: _claim_gradients,
  4: _claim_overwrite,
  5: _claim_allocation,
  6: _claim_probes,
  7: _claim_injection,
}


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
