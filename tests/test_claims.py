"""Each claim's verdict on small hand-built tables: one where it holds, one where it does not (and the
not-measurable cases), its evidence quoting the numbers the verdict was computed from."""

import types

import ml_collections
import numpy as np
import pandas as pd
import pytest
from conftest import small_regression

from scaling_interference.analysis import claims

HELD, NOT_HELD, NOT_MEASURABLE = claims.HELD, claims.NOT_HELD, claims.NOT_MEASURABLE
REGRESSION = types.SimpleNamespace(config=small_regression())  # a linear regression run (the oracle family)
RELU = types.SimpleNamespace(config=ml_collections.ConfigDict({"model": {"name": "mlp", "activation": "relu"}}))


def check(number: int, t: dict, run=REGRESSION) -> tuple[str, str]:
  return claims.CLAIM_CHECKS[number](t, run)


def per_width(values: dict, **columns) -> pd.DataFrame:
  """One row per width (member i has width w), values as columns; the other columns constant."""
  return pd.DataFrame(
    [
      dict(member=i, width=w, **columns, **{k: v[w] for k, v in values.items()})
      for i, w in enumerate(next(iter(values.values())))
    ]
  )


# ---- 1: learning ------------------------------------------------------------------------------------------------
def learning(emergence, complexity, learned) -> dict:
  frequency = [0.5, 0.3, 0.15, 0.05]
  em = pd.DataFrame(dict(task=range(4), frequency=frequency, complexity=complexity, emergence_width=emergence))
  return {"emergence": em, "learned": pd.DataFrame(dict(width=[8, 16], n_learned=learned, n_tasks=4))}


def test_learning_held():
  status, evidence = check(1, learning([8, 8, 16, np.nan], [1, 1, 1, 1], [2, 3]))
  assert status == HELD, evidence
  assert "2/4 at width 8 -> 3/4 at width 16" in evidence and "same complexity" in evidence, evidence


def test_learning_needs_complexity_too_where_it_differs():
  status, evidence = check(1, learning([8, 8, 16, np.nan], [1, 2, 3, 4], [2, 3]))
  assert status == HELD, evidence
  status, evidence = check(1, learning([8, 8, 16, np.nan], [4, 3, 2, 1], [2, 3]))
  assert status == NOT_HELD and "complexity: Spearman -0.95" in evidence, evidence
  assert "it does not rise with complexity" in evidence


def test_learning_not_held_and_not_measurable():
  status, evidence = check(1, learning([np.nan, 16, 8, 8], [1, 1, 1, 1], [2, 2]))
  assert status == NOT_HELD and "frequency: Spearman +0.95" in evidence, evidence
  assert "does not fall with frequency" in evidence and "does not grow with width" in evidence
  status, evidence = check(1, learning([8, 8, 8, 8], [1, 1, 1, 1], [4, 4]))
  assert status == NOT_MEASURABLE and "smallest width" in evidence


# ---- 2: oracle --------------------------------------------------------------------------------------------------
def oracle(trained_loss) -> dict:
  rows = [
    dict(
      width=w,
      task=0,
      frequency=1.0,
      complexity=1.0,
      trained_signal=0.9,
      oracle_signal=0.9,
      trained_loss=trained_loss,
      oracle_loss=1.0,
      zero_loss=10.0,
    )
    for w in (8, 16)
  ]
  return {"oracle": pd.DataFrame(rows)}


def test_oracle_claim():
  status, evidence = check(2, oracle(1.05))
  assert status == HELD and "8: 1.050, 16: 1.050" in evidence, evidence
  status, evidence = check(2, oracle(2.0))
  assert status == NOT_HELD and "8: 2.000" in evidence, evidence
  parity = types.SimpleNamespace(config=ml_collections.ConfigDict({"task": {"family": "sparse_parity"}}))
  assert check(2, oracle(1.0), parity)[0] == NOT_MEASURABLE


