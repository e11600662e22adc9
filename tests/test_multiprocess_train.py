"""Two processes on 127.0.0.1 (CPU, gloo collectives) end with the metrics of one process."""

import os
import socket
import subprocess
import sys

import numpy as np

import scaling_interference as si

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = [
  "--config=configs/regression.py:demo",
  "--config.task.num_tasks=4",
  "--config.model.widths=4,8",
  "--config.sweep.seeds=0,1",
  "--config.train.steps=60",
  "--config.train.eval_every=20",
  "--config.train.checkpoint_every=30",
  "--config.train.steps_per_dispatch=10",
  "--config.train.batch_size=64",
  "--config.train.eval_examples_per_task=64",
]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run(
    [sys.executable, "-m", "launch.train", f"--workdir={one}", *FLAGS],
    cwd=ROOT,
    env=env,
    check=True,
    timeout=300,
    capture_output=True,
  )
  port = free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "launch.train",
        f"--workdir={two}",
        *FLAGS,
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
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert "trained 4 members to step 60" in outputs[0] and "trained" not in outputs[1], "only process 0 reports"
  assert "| ETA" in outputs[0] and "| ETA" not in outputs[1], "only process 0 logs progress"
  a, b = si.load_run(one).metrics, si.load_run(two).metrics
  assert len(a) == len(b) == 4 * 4 * 5
  np.testing.assert_allclose(b.loss.values, a.loss.values, rtol=1e-5)
  assert si.load_run(two).steps() == [30, 60]
