"""Value checks shared by every config section: each raises ConfigError naming the field.

`field` is the dotted name the user sees (`train.steps`, `task.k`); the value is read from
`section` under the field's last part.
"""

import math
import numbers

import numpy as np

from scaling_interference.errors import ConfigError


def is_int(value) -> bool:
  """An integer (Python or NumPy) that is not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
  """A finite real number that is not a bool."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def value_of(section, field: str):
  """section[last part of field]; a missing field is a ConfigError naming it."""
  key = field.split(".")[-1]
  if key not in section:
    raise ConfigError(f"{field}: missing; the section holds {sorted(section.keys())}")
  return section[key]


def require_int(section, field: str, minimum: int) -> None:
  v = value_of(section, field)
  if not is_int(v) or v < minimum:
    raise ConfigError(f"{field}: must be an integer >= {minimum}, got {v!r}")


def require_number(section, field: str, minimum: float, maximum: float = math.inf, strict=False) -> None:
  v = value_of(section, field)
  low_ok = is_number(v) and (v > minimum if strict else v >= minimum)
  if not low_ok or v > maximum:
    bound = f"> {minimum}" if strict else f">= {minimum}"
    upper = f" and <= {maximum}" if maximum != math.inf else ""
    raise ConfigError(f"{field}: must be a finite number {bound}{upper}, got {v!r}")


def require_choice(section, field: str, choices) -> None:
  v = value_of(section, field)
  if v not in choices:
    raise ConfigError(f"{field}: must be one of {list(choices)}, got {v!r}")


def require_list(value, field: str, check, what: str) -> None:
  """A non-empty list (or one value) whose every entry passes `check`."""
  values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if not values:
    raise ConfigError(f"{field}: must list at least one value, got an empty list")
  for v in values:
    if not check(v):
      raise ConfigError(f"{field}: every entry must be {what}, got {v!r} in {list(values)}")


def require_distinct(value, field: str) -> None:
  if len(set(value)) != len(tuple(value)):
    raise ConfigError(f"{field}: entries must be distinct, got {list(value)}")
