"""The analytic oracle of the regression family: the best rank-N linear map.

With input covariance diag(p_k I_d) the weighted loss sum_k p_k loss_k of a map M is
||blockdiag(sqrt(p_k) W*_k^T) - diag(sqrt(p)) M||_F^2 (+ noise). Its singular values
are sqrt(p_k) s_{k,i}, so the best rank-N map keeps the N directions with the largest
utility p_k s_{k,i}^2 (frequency x importance); task k then loses the energy s_{k,i}^2
of each of its dropped directions.
"""

import dataclasses

import numpy as np
import pandas as pd

from scaling_interference.tasks.regression import Regression


@dataclasses.dataclass(frozen=True)
class Oracle:
  """The best rank-`width` linear map, described per task."""

  width: int
  kept_KxR: np.ndarray  # bool: direction i of task k is kept
  loss_K: np.ndarray  # population loss per task
  total_loss: float  # sum_k p_k loss_K
  signal_K: np.ndarray  # ||kept part of W*_k||_F / ||W*_k||_F


def kept_directions(family: Regression, width: int) -> np.ndarray:
  """(K, r) bool: the `width` largest utilities p_k s_{k,i}^2, ties by (task, direction)."""
  utility_KxR = family.frequencies[:, None] * np.square(family.singular_values_KxR)
  order = np.argsort(-utility_KxR.ravel(), kind="stable")
  kept = np.zeros(utility_KxR.size, dtype=bool)
  kept[order[: max(width, 0)]] = True
  return kept.reshape(utility_KxR.shape)


def oracle(family: Regression, width: int) -> Oracle:
  """The best rank-`width` linear map's per-task loss and signal."""
  kept_KxR = kept_directions(family, width)
  energy_KxR = np.square(family.singular_values_KxR)
  noise_loss = family.task_output_dim * family.noise**2
  loss_K = np.where(kept_KxR, 0.0, energy_KxR).sum(-1) + noise_loss
  signal_K = np.sqrt(np.where(kept_KxR, energy_KxR, 0.0).sum(-1) / energy_KxR.sum(-1))
  return Oracle(
    width=width, kept_KxR=kept_KxR, loss_K=loss_K, total_loss=float(family.frequencies @ loss_K), signal_K=signal_K
  )


def population_loss(family: Regression, map_IxO) -> np.ndarray:
  """Exact per-task population loss (K,) of the linear model x @ map_IxO, in float64.

  loss_k = ||M[in_k, out_k] - W*_k^T||_F^2 + sum_{j != k} ||M[in_k, out_j]||_F^2 + m noise^2.
  """
  k, d = family.num_tasks, family.task_input_dim
  error_IxO = np.asarray(map_IxO, dtype=np.float64) - family.target_map()
  error_K = np.square(error_IxO.reshape(k, d, -1)).sum((1, 2))
  return error_K + family.task_output_dim * family.noise**2


def population_total(family: Regression, map_IxO) -> float:
  """Frequency-weighted population loss sum_k p_k loss_k of the map."""
  return float(family.frequencies @ population_loss(family, map_IxO))


def oracle_table(family: Regression, widths) -> pd.DataFrame:
  """One row per (width, task): the oracle's loss, signal and kept directions."""
  rows = []
  for width in widths:
    best = oracle(family, int(width))
    for k in range(family.num_tasks):
      rows.append(
        dict(
          width=int(width),
          task=k,
          frequency=family.frequencies[k],
          complexity=family.complexities[k],
          oracle_loss=best.loss_K[k],
          oracle_signal=best.signal_K[k],
          directions_kept=int(best.kept_KxR[k].sum()),
        )
      )
  return pd.DataFrame(rows)
