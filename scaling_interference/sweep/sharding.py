"""Device meshes: each group's member axis over a `members` axis, the batch over a `data` axis.

The mesh is chosen from the device count (all devices on `members`) unless `train.mesh` gives
(members, data). A group whose size the `members` axis does not divide is replicated instead;
batches are sharded over `data` when it divides the batch size. With `train.fsdp`, members too
large for one device also shard every parameter and optimizer-state matrix over `data` (FSDP
style: along the first dimension that `data` divides); XLA gathers them where they are used. Sharding changes where the
arithmetic runs, not what it computes: metrics agree with a one-device run to float tolerance.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling_interference.errors import ConfigError

AXES = ("members", "data")


def make_mesh(train_config) -> Mesh:
  """(members, data) over every device, laid out by `jax.make_mesh`; Auto axes, so XLA propagates shardings."""
  count = jax.device_count()
  members, data = tuple(train_config.mesh) or (count, 1)
  if members * data != count:
    raise ConfigError(f"train.mesh: members x data must equal the {count} devices, got {members} x {data}")
  return jax.make_mesh((members, data), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def member_sharding(mesh: Mesh, group_size: int) -> NamedSharding:
  """Leading (member) axis over `members` when it divides the group, else replicated."""
  split = group_size % mesh.shape["members"] == 0
  return NamedSharding(mesh, P("members") if split else P())


def leaf_sharding(mesh: Mesh, group_size: int, shape: tuple, fsdp: bool) -> NamedSharding:
  """A state leaf (members, ...): member axis as member_sharding, plus FSDP over `data` for matrices."""
  members = "members" if group_size % mesh.shape["members"] == 0 else None
  spec = [members] + [None] * (len(shape) - 1)
  if fsdp and mesh.shape["data"] > 1 and len(shape) >= 3:
    dim = next((i for i in range(1, len(shape)) if shape[i] % mesh.shape["data"] == 0), None)
    if dim is not None:
      spec[dim] = "data"
  return NamedSharding(mesh, P(*spec))


def state_shardings(mesh: Mesh, group_size: int, abstract_state, fsdp: bool):
  """Per-leaf shardings of one group's stacked state."""
  return jax.tree.map(lambda a: leaf_sharding(mesh, group_size, a.shape, fsdp), abstract_state)


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array: what the host reads (losses, traces, eval metrics)."""
  return NamedSharding(mesh, P())


def place(tree, shardings):
  """Puts arrays that are equal on every process onto the (possibly multi-process) mesh."""
  if jax.process_count() == 1:
    return jax.tree.map(jax.device_put, tree, shardings)
  return jax.tree.map(
    lambda a, s: jax.make_array_from_callback(a.shape, s, lambda i: np.asarray(a)[i]), tree, shardings
  )


def batch_constraint(batch, mesh: Mesh, batch_size: int):
  """Shards the leading (example) axis of a batch over `data` when that divides it."""
  if mesh.shape["data"] == 1 or batch_size % mesh.shape["data"]:
    return batch
  return jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))
