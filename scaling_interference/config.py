"""Config validation of the model, sweep and train sections, before anything compiles.

Each check raises ConfigError with one line naming the field, the allowed values and what it
got. The data side (task family, token tasks, schedules, traced tasks) is checked where the
problem is built (`problems.make_problem`), each model's shape where its kind builds it.
"""

import json

import ml_collections

from scaling_interference import defaults
from scaling_interference.checks import (
  is_int,
  is_number,
  require_choice,
  require_int,
  require_list,
  require_number,
  value_of,
)
from scaling_interference.errors import ConfigError
from scaling_interference.models.kinds import model_kind
from scaling_interference.tasks import family_class

OPTIMIZERS = ("adam", "adamw", "sgd")
DECAYS = ("constant", "cosine", "linear")
PACK_MODES = ("off", "on", "auto")  # train.pack (sweep/packed.py)


def validate_model(model) -> None:
  model_kind(value_of(model, "model.name")).validate(model)


def validate_sweep(sweep) -> None:
  require_list(sweep.seeds, "sweep.seeds", is_int, "an integer")
  require_list(sweep.lrs, "sweep.lrs", lambda v: is_number(v) and v > 0, "a finite number > 0")


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
  require_choice(train, "train.pack", PACK_MODES)
  require_choice(train, "train.tensorboard", (True, False))
  if not isinstance(train.wandb_project, str):
    raise ConfigError(f'train.wandb_project: must be a W&B project name ("": off), got {train.wandb_project!r}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the model, sweep and train sections (problems and shapes check the rest)."""
  for section in ("model", "sweep", "train"):
    if section not in config:
      raise ConfigError(f"{section}: missing section; a config needs model, sweep and train")
  validate_model(config.model)
  validate_sweep(config.sweep)
  validate_train(config.train)


def as_json(config) -> dict:
  """The resolved config as plain JSON types (tuples become lists), as config.json holds it."""
  return json.loads(json.dumps(config.to_dict()))


def resolve_saved(saved: dict) -> ml_collections.ConfigDict:
  """A saved config.json merged onto today's defaults, so a workdir written before a field existed
  still opens, and resumes when the new field keeps its default (train.pack: "off", as it trained)."""
  if "task" in saved:
    config = defaults.base_config(family_class(saved["task"]["family"]).default_config())
  else:
    config = defaults.language_config()
    for name, task in saved.get("token_tasks", {}).items():
      config.token_tasks[name] = defaults.token_task(task["kind"], task["seed"])
  config.update(saved)
  if "pack" not in saved.get("train", {}):
    config.train.pack = "off"  # written before packing existed: resume as it trained, with plain groups
  return config


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
