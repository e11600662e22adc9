"""The demo's width x task table: trained rows from metrics, oracle rows from the analytic optimum."""

import numpy as np

import scaling_interference as si
from scaling_interference.analysis import learned, oracle, scaling


def test_table_and_population_loss(tmp_path, regression_config):
  regression_config.sweep.update(seeds=(0,), lrs=(1e-2,))
  si.train(regression_config, str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = learned.signal_table(run)
  assert list(table.index) == [(8, "trained"), (8, "oracle"), (16, "trained"), (16, "oracle")]
  np.testing.assert_allclose(table.loc[(8, "oracle")].values, oracle.oracle(run.family, 8).signal_K)
  final = run.metrics[(run.metrics.step == 60) & (run.metrics.task != "all")]
  np.testing.assert_allclose(table.loc[(16, "trained")].values, final[final.member == 1].signal.values)
  losses = learned.total_loss_table(run)
  assert (losses.population_loss >= losses.oracle_loss - 1e-9).all(), "no map beats the best rank-N map"
  text = learned.render(run)
  assert "oracle" in text and "population_loss" in text


def test_render_shows_a_projection_row_under_each_trained_row(injection_workdir):
  run = si.load_run(injection_workdir)
  lines = learned.render(run).splitlines()
  assert "projection = <M_kk, W*_k> / ||W*_k||^2" in lines[0]
  for width in ("8", "16"):
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == [width, "trained"])
    assert lines[at + 1].split()[0] == "projection" and lines[at + 2].split()[0] == "oracle", lines[at : at + 3]
  table = learned.projection_table(run)
  assert list(table.index) == [(8, "projection"), (16, "projection")]
  final = scaling.final_table(run).set_index(["width", "task"]).projection
  np.testing.assert_allclose(
    table.loc[(16, "projection")].to_numpy(),
    final.loc[16].to_numpy(),
    rtol=1e-12,
    err_msg="the printed row is final_table's projection column",
  )
