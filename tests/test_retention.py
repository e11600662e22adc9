"""Retention: event statistics on synthetic trajectories with known spike and decay; a real injection run."""

import os

import numpy as np
import pandas as pd
import pytest

import scaling_interference as si
from scaling_interference.analysis import retention


def spike_and_decay():
  """Steps 0..100: 0.1 until the event at 10, up to 0.9 at 15, down 0.1 a step to 0.3 at 21, then flat;
  a second event at 60 lifts it to 0.7 for good."""
  step_N = np.arange(101)
  signal_N = np.full(101, 0.1)
  signal_N[11:16] = np.linspace(0.26, 0.9, 5)
  signal_N[16:22] = 0.9 - 0.1 * np.arange(1, 7)
  signal_N[22:61] = 0.3
  signal_N[61:] = 0.7
  return step_N, signal_N


def test_event_statistics_are_exactly_as_constructed():
  step_N, signal_N = spike_and_decay()
  first, second = retention.schedule_stats(step_N, signal_N, "every", np.array([10, 60]))
  assert first["pre"] == pytest.approx(0.1) and first["peak"] == pytest.approx(0.9)
  assert first["peak_step"] == 15, "peak: the largest signal in (10, 60]"
  assert first["half_life"] == 4, "halfway back to pre is 0.5, reached at step 19 = 15 + 4"
  assert first["final"] == pytest.approx(0.3), "final: the last observation before the next event"
  assert first["retained"] == pytest.approx((0.3 - 0.1) / (0.9 - 0.1))
  assert second["pre"] == pytest.approx(0.3) and second["peak"] == pytest.approx(0.7)
  assert np.isnan(second["half_life"]), "the signal never falls back: no half-life"
  assert second["retained"] == pytest.approx(1.0)


def test_continuous_schedule_uses_the_whole_trajectory():
  step_N = np.arange(0, 90, 10)
  signal_N = np.array([0.0, 0.25, 0.5, 0.75, 0.5, 0.25, 0.25, 0.25, 0.1875])
  (row,) = retention.schedule_stats(step_N, signal_N, "share", np.array([0, 1, 2]))
  assert row["event_step"] == 0 and row["pre"] == 0.0
  assert row["peak"] == 0.75 and row["peak_step"] == 30
  assert row["final"] == 0.1875 and row["retained"] == 0.25, "retained = final / peak"
  assert row["half_life"] == 20, "0.375 (halfway from 0 to 0.75) is first passed at step 50, 20 after the peak"


def test_loss_measure_reads_a_fall_as_the_gain():
  step_N, signal_N = spike_and_decay()
  loss_N = 2.0 - signal_N  # the same trajectory as a loss: the event at 10 drops it to 1.1, it climbs back to 1.7
  first, second = retention.schedule_stats(step_N, loss_N, "every", np.array([10, 60]), measure="loss")
  assert first["pre"] == pytest.approx(1.9) and first["peak"] == pytest.approx(1.1), "peak: the lowest loss"
  assert first["peak_step"] == 15 and first["half_life"] == 4 and first["final"] == pytest.approx(1.7)
  assert first["retained"] == pytest.approx((1.9 - 1.7) / (1.9 - 1.1))
  assert second["retained"] == pytest.approx(1.0)
  step_N = np.arange(0, 50, 10)
  (row,) = retention.schedule_stats(step_N, np.array([2.0, 1.0, 0.5, 1.0, 1.25]), "share", np.array([0]), "loss")
  assert row["peak"] == 0.5 and row["retained"] == pytest.approx((2.0 - 1.25) / (2.0 - 0.5)), (
    "a continuous schedule's loss: the share of the largest fall kept, not final / peak"
  )


def periodic_loss(keep: float, events=(10, 20, 30, 40)):
  """Loss 2.0 until the first event; each event lowers it by 0.4 at lag 1, 0.8 at lags 2..3, then it climbs
  linearly back until, at the next event, `keep` of the 0.8 fall is left (the next window starts there)."""
  step_N = np.arange(51)
  loss_N = np.full(51, 2.0)
  level = 2.0
  for e in events:
    loss_N[e + 1], loss_N[e + 2 : e + 4] = level - 0.4, level - 0.8
    loss_N[e + 4 : e + 11] = level - 0.8 + (1 - keep) * 0.8 * np.arange(1, 8) / 7
    level = loss_N[e + 10]
  return step_N, loss_N


