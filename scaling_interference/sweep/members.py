"""Members and groups: who is in the sweep, and which of them share a shape.

A member is one model: a shape (width, depth) plus seed and learning rate. Members with the
same shape form a group; the engine stacks a group's states and steps it with `jax.vmap`.
Small widths are never padded to large ones: each width is its own group.
"""
import dataclasses
import itertools

from scaling_interference.models import MLPDef


@dataclasses.dataclass(frozen=True)
class Member:
  id: int
  group: int
  width: int
  depth: int
  seed: int
  lr: float
  n_params: int

  def describe(self) -> str:
    return f"member {self.id} (width={self.width}, depth={self.depth}, seed={self.seed}, lr={self.lr:g})"


@dataclasses.dataclass(frozen=True)
class Group:
  index: int
  model: MLPDef
  members: tuple[Member, ...]

  @property
  def size(self) -> int:
    return len(self.members)


def model_def(config, family, width: int) -> MLPDef:
  m = config.model
  return MLPDef(input_dim=family.input_dim, width=width, output_dim=family.output_dim,
                depth=m.depth, activation=m.activation, use_bias=m.use_bias,
                init_scale=m.get("init_scale", 1.0))


def expand(config, family) -> list[Group]:
  """Members = widths x seeds x lrs, grouped by shape, ids in that order."""
  groups, next_id = [], 0
  for g, width in enumerate(config.model.widths):
    mdef = model_def(config, family, width)
    members = []
    for seed, lr in itertools.product(config.sweep.seeds, config.sweep.lrs):
      members.append(Member(next_id, g, width, mdef.depth, int(seed), float(lr), mdef.n_params))
      next_id += 1
    groups.append(Group(g, mdef, tuple(members)))
  return groups


def all_members(groups: list[Group]) -> list[Member]:
  return [m for g in groups for m in g.members]
