"""Two CPU processes on 127.0.0.1 join through distributed.initialize and gather each other's index:
with explicit flags, and as a faked SLURM step that JAX's own SLURM detection joins."""

import os
import socket
import subprocess
import sys

import pytest
from jax._src.lib import _jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import sys
import jax
from jax.experimental import multihost_utils
from scaling_interference import distributed
flags = (sys.argv[1], 2, int(sys.argv[2])) if len(sys.argv) > 1 else ()
index, count = distributed.initialize(distributed.resolve(*flags))
gathered = multihost_utils.process_allgather(index).tolist()
print("gathered", gathered, "count", count, "primary", distributed.is_primary(),
      "gpus", jax.config.read("jax_cuda_visible_devices"))
"""
needs_gloo = pytest.mark.skipif(
  not hasattr(_jax, "make_gloo_tcp_collectives"),
  reason="this jaxlib has no gloo CPU collectives, so CPU processes cannot gather",
)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_two(args, envs) -> list[str]:
  """Runs CHILD as two processes (args and environment per process); their stdout, once both exit 0."""
  children = [
    subprocess.Popen(
      [sys.executable, "-c", CHILD, *a],
      cwd=ROOT,
      env={**os.environ, **e},
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for a, e in zip(args, envs, strict=True)
  ]
  try:
    outputs = [child.communicate(timeout=60) for child in children]
  finally:
    for child in children:
      child.kill()
  for i, (child, (_, err)) in enumerate(zip(children, outputs, strict=True)):
    assert child.returncode == 0, f"process {i}: {err[-2000:]}"
  return [out for out, _ in outputs]


@needs_gloo
def test_two_processes_gather_their_indices():
  address = f"127.0.0.1:{free_port()}"
  outputs = run_two([[address, str(i)] for i in range(2)], [{"JAX_PLATFORMS": "cpu"}] * 2)
  for i, out in enumerate(outputs):
    assert f"gathered [0, 1] count 2 primary {i == 0} gpus all" in out, f"process {i}: {out}"


@needs_gloo
@pytest.mark.parametrize("nodes,gpus", [(1, ["0", "1"]), (2, ["all", "all"])])
def test_jax_joins_a_slurm_step(nodes, gpus):
  """Two tasks on one node drive GPUs 0 and 1; one task on each of two nodes drives every GPU it sees."""
  step = {
    "JAX_PLATFORMS": "cpu",
    "JAX_COORDINATOR_PORT": str(free_port()),
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_NODELIST": "127.0.0.1",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_NODES": str(nodes),
  }
  envs = [{**step, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i if nodes == 1 else 0)} for i in range(2)]
  outputs = run_two([[], []], envs)
  for i, out in enumerate(outputs):
    assert f"gathered [0, 1] count 2 primary {i == 0} gpus {gpus[i]}" in out, f"process {i}: {out}"
