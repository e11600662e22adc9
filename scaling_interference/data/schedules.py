"""Injection schedules: when, and how many examples of, a task enter each batch.

A schedule is declared in the config under `inject.NAME` and targets one task; its fields and
their defaults are `defaults.schedule()`:

  kind="share":     a share of all examples, e.g. 0.0025; realised exactly over time: step s gets
                    floor((s+1) B share) - floor(s B share) examples (share x B kept as a fraction
                    with denominator <= 46340, so counts are exact integers on device and host).
  kind="per_batch": `count` examples in every batch.
  kind="every":     `count` examples every `every` batches, at steps offset, offset + every, ...
  kind="burst":     `count` examples at step `at`, and never again.
Any kind applies only inside `windows`, a list of [start, stop) step ranges (empty: always).

Counts are pure functions of the step, computed identically with numpy on the host (for the
schedule file and previews) and with jax.numpy inside the jitted step.
"""

import dataclasses
import fractions

import jax.numpy as jnp
import ml_collections
import numpy as np

from scaling_interference import defaults
from scaling_interference.checks import is_int, require_int
from scaling_interference.errors import ConfigError

KINDS = ("share", "per_batch", "every", "burst")
KIND_FIELDS = {
  "share": ("share",),
  "per_batch": ("count",),
  "every": ("count", "every", "offset"),
  "burst": ("count", "at"),
}  # the fields each kind reads besides task and windows
MAX_DENOMINATOR = 46340  # (den - 1) * num stays below 2**31


@dataclasses.dataclass(frozen=True)
class Schedule:
  name: str
  task: int
  kind: str
  batch_size: int
  count: int = 0
  every: int = 1
  offset: int = 0
  at: int = 0
  share: float = 0.0
  windows: tuple[tuple[int, int], ...] = ()

  @property
  def _rate(self) -> fractions.Fraction:
    return fractions.Fraction(self.share * self.batch_size).limit_denominator(MAX_DENOMINATOR)

  def counts(self, step, xp=jnp):
    """Examples of this schedule at `step` (int or int array), with numpy (xp=np) or jax.numpy."""
    step = xp.asarray(step)
    if self.kind == "share":
      rate = self._rate
      whole, num, den = rate.numerator // rate.denominator, rate.numerator % rate.denominator, rate.denominator
      carry = ((step % den) * num % den + num >= den).astype(step.dtype)
      n = whole + carry
    elif self.kind == "per_batch":
      n = xp.full_like(step, self.count)
    elif self.kind == "every":
      n = xp.where((step >= self.offset) & ((step - self.offset) % self.every == 0), self.count, 0)
    else:
      n = xp.where(step == self.at, self.count, 0)
    return xp.where(self.active(step, xp), n, 0).astype(step.dtype)

  def active(self, step, xp=jnp):
    if not self.windows:
      return xp.ones_like(step, dtype=bool)
    inside = [(step >= a) & (step < b) for a, b in self.windows]
    return xp.any(xp.stack(inside), axis=0)

  @property
  def max_count(self) -> int:
    return -(-self._rate.numerator // self._rate.denominator) if self.kind == "share" else self.count


def from_config(inject_config, batch_size: int, num_tasks: int) -> list[Schedule]:
  """Schedules of `config.inject` (a mapping name -> fields), validated, in name order."""
  schedules = []
  for name in sorted(inject_config):
    entry = with_defaults(name, inject_config[name])
    check_schedule(name, entry, num_tasks)
    schedules.append(make_schedule(name, entry, batch_size))
  if sum(s.max_count for s in schedules) > batch_size:
    raise ConfigError(
      f"inject: schedules can ask for {sum(s.max_count for s in schedules)} examples in one "
      f"batch, more than train.batch_size={batch_size}"
    )
  return schedules


def with_defaults(name: str, fields) -> ml_collections.ConfigDict:
  """One `inject.NAME` entry over `defaults.schedule()`; a field not declared there is a ConfigError."""
  declared = defaults.schedule().to_dict()
  unknown = sorted(set(fields.keys()) - set(declared))
  if unknown:
    raise ConfigError(f"inject.{name}.{unknown[0]}: not a schedule field; the fields are {sorted(declared)}")
  return ml_collections.ConfigDict({**declared, **dict(fields)})


def make_schedule(name: str, entry, batch_size: int) -> Schedule:
  """The Schedule of a checked entry; fields its kind does not read keep their neutral values."""
  read = {f: float(entry[f]) if f == "share" else int(entry[f]) for f in KIND_FIELDS[entry.kind]}
  windows = tuple(tuple(int(v) for v in w) for w in entry.windows)
  return Schedule(name=name, task=int(entry.task), kind=entry.kind, batch_size=batch_size, windows=windows, **read)


def _bad(name: str, field: str, rule: str, value) -> ConfigError:
  return ConfigError(f"inject.{name}.{field}: must be {rule}, got {value!r}")


def check_schedule(name: str, entry, num_tasks: int) -> None:
  if entry.kind not in KINDS:
    raise _bad(name, "kind", f"one of {list(KINDS)}", entry.kind)
  if not is_int(entry.task) or not 0 <= entry.task < num_tasks:
    raise _bad(name, "task", f"a task id in [0, {num_tasks})", entry.task)
  if entry.kind == "share":
    if not isinstance(entry.share, (int, float)) or isinstance(entry.share, bool) or not 0 < entry.share <= 1:
      raise _bad(name, "share", "a number in (0, 1]", entry.share)
  else:
    require_int(entry, f"inject.{name}.count", 1)
  if entry.kind == "every" and not (is_int(entry.every) and entry.every >= 1):
    raise _bad(name, "every", "an integer >= 1 (batches between injections)", entry.every)
  require_int(entry, f"inject.{name}.offset", 0)
  require_int(entry, f"inject.{name}.at", 0)
  for w in entry.windows:
    if len(w) != 2 or not all(is_int(v) for v in w) or not 0 <= w[0] < w[1]:
      raise _bad(name, "windows", "a list of [start, stop) step pairs with 0 <= start < stop", list(entry.windows))


def realised_counts(schedules: list[Schedule], steps: int) -> np.ndarray:
  """(steps, n_schedules) injected examples per step, computed on the host."""
  step_S = np.arange(steps, dtype=np.int64)
  return np.stack([s.counts(step_S, xp=np) for s in schedules], axis=1) if schedules else np.zeros((steps, 0), np.int64)
