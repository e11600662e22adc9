"""Two CPU processes on 127.0.0.1 join through distributed.initialize and gather each other's index."""
import os
import socket
import subprocess
import sys

import pytest
from jax._src.lib import _jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import sys
from jax.experimental import multihost_utils
from scaling_interference import distributed
spec = distributed.DistributedSpec(sys.argv[1], 2, int(sys.argv[2]))
index, count = distributed.initialize(spec)
gathered = multihost_utils.process_allgather(index).tolist()
print("gathered", gathered, "count", count, "primary", distributed.is_primary())
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.skipif(not hasattr(_jax, "make_gloo_tcp_collectives"),
                    reason="this jaxlib has no gloo CPU collectives, so CPU processes cannot gather")
def test_two_processes_gather_their_indices():
  address = f"127.0.0.1:{free_port()}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  children = [subprocess.Popen([sys.executable, "-c", CHILD, address, str(i)], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  try:
    outputs = [child.communicate(timeout=60) for child in children]
  finally:
    for child in children:
      child.kill()
  for i, (child, (out, err)) in enumerate(zip(children, outputs)):
    assert child.returncode == 0, f"process {i}: {err[-2000:]}"
    assert f"gathered [0, 1] count 2 primary {i == 0}" in out, f"process {i}: {out} {err[-2000:]}"
