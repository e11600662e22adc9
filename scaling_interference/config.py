"""Config validation in one place, before anything compiles or touches the workdir.

Each check raises ConfigError with one line naming the field, the allowed values and what
it got. `validate` also builds the task family, whose own checks live in its module.
"""
import math

import ml_collections

from scaling_interference.errors import ConfigError
from scaling_interference.models import ACTIVATIONS
from scaling_interference.sweep.language import LanguageProblem
from scaling_interference.sweep.members import expand
from scaling_interference.sweep.optim import DECAYS, OPTIMIZERS
from scaling_interference.sweep.synthetic import FamilyProblem
from scaling_interference.tasks import make_family
from scaling_interference.tasks.base import is_int, is_number

MODELS = ("mlp", "olmo")


def require_int(config, field: str, minimum: int) -> None:
  v = config[field.split(".")[-1]]
  if not is_int(v) or v < minimum:
    raise ConfigError(f"{field}: must be an integer >= {minimum}, got {v!r}")


def require_number(config, field: str, minimum: float, maximum: float = math.inf, strict=False) -> None:
  v = config[field.split(".")[-1]]
  low_ok = is_number(v) and (v > minimum if strict else v >= minimum)
  if not low_ok or v > maximum:
    bound = f"> {minimum}" if strict else f">= {minimum}"
    upper = f" and <= {maximum}" if maximum != math.inf else ""
    raise ConfigError(f"{field}: must be a finite number {bound}{upper}, got {v!r}")


def require_choice(config, field: str, choices) -> None:
  v = config[field.split(".")[-1]]
  if v not in choices:
    raise ConfigError(f"{field}: must be one of {list(choices)}, got {v!r}")


def _require_list(value, field: str, check, what: str) -> None:
  values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if not values:
    raise ConfigError(f"{field}: must list at least one value, got an empty list")
  for v in values:
    if not check(v):
      raise ConfigError(f"{field}: every entry must be {what}, got {v!r} in {list(values)}")


def validate_model(model) -> None:
  require_choice(model, "model.name", MODELS)
  if model.name == "olmo":
    validate_olmo(model)
    return
  _require_list(model.widths, "model.widths", lambda w: is_int(w) and w > 0, "an integer > 0")
  if len(set(model.widths)) != len(tuple(model.widths)):
    raise ConfigError(f"model.widths: entries must be distinct, got {list(model.widths)}")
  require_int(model, "model.depth", 1)
  require_choice(model, "model.activation", ACTIVATIONS)
  require_number(model, "model.init_scale", 0.0, strict=True)


def validate_olmo(model) -> None:
  _require_list(model.sizes, "model.sizes", lambda v: isinstance(v, str), "a size name")
  if len(set(model.sizes)) != len(tuple(model.sizes)):
    raise ConfigError(f"model.sizes: entries must be distinct, got {list(model.sizes)}")
  require_choice(model, "model.compute_dtype", ("float32", "bfloat16"))
  require_number(model, "model.rope_theta", 0.0, strict=True)
  require_number(model, "model.z_loss", 0.0)
  require_int(model, "model.mup_base_width", 0)


def validate_sweep(sweep) -> None:
  _require_list(sweep.seeds, "sweep.seeds", is_int, "an integer")
  _require_list(sweep.lrs, "sweep.lrs", lambda v: is_number(v) and v > 0, "a finite number > 0")


def validate_train(train) -> None:
  require_int(train, "train.steps", 0)
  require_int(train, "train.batch_size", 1)
  require_int(train, "train.eval_every", 1)
  require_int(train, "train.checkpoint_every", 1)
  require_int(train, "train.steps_per_dispatch", 1)
  require_int(train, "train.max_to_keep", 1)
  require_int(train, "train.keep_every", 0)
  require_int(train, "train.eval_examples_per_task", 1)
  require_int(train, "train.warmup_steps", 0)
  require_int(train, "train.data_seed", 0)
  require_choice(train, "train.optimizer", OPTIMIZERS)
  require_choice(train, "train.decay", DECAYS)
  require_number(train, "train.final_lr_fraction", 0.0, 1.0)
  require_number(train, "train.grad_clip", 0.0)
  require_number(train, "train.weight_decay", 0.0)
  require_int(train, "train.trace_every", 0)
  require_int(train, "train.trace_examples", 1)
  require_choice(train, "train.nonfinite", ("halt", "drop"))


def validate(config: ml_collections.ConfigDict):
  """Checks every field; returns the Problem the config defines (tasks, data, schedules)."""
  for section in ("model", "sweep", "train"):
    if section not in config:
      raise ConfigError(f"{section}: missing section; a config needs model, sweep and train")
  validate_model(config.model)
  validate_sweep(config.sweep)
  validate_train(config.train)
  if config.model.name == "olmo":
    if "data" not in config:
      raise ConfigError("data: missing section; language-model sweeps need a data section")
    problem = LanguageProblem(config)
  else:
    if "task" not in config:
      raise ConfigError("task: missing section; MLP sweeps need a task section")
    problem = FamilyProblem(config, make_family(config.task))  # checks schedules and traced tasks
  expand(config, problem)  # every member's shape is built (and checked) before anything compiles
  return problem


def flatten(tree, prefix="") -> dict:
  """{'a.b': value} for nested dicts; lists kept whole."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def differing_fields(old: dict, new: dict) -> list[str]:
  """Dotted names of fields whose values differ between two config dicts."""
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
