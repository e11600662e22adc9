"""Neuron ablation on hand-built MLPs, ownership, and Elhage et al.'s feature dimensionality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_regression

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.analysis import allocation
from scaling_interference.models import MLPDef
from scaling_interference.problems.synthetic import eval_examples
from scaling_interference.tasks import make_family


def one_neuron_per_task(depth: int):
  """A linear MLP computing the regression target exactly, task k through neuron k; neuron 4 is dead."""
  family = make_family(small_regression(input_dim=1, output_dim=1, scales=(1.0, 2.0, 3.0, 4.0)).task)
  model = MLPDef(4, 5, 4, depth=depth, activation="linear", use_bias=False)
  hidden = {0: {"kernel": jnp.eye(4, 5)}} | {i: {"kernel": jnp.eye(5)} for i in range(1, depth)}
  readout = jnp.eye(5, 4) * jnp.asarray(family.w_star_KxYxD[:, 0, 0], jnp.float32)
  return family, model, {"hidden": hidden, "readout": {"kernel": readout}}


@pytest.mark.parametrize("depth", [1, 2])
def test_ablation_finds_the_neuron_of_each_task(depth):
  family, model, params = one_neuron_per_task(depth)
  batch = eval_examples(family, jax.random.key(0), jnp.arange(4), 64)
  expected_T = np.asarray(jnp.square(batch.y).sum(-1).reshape(4, -1).mean(1))  # loss of a zeroed task
  for layer in range(depth):
    attr_WxT = np.asarray(
      allocation.ablation_attribution(model, family, jax.tree.map(lambda a: a[None], params), batch, 4, layer)[0]
    )
    np.testing.assert_allclose(
      attr_WxT,
      np.eye(5, 4) * expected_T,
      rtol=1e-5,
      atol=1e-6,
      err_msg=f"zeroing neuron k of layer {layer} costs exactly task k's target energy",
    )
    np.testing.assert_array_equal(
      allocation.owned(attr_WxT),
      np.eye(5, 4, dtype=bool),
      err_msg="neuron k is owned by task k alone; the dead neuron by none",
    )


def test_ownership_rule():
  attr_WxT = np.array([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4], [1e-4, 0.0, 0.0], [0.8, -5.0, 0.2]])
  expected = [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]]
  np.testing.assert_array_equal(allocation.owned(attr_WxT), np.array(expected, bool))


def test_dimensionality():
  np.testing.assert_allclose(
    allocation.dimensionality(np.diag([1.0, 2.0, 0.5])),
    [1, 1, 1],
    err_msg="orthogonal features each get a full dimension, whatever their norm",
  )
  np.testing.assert_allclose(allocation.dimensionality([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]]), [0.5, 0.5, 1.0])
  np.testing.assert_allclose(
    allocation.dimensionality([[1.0, 0.0], [-2.0, 0.0], [0.0, 0.0]]),
    [0.2, 0.8, 0.0],
    err_msg="antipodal features share a dimension in proportion to their squared norms",
  )
  d_I = allocation.dimensionality(np.random.default_rng(0).standard_normal((12, 5)))
  assert np.all((d_I >= 0) & (d_I <= 1)) and d_I.sum() <= 5 + 1e-9, "dimensionalities sum to at most the width"


def test_capacity_of_hand_built_blocks():
  family = make_family(small_regression(input_dim=2).task)  # 4 tasks, 2 inputs each
  kernel_IxW = np.zeros((8, 3))
  kernel_IxW[0:2, 0:2] = np.eye(2)  # task 0: both inputs on their own neurons
  kernel_IxW[2:4, 2] = [1.0, 1.0]  # task 1: both inputs on one neuron
  np.testing.assert_allclose(allocation.task_capacity(family, kernel_IxW), [2.0, 1.0, 0.0, 0.0])


def parity_config():
  config = defaults.base_config(defaults.sparse_parity_task())
  config.task.update(num_tasks=6, n_bits=10, k=2, alpha=1.0)
  config.model.update(widths=(8, 16), activation="relu")
  config.train.update(
    steps=40, batch_size=128, eval_every=40, checkpoint_every=40, steps_per_dispatch=20, eval_examples_per_task=64
  )
  return config


def test_allocation_table_on_a_parity_run(tmp_path):
  si.train(parity_config(), str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = allocation.allocation_table(run, 40, n_per_task=64)
  assert len(table) == 2 * 6 and not table.isna().any().any()
  assert (table.n_features == 3).all(), "a parity task's features: its code bit and its 2 subset bits"
  assert ((table.capacity >= 0) & (table.capacity <= table.n_features + 1e-9)).all()
  owned = table.groupby("width").owned_neurons.sum()
  assert (owned <= owned.index).all(), "a neuron has at most one owner at threshold 0.5"
  neurons = allocation.neuron_table(run, 40, n_per_task=64)
  assert len(neurons) == (8 + 16) * 6 and neurons.owned.sum() == table.owned_neurons.sum()


def test_allocation_of_a_language_model_run_is_named_not_guessed(tmp_path):
  from test_language import tiny_lm

  config = tiny_lm()
  config.sweep.update(seeds=(0,), lrs=(1e-3,))
  config.train.update(steps=10, eval_every=10, checkpoint_every=10)
  si.train(config, str(tmp_path / "lm"))
  with pytest.raises(NotImplementedError, match="built for MLP members; this run's members are OLMoDef"):
    allocation.allocation_table(si.load_run(str(tmp_path / "lm")), 10)
