"""Test setup: CPU, and small configs built from the project's defaults."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from scaling_interference import defaults  # noqa: E402


def small_regression(**task):
  """A small linear regression sweep; override fields with config.update in the test."""
  config = defaults.base_config(defaults.regression_task())
  config.task.update(num_tasks=4, input_dim=4, output_dim=4, alpha=1.0, beta=1.0)
  config.task.update(**task)
  config.model.update(widths=(8, 16), activation="linear", use_bias=False)
  config.sweep.update(seeds=(0, 1), lrs=(1e-2, 3e-3))
  config.train.update(steps=60, batch_size=64, eval_every=20, checkpoint_every=30,
                      steps_per_dispatch=10, eval_examples_per_task=64)
  return config


@pytest.fixture
def regression_config():
  return small_regression()


def as_fn(map_IxO):
  """A linear member's map as the function the families' signal takes."""
  import jax.numpy as jnp
  m = jnp.asarray(map_IxO, jnp.float32)
  return lambda x_NxI: x_NxI @ m
