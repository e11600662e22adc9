"""Multitask linear regression: K random linear maps with power-law spectra.

Task k owns input block k (d coordinates) and output block k (m coordinates). Its
target map is W*_k = U_k diag(s_k) V_k^T with random orthonormal U_k (m x r), V_k
(d x r), r = min(d, m), and s_{k,i} = c_k * i^(-beta_k). Small beta spreads the
target's energy over many directions: a complex task.
"""

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference import defaults
from scaling_interference.checks import is_number, require_int, require_number
from scaling_interference.errors import ConfigError
from scaling_interference.tasks.base import Array, Batch, Family, check_frequencies, frequencies_from_config, register


def participation_ratio(s_KxR: np.ndarray) -> np.ndarray:
  """(sum s^2)^2 / sum s^4 per task: the effective number of target directions."""
  e_KxR = np.square(s_KxR)
  return np.square(e_KxR.sum(-1)) / np.square(e_KxR).sum(-1)


def _orthonormal(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
  """n x r matrix with orthonormal columns, Haar-distributed (QR with sign fix)."""
  q_DxR, r_RxR = np.linalg.qr(rng.standard_normal((n, r)))
  return q_DxR * np.sign(np.diag(r_RxR))


def _bases(seed: int, k: int, d: int, m: int) -> tuple[np.ndarray, np.ndarray]:
  """U (K x m x r) and V (K x d x r), drawn task by task from `seed`."""
  rng = np.random.default_rng(seed)
  r = min(d, m)
  pairs = [(_orthonormal(rng, m, r), _orthonormal(rng, d, r)) for _ in range(k)]
  return np.stack([u for u, _ in pairs]), np.stack([v for _, v in pairs])


def _per_task(value, k: int) -> np.ndarray:
  """A scalar or a K-tuple as a float64 array of shape (K,)."""
  return np.broadcast_to(np.asarray(value, dtype=np.float64), (k,)).copy()


def _spectra(task_config, k: int, r: int) -> np.ndarray:
  """s_{k,i} = c_k * i^(-beta_k), shape (K, r)."""
  beta_K = _per_task(task_config.beta, k)
  scales_K = _per_task(tuple(task_config.scales) or 1.0, k)
  i_R = np.arange(1, r + 1, dtype=np.float64)
  return scales_K[:, None] * i_R[None, :] ** (-beta_K[:, None])


def _place(onehot_BxK: Array, v_BxD: Array) -> Array:
  """Puts row b of v into block task(b) of a (B, K*D) array, zeros elsewhere."""
  return (onehot_BxK[:, :, None] * v_BxD[:, None, :]).reshape(v_BxD.shape[0], -1)


@register
class Regression(Family):
  """K linear regression tasks on disjoint input and output blocks."""

  name = "regression"
  has_accuracy = False
  has_oracle = True

  def __init__(self, task_config):
    k, d, m = task_config.num_tasks, task_config.input_dim, task_config.output_dim
    self.num_tasks, self.task_input_dim, self.task_output_dim = k, d, m
    self.input_dim, self.output_dim = k * d, k * m
    self.noise = float(task_config.noise)
    self.frequencies = frequencies_from_config(task_config)
    self.singular_values_KxR = _spectra(task_config, k, min(d, m))
    self.u_KxYxR, self.v_KxDxR = _bases(task_config.seed, k, d, m)
    self.w_star_KxYxD = np.einsum("kmr,kr,kdr->kmd", self.u_KxYxR, self.singular_values_KxR, self.v_KxDxR)
    self.complexities = participation_ratio(self.singular_values_KxR)

  @property
  def baseline_K(self) -> np.ndarray:
    """Per-task loss of the zero predictor: ||W*_k||_F^2 + m * noise^2."""
    return np.square(self.w_star_KxYxD).sum((1, 2)) + self.task_output_dim * self.noise**2

  def target_map(self) -> np.ndarray:
    """The true end-to-end map (K*d, K*m): block-diagonal W*_k^T, float64."""
    k, d, m = self.num_tasks, self.task_input_dim, self.task_output_dim
    map_KxDxKxY = np.zeros((k, d, k, m))
    map_KxDxKxY[np.arange(k), :, np.arange(k), :] = self.w_star_KxYxD.transpose(0, 2, 1)
    return map_KxDxKxY.reshape(k * d, k * m)

  @classmethod
  def default_config(cls):
    return defaults.regression_task()

  @classmethod
  def validate_config(cls, task_config) -> None:
    check_frequencies(task_config)
    for field in ("input_dim", "output_dim"):
      require_int(task_config, f"task.{field}", 1)
    _check_beta(task_config)
    _check_scales(task_config)
    require_number(task_config, "task.noise", 0)

  def sample(self, key: Array, task_B: Array) -> Batch:
    key_z, key_noise = jax.random.split(key)
    b, m = task_B.shape[0], self.task_output_dim
    z_BxD = jax.random.normal(key_z, (b, self.task_input_dim), jnp.float32)
    w_BxYxD = jnp.asarray(self.w_star_KxYxD, jnp.float32)[task_B]
    y_BxY = jnp.einsum("bmd,bd->bm", w_BxYxD, z_BxD, precision=jax.lax.Precision.HIGHEST)
    if self.noise:
      y_BxY = y_BxY + self.noise * jax.random.normal(key_noise, (b, m), jnp.float32)
    onehot_BxK = jax.nn.one_hot(task_B, self.num_tasks, dtype=jnp.float32)
    return Batch(x=_place(onehot_BxK, z_BxD), y=_place(onehot_BxK, y_BxY), task=task_B.astype(jnp.int32))

  def loss(self, out_BxO: Array, batch: Batch) -> Array:
    """Squared error summed over all K*m output coordinates."""
    return jnp.sum(jnp.square(out_BxO - batch.y), axis=-1)

  def signal(self, task_T: Array, loss_T: Array, accuracy_T: Array | None, linear_fn=None) -> Array:
    """||M_kk||_F / ||W*_k||_F for linear members, else 1 - loss / zero-predictor loss."""
    if linear_fn is None:
      return 1.0 - loss_T / jnp.asarray(self.baseline_K, loss_T.dtype)[task_T]
    k, d, m = self.num_tasks, self.task_input_dim, self.task_output_dim
    t = task_T.shape[0]
    basis_TxDxI = jax.nn.one_hot(task_T[:, None] * d + jnp.arange(d), k * d, dtype=jnp.float32)
    out_TxDxKxY = linear_fn(basis_TxDxI.reshape(t * d, k * d)).reshape(t, d, k, m)
    block_TxDxY = jnp.take_along_axis(out_TxDxKxY, task_T[:, None, None, None], axis=2)[:, :, 0]
    norm_T = jnp.sqrt(jnp.sum(jnp.square(block_TxDxY), axis=(1, 2)))
    return norm_T / jnp.asarray(np.linalg.norm(self.w_star_KxYxD, axis=(1, 2)), jnp.float32)[task_T]

  def projection(self, map_IxO: np.ndarray) -> np.ndarray:
    """<M_kk, W*_k>_F / ||W*_k||_F^2 of map M's diagonal blocks: 1 on target, 0 for an unrelated map.

    Unlike signal's ||M_kk||_F / ||W*_k||_F, which is |c| for M_kk = c W*_k and credits any block
    of the right size, it counts only the part of M_kk along the target: c for c W*_k (-1 for -W*).
    """
    k, d, m = self.num_tasks, self.task_input_dim, self.task_output_dim
    block_KxDxY = np.asarray(map_IxO, np.float64).reshape(k, d, k, m)[np.arange(k), :, np.arange(k), :]
    target_KxDxY = self.w_star_KxYxD.transpose(0, 2, 1)
    return np.einsum("kdm,kdm->k", block_KxDxY, target_KxDxY) / np.square(target_KxDxY).sum((1, 2))

  def describe_example(self, x_I: np.ndarray, y, task: int) -> str:
    """The task's input block z and output block y."""
    d, m = self.task_input_dim, self.task_output_dim
    z, target = x_I[task * d : (task + 1) * d], np.asarray(y)[task * m : (task + 1) * m]
    return f"z={_text(z)} -> y={_text(target)}"

  def probe_features(self, batch: Batch) -> list[tuple[np.ndarray, dict]]:
    """Fitted on ALL tasks' examples, task k's block being 0 on the others' (R^2 each).

    z@v{r}: input block k projected on W*_k's r-th right singular vector (r = 1 strongest);
    answer: output block k (the target W*_k z). Decoding them among the other tasks' examples
    measures whether a layer keeps the feature apart from the rest; on task k's examples alone
    any nonzero linear map of a noise-free z would decode it perfectly.
    """
    x, y = np.asarray(batch.x, np.float64), np.asarray(batch.y, np.float64)
    d, m = self.task_input_dim, self.task_output_dim
    features = {}
    for t in range(self.num_tasks):
      proj_NxR = x[:, t * d : (t + 1) * d] @ self.v_KxDxR[t]
      features |= {(t, f"z@v{r + 1}"): ("r2", proj_NxR[:, r : r + 1]) for r in range(proj_NxR.shape[1])}
      features[(t, "answer")] = ("r2", y[:, t * m : (t + 1) * m])
    return [(np.ones(len(x), bool), features)]

  def task_inputs(self) -> list[np.ndarray]:
    """Task k's input block: d coordinates (capacity in [0, d])."""
    d = self.task_input_dim
    return [np.arange(t * d, (t + 1) * d) for t in range(self.num_tasks)]


def _text(v: np.ndarray) -> str:
  return np.array2string(v, precision=2, max_line_width=200)


def _check_beta(task_config) -> None:
  beta, k = task_config.beta, task_config.num_tasks
  values = tuple(beta) if isinstance(beta, (tuple, list)) else (beta,)
  if isinstance(beta, (tuple, list)) and len(values) != k:
    raise ConfigError(f"task.beta: needs one entry per task ({k}), got {len(values)}")
  if not all(is_number(b) and b >= 0 for b in values):
    raise ConfigError(f"task.beta: must be a finite number >= 0 or one per task, got {beta!r}")


def _check_scales(task_config) -> None:
  scales, k = tuple(task_config.scales), task_config.num_tasks
  if not scales:
    return
  if len(scales) != k:
    raise ConfigError(f"task.scales: needs one entry per task ({k}), got {len(scales)}")
  if not all(is_number(c) and c > 0 for c in scales):
    raise ConfigError(f"task.scales: entries must be finite numbers > 0, got {list(scales)}")
