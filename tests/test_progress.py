"""Progress a researcher can see: si.train in a plain script or notebook prints the compile line and progress
lines, between evals too."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import conftest, scaling_interference as si
from scaling_interference.sweep import loop
loop.PROGRESS_SECONDS = 0.0  # a line after every dispatch
config = conftest.small_regression()
config.train.update(steps=40, eval_every=40, checkpoint_every=40, steps_per_dispatch=10)
si.train(config, {workdir!r})
"""


def test_a_plain_script_shows_compilation_and_progress_between_evals(tmp_path):
  code = SCRIPT.format(tests=os.path.join(ROOT, "tests"), workdir=str(tmp_path / "run"))
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  check_progress(result.stderr)


def check_progress(shown: str) -> None:
  """SCRIPT's output shows the compile lines and a progress line at every dispatch, eval or not."""
  lines = shown.splitlines()
  assert any("compiling the training program (10 steps per dispatch)" in s for s in lines), shown
  assert any("compiled in " in s and "per device" in s for s in lines), shown
  for step in (10, 20, 30, 40):  # eval only at 40: the others are the steady-cadence lines
    assert any(f"step {step}/40 " in s and "ETA" in s and "train loss" in s for s in lines), (step, shown)


def test_the_command_line_honours_verbosity(tmp_path):
  def train(*flags):
    cmd = [
      sys.executable,
      "-m",
      "launch.train",
      "--config=configs/regression.py:demo",
      "--config.train.steps=20",
      "--config.train.eval_every=10",
      "--config.model.widths=4,",
      "--config.sweep.seeds=0,",
      *flags,
    ]
    return subprocess.run(
      cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )

  default = train(f"--workdir={tmp_path / 'a'}")
  quiet = train(f"--workdir={tmp_path / 'b'}", "--verbosity=-1")
  assert default.returncode == quiet.returncode == 0, default.stderr + quiet.stderr
  assert "step 20/20" in default.stderr and "compiling the training program" in default.stderr
  assert "step 20/20" not in quiet.stderr and "compiling" not in quiet.stderr, quiet.stderr
