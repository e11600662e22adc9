"""The regression family against numpy recomputations of its definition."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import as_fn

from scaling_interference import defaults
from scaling_interference.errors import ConfigError
from scaling_interference.tasks import FAMILIES, make_family
from scaling_interference.tasks.regression import Regression, participation_ratio


def _config(**overrides):
  fields = dict(
    family="regression",
    num_tasks=3,
    input_dim=5,
    output_dim=4,
    alpha=1.0,
    beta=(0.0, 1.0, 2.0),
    scales=(1.0, 2.0, 0.5),
    noise=0.0,
    frequencies=(),
    seed=0,
  )
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def _samples(family, per_task, seed=0):
  task_B = jnp.repeat(jnp.arange(family.num_tasks), per_task)
  return jax.jit(family.sample)(jax.random.key(seed), task_B)


def test_registered_and_built_from_config():
  family = make_family(_config())
  assert FAMILIES["regression"] is Regression
  assert (family.input_dim, family.output_dim) == (15, 12)
  assert not family.has_accuracy
  np.testing.assert_allclose(family.frequencies, np.array([6, 3, 2]) / 11)


def test_definition_is_a_function_of_seed_alone():
  a, b, c = Regression(_config()), Regression(_config()), Regression(_config(seed=1))
  np.testing.assert_array_equal(a.w_star_KxYxD, b.w_star_KxYxD)
  assert not np.allclose(a.w_star_KxYxD, c.w_star_KxYxD)


def test_bases_are_orthonormal():
  family = Regression(_config())
  for basis in (family.u_KxYxR, family.v_KxDxR):
    gram_KxRxR = np.einsum("knr,kns->krs", basis, basis)
    np.testing.assert_allclose(gram_KxRxR, np.broadcast_to(np.eye(4), gram_KxRxR.shape), atol=1e-12)


def test_w_star_has_configured_singular_values():
  family = Regression(_config())
  i_R = np.arange(1, 5.0)
  expected_KxR = np.stack([1.0 * i_R**0.0, 2.0 * i_R**-1.0, 0.5 * i_R**-2.0])
  np.testing.assert_allclose(family.singular_values_KxR, expected_KxR)
  svd_KxR = np.linalg.svd(family.w_star_KxYxD, compute_uv=False)
  np.testing.assert_allclose(svd_KxR, expected_KxR, rtol=1e-12)


def test_scalar_beta_and_default_scales():
  family = Regression(_config(beta=1.0, scales=()))
  np.testing.assert_allclose(family.singular_values_KxR, np.tile(1 / np.arange(1, 5.0), (3, 1)))


def test_complexity_is_participation_ratio():
  family = Regression(_config())
  # beta = 0: all 4 directions equal; beta = 2: energies 1, 1/16, 1/81, 1/256.
  e_R = np.arange(1, 5.0) ** -4
  np.testing.assert_allclose(family.complexities[[0, 2]], [4.0, e_R.sum() ** 2 / (e_R**2).sum()])
  assert family.complexities[0] > family.complexities[1] > family.complexities[2]
  np.testing.assert_allclose(participation_ratio(np.ones((1, 7))), [7.0])


def test_sample_places_input_and_target_in_the_task_block():
  family = Regression(_config())
  batch = _samples(family, per_task=8)
  assert batch.x.dtype == jnp.float32 and batch.y.dtype == jnp.float32
  x_BxKxD = np.asarray(batch.x, np.float64).reshape(-1, 3, 5)
  y_BxKxY = np.asarray(batch.y, np.float64).reshape(-1, 3, 4)
  for b, k in enumerate(np.asarray(batch.task)):
    others = np.arange(3) != k
    assert np.all(x_BxKxD[b, others] == 0) and np.all(y_BxKxY[b, others] == 0)
    assert np.all(x_BxKxD[b, k] != 0)
    np.testing.assert_allclose(y_BxKxY[b, k], family.w_star_KxYxD[k] @ x_BxKxD[b, k], rtol=1e-5, atol=1e-6)


def test_sample_is_a_pure_function_of_key_and_vmaps():
  family = Regression(_config())
  task_B = jnp.array([2, 0, 1, 1])
  a, b = family.sample(jax.random.key(3), task_B), jax.jit(family.sample)(jax.random.key(3), task_B)
  np.testing.assert_allclose(a.y, b.y, rtol=1e-6)
  keys = jax.random.split(jax.random.key(0), 2)
  stacked = jax.vmap(family.sample, in_axes=(0, None))(keys, task_B)
  assert stacked.x.shape == (2, 4, 15) and stacked.y.shape == (2, 4, 12)
  assert not np.allclose(stacked.x[0], stacked.x[1])


def test_label_noise_has_the_configured_std():
  family = Regression(_config(noise=0.3))
  batch = _samples(family, per_task=4000)
  x_BxKxD = np.asarray(batch.x, np.float64).reshape(-1, 3, 5)
  clean_BxKxY = np.einsum("kmd,bkd->bkm", family.w_star_KxYxD, x_BxKxD)
  residual = np.asarray(batch.y, np.float64).reshape(-1, 3, 4) - clean_BxKxY
  on_block = x_BxKxD.any(-1)
  assert np.all(residual[~on_block] == 0)
  assert abs(residual[on_block].std() - 0.3) < 0.01


def test_true_map_has_zero_loss_and_signal_one():
  family = Regression(_config())
  batch = _samples(family, per_task=64)
  true_IxO = jnp.asarray(family.target_map(), jnp.float32)
  loss_B = family.loss(batch.x @ true_IxO, batch)
  assert loss_B.shape == (192,) and float(loss_B.max()) < 1e-8
  loss_T = jax.ops.segment_sum(loss_B, batch.task, 3) / 64
  np.testing.assert_allclose(family.signal(jnp.arange(3), loss_T, None, as_fn(true_IxO)), np.ones(3), rtol=1e-6)
  np.testing.assert_allclose(family.signal(jnp.arange(3), loss_T, None), np.ones(3), rtol=1e-6)


def test_zero_map_has_signal_zero():
  family = Regression(_config(noise=0.5))
  batch = _samples(family, per_task=4000)
  loss_B = family.loss(jnp.zeros_like(batch.y), batch)
  loss_T = jax.ops.segment_sum(loss_B, batch.task, 3) / 4000
  np.testing.assert_allclose(family.signal(jnp.arange(3), jnp.zeros(3), None, as_fn(np.zeros((15, 12)))), np.zeros(3))
  np.testing.assert_allclose(family.signal(jnp.arange(3), loss_T, None), np.zeros(3), atol=0.06)


def test_signal_from_map_reads_only_the_diagonal_blocks():
  family = Regression(_config())
  map_IxO = family.target_map()
  map_IxO[:5, 4:] = 7.0  # task 0's input leaking into other tasks' outputs
  map_IxO[5:10, 4:8] *= 0.5  # task 1 learned at half strength
  signal_K = family.signal(jnp.arange(3), jnp.zeros(3), None, as_fn(map_IxO))
  np.testing.assert_allclose(signal_K, [1.0, 0.5, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
  "overrides, match",
  [
    (dict(alpha=-1.0), r"task\.alpha: must be a finite number >= 0, got -1\.0"),
    (dict(num_tasks=0), r"task\.num_tasks: must be an integer >= 1, got 0"),
    (dict(frequencies=(0.5, 0.4, 0.2)), r"task\.frequencies: must sum to 1, got sum 1\.1"),
    (dict(frequencies=(1.2, -0.2, 0.0)), r"task\.frequencies: entries must be numbers >= 0"),
    (dict(frequencies=(0.5, 0.5)), r"task\.frequencies: needs one entry per task \(3\), got 2"),
    (dict(input_dim=0), r"task\.input_dim: must be an integer >= 1, got 0"),
    (dict(output_dim=2.0), r"task\.output_dim: must be an integer >= 1, got 2\.0"),
    (dict(beta=(1.0, 2.0)), r"task\.beta: needs one entry per task \(3\), got 2"),
    (dict(beta=-0.5), r"task\.beta: must be a finite number >= 0 or one per task, got -0\.5"),
    (dict(beta=(1.0, float("nan"), 1.0)), r"task\.beta: must be a finite number >= 0"),
    (dict(scales=(1.0, 1.0)), r"task\.scales: needs one entry per task \(3\), got 2"),
    (dict(scales=(1.0, 0.0, 1.0)), r"task\.scales: entries must be finite numbers > 0"),
    (dict(noise=-0.1), r"task\.noise: must be a finite number >= 0, got -0\.1"),
    (dict(seed=-1), r"task\.seed: must be an integer >= 0, got -1"),
  ],
)
def test_config_errors_name_the_field(overrides, match):
  with pytest.raises(ConfigError, match=match):
    make_family(_config(**overrides))


def test_projection_credits_only_the_part_along_the_target():
  family = Regression(_config())
  target_IxO = family.target_map()

  def norm(map_IxO):
    return np.asarray(family.signal(jnp.arange(3), jnp.zeros(3), None, as_fn(map_IxO)))

  np.testing.assert_allclose(family.projection(target_IxO), np.ones(3), rtol=1e-12)
  np.testing.assert_allclose(family.projection(-target_IxO), -np.ones(3), rtol=1e-12)
  for c in (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0):
    np.testing.assert_allclose(family.projection(c * target_IxO), c, rtol=1e-12, err_msg="c W* projects to c")
    np.testing.assert_allclose(norm(c * target_IxO), abs(c), rtol=1e-5, err_msg="the norm is |c|: equal for c > 0")
  assert family.projection(-target_IxO)[0] < 0 < norm(-target_IxO)[0], "-W* is full strength by norm only"


def test_projection_reads_only_the_diagonal_blocks():
  family = Regression(_config())
  map_IxO = family.target_map()
  map_IxO[:5, 4:] = 7.0  # task 0's input leaking into other tasks' outputs
  map_IxO[5:10, 4:8] *= 0.5  # task 1 learned at half strength
  np.testing.assert_allclose(family.projection(map_IxO), [1.0, 0.5, 1.0], rtol=1e-12)


def test_an_unrelated_map_of_the_targets_size_projects_to_about_zero():
  family = Regression(_config(input_dim=64, output_dim=64))
  w_KxYxD = family.w_star_KxYxD
  noise_KxYxD = np.random.default_rng(0).standard_normal(w_KxYxD.shape)
  noise_KxYxD *= (np.linalg.norm(w_KxYxD, axis=(1, 2)) / np.linalg.norm(noise_KxYxD, axis=(1, 2)))[:, None, None]
  unrelated_IxO = np.zeros((3 * 64, 3 * 64))
  for k in range(3):
    unrelated_IxO[k * 64 : (k + 1) * 64, k * 64 : (k + 1) * 64] = noise_KxYxD[k].T
  np.testing.assert_allclose(
    family.signal(jnp.arange(3), jnp.zeros(3), None, as_fn(unrelated_IxO)),
    1.0,
    rtol=1e-5,
    err_msg="the norm signal credits any block of the target's size",
  )
  assert np.abs(family.projection(unrelated_IxO)).max() < 0.1, "random: about 1 / 64 standard deviation"


def test_families_without_a_target_map_have_no_projection():
  config = defaults.sparse_parity_task()
  config.update(num_tasks=2, n_bits=8)
  parity = make_family(config)
  assert parity.projection(np.zeros((parity.input_dim, parity.output_dim))) is None