# ---- 3: common-task gradients (replay) ---------------------------------------------------------------------------
def replay(values: dict) -> pd.DataFrame:
  """Two windows per width of task 4 (the window's task) and a row of a common task (not the window's)."""
  frames = [
    per_width(
      values,
      window=w,
      schedule="rare",
      start=5 + 10 * w,
      task=4,
      window_task=True,
      replay_max_diff=1e-7,
      replay_noise_floor=0.0,
      closure_error=1e-3,
    )
    for w in range(2)
  ]
  other = per_width(
    values,
    window=0,
    schedule="rare",
    start=5,
    task=0,
    window_task=False,
    replay_max_diff=1e-7,
    replay_noise_floor=0.0,
    closure_error=1e-3,
  ).assign(common_grad_norm=99.0, dL_common=99.0)
  return pd.concat(frames + [other], ignore_index=True)


def next_update(norm: dict) -> pd.DataFrame:
  return per_width({"grad_norm": norm}, step=60, task=0, common=True, overwrite_share=0.2)


def test_gradient_claim_from_the_replay():
  status, evidence = check(3, {"replay": replay({"common_grad_norm": {8: 0.5, 16: 0.3}})})
  assert status == HELD and "8: 0.5, 16: 0.3" in evidence and "replay of 2 window(s)" in evidence, evidence
  assert "rare at step(s) 5, 15" in evidence
  status, evidence = check(3, {"replay": replay({"common_grad_norm": {8: 0.3, 16: 0.5}})})
  assert status == NOT_HELD and "8: 0.3, 16: 0.5 (Spearman vs width +1.00)" in evidence, evidence


def test_gradient_claim_without_windows_quotes_the_next_update_estimate():
  empty = replay({"common_grad_norm": {8: 0.5, 16: 0.3}}).iloc[:0]
  status, evidence = check(3, {"replay": empty, "next_update": next_update({8: 0.4, 16: 0.2})})
  assert status == NOT_MEASURABLE and "no replay windows" in evidence, evidence
  assert "for description only, the next-update estimate at checkpoint 60" in evidence and "8: 0.4, 16: 0.2" in evidence
  status, evidence = check(3, {})
  assert status == NOT_MEASURABLE and "not computed" in evidence


# ---- 4: overwrite (replay and counterfactual) ---------------------------------------------------------------------
def overwrite(common: dict, kept: dict, own: dict) -> dict:
  cf = pd.concat([per_width({"signal_kept_by_removal": kept}, window=w, task=4) for w in range(2)])
  return {
    "replay": replay({"dL_common": common, "dL_own": own, "common_grad_norm": {8: 0.5, 16: 0.3}}),
    "counterfactual": cf,
  }


def test_overwrite_held_when_both_fall_with_width():
  status, evidence = check(4, overwrite({8: 0.03, 16: 0.01}, {8: 0.7, 16: 0.05}, {8: -0.02, 16: 0.01}))
  assert status == HELD and "both fall with width" in evidence, evidence
  assert "dL_common (> 0 erodes) per width: 8: 0.03, 16: 0.01" in evidence
  assert "signal_kept_by_removal, > 0: they erased signal) per width: 8: 0.7, 16: 0.05" in evidence
  assert "dL_own per width: 8: -0.02, 16: 0.01 (> 0 at width(s) [16]" in evidence, "an overshoot is reported"
  assert "reproduced training to 1e-07" in evidence and "closes to 0.001" in evidence


def test_overwrite_says_which_part_failed():
  status, evidence = check(4, overwrite({8: 0.01, 16: 0.03}, {8: 0.7, 16: 0.05}, {8: -0.02, 16: -0.01}))
  assert status == NOT_HELD and evidence.endswith("dL_common does not fall with width"), evidence
  assert "<= 0 at every width: its own updates did not raise its loss" in evidence
  status, evidence = check(4, overwrite({8: -0.03, 16: -0.01}, {8: 0.05, 16: 0.7}, {8: -0.02, 16: -0.01}))
  assert status == NOT_HELD and "did not raise its loss" in evidence, evidence
  assert evidence.endswith("dL_common and signal_kept_by_removal do not fall with width")


