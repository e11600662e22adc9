"""The sparse parity family against numpy recomputations of its definition."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from scaling_interference.errors import ConfigError
from scaling_interference.tasks import FAMILIES, make_family
from scaling_interference.tasks.sparse_parity import SparseParity


def _config(**overrides):
  fields = dict(family="sparse_parity", num_tasks=6, n_bits=12, k=3, alpha=1.0, frequencies=(), seed=0)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def test_registered_and_built_from_config():
  family = make_family(_config())
  assert FAMILIES["sparse_parity"] is SparseParity
  assert (family.input_dim, family.output_dim) == (18, 2) and family.has_accuracy
  np.testing.assert_array_equal(family.complexities, np.full(6, 3.0))
  np.testing.assert_allclose(family.frequencies.sum(), 1.0)


def test_subsets_are_a_function_of_seed_alone():
  a, b, c = SparseParity(_config()), SparseParity(_config()), SparseParity(_config(seed=1))
  np.testing.assert_array_equal(a.subsets_KxJ, b.subsets_KxJ)
  assert not np.array_equal(a.subsets_KxJ, c.subsets_KxJ)


def test_subsets_are_distinct_k_subsets():
  family = SparseParity(_config())
  assert family.subsets_KxJ.shape == (6, 3)
  assert all(len(set(s)) == 3 and 0 <= min(s) and max(s) < 12 for s in family.subsets_KxJ.tolist())
  assert len({tuple(s) for s in family.subsets_KxJ.tolist()}) == 6


def test_subsets_cover_every_combination_when_there_are_exactly_k():
  family = SparseParity(_config(n_bits=4, k=2, num_tasks=6))
  assert {tuple(s) for s in family.subsets_KxJ.tolist()} == set(itertools.combinations(range(4), 2))


def test_more_tasks_than_subsets_is_allowed():
  family = SparseParity(_config(n_bits=3, k=3, num_tasks=4))
  np.testing.assert_array_equal(family.subsets_KxJ, np.tile([0, 1, 2], (4, 1)))


def test_sample_code_bits_and_parity_labels():
  family = SparseParity(_config())
  task_B = jnp.tile(jnp.arange(6), 50)
  batch = jax.jit(family.sample)(jax.random.key(0), task_B)
  assert batch.x.dtype == jnp.float32 and batch.y.dtype == jnp.int32
  x_BxI = np.asarray(batch.x)
  np.testing.assert_array_equal(x_BxI[:, :6], np.eye(6)[np.asarray(task_B)])
  bits_BxD = x_BxI[:, 6:]
  assert set(np.unique(bits_BxD)) == {0.0, 1.0}
  subset_BxJ = family.subsets_KxJ[np.asarray(task_B)]
  parity_B = np.take_along_axis(bits_BxD, subset_BxJ, axis=1).sum(-1).astype(int) % 2
  np.testing.assert_array_equal(np.asarray(batch.y), parity_B)
  assert 0.3 < parity_B.mean() < 0.7


def test_loss_accuracy_and_signal():
  family = SparseParity(_config())
  batch = family.sample(jax.random.key(1), jnp.arange(6))
  y_B = np.asarray(batch.y)
  assert 0 < y_B.sum() < 6
  logits_BxO = jnp.tile(jnp.array([2.0, 0.0]), (6, 1))  # always predicts label 0
  expected_B = np.where(y_B == 0, np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0)))
  np.testing.assert_allclose(family.loss(logits_BxO, batch), expected_B, rtol=1e-6)
  np.testing.assert_array_equal(family.accuracy(logits_BxO, batch), (y_B == 0).astype(float))
  signal_T = family.signal(jnp.arange(3), None, jnp.array([0.5, 1.0, 0.75]))
  np.testing.assert_allclose(signal_T, [0.0, 1.0, 0.5])


@pytest.mark.parametrize(
  "overrides, match",
  [
    (dict(k=13), r"task\.k: must be an integer with 1 <= k <= n_bits \(12\), got 13"),
    (dict(k=0), r"task\.k: must be an integer with 1 <= k <= n_bits \(12\), got 0"),
    (dict(n_bits=0), r"task\.n_bits: must be an integer >= 1, got 0"),
    (dict(num_tasks=0), r"task\.num_tasks: must be an integer >= 1, got 0"),
    (dict(alpha=-0.5), r"task\.alpha: must be a finite number >= 0, got -0\.5"),
    (dict(frequencies=(0.5,) * 6), r"task\.frequencies: must sum to 1, got sum 3"),
    (dict(frequencies=(1.5, -0.5, 0, 0, 0, 0)), r"task\.frequencies: entries must be numbers >= 0"),
    (dict(seed=None), r"task\.seed: must be an integer >= 0, got None"),
  ],
)
def test_config_errors_name_the_field(overrides, match):
  with pytest.raises(ConfigError, match=match):
    make_family(_config(**overrides))
