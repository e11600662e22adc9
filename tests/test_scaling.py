"""Scaling tables on synthetic runs with known answers: power-law exponents, emergence widths, sizing."""

import jax
import ml_collections
import numpy as np
import pandas as pd
import pytest
from etils import epath

import scaling_interference as si
from scaling_interference.analysis import scaling
from scaling_interference.reader import Run

WIDTHS = (8, 16, 32, 64, 128)


def synthetic_run(loss_fn, signal_fn, frequencies, complexities=None, name="synthetic") -> Run:
  """A Run whose last eval has loss_fn(task, width) and signal_fn(task, width) for two seeds per width."""
  k = len(frequencies)
  complexities = [3.0] * k if complexities is None else complexities
  members = pd.DataFrame(
    [
      dict(id=i, group=i // 2, width=w, depth=1, seed=i % 2, lr=1e-3, n_params=w)
      for i, w in enumerate(np.repeat(WIDTHS, 2))
    ]
  )
  tasks = pd.DataFrame(dict(id=range(k), family="sparse_parity", frequency=frequencies, complexity=complexities))
  rows = [
    dict(step=100, member=m.id, task=t, loss=loss_fn(t, m.width), accuracy=None, signal=signal_fn(t, m.width))
    for m in members.itertuples()
    for t in range(k)
  ]
  rows += [dict(step=100, member=m.id, task="all", loss=1.0, accuracy=None, signal=None) for m in members.itertuples()]
  config = ml_collections.ConfigDict(dict(task=dict(family="sparse_parity")))
  return Run(epath.Path(f"/runs/{name}"), config, members, tasks, pd.DataFrame(rows))


def test_fit_recovers_a_known_power_law():
  width_N = np.array(WIDTHS, float)
  fit = scaling.fit_power_law(width_N, 3.0 * width_N**-0.7)
  assert fit["exponent"] == pytest.approx(0.7) and fit["prefactor"] == pytest.approx(3.0)
  assert fit["r2"] == pytest.approx(1.0) and fit["n"] == 5
  noisy = 3.0 * width_N**-0.7 * np.exp(np.random.default_rng(0).normal(0, 0.02, 5))
  assert scaling.fit_power_law(width_N, noisy)["exponent"] == pytest.approx(0.7, abs=0.05)


def test_power_law_table_fits_each_task_and_skips_degenerate_ones():
  exponents = {0: 0.5, 1: 1.2}

  def loss(task, width):
    if task in exponents:
      return 2.0 * width ** -exponents[task]
    return 0.3 if task == 2 else (1.0 if width <= 16 else 0.0)  # task 2 flat, task 3: two positive widths

  table = scaling.power_law_table(synthetic_run(loss, lambda t, w: 0.0, [0.4, 0.3, 0.2, 0.1]))
  assert list(table.columns) == scaling.FIT_COLUMNS
  assert list(table.task) == [0, 1], "a flat loss and a loss positive at two widths are skipped"
  np.testing.assert_allclose(table.exponent, [0.5, 1.2])
  np.testing.assert_allclose(table.prefactor, [2.0, 2.0])
  assert (table.n == 5).all() and (table.floor == 0).all() and (table.run == "synthetic").all()


def emergence_run(name="synthetic"):
  """Task t is learned (signal 1) from width 8 * 2^t on; task 4 never."""

  def signal(task, width):
    return 1.0 if task < 4 and width >= 8 * 2**task else 0.1

  return synthetic_run(lambda t, w: 1.0, signal, [0.5, 0.25, 0.15, 0.07, 0.03], [2.0, 2.0, 3.0, 3.0, 3.0], name)


def test_emergence_width_and_learned_counts():
  table = scaling.emergence_table(emergence_run())
  assert list(table.columns) == scaling.EMERGENCE_COLUMNS
  np.testing.assert_array_equal(table.emergence_width, [8, 16, 32, 64, np.nan])
  counts = scaling.learned_counts(emergence_run()).set_index("width")
  assert list(counts.n_learned) == [1, 2, 3, 4, 4] and (counts.n_tasks == 5).all()
  assert scaling.emergence_table(emergence_run(), threshold=1.5).emergence_width.isna().all()


def test_emergence_uses_the_mean_over_a_widths_members():
  final = pd.DataFrame(dict(width=[8, 8, 16], task=0, signal=[0.4, 0.7, 0.6], frequency=0.1, complexity=1.0))
  final = final.groupby(["width", "task", "frequency", "complexity"], as_index=False).signal.mean()
  assert scaling.emergence_widths(final).emergence_width.iloc[0] == 8, "mean over width 8's members is 0.55"


def test_sizing_table_bins_frequency_and_complexity():
  table = scaling.sizing_table(emergence_run())
  assert list(table.columns) == scaling.SIZING_COLUMNS
  rows = {(r.frequency_bin, r.complexity): r for r in table.itertuples()}
  assert rows[("[0.32, 1)", 2.0)].width_all == 8
  assert rows[("[0.1, 0.32)", 2.0)].width_all == 16 and rows[("[0.1, 0.32)", 3.0)].width_all == 32
  rare = rows[("[0.01, 0.032)", 3.0)]
  assert rare.n_tasks == 1 and rare.n_learned == 0 and np.isnan(rare.width_all) and np.isnan(rare.width_any)
  assert rows[("[0.032, 0.1)", 3.0)].width_any == 64
  assert (table.frequency_low < table.frequency_high).all()


def test_several_runs_concatenate_with_a_run_column():
  table = scaling.emergence_table([emergence_run("a"), emergence_run("b")])
  assert list(table.run.unique()) == ["a", "b"] and len(table) == 10


def test_oracle_comparison_is_empty_for_other_families():
  assert scaling.oracle_comparison(emergence_run()).empty


def test_final_table_has_no_projection_without_linear_maps():
  final = scaling.final_table(emergence_run())
  assert list(final.columns) == scaling.FINAL_COLUMNS and final.projection.isna().all()
  pd.testing.assert_frame_equal(final.drop(columns="projection"), scaling.final_means(emergence_run()))


def test_final_table_projection_is_the_members_mean_at_the_last_checkpoint(injection_workdir):
  run = si.load_run(injection_workdir)
  final = scaling.final_table(run).set_index(["width", "task"])
  family, step = run.family, run.steps()[-1]
  for group in run.groups:
    params = run.restore(step, group=group.index)["params"]
    maps = [group.model.linear_map(jax.tree.map(lambda a, i=i: a[i], params)) for i in range(group.size)]
    mean_K = np.mean([family.projection(np.asarray(m, np.float64)) for m in maps], axis=0)
    width = group.members[0].width
    np.testing.assert_allclose(final.loc[width].projection.to_numpy(), mean_K, rtol=1e-6)
  assert final.projection.between(-0.5, 1.5).all(), "trained maps project between nothing and the target"