def test_event_triggered_average_recovers_the_constructed_window():
  step_N, loss_N = periodic_loss(keep=0.25)
  changes = retention.aligned_changes(step_N, loss_N, np.array([10, 20, 30, 40]), span=10)
  assert list(changes.lag) == list(range(1, 11)) and (changes.events == 4).all()
  np.testing.assert_allclose(changes.change[:3], [-0.4, -0.8, -0.8])
  assert changes.change.iloc[-1] == pytest.approx(-0.2), "a quarter of the 0.8 fall is left at the next event"
  average = changes.assign(member=0, width=8, task=4, schedule="rare", kind="every", measure="loss", part="all")
  (row,) = retention.average_summary(average).to_dict("records")
  assert row["gain"] == pytest.approx(0.8) and row["gain_lag"] == 2 and row["last_lag"] == 10
  assert row["kept"] == pytest.approx(0.2) and row["retained"] == pytest.approx(0.25) and row["events"] == 4


def test_no_rise_gives_nan_half_life_and_retained():
  row = retention.window_stats(np.arange(10), np.full(10, 0.5), 3, 9)
  assert row["peak"] == 0.5 and np.isnan(row["half_life"])
  (event,) = retention.schedule_stats(np.arange(10), np.full(10, 0.5), "burst", np.array([3]))
  assert np.isnan(event["retained"]), "peak == pre: nothing gained, retained undefined"


@pytest.fixture(scope="module")
def injection_run(injection_workdir):
  return si.load_run(injection_workdir)


def test_trace_frame_holds_metrics_and_traces(injection_run):
  frame = retention.trace_frame(injection_run)
  assert list(frame.columns) == retention.TRACE_COLUMNS
  with np.load(os.path.join(injection_run.path, "traces.npz")) as f:
    traced = frame[frame.source == "traces"].set_index(["step", "member", "task"]).signal
    traced_loss = frame[frame.source == "traces"].set_index(["step", "member", "task"]).loss
    for i, step in enumerate(f["step"]):
      for m, member in enumerate(f["member"]):
        for t, task in enumerate(f["task"]):
          assert traced[(step, member, task)] == pytest.approx(float(f["signal"][i, m, t]))
          assert traced_loss[(step, member, task)] == pytest.approx(float(f["loss"][i, m, t]))
  metrics = frame[frame.source == "metrics"]
  assert len(metrics) == len(injection_run.metrics[injection_run.metrics.task != "all"])
  assert set(frame.width) == {8, 16}


def test_event_average_on_a_real_run_is_the_change_since_the_event(injection_run):
  average = retention.event_average_table(injection_run)
  assert list(average.columns) == retention.AVERAGE_COLUMNS
  assert set(average.schedule) == {"burst"}, "the share schedule is continuous: no event-triggered average"
  assert set(average.part) == {"all", "0-14"}, "the burst at step 7 is in the first quarter of 60 steps"
  pd.testing.assert_frame_equal(
    average[average.part == "all"].drop(columns="part").reset_index(drop=True),
    average[average.part == "0-14"].drop(columns="part").reset_index(drop=True),
  )
  average = average[average.part == "all"]
  best = retention.best_trajectories(retention.trace_frame(injection_run))
  for (member, measure), rows in average.groupby(["member", "measure"]):
    traj = best[(best.member == member) & (best.task == 5)].set_index("step")[measure]
    pre = traj[traj.index <= 7].iloc[-1]
    expected = traj[traj.index > 7] - pre
    np.testing.assert_allclose(rows.change, expected.loc[rows.lag + 7].to_numpy(), rtol=1e-6)
    assert (rows.events == 1).all() and rows.lag.max() == traj.index.max() - 7


def test_retention_table_on_a_real_run(injection_run):
  table = retention.retention_table(injection_run)
  assert list(table.columns) == retention.RETENTION_COLUMNS
  assert set(table.measure) == {"signal", "loss"}
  loss = table[table.measure == "loss"].set_index(["member", "schedule"])
  signal = table[table.measure == "signal"].set_index(["member", "schedule"])
  assert (loss.event_step == signal.event_step).all(), "both measures read the same windows"
  table = table[table.measure == "signal"]
  burst, rare = table[table.schedule == "burst"], table[table.schedule == "rare"]
  assert len(burst) == 2 and len(rare) == 2, "one row per member for a burst and for a share schedule"
  assert (burst.event_step == 7).all() and (burst.kind == "burst").all()
  first_share = retention.event_frame(injection_run).query("schedule == 'rare'").step.min()
  assert (rare.event_step == first_share).all() and (rare.kind == "share").all()
  assert (table.peak_step > table.event_step).all() and (table.steps_to_peak > 0).all()
  best = retention.best_trajectories(retention.trace_frame(injection_run))
  for row in burst.itertuples():
    traj = best[(best.member == row.member) & (best.task == 5)]
    assert row.pre == pytest.approx(traj[traj.step <= 7].signal.iloc[-1]), "pre: the trace at step 5"
    assert row.peak == pytest.approx(traj[traj.step > 7].signal.max())
    assert row.final == pytest.approx(traj.signal.iloc[-1]), "one event: its window runs to the end"
