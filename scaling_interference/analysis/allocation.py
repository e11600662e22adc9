"""Neuron allocation of MLP members: which task each hidden neuron serves, and each task's capacity.

Attribution by ablation: attribution[n, k] = L_k(neuron n's output zeroed) - L_k(intact), the
change of task k's mean eval loss (fixed eval examples, `n_per_task` per task) when the
post-activation output of hidden neuron n is set to 0. By default the last hidden layer is
ablated; `layers="all"` ablates every hidden layer, one neuron at a time.

Ownership: neuron n is owned by task k when k's loss increase is at least `threshold` (0.5) of
the neuron's total loss increase over tasks (sum over tasks of the positive increases) and above
`floor` (1e-3, in loss units). With threshold >= 0.5 a neuron has at most one owner (up to exact
ties); dead or redundant neurons have none.

Capacity (Elhage et al. 2022, "Toy Models of Superposition"): each input feature i has an
embedding W_i, its row of the first hidden layer's kernel; its dimensionality is
D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2 over all features j (0 for W_i = 0), in [0, 1], and
sum_i D_i <= width. A task's capacity is the sum of D_i over its features, the input coordinates
its family names (`Family.task_inputs`): regression the d coordinates of the task's block
(capacity in [0, d]); sparse parity the task's code bit and the k bits of its subset (in
[0, 1 + k]). A family that names none has no capacity (NaN); ownership is measured all the same.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from scaling_interference.analysis.gradients import realised_frequencies, task_examples
from scaling_interference.models import MLPDef
from scaling_interference.models.mlp import ACTIVATIONS
from scaling_interference.reader import Run
from scaling_interference.sweep.members import Group
from scaling_interference.tasks import Batch, Family

THRESHOLD = 0.5
FLOOR = 1e-3


# ---- ablation -----------------------------------------------------------------------------
def ablated_output(model: MLPDef, params: dict, x_BxI, layer: int, keep_W):
  """The member's output with hidden layer `layer`'s post-activations multiplied by keep_W."""
  mlp = model.bind(params)
  act = ACTIVATIONS[mlp.activation]
  h = x_BxI
  for i, linear in enumerate(mlp.hidden):
    h = act(linear(h))
    h = h * keep_W if i == layer else h
  return mlp.readout(h)


def _task_losses(model, family, params, batch: Batch, num_tasks: int, layer: int, keep_W):
  out = ablated_output(model, params, batch.x, layer, keep_W)
  return family.loss(out, batch).reshape(num_tasks, -1).mean(axis=1)


@functools.partial(jax.jit, static_argnums=(0, 1, 4, 5, 6))
def ablation_attribution(
  model: MLPDef, family: Family, params_M: dict, batch: Batch, num_tasks: int, layer: int, neuron_chunk: int = 16
):
  """(M, W, T) change of each task's mean loss when one neuron of hidden layer `layer` is zeroed."""

  def member(params):
    losses = functools.partial(_task_losses, model, family, params, batch, num_tasks, layer)
    base_T = losses(jnp.ones(model.width))

    def ablate(n):
      return losses(1.0 - jax.nn.one_hot(n, model.width)) - base_T

    return jax.lax.map(ablate, jnp.arange(model.width), batch_size=neuron_chunk)

  return jax.vmap(member)(params_M)


def owned(attr_WxT: np.ndarray, threshold: float = THRESHOLD, floor: float = FLOOR) -> np.ndarray:
  """(W, T) bool: task k owns neuron n (the rule in the module docstring)."""
  inc_WxT = np.maximum(attr_WxT, 0.0)
  total_Wx1 = inc_WxT.sum(axis=1, keepdims=True)
  return (inc_WxT >= threshold * total_Wx1) & (inc_WxT > floor)


def _ablated_layers(model: MLPDef, layers: str) -> list[int]:
  if layers not in ("last", "all"):
    raise ValueError(f"layers: must be 'last' or 'all', got {layers!r}")
  return [model.depth - 1] if layers == "last" else list(range(model.depth))


def _neuron_frame(step: int, group: Group, layer: int, attr_MxWxT: np.ndarray, threshold, floor) -> pd.DataFrame:
  m, w, t = attr_MxWxT.shape
  inc = np.maximum(attr_MxWxT, 0.0)
  total = inc.sum(axis=2, keepdims=True)
  share = np.divide(inc, total, out=np.zeros_like(inc), where=total > 0)
  own = np.stack([owned(a, threshold, floor) for a in attr_MxWxT])
  member_M = np.array([mb.id for mb in group.members])
  return pd.DataFrame(
    {
      "step": step,
      "member": np.repeat(member_M, w * t),
      "width": group.model.width,
      "layer": layer,
      "neuron": np.tile(np.repeat(np.arange(w), t), m),
      "task": np.tile(np.arange(t), m * w),
      "attribution": attr_MxWxT.ravel(),
      "share": share.ravel(),
      "owned": own.ravel(),
    }
  )


