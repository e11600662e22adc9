"""The regression oracle against an independent SVD reference and Monte Carlo losses."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import as_fn

from scaling_interference.analysis.oracle import oracle, oracle_table, population_loss, population_total
from scaling_interference.tasks.regression import Regression


def _family(**overrides):
  fields = dict(
    family="regression",
    num_tasks=3,
    input_dim=4,
    output_dim=3,
    alpha=1.3,
    beta=(0.3, 1.0, 2.0),
    scales=(1.0, 1.7, 2.5),
    noise=0.2,
    frequencies=(),
    seed=0,
  )
  fields.update(overrides)
  return Regression(ml_collections.ConfigDict(fields))


def _best_rank_n_map(family, n):
  """Truncated SVD of blockdiag(sqrt(p_k) W*_k^T), unweighted back: the best rank-n map."""
  sqrt_p_I = np.repeat(np.sqrt(family.frequencies), family.task_input_dim)
  u, s, vt = np.linalg.svd(sqrt_p_I[:, None] * family.target_map(), full_matrices=False)
  return (u[:, :n] * s[:n]) @ vt[:n] / sqrt_p_I[:, None]


WIDTHS = [0, 1, 2, 4, 7, 9, 12]  # K * r = 9


@pytest.mark.parametrize("width", WIDTHS)
def test_oracle_matches_truncated_svd_reference(width):
  family = _family()
  best = oracle(family, width)
  reference_IxO = _best_rank_n_map(family, width)
  assert np.linalg.matrix_rank(reference_IxO) == min(width, 9)
  np.testing.assert_allclose(best.total_loss, population_total(family, reference_IxO), rtol=1e-10)
  np.testing.assert_allclose(best.loss_K, population_loss(family, reference_IxO), rtol=1e-9)
  signal_K = family.signal(jnp.arange(3), jnp.zeros(3), None, as_fn(reference_IxO))
  np.testing.assert_allclose(signal_K, best.signal_K, atol=1e-6)


def test_oracle_is_monotone_and_complete():
  family = _family()
  bests = [oracle(family, n) for n in range(12)]
  totals = np.array([b.total_loss for b in bests])
  assert np.all(np.diff(totals) <= 0) and np.all(np.diff(totals[:10]) < 0)
  assert np.all(np.diff(np.stack([b.loss_K for b in bests]), axis=0) <= 0)
  assert bests[9].kept_KxR.all()
  np.testing.assert_allclose(bests[11].loss_K, np.full(3, 3 * 0.2**2))
  np.testing.assert_allclose(bests[11].signal_K, np.ones(3))
  np.testing.assert_allclose(bests[0].loss_K, family.baseline_K)


def test_oracle_ties_break_by_task_then_direction():
  family = _family(beta=0.0, scales=(), frequencies=(0.5, 0.25, 0.25))
  np.testing.assert_array_equal(oracle(family, 4).kept_KxR, [[True, True, True], [True, False, False], [False] * 3])


def test_population_loss_of_true_and_zero_maps():
  family = _family()
  np.testing.assert_allclose(population_loss(family, family.target_map()), np.full(3, 0.12))
  np.testing.assert_allclose(population_loss(family, np.zeros((12, 9))), family.baseline_K)


def test_population_loss_matches_monte_carlo():
  family = _family()
  map_IxO = np.random.default_rng(1).normal(0.0, 0.4, (12, 9))
  per_task = 20000
  batch = jax.jit(family.sample)(jax.random.key(0), jnp.repeat(jnp.arange(3), per_task))
  loss_KxN = np.asarray(family.loss(batch.x @ jnp.asarray(map_IxO, jnp.float32), batch), np.float64).reshape(
    3, per_task
  )
  stderr_K = loss_KxN.std(-1) / np.sqrt(per_task)
  assert np.all(np.abs(loss_KxN.mean(-1) - population_loss(family, map_IxO)) < 4 * stderr_K)


def test_oracle_table_rows():
  family = _family()
  table = oracle_table(family, [0, 4, 9])
  assert list(table.columns) == [
    "width",
    "task",
    "frequency",
    "complexity",
    "oracle_loss",
    "oracle_signal",
    "directions_kept",
  ]
  assert len(table) == 9
  kept = table.pivot(index="width", columns="task", values="directions_kept")
  np.testing.assert_array_equal(kept.sum(axis=1), [0, 4, 9])
  row = table[(table.width == 4) & (table.task == 1)].iloc[0]
  np.testing.assert_allclose(row.oracle_loss, oracle(family, 4).loss_K[1])
  np.testing.assert_allclose(row.complexity, family.complexities[1])
