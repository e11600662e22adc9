"""Members and groups: who is in the sweep, and which of them share a shape.

A member is one model: a shape (width, depth) plus seed and learning rate. Members with the
same shape form a group; the engine stacks a group's states and steps it with `jax.vmap`.
Small widths are never padded to large ones: each width is its own group.
"""

import dataclasses
import itertools

from scaling_interference.models.kinds import Shape, model_kind


@dataclasses.dataclass(frozen=True)
class Member:
  id: int
  group: int
  width: int
  depth: int
  seed: int
  lr: float
  n_params: int
  size: str = ""  # the ladder preset of language-model members

  def describe(self) -> str:
    size = f"size={self.size}, " if self.size else ""
    return f"member {self.id} ({size}width={self.width}, depth={self.depth}, seed={self.seed}, lr={self.lr:g})"


@dataclasses.dataclass(frozen=True)
class Group:
  index: int
  shape: Shape
  members: tuple[Member, ...]

  @property
  def model(self):
    """The model definition (MLPDef, OLMoDef, ...): init, apply, n_params."""
    return self.shape.model

  @property
  def size(self) -> int:
    return len(self.members)


def expand(config, problem) -> list[Group]:
  """Members = shapes (widths or sizes) x seeds x lrs, grouped by shape, ids in that order."""
  groups, next_id = [], 0
  for g, shape in enumerate(model_kind(config.model.name).shapes(config, problem)):
    members = []
    for seed, lr in itertools.product(config.sweep.seeds, config.sweep.lrs):
      members.append(
        Member(next_id, g, shape.width, shape.depth, int(seed), float(lr), shape.model.n_params, shape.size)
      )
      next_id += 1
    groups.append(Group(g, shape, tuple(members)))
  return groups


def all_members(groups: list[Group]) -> list[Member]:
  return [m for g in groups for m in g.members]