def check_mlp_members(run: Run) -> None:
  """Neuron ablation reads an MLP's hidden layers: other members (OLMo's SwiGLU blocks) are named, not guessed."""
  kinds = sorted({type(g.model).__name__ for g in run.groups if not isinstance(g.model, MLPDef)})
  if kinds:
    raise NotImplementedError(f"neuron allocation is built for MLP members; this run's members are {', '.join(kinds)}")


def neuron_table(
  run: Run, step: int, n_per_task: int = 256, layers: str = "last", threshold: float = THRESHOLD, floor: float = FLOOR
) -> pd.DataFrame:
  """One row per (member, layer, neuron, task) at `step`.

  Columns: step, member, width, layer (hidden layer index), neuron, task; attribution (loss
  increase of the task when the neuron is zeroed); share (its positive part over the neuron's
  total positive increase); owned (the ownership rule).
  """
  check_mlp_members(run)
  family = run.family
  batch = task_examples(run, np.arange(family.num_tasks), n_per_task)
  frames = []
  for group in run.groups:
    params_M = run.restore(step, group=group.index)["params"]
    for layer in _ablated_layers(group.model, layers):
      attr = ablation_attribution(group.model, family, params_M, batch, family.num_tasks, layer)
      frames.append(_neuron_frame(step, group, layer, np.asarray(attr, np.float64), threshold, floor))
  return pd.concat(frames, ignore_index=True)


# ---- capacity -----------------------------------------------------------------------------
def dimensionality(w_IxW: np.ndarray) -> np.ndarray:
  """(I,) Elhage et al.'s D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2 of feature embeddings W_i (rows)."""
  w = np.asarray(w_IxW, np.float64)
  norm_I = np.linalg.norm(w, axis=1)
  unit = np.divide(w, norm_I[:, None], out=np.zeros_like(w), where=norm_I[:, None] > 0)
  overlap_I = np.square(unit @ w.T).sum(axis=1)
  return np.divide(np.square(norm_I), overlap_I, out=np.zeros_like(norm_I), where=overlap_I > 0)


def task_capacity(family: Family, kernel_IxW: np.ndarray) -> np.ndarray:
  """(T,) sum of the dimensionalities of each task's input features in the first hidden layer (NaN: none named)."""
  inputs = family.task_inputs()
  if inputs is None:
    return np.full(family.num_tasks, np.nan)
  d_I = dimensionality(kernel_IxW)
  return np.array([d_I[f].sum() for f in inputs])


def feature_counts(family: Family) -> np.ndarray:
  """(T,) the number of each task's input features, capacity's upper bound (NaN: none named)."""
  inputs = family.task_inputs()
  return np.full(family.num_tasks, np.nan) if inputs is None else np.array([len(f) for f in inputs])


def allocation_table(
  run: Run, step: int, n_per_task: int = 256, layers: str = "last", threshold: float = THRESHOLD, floor: float = FLOOR
) -> pd.DataFrame:
  """One row per (member, task) at `step`.

  Columns: step, member, width, task, frequency (realised), complexity; owned_neurons (neurons
  of the ablated layers the task owns); capacity (sum of its features' dimensionalities in the
  first hidden layer); n_features (the number of those features, capacity's upper bound). Both NaN
  for a family that names no task inputs.
  """
  neurons = neuron_table(run, step, n_per_task, layers, threshold, floor)
  counts = neurons.groupby(["member", "task"]).owned.sum().rename("owned_neurons").reset_index()
  family, frames = run.family, []
  tasks = run.tasks.sort_values("id")
  n_features = feature_counts(family)
  for group in run.groups:
    kernel_MxIxW = np.asarray(run.restore(step, group=group.index)["params"]["hidden"][0]["kernel"])
    for m, member in enumerate(group.members):
      frames.append(
        pd.DataFrame(
          {
            "step": step,
            "member": member.id,
            "width": member.width,
            "task": tasks.id.values,
            "frequency": realised_frequencies(run),
            "complexity": tasks.complexity.values,
            "capacity": task_capacity(family, kernel_MxIxW[m]),
            "n_features": n_features,
          }
        )
      )
  table = pd.concat(frames, ignore_index=True).merge(counts, on=["member", "task"])
  return table[
    ["step", "member", "width", "task", "frequency", "complexity", "owned_neurons", "capacity", "n_features"]
  ]
