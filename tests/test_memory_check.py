"""The ahead-of-time memory check: a sweep one device cannot hold stops with one line before anything is
written; the verdict names the largest group."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from conftest import small_regression

from scaling_interference.errors import ConfigError
from scaling_interference.sweep import memory
from scaling_interference.sweep.build import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_sweep_too_large_for_the_machine_gets_one_line_and_no_workdir(tmp_path):
  # width 2^24 on 1024 -> 4 maps: 64 GiB of parameters per member, more than any machine the suite runs on
  flags = [
    "--config=configs/regression.py:demo",
    f"--workdir={tmp_path / 'run'}",
    "--config.model.widths=16777216",
    "--config.task.input_dim=1024",
    "--config.task.output_dim=4",
    "--config.sweep.seeds=0,",
  ]
  result = subprocess.run(
    [sys.executable, "-m", "launch.train", *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 2, result.stderr
  (line,) = [s for s in result.stderr.splitlines() if s.startswith("error:")]
  assert line.startswith("error: memory: the training program needs ") and "the largest group is group 0" in line
  assert "width=16777216" in line and "lower train.batch_size" in line, line
  assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "run")


def test_check_fits_names_the_largest_group_and_passes_what_fits():
  config = small_regression()
  config.model.widths = (8, 32)
  _, groups = build(config)
  states = [{"w": jax.ShapeDtypeStruct((g.size, 4, g.members[0].width), jnp.float32)} for g in groups]
  device = jax.devices()[0]
  memory.check_fits(1000, 2000, groups, states, device)
  memory.check_fits(None, 10, groups, states, device)  # no analysis: nothing to compare
  memory.check_fits(10, None, groups, states, device)  # no known limit
  with pytest.raises(
    ConfigError,
    match=r"needs 0\.00 GiB per device .* has 0\.00 GiB free; the largest group is "
    r"group 1 \(4 member\(s\), .* like member 4 \(width=32",
  ):
    memory.check_fits(2000, 1000, groups, states, device)


def test_program_bytes_counts_arguments_outputs_and_temporaries():
  compiled = jax.jit(lambda x: (x @ x.T).sum(0)).lower(jax.ShapeDtypeStruct((256, 512), jnp.float32)).compile()
  needed = memory.program_bytes(compiled)
  assert needed is None or needed >= 256 * 512 * 4 + 256 * 4, needed  # at least its input and output
  assert memory.available_bytes(jax.devices()[0]) is None or memory.available_bytes(jax.devices()[0]) > 0