def test_overwrite_not_measurable_without_the_counterfactual():
  t = overwrite({8: 0.03, 16: 0.01}, {8: 0.7, 16: 0.05}, {8: -0.02, 16: 0.01})
  del t["counterfactual"]
  assert check(4, t) == (NOT_MEASURABLE, "the counterfactual table was not computed (see the notes)")


# ---- 5: allocation ----------------------------------------------------------------------------------------------
def allocation(rare_owned: dict) -> dict:
  frames = [
    per_width({"owned_neurons": {8: 8, 16: 8}}, step=60, task=0, frequency=0.9, capacity=1.0),
    per_width({"owned_neurons": rare_owned}, step=60, task=1, frequency=0.1, capacity=1.0),
  ]
  return {"allocation": pd.concat(frames, ignore_index=True)}


def test_allocation_claim():
  status, evidence = check(5, allocation({8: 0, 16: 8}), RELU)
  assert status == HELD and "per width: 8: 1, 16: 0.5" in evidence, evidence
  status, evidence = check(5, allocation({8: 8, 16: 0}), RELU)
  assert status == NOT_HELD and "per width: 8: 0.5, 16: 1" in evidence, evidence


# ---- 6: probes, above the same member at initialisation ------------------------------------------------------------
def decodable(at_init: dict, trained: dict) -> dict:
  frames = [
    per_width({"n_decodable": counts}, step=step, layer=layer)
    for step, counts in ((0, at_init), (60, trained))
    for layer in ("input", "hidden0")
  ]
  return {"decodable": pd.concat(frames, ignore_index=True)}


def test_probe_claim_counts_features_above_the_init():
  status, evidence = check(6, decodable({8: 1, 16: 1}, {8: 2, 16: 4}))
  assert status == HELD and "per width: 8: 1, 16: 3" in evidence and "at step 0: 8: 1, 16: 1" in evidence, evidence
  status, evidence = check(6, decodable({8: 1, 16: 4}, {8: 3, 16: 4}))
  assert status == NOT_HELD and "per width: 8: 2, 16: 0" in evidence, "more decoded at width 16, none gained"
  t = decodable({8: 1, 16: 1}, {8: 2, 16: 4})
  t["decodable"] = t["decodable"][t["decodable"].step > 0]
  assert check(6, t)[0] == NOT_MEASURABLE


# ---- 7: injection protocol: spike and retention -------------------------------------------------------------------
def retention(peak: dict, retained: dict) -> dict:
  frames = [
    per_width(
      {"peak": peak, "retained": retained},
      task=4,
      schedule="rare",
      kind="every",
      event_step=s,
      pre=0.1,
      peak_step=s + 3,
      steps_to_peak=3,
      half_life=np.nan,
      final=0.2,
    )
    for s in (5, 15)
  ]
  return {"retention": pd.concat(frames, ignore_index=True)}


def test_injection_claim_checks_spike_and_retention():
  status, evidence = check(7, retention({8: 0.5, 16: 0.6}, {8: 0.05, 16: 0.8}))
  assert status == HELD, evidence
  assert "(peak > pre) per width: 8: 2/2, 16: 2/2" in evidence and "retained 8: 0.05, 16: 0.8" in evidence
  status, evidence = check(7, retention({8: 0.1, 16: 0.6}, {8: np.nan, 16: 0.8}))
  assert status == NOT_HELD and "8: 0/2, 16: 2/2" in evidence and "no spike" in evidence, evidence
  status, evidence = check(7, retention({8: 0.5, 16: 0.6}, {8: 0.8, 16: 0.05}))
  assert status == NOT_HELD and "Spearman vs width -1.00" in evidence, evidence


