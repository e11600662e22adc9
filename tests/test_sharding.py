"""Meshes: 8 simulated devices end with the metrics of 1 device; their checkpoints restore on 1 device."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import FAST_COMPILE, small_regression
from jax.sharding import AxisType
from test_language import tiny_lm

import scaling_interference as si
from scaling_interference.errors import ConfigError
from scaling_interference.sweep import sharding
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import sys
sys.path.insert(0, "tests")
from test_sharding import sweep_config
import scaling_interference as si
import jax, numpy as np
from scaling_interference.sweep import sharding
for mesh in sys.argv[2:]:
  config = sweep_config()
  config.train.mesh = tuple(int(v) for v in mesh.split(","))
  old = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(config.train.mesh), sharding.AXES)
  assert sharding.make_mesh(config.train) == old, "jax.make_mesh lays out CPU devices as Mesh(devices) did"
  si.train(config, f"{sys.argv[1]}_{mesh.replace(',', 'x')}")
"""
MESHES = ("8,1", "4,2")


def sweep_config():
  config = small_regression()
  config.sweep.update(seeds=(0, 1, 2, 3), lrs=(1e-2, 3e-3))
  return config


def test_eight_devices_match_one(tmp_path):
  """One child process with 8 devices trains the sweep on each mesh; this process, on 1 device, the reference."""
  one, many = str(tmp_path / "one"), str(tmp_path / "many")
  si.train(sweep_config(), one)
  env = dict(os.environ, XLA_FLAGS=f"{FAST_COMPILE} --xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, "-c", SCRIPT, many, *MESHES], cwd=ROOT, env=env, check=True, timeout=300)
  a = si.load_run(one)
  reference = a.restore(group=1)["params"]
  for mesh in MESHES:
    b = si.load_run(f"{many}_{mesh.replace(',', 'x')}")
    np.testing.assert_allclose(b.metrics.loss.values, a.metrics.loss.values, rtol=1e-5, err_msg=mesh)
    np.testing.assert_allclose(b.metrics.signal.values, a.metrics.signal.values, atol=1e-5, err_msg=mesh)
    restored = b.restore(group=1)["params"]  # written by 8 devices, restored on this process's one
    assert len(jax.devices()) == 1
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(reference), strict=True):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=mesh)


def test_mesh_axes_stay_auto():
  """Explicit axes (jax.make_mesh's default in newer JAX) would change how XLA propagates shardings."""
  mesh = sharding.make_mesh(sweep_config().train)
  assert (dict(mesh.shape), mesh.axis_types) == ({"members": 1, "data": 1}, (AxisType.Auto, AxisType.Auto))


def test_mesh_must_match_the_devices():
  config = sweep_config()
  config.train.mesh = (3, 2)
  problem, groups = build(config)
  with pytest.raises(ConfigError, match=r"train\.mesh: members x data must equal the 1 devices, got 3 x 2"):
    Engine(config, problem, groups)


def fsdp_config():
  config = tiny_lm()
  config.model.sizes = ("32/4/1",)  # one group: each size compiles its own program, and one shows the sharding
  config.sweep.update(seeds=(0, 1), lrs=(1e-3,))
  return config


FSDP_SCRIPT = """
import sys
sys.path.insert(0, "tests")
from test_sharding import fsdp_config
import scaling_interference as si
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine
config = fsdp_config()
config.train.update(mesh=(2, 4), fsdp=True)
problem, groups = build(config)
state = Engine(config, problem, groups).init_states()[0]
print("SPEC", state["params"]["blocks"][0]["mlp"]["up"]["kernel"].sharding.spec)
si.train(config, sys.argv[1])
"""


def test_fsdp_language_model_matches_one_device(tmp_path):
  """The reference trains in this process on 1 device; a child process with 8 trains it with FSDP."""
  one, many = str(tmp_path / "one"), str(tmp_path / "many")
  si.train(fsdp_config(), one)
  env = dict(os.environ, XLA_FLAGS=f"{FAST_COMPILE} --xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run(
    [sys.executable, "-c", FSDP_SCRIPT, many],
    cwd=ROOT,
    env=env,
    check=True,
    timeout=300,
    capture_output=True,
    text=True,
  ).stdout
  assert "('members', 'data', None)" in out, "members over `members`, matrices over `data`"
  a, b = si.load_run(one).metrics, si.load_run(many).metrics

  def at(m, s):
    return m[m.step == s].loss.values

  np.testing.assert_allclose(at(b, 0), at(a, 0), rtol=1e-5)
  np.testing.assert_allclose(at(b, 20), at(a, 20), rtol=1e-3)  # data-parallel sums change the order of additions
