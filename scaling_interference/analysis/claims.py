"""The study's claims, each checked on one run's report tables: held, did not hold, or not measurable.

  evaluate_claims({"emergence": ..., "learned": ..., ...}, run)  ->  one row per claim with its evidence
"""
import numpy as np
import pandas as pd

from scaling_interference.analysis import retention, scaling
from scaling_interference.reader import Run

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