def loss_retention(lowest: dict, retained: dict) -> pd.DataFrame:
  frames = [
    per_width(
      {"peak": lowest, "retained": retained},
      task=4,
      schedule="rare",
      kind="every",
      event_step=s,
      measure="loss",
      pre=1.0,
      peak_step=s + 1,
      steps_to_peak=1,
      half_life=np.nan,
      final=0.9,
    )
    for s in (5, 15)
  ]
  return pd.concat(frames, ignore_index=True)


def test_injection_claim_is_judged_on_the_loss_where_the_table_has_it():
  flat_signal = retention({8: 0.1, 16: 0.1}, {8: np.nan, 16: np.nan})["retention"].assign(measure="signal")
  t = {"retention": pd.concat([flat_signal, loss_retention({8: 0.5, 16: 0.8}, {8: 0.05, 16: 0.6})])}
  status, evidence = check(7, t)
  assert status == HELD, evidence
  assert "loss: events that beat the level before them (lowest loss < pre) per width: 8: 2/2, 16: 2/2" in evidence
  assert "for reference, not judged: rare (task 4, every, 2 event(s)), signal" in evidence and "no spike" in evidence
  t = {"retention": pd.concat([flat_signal, loss_retention({8: 1.2, 16: 0.8}, {8: np.nan, 16: 0.6})])}
  status, evidence = check(7, t)
  assert status == NOT_HELD and "8: 0/2, 16: 2/2" in evidence, "width 8's loss never fell below pre: no spike"
  t = {"retention": pd.concat([flat_signal, loss_retention({8: 0.5, 16: 0.8}, {8: 0.6, 16: 0.05})])}
  assert check(7, t)[0] == NOT_HELD, "the smaller width keeps more of its gain"


def averages(gain: dict, kept: dict) -> pd.DataFrame:
  """Event-triggered loss averages: per width, a fall of `gain` at lag 2 and `kept` of it left at lag 10."""
  rows = [
    dict(
      member=i,
      width=w,
      task=4,
      schedule="rare",
      kind="every",
      measure="loss",
      part="all",
      lag=lag,
      events=20,
      change=-(gain[w] if lag == 2 else kept[w] if lag == 10 else 0.5 * kept[w]),
    )
    for i, w in enumerate(gain)
    for lag in (1, 2, 10)
  ]
  return pd.DataFrame(rows)


def test_injection_claim_reads_the_event_triggered_average():
  per_event = {"retention": pd.concat([loss_retention({8: 1.2, 16: 1.2}, {8: np.nan, 16: np.nan})])}
  held = {**per_event, "event_average": averages({8: 0.1, 16: 0.1}, {8: 0.01, 16: 0.05})}
  status, evidence = check(7, held)
  assert status == HELD, "per-event rows show no spike, but the mean over the events does: " + evidence
  assert "members whose loss improves after them per width: 8: 1/1, 16: 1/1" in evidence
  assert "kept at lag 10 8: 0.01, 16: 0.05; retained 8: 0.1, 16: 0.5" in evidence
  status, evidence = check(7, {**per_event, "event_average": averages({8: 0.1, 16: 0.1}, {8: 0.05, 16: 0.01})})
  assert status == NOT_HELD and "Spearman vs width -1.00" in evidence, evidence
  status, evidence = check(7, {**per_event, "event_average": averages({8: -0.1, 16: 0.1}, {8: -0.2, 16: 0.01})})
  assert status == NOT_HELD and "no spike" in evidence, evidence
  sparse = averages({8: 0.1, 16: 0.1}, {8: 0.01, 16: 0.05})
  status, evidence = check(7, {**per_event, "event_average": sparse[sparse.lag == 10]})
  assert status == NOT_HELD and "not judged: 1 observation(s) between events" in evidence, (
    "a trace sparser than the events cannot show a spike: one lag is no evidence either way"
  )


@pytest.mark.parametrize("number", sorted(claims.CLAIMS))
def test_every_claim_without_tables_is_not_measurable(number):
  assert check(number, {})[0] == NOT_MEASURABLE
