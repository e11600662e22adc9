"""Model kinds: what `model.name` selects. A kind validates its config section and makes the
shape of every group; nothing else in the package asks which kind a run uses.

A kind's `shapes(config, problem)` reads what it needs from the problem: an MLP its
`input_dim` and `output_dim`, a language model its `vocab_size` and `seq_len`.
"""

import dataclasses
import re

from scaling_interference import checks
from scaling_interference.errors import ConfigError
from scaling_interference.models import ladder
from scaling_interference.models.mlp import ACTIVATIONS, COMPUTE_DTYPES, INITS, MLPDef


@dataclasses.dataclass(frozen=True)
class Shape:
  """One group's shape: its size name ("" for MLPs), model definition, width and depth."""

  size: str
  model: object
  width: int
  depth: int


class MLPKind:
  """model.name = "mlp": one group per entry of model.widths."""

  @staticmethod
  def validate(model) -> None:
    checks.require_list(model.widths, "model.widths", lambda w: checks.is_int(w) and w > 0, "an integer > 0")
    checks.require_distinct(model.widths, "model.widths")
    checks.require_int(model, "model.depth", 1)
    checks.require_choice(model, "model.activation", ACTIVATIONS)
    checks.require_choice(model, "model.init", INITS)
    checks.require_number(model, "model.init_scale", 0.0, strict=True)
    checks.require_choice(model, "model.compute_dtype", COMPUTE_DTYPES)

  @staticmethod
  def shapes(config, problem) -> list[Shape]:
    m = config.model
    defs = [
      MLPDef(
        input_dim=problem.input_dim,
        width=width,
        output_dim=problem.output_dim,
        depth=m.depth,
        activation=m.activation,
        use_bias=m.use_bias,
        initializer=m.init,
        init_scale=m.init_scale,
        compute_dtype=m.compute_dtype,
      )
      for width in m.widths
    ]
    return [Shape("", d, d.width, d.depth) for d in defs]

  @staticmethod
  def memory_line(shape: Shape, batch_size: int, members: int) -> str | None:
    """MLP members are small: no estimate is printed."""
    return None

  @staticmethod
  def is_linear(model) -> bool:
    """Whether every member is a linear map (no activation between layers)."""
    return model.activation == "linear"


class OLMoKind:
  """model.name = "olmo": one group per entry of model.sizes (ladder presets or "D/H/L")."""

  @staticmethod
  def validate(model) -> None:
    checks.require_list(model.sizes, "model.sizes", lambda v: isinstance(v, str), "a size name")
    checks.require_distinct(model.sizes, "model.sizes")
    checks.require_choice(model, "model.compute_dtype", ("float32", "bfloat16"))
    checks.require_number(model, "model.rope_theta", 0.0, strict=True)
    checks.require_number(model, "model.z_loss", 0.0)
    checks.require_int(model, "model.mup_base_width", 0)

  @staticmethod
  def definition(config, vocab_size: int, seq_len: int, size: str):
    """A ladder preset by name, or an ad-hoc shape "D_MODEL/HEADS/LAYERS"."""
    m = config.model
    shape = {}
    if re.fullmatch(r"\d+/\d+/\d+", size):
      shape = dict(zip(("d_model", "n_heads", "n_layers"), map(int, size.split("/")), strict=True))
      size = "tiny-a"
    return ladder.preset(
      size,
      vocab_size=vocab_size,
      rope_theta=float(m.rope_theta),
      tie_embeddings=m.tie_embeddings,
      qk_norm=m.qk_norm,
      remat=m.remat,
      compute_dtype=m.compute_dtype,
      mup_base_width=m.mup_base_width or None,
      max_seq_len=seq_len,
      **shape,
    )

  @classmethod
  def shapes(cls, config, problem) -> list[Shape]:
    defs = [(s, cls.definition(config, problem.vocab_size, problem.seq_len, s)) for s in config.model.sizes]
    return [Shape(s, d, d.d_model, d.n_layers) for s, d in defs]

  @staticmethod
  def memory_line(shape: Shape, batch_size: int, members: int) -> str | None:
    per_member = ladder.memory_bytes(shape.model, batch_size, shape.model.max_seq_len)
    return (
      f"memory estimate {shape.size}: {per_member / 2**30:.2f} GiB per member, "
      f"{members * per_member / 2**30:.2f} GiB for its {members} member(s)"
    )

  @staticmethod
  def is_linear(model) -> bool:
    return False


MODEL_KINDS = {"mlp": MLPKind, "olmo": OLMoKind}


def model_kind(name: str):
  if name not in MODEL_KINDS:
    raise ConfigError(f"model.name: must be one of {list(MODEL_KINDS)}, got {name!r}")
  return MODEL_KINDS[name]
