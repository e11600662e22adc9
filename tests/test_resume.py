"""A run killed after a checkpoint and resumed, or stopped by SIGTERM or SIGINT (a checkpoint, exit 0) and resumed,
ends with exactly the metrics and traces of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import metrics_text

import scaling_interference as si

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = [
  "--config.task.input_dim=2",
  "--config.task.output_dim=2",
  "--config.inject.burst.at=1700",
  "--config.inject.burst.count=16",
  "--config.inject.rare.count=8",
  "--config.model.widths=4,8",
  "--config.sweep.seeds=0,1",
  "--config.train.steps=4000",
  "--config.train.batch_size=64",
  "--config.train.eval_every=100",
  "--config.train.checkpoint_every=500",
  "--config.train.steps_per_dispatch=20",
  "--config.train.eval_examples_per_task=32",
  "--config.train.trace_every=10",
]


def launch(workdir):
  cmd = [sys.executable, "-m", "launch.train", "--config=configs/injection.py:demo", f"--workdir={workdir}", *OVERRIDES]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc, directory, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory)):
      return
    time.sleep(0.02)
  raise AssertionError(
    f"no checkpoint appeared in {directory}; process output:\n{proc.stdout.read() if proc.poll() is not None else ''}"
  )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
  """The uninterrupted run that every stopped and resumed run must end as."""
  workdir = str(tmp_path_factory.mktemp("resume") / "ref")
  assert launch(workdir).wait(timeout=300) == 0
  return workdir


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, reference):
  interrupted = str(tmp_path / "int")

  proc = launch(interrupted)
  wait_for_checkpoint(proc, os.path.join(interrupted, "checkpoints"))
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
  killed_at = si.load_run(interrupted).metrics.step.max()
  assert killed_at < 4000

  resumed = launch(interrupted)
  output, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, output
  assert "resuming" in output
  assert metrics_text(reference) == metrics_text(interrupted), "resumed metrics differ from the uninterrupted run's"
  with np.load(os.path.join(reference, "traces.npz")) as a, np.load(os.path.join(interrupted, "traces.npz")) as b:
    assert a["step"].size == 400
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["signal"], b["signal"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_exits_0_and_resumes_bit_for_bit(tmp_path, reference, sig):
  stopped = str(tmp_path / "stop")
  proc = launch(stopped)
  wait_for_checkpoint(proc, os.path.join(stopped, "checkpoints"))
  proc.send_signal(sig)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, output
  assert f"stopped by {signal.Signals(sig).name} at step" in output and "run the same command to resume" in output
  stopped_at = int(output.split("at step ")[-1].split()[0])
  assert 0 < stopped_at < 4000 and str(stopped_at) in os.listdir(os.path.join(stopped, "checkpoints"))
  if sig == signal.SIGINT:
    return  # the resume itself is checked once, with SIGTERM
  resumed = launch(stopped)
  output, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, output
  assert metrics_text(reference) == metrics_text(stopped)
  with np.load(os.path.join(reference, "traces.npz")) as a, np.load(os.path.join(stopped, "traces.npz")) as b:
    np.testing.assert_array_equal(a["signal"], b["signal"])
