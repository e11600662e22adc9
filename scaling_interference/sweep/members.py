"""Members and groups: who is in the sweep, and which of them share a shape.

A member is one model: a shape (width, depth) plus seed and learning rate. Members with the
same shape form a group; the engine stacks a group's states and steps it with `jax.vmap`.
Small widths are never padded to large ones: each width is its own group.
"""
import dataclasses
import itertools
import re

from scaling_interference.models import MLPDef
from scaling_interference.models import ladder


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
  model: object  # MLPDef or OLMoDef: init, apply, n_params
  members: tuple[Member, ...]

  @property
  def size(self) -> int:
    return len(self.members)


def mlp_def(config, family, width: int) -> MLPDef:
  m = config.model
  return MLPDef(input_dim=family.input_dim, width=width, output_dim=family.output_dim,
                depth=m.depth, activation=m.activation, use_bias=m.use_bias,
                init_scale=m.get("init_scale", 1.0))


def olmo_def(config, vocab_size: int, size: str):
  """A ladder preset by name, or an ad-hoc shape "D_MODEL/HEADS/LAYERS"."""
  m = config.model
  shape = {}
  if re.fullmatch(r"\d+/\d+/\d+", size):
    shape = dict(zip(("d_model", "n_heads", "n_layers"), map(int, size.split("/"))))
    size = "tiny-a"
  return ladder.preset(size, vocab_size=vocab_size, rope_theta=float(m.rope_theta), tie_embeddings=m.tie_embeddings,
                       qk_norm=m.qk_norm, remat=m.remat, compute_dtype=m.compute_dtype,
                       mup_base_width=m.mup_base_width or None, max_seq_len=config.data.seq_len, **shape)


def shapes(config, problem) -> list[tuple[str, object]]:
  """(size name or "", model def) of every group, in config order."""
  if config.model.name == "olmo":
    return [(size, olmo_def(config, problem.vocab_size, size)) for size in config.model.sizes]
  return [("", mlp_def(config, problem.family, width)) for width in config.model.widths]


def expand(config, problem) -> list[Group]:
  """Members = shapes (widths or sizes) x seeds x lrs, grouped by shape, ids in that order."""
  groups, next_id = [], 0
  for g, (size, mdef) in enumerate(shapes(config, problem)):
    width, depth = (mdef.d_model, mdef.n_layers) if size else (mdef.width, mdef.depth)
    members = []
    for seed, lr in itertools.product(config.sweep.seeds, config.sweep.lrs):
      members.append(Member(next_id, g, width, depth, int(seed), float(lr), mdef.n_params, size))
      next_id += 1
    groups.append(Group(g, mdef, tuple(members)))
  return groups


def all_members(groups: list[Group]) -> list[Member]:
  return [m for g in groups for m in g.members]
