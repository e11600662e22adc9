"""The demo's width x task table: trained rows from metrics, oracle rows from the analytic optimum."""
import numpy as np

import scaling_interference as si
from scaling_interference.analysis import oracle, summary


def test_table_and_population_loss(tmp_path, regression_config):
  regression_config.sweep.update(seeds=(0,), lrs=(1e-2,))
  si.train(regression_config, str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = summary.signal_table(run)
  assert list(table.index) == [(8, "trained"), (8, "oracle"), (16, "trained"), (16, "oracle")]
  np.testing.assert_allclose(table.loc[(8, "oracle")].values, oracle.oracle(run.family, 8).signal_K)
  final = run.metrics[(run.metrics.step == 60) & (run.metrics.task != "all")]
  np.testing.assert_allclose(table.loc[(16, "trained")].values, final[final.member == 1].signal.values)
  losses = summary.total_loss_table(run)
  assert (losses.population_loss >= losses.oracle_loss - 1e-9).all(), "no map beats the best rank-N map"
  text = summary.render(run)
  assert "oracle" in text and "population_loss" in text
