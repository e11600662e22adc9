"""The single call that turns a config into what a sweep trains: `build(config) -> (problem, groups)`."""

from scaling_interference.config import validate
from scaling_interference.problems import Problem, make_problem
from scaling_interference.sweep.members import Group, expand


def build(config) -> tuple[Problem, list[Group]]:
  """Validates the config, builds its problem and every member's shape: nothing has compiled yet."""
  validate(config)
  problem = make_problem(config)
  return problem, expand(config, problem)
