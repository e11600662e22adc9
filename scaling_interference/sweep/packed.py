"""Packed MLP members: the first layers of every member that reads the same input as one matmul.

MLP members of a sweep all read the batch's input x (B, I). Packed, the engine computes their
first-layer pre-activations at once, x @ [W_1 | W_2 | ...] over the U = sum of members' hidden
units, then each member's remaining layers and loss on its own slice (vmapped per group, as
unpacked). The gradient of the summed losses is each member's own gradient (members share no
parameter), its first-layer part one matmul x^T @ dpre_BxU. States and checkpoints keep the
per-group layout; only the training step's arithmetic is arranged differently. With
model.compute_dtype "bfloat16" the packed matmul runs in bf16 like the members' own layers.

`train.pack` chooses: "off", "on" (every MLP group of a problem with a shared model input), or
"auto" (the default): on where there are at least two such groups reading at least AUTO_MIN_INPUT
features. benchmarks/sweep_speed.py on 2 CPU cores measured packed steps 1.08x the plain ones at 150
and at 512 inputs, and 0.91x at 64 (the regression demo's many tiny members).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from scaling_interference.models.mlp import MLPDef

AUTO_MIN_INPUT = 128


@dataclasses.dataclass(frozen=True)
class FromFirstLayer:
  """An MLP member applied from its first layer's pre-activations `pre_BxH`: apply ignores its input."""

  model: MLPDef
  pre_BxH: jax.Array

  def apply(self, params, x_BxI):
    del x_BxI
    return self.model.apply_from_first(params, self.pre_BxH)


def packed_groups(mode: str, problem, groups, num_devices: int = 1) -> tuple[int, ...]:
  """Indices of the groups the training step packs (none where the mode or the problem rules it out).

  "auto" packs on one device only: on a mesh the members' first layers live on different devices,
  and one matmul over all of them would gather them (not measured, so not chosen for the user)."""
  if mode == "off" or not problem.shared_model_input:
    return ()
  found = tuple(g.index for g in groups if isinstance(g.model, MLPDef) and g.model.depth >= 1)
  if mode == "on":
    return found
  wide_input = bool(found) and groups[found[0]].model.input_dim >= AUTO_MIN_INPUT
  return found if len(found) >= 2 and wide_input and num_devices == 1 else ()


def packed_grads(problem, groups, params_list, batch):
  """(grads, losses) of every packed group's members, each (M, ...) / (M,) as the group's params."""

  def total(params_list):
    dtype = groups[0].model.dtype  # one compute dtype per sweep (model.compute_dtype)
    x_BxI = problem.model_input(batch).astype(dtype)
    first = [g.model.first_layer(p) for g, p in zip(groups, params_list, strict=True)]  # ((M, I, H), (M, H) or None)
    w_IxU = jnp.concatenate([jnp.moveaxis(k, 0, 1).reshape(k.shape[1], -1) for k, _ in first], axis=1)
    pre_BxU = x_BxI @ w_IxU.astype(dtype)
    if any(b is not None for _, b in first):
      pre_BxU = pre_BxU + jnp.concatenate(
        [jnp.zeros(k.shape[0] * k.shape[2]) if b is None else b.reshape(-1) for k, b in first]
      ).astype(dtype)
    losses, start = [], 0
    for g, p, (k, _) in zip(groups, params_list, first, strict=True):
      size = k.shape[0] * k.shape[2]
      pre_MxBxH = jnp.moveaxis(pre_BxU[:, start : start + size].reshape(-1, k.shape[0], k.shape[2]), 1, 0)
      start += size
      member_loss = functools.partial(_member_loss, problem, g.model, batch)
      losses.append(jax.vmap(member_loss)(pre_MxBxH, p))
    return sum(loss.sum() for loss in losses), losses

  return jax.grad(total, has_aux=True)(params_list)


def _member_loss(problem, model, batch, pre_BxH, params):
  return problem.loss(FromFirstLayer(model, pre_BxH), params, batch)
