"""The engine against independent references: a member alone, numpy recomputation."""

import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_regression

from scaling_interference import defaults
from scaling_interference.errors import ConfigError
from scaling_interference.problems import synthetic
from scaling_interference.problems.synthetic import data_keys, eval_examples, train_batch
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine, host_sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_states(config, steps):
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  states = engine.init_states()
  for start in range(0, steps, config.train.steps_per_dispatch):
    states, *_ = engine.train_segment(states, jnp.int32(start), config.train.steps_per_dispatch)
  return engine, groups, states


def max_rel_diff(a, b):
  return max(
    float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


@pytest.mark.parametrize("activation,depth", [("linear", 1), ("gelu", 2)])
def test_member_in_group_equals_member_alone(activation, depth):
  config = small_regression()
  config.model.update(activation=activation, depth=depth, use_bias=activation != "linear")
  _, groups, states = trained_states(config, 60)
  # member (width 16, seed 1, lr 3e-3) is index 3 of group 1
  assert [(m.seed, m.lr) for m in groups[1].members][3] == (1, 3e-3)
  in_group = jax.tree.map(lambda a: a[3], states[1]["params"])

  alone = small_regression()
  alone.model.update(widths=(16,), activation=activation, depth=depth, use_bias=activation != "linear")
  alone.sweep.update(seeds=(1,), lrs=(3e-3,))
  _, _, alone_states = trained_states(alone, 60)
  solo = jax.tree.map(lambda a: a[0], alone_states[0]["params"])
  assert max_rel_diff(in_group, solo) < 1e-5, "vmapped member diverged from the same member trained alone"


def test_groups_are_unpadded_and_lrs_are_per_member(regression_config):
  engine, groups, states = trained_states(regression_config, 20)
  for group, state in zip(groups, states, strict=True):
    kernel = state["params"]["hidden"][0]["kernel"]
    assert kernel.shape == (group.size, 16, group.model.width)
    lrs = state["opt_state"].hyperparams["learning_rate"]
    np.testing.assert_allclose(lrs, [m.lr for m in group.members], rtol=1e-6)
  same_seed = jax.tree.map(lambda a: a[0] - a[1], states[0]["params"])  # seed 0 at lr 1e-2 vs 3e-3
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(same_seed)) > 1e-3


def test_batches_are_a_pure_function_of_step(regression_config):
  problem, _ = build(regression_config)
  key, _ = data_keys(0)
  a = train_batch(problem.family, problem.mixture, key, 7, 32)
  b = train_batch(problem.family, problem.mixture, key, 7, 32)
  c = train_batch(problem.family, problem.mixture, key, 8, 32)
  np.testing.assert_array_equal(a.x, b.x)
  assert not np.allclose(a.x, c.x)


def test_eval_matches_numpy_recomputation(regression_config):
  engine, groups, states = trained_states(regression_config, 20)
  results = engine.evaluate(states)
  family = engine.problem.family
  n = regression_config.train.eval_examples_per_task
  batch = eval_examples(family, engine.problem.eval_key, jnp.arange(family.num_tasks), n)
  x = np.asarray(batch.x, np.float64)
  y = np.asarray(batch.y, np.float64)
  for group, state, result in zip(groups, states, results, strict=True):
    for g in range(group.size):
      p = jax.tree.map(lambda a, g=g: np.asarray(a[g], np.float64), state["params"])
      out = x @ p["hidden"][0]["kernel"] @ p["readout"]["kernel"]
      loss_T = ((out - y) ** 2).sum(-1).reshape(family.num_tasks, n).mean(1)
      np.testing.assert_allclose(result.loss[g], loss_T, rtol=1e-4)
      m = p["hidden"][0]["kernel"] @ p["readout"]["kernel"]
      signal_T = [
        np.linalg.norm(m[4 * k : 4 * k + 4, 4 * k : 4 * k + 4]) / np.linalg.norm(family.w_star_KxYxD[k])
        for k in range(family.num_tasks)
      ]
      np.testing.assert_allclose(result.signal[g], signal_T, rtol=1e-4)


def test_eval_set_is_fixed_and_equal_per_task(regression_config):
  regression_config.train.eval_chunk_examples = 64  # one task per chunk: chunking must not change the set
  problem, groups = build(regression_config)
  e1 = Engine(regression_config, problem, groups)
  s = e1.init_states()
  r1 = e1.evaluate(s)
  regression_config.train.eval_chunk_examples = 10**6
  problem, groups = build(regression_config)
  e2 = Engine(regression_config, problem, groups)
  r2 = e2.evaluate(s)
  for a, b in zip(r1, r2, strict=True):
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)


@pytest.mark.parametrize("task", ["regression", "sparse_parity"])
def test_the_kept_eval_set_gives_the_metrics_of_examples_drawn_at_each_eval(task, monkeypatch):
  """eval_data() draws the examples once; over EVAL_DATA_MAX_BYTES each eval draws them: same metrics, bit for bit."""
  config = small_regression()
  if task == "sparse_parity":
    config = defaults.base_config(defaults.sparse_parity_task())
    config.task.update(num_tasks=6, n_bits=12, k=3)
    config.model.widths = (8, 16)
  problem, groups = build(config)
  kept = Engine(config, problem, groups)
  states = kept.init_states()
  assert kept.eval_data is not None
  monkeypatch.setattr(synthetic, "EVAL_DATA_MAX_BYTES", 0)
  drawn = Engine(config, problem, groups)
  assert drawn.eval_data is None
  for a, b in zip(kept.evaluate(states), drawn.evaluate(states), strict=True):
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.signal, b.signal)
    assert (a.accuracy is None) == (task == "regression")
    if a.accuracy is not None:
      np.testing.assert_array_equal(a.accuracy, b.accuracy)


def test_a_host_batch_that_does_not_split_over_the_devices_is_named():
  """A many-process host stream splits each batch over every device: the message names the multiple."""
  four_devices = types.SimpleNamespace(devices=np.zeros((2, 2)), axis_names=("members", "data"))
  with pytest.raises(ConfigError, match=r"train.batch_size: .* must be a multiple of 4, got 6"):
    host_sharding(four_devices, 6)


RUN_ONCE_CHILD = """
import sys
sys.path.insert(0, "tests")
import hashlib
import jax
import numpy as np
from conftest import small_regression
from test_language import tiny_lm
from configs import sparse_parity
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

def digest(tree):
  as_data = lambda v: jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v
  leaves = jax.tree.leaves(jax.tree.map(as_data, tree))
  return hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in leaves)).hexdigest()

config = sparse_parity.get_config("reference")
config.model.widths = (32, 64)  # packed first layers ("auto"), the torch init's uniform draws
for name, config in (("regression", small_regression()), ("sparse_parity", config), ("language", tiny_lm())):
  engine = Engine(config, *build(config))
  plain = jax.jit(engine._init_groups)(*engine._seeds_and_lrs())  # XLA's default options
  print(name, "init", digest(engine.init_states()) == digest(plain))
"""


def test_the_init_compiled_to_run_once_equals_xlas_default_compile():
  """The seeded init compiled with RUN_ONCE_OPTIONS equals XLA's default compile of it bit for bit (in a
  child process without the suite's XLA_FLAGS); level 0 instead of 1 fails this."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run(
    [sys.executable, "-c", RUN_ONCE_CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.split("\n")
  for name in ("regression init", "sparse_parity init", "language init"):
    assert f"{name} True" in lines, result.stdout
  assert "False" not in result.stdout, result.stdout
