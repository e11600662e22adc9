"""Test setup: CPU, and small configs built from the project's defaults."""

import os
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite's time is XLA's CPU compiler's: hundreds of small programs, each run for a few steps. LLVM's
# cheapest pipeline compiles a tiny language model's training segment 1.6x faster (6.7 s to 4.2 s here), and
# XLA's older elemental emitters (fusion emitters off) compile an 8-draw init 3x faster than the new ones;
# every result the tests check stays within its tolerance. An XLA flag this jaxlib does not know is fatal,
# so the optional flags are tried once in a child process (inherited by pytest-xdist's workers through the
# environment). Flags already set (XLA_FLAGS) come after and win.
CHEAP_LLVM = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
NO_FUSION_EMITTERS = "--xla_cpu_use_fusion_emitters=false"  # optional: not every jaxlib knows it


def _flags_accepted(flags: str) -> bool:
  probe = "import jax.numpy as jnp; jnp.ones(2).sum().block_until_ready()"
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0


if "SCALING_INTERFERENCE_TEST_XLA_FLAGS" not in os.environ:  # unset in pytest, set in its workers
  candidate = f"{CHEAP_LLVM} {NO_FUSION_EMITTERS}"
  os.environ["SCALING_INTERFERENCE_TEST_XLA_FLAGS"] = candidate if _flags_accepted(candidate) else CHEAP_LLVM
  os.environ["XLA_FLAGS"] = (
    f"{os.environ['SCALING_INTERFERENCE_TEST_XLA_FLAGS']} {os.environ.get('XLA_FLAGS', '')}".strip()
  )
FAST_COMPILE = os.environ["SCALING_INTERFERENCE_TEST_XLA_FLAGS"]  # the flags chosen, for the tests' child processes

import pytest  # noqa: E402

from scaling_interference import defaults  # noqa: E402


def small_regression(**task):
  """A small linear regression sweep; override fields with config.update in the test."""
  config = defaults.base_config(defaults.regression_task())
  config.task.update(num_tasks=4, input_dim=4, output_dim=4, alpha=1.0, beta=1.0)
  config.task.update(**task)
  config.model.update(widths=(8, 16), activation="linear", use_bias=False)
  config.sweep.update(seeds=(0, 1), lrs=(1e-2, 3e-3))
  config.train.update(
    steps=60,
    batch_size=64,
    eval_every=20,
    checkpoint_every=30,
    steps_per_dispatch=10,
    eval_examples_per_task=64,
    tensorboard=False,
  )  # test_tensorboard.py turns it on; off, each run is 0.3 s shorter
  return config


@pytest.fixture
def regression_config():
  return small_regression()


def as_fn(map_IxO):
  """A linear member's map as the function the families' signal takes."""
  import jax.numpy as jnp

  m = jnp.asarray(map_IxO, jnp.float32)
  return lambda x_NxI: x_NxI @ m


def small_injection():
  """6 regression tasks: task 4 injected at 1% of examples, task 5 as a burst of 16 at step 7, traced."""
  config = small_regression(num_tasks=6)
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  config.model.init_scale = 0.1
  config.inject.rare = dict(task=4, kind="share", share=0.01)
  config.inject.burst = dict(task=5, kind="burst", count=16, at=7)
  config.train.update(trace_every=5, trace_examples=8)
  return config


@pytest.fixture(scope="session")
def injection_workdir(tmp_path_factory):
  """A trained small_injection() run, shared read-only by the analysis tests."""
  import scaling_interference as si

  path = str(tmp_path_factory.mktemp("injection") / "run")
  si.train(small_injection(), path)
  return path


def metrics_text(workdir) -> str:
  """Every eval file under workdir/metrics, in step order, as one text (to compare runs byte for byte)."""
  from scaling_interference.sweep import workdir as wd  # pylint: disable=g-import-not-at-top

  return "".join(f.read_text() for _, f in wd.metric_files(wd.workdir_path(workdir)))


# The files that take longest (pytest --durations, cold cache, 2 workers), started first: pytest-xdist
# gives each worker whole files in collection order (the Makefile turns off its reordering by test
# count), so the short files fill in at the end and the two workers finish together.
SLOWEST_FILES = (
  "test_replay.py",
  "test_full_disk.py",
  "test_language_report.py",
  "test_multiprocess_preemption.py",
  "test_multiprocess_host_stream.py",
  "test_storage.py",
  "test_sharding.py",
  "test_resume.py",
  "test_language.py",
  "test_report.py",
  "test_bad_input.py",
  "test_injection.py",
  "test_gradients.py",
  "test_faults.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
