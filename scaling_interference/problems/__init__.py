"""What a sweep trains on: a task family with its mixture, or a token stream with injected token tasks.

`make_problem(config)` picks the problem by the config's data section: `task` (a synthetic task
family) or `data` (a token stream). Building a problem checks its part of the config.
"""

from scaling_interference.errors import ConfigError
from scaling_interference.problems.base import Problem
from scaling_interference.problems.language import LanguageProblem
from scaling_interference.problems.synthetic import FamilyProblem
from scaling_interference.tasks import make_family


def make_problem(config) -> Problem:
  """FamilyProblem for a config with a `task` section, LanguageProblem for one with a `data` section."""
  has_task, has_data = "task" in config, "data" in config
  if has_task == has_data:
    found = "both" if has_task else "neither"
    raise ConfigError(
      f"task, data: a config trains on a task family (a `task` section) or a token stream "
      f"(a `data` section); it has {found}"
    )
  if has_task:
    return FamilyProblem(config, make_family(config.task))
  return LanguageProblem(config)


__all__ = ["FamilyProblem", "LanguageProblem", "Problem", "make_problem"]
