"""The report of a small regression sweep (the demo's family, no injection): no job fails and every figure
whose tables the family has is drawn."""

import os

import pandas as pd
from conftest import small_regression

import scaling_interference as si
from scaling_interference.analysis import report, tables

# Every figure but the injection ones (replay, injection_signal, retention): the sweep injects no task.
FIGURES = {
  "run-final_signal.png",
  "run-loss_fits.png",
  "run-emergence.png",
  "run-oracle.png",
  "run-next_update_grad_norm.png",
  "run-next_update_overwrite.png",
  "run-owned_neurons.png",
  "run-decodable.png",
}


def test_a_regression_sweep_reports_every_table_and_figure(tmp_path):
  config = small_regression()
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  workdir = str(tmp_path / "run")
  si.train(config, workdir)
  result = report.build([workdir], str(tmp_path / "out"), steps="last")
  assert result.failed == [], result.notes
  assert result.notes == []
  assert set(os.listdir(tmp_path / "out" / "figures")) == FIGURES
  for name in ("replay", "replay_steps", "counterfactual"):
    frame = pd.read_csv(tmp_path / "out" / "tables" / f"{name}.csv")
    assert frame.empty and set(tables.SPECS[name].columns) <= set(frame.columns), f"{name}.csv: no windows, no rows"
  by_claim = result.claims.set_index("claim")
  assert "no replay windows" in by_claim.loc[3, "evidence"], by_claim.loc[3, "evidence"]
