"""Two processes on 127.0.0.1: SIGTERM to one of them stops both at one step with one checkpoint, and the
resumed pair ends bit for bit like an uninterrupted pair; a corrupt latest checkpoint is set aside once."""

import glob
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import metrics_text
from test_multiprocess_train import ROOT, free_port
from test_resume import wait_for_checkpoint

pytestmark = pytest.mark.processes  # CI runs these at the newest versions only (setup.cfg's markers)

FLAGS = [
  "--config=configs/regression.py:demo",
  "--config.task.num_tasks=4",
  "--config.model.widths=4,8",
  "--config.sweep.seeds=0,1",
  "--config.train.steps=3000",
  "--config.train.eval_every=100",
  "--config.train.checkpoint_every=500",
  "--config.train.steps_per_dispatch=10",
  "--config.train.batch_size=64",
  "--config.train.eval_examples_per_task=32",
]


def launch_pair(workdir, flags=tuple(FLAGS)):
  port, env = free_port(), dict(os.environ, JAX_PLATFORMS="cpu")
  return [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "launch.train",
        f"--workdir={workdir}",
        *flags,
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]


def finish(procs) -> list[str]:
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  return outputs


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
  """An uninterrupted pair: what the stopped and the damaged pairs must end as."""
  workdir = str(tmp_path_factory.mktemp("pair") / "ref")
  finish(launch_pair(workdir))
  return workdir


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, reference):
  stopped = str(tmp_path / "stop")
  procs = launch_pair(stopped)
  wait_for_checkpoint(procs[0], os.path.join(stopped, "checkpoints"), timeout=240)
  procs[1].send_signal(signal.SIGTERM)
  outputs = finish(procs)
  assert "stopped by SIGTERM (sent to process 1) at step" in outputs[0], outputs[0]
  stopped_at = int(outputs[0].split("at step ")[-1].split()[0])
  assert 500 <= stopped_at < 3000 and str(stopped_at) in os.listdir(os.path.join(stopped, "checkpoints"))
  assert f"SIGTERM received: checkpoint of step {stopped_at} saved" in outputs[1], outputs[1]
  finish(launch_pair(stopped))
  assert metrics_text(reference) == metrics_text(stopped)


def test_a_corrupt_latest_checkpoint_is_set_aside_once_and_both_resume_from_the_same_step(tmp_path, reference):
  damaged = str(tmp_path / "damaged")
  shutil.copytree(reference, damaged)
  for path in glob.glob(os.path.join(damaged, "checkpoints", "3000", "group_1", "**", "*"), recursive=True):
    if os.path.isfile(path) and os.path.getsize(path) > 100:
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  outputs = finish(launch_pair(damaged))
  assert "checkpoints/3000 is unreadable" in outputs[0] and "is unreadable" not in outputs[1], outputs
  assert "resuming" in outputs[0] and "from step 2500" in outputs[0], outputs[0]
  assert os.path.isdir(os.path.join(damaged, "checkpoints", "3000.corrupt"))
  assert metrics_text(reference) == metrics_text(damaged)
