"""Recipes that check themselves: Expect measured on runs with known numbers, and every stated EXPECTED."""

import importlib
import subprocess
import sys

import pytest
from test_resume import ROOT
from test_scaling import synthetic_run

from scaling_interference.recipes import Expect, check, measure


def SIGNAL(task, width):
  return min(1.0, width / 32) if task < 2 else 0.0  # tasks 0, 1 learned from width 32


def test_an_expectation_holds_within_its_tolerance_and_fails_outside_it():
  run = synthetic_run(lambda t, w: 1.0 - SIGNAL(t, w), SIGNAL, [0.5, 0.3, 0.2])
  assert measure(run, Expect("signal", 0.5, tol=0, task=0, width=16)) == pytest.approx(0.5)
  assert measure(run, Expect("signal", 0, tol=0, width=128, count_above=0.9)) == 2
  assert measure(run, Expect("signal", 0, tol=0, width=16, count_above=0.9)) == 0
  verdicts = check(
    run,
    [
      Expect("signal", 0.52, tol=0.05, task=0, width=16),
      Expect("signal", 0.6, tol=0.05, task=0, width=16),
      Expect("loss", 1.0, tol=1e-6, task=2, step=100),
    ],
  )
  assert verdicts.holds.tolist() == [True, False, True]
  assert verdicts.expectation[0] == "signal of task 0, width 16, step last"


def test_an_expectation_that_names_nothing_in_the_run_is_an_error():
  run = synthetic_run(lambda t, w: 0.0, SIGNAL, [0.5, 0.5])
  with pytest.raises(ValueError, match="width 7, step last: the run has no such members"):
    measure(run, Expect("signal", 0, tol=0, task=0, width=7))
  with pytest.raises(ValueError, match="the run has no eval at step 5"):
    measure(run, Expect("signal", 0, tol=0, task=0, step=5))
  with pytest.raises(ValueError, match="give exactly one of task= and count_above="):
    Expect("signal", 0, tol=0)
  with pytest.raises(ValueError, match="Expect.metric: must be one of"):
    Expect("gain", 0, tol=0, task=0)


@pytest.mark.parametrize("name", ["regression", "sparse_parity", "injection", "olmo_injection"])
def test_every_stated_expectation_names_a_preset_that_builds(name):
  module = importlib.import_module(f"configs.{name}")
  for preset, expectations in getattr(module, "EXPECTED", {}).items():
    module.get_config(preset)
    assert expectations and all(isinstance(e, Expect) for e in expectations), preset


def test_an_unknown_recipe_is_one_line():
  result = subprocess.run(
    [sys.executable, "-m", "launch.check_recipes", "--recipes=regression:paper"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2
  assert (
    result.stderr.strip()
    .splitlines()[-1]
    .startswith("error: --recipes: regression:paper state no EXPECTED results; choose from ")
  ), result.stderr


PRESETS = {
  "regression": ("demo", "paper"),
  "sparse_parity": ("demo", "paper", "reference"),
  "injection": ("demo", "rates", "paper"),
  "olmo_injection": ("demo", "rare", "complexity", "rates", "paper"),
}


@pytest.mark.parametrize("name,preset", [(n, p) for n, presets in PRESETS.items() for p in presets])
def test_every_preset_builds(name, preset):
  """Every preset passes validation and builds its problem and members (token files swapped for the
  synthetic language of the same vocabulary: the files are the user's)."""
  from scaling_interference.sweep.build import build

  config = importlib.import_module(f"configs.{name}").get_config(preset)
  if config.get("data") and config.data.source == "token_files":
    config.data.source = "synthetic"
  problem, groups = build(config)
  assert groups and sum(g.size for g in groups) >= 1


def test_the_preset_lists_name_every_preset():
  for name, presets in PRESETS.items():
    with pytest.raises(ValueError, match="preset: unknown 'nope'") as found:
      importlib.import_module(f"configs.{name}").get_config("nope")
    assert all(p in str(found.value) for p in presets), (name, str(found.value))
