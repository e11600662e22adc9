"""A wide member learns the most frequent sparse-parity tasks in a short run; the summary prints them."""

import os
import subprocess
import sys

import scaling_interference as si
from scaling_interference import defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wide_member_learns_frequent_parities(tmp_path):
  config = defaults.base_config(defaults.sparse_parity_task())
  config.task.update(num_tasks=10, n_bits=16, k=3, alpha=1.4)
  config.model.update(widths=(128,), activation="relu")
  config.sweep.lrs = (3e-3,)
  config.train.update(
    steps=1500,
    batch_size=1024,
    eval_every=500,
    checkpoint_every=1500,
    steps_per_dispatch=250,
    eval_examples_per_task=512,
  )
  si.train(config, str(tmp_path / "run"))
  metrics = si.load_run(str(tmp_path / "run")).metrics
  final = metrics[(metrics.step == 1500) & (metrics.task != "all")].set_index("task")
  assert (final.loc[[0, 1, 2], "accuracy"] > 0.95).all(), final.accuracy.tolist()
  assert (final.loc[[0, 1, 2], "signal"] > 0.9).all()
  untrained = metrics[(metrics.step == 0) & (metrics.task != "all")]
  assert untrained.accuracy.between(0.35, 0.65).all(), "chance accuracy before training"
  summary = subprocess.run(
    [sys.executable, "-m", "analysis.summary", f"--workdir={tmp_path / 'run'}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert summary.returncode == 0, summary.stderr
  trained = next(line for line in summary.stdout.splitlines() if line.split()[:2] == ["128", "trained"])
  printed = [float(v) for v in trained.split()[2:]]
  assert printed == [round(v, 2) for v in final.signal.tolist()], "the printed row is the last eval's signal"
  assert "oracle" not in summary.stdout.split("\n", 1)[1], "sparse parity has no analytic oracle"
