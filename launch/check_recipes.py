"""Trains every preset whose config module states EXPECTED results, and checks them:
python -m launch.check_recipes [--recipes=injection:demo,...] [--workdir_root=runs/recipes] [--fresh] [--out=FILE.json].

A recipe is `NAME:PRESET` of configs/NAME.py. A workdir of a finished recipe is reused (its run
resumes and changes nothing) unless --fresh. Exit 1 when any expectation does not hold.
"""

import glob
import importlib
import json
import os
import shutil
import sys
import time

import pandas as pd
from absl import app, flags

from launch import cli

_RECIPES = flags.DEFINE_list("recipes", None, "NAME:PRESET of configs/NAME.py; default: every preset with EXPECTED.")
_ROOT = flags.DEFINE_string("workdir_root", "runs/recipes", "Each recipe trains in ROOT/NAME-PRESET.")
_FRESH = flags.DEFINE_bool("fresh", False, "Train again even where a finished workdir exists.")
_OUT = flags.DEFINE_string("out", None, "Also write every check as JSON here.")
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def stated_recipes() -> dict:
  """{"NAME:PRESET": (config module, expectations)} of every config module with EXPECTED."""
  found = {}
  for path in sorted(glob.glob(os.path.join(CONFIGS, "*.py"))):
    name = os.path.basename(path)[:-3]
    module = importlib.import_module(f"configs.{name}")
    for preset, expectations in getattr(module, "EXPECTED", {}).items():
      found[f"{name}:{preset}"] = (module, expectations)
  return found


def chosen(found: dict, names) -> list[str]:
  if names is None:
    return list(found)
  unknown = [n for n in names if n not in found]
  if unknown:
    raise ValueError(f"--recipes: {', '.join(unknown)} state no EXPECTED results; choose from {', '.join(found)}")
  return list(names)


def run_recipe(recipe: str, module, expectations) -> pd.DataFrame:
  import scaling_interference as si  # pylint: disable=g-import-not-at-top
  from scaling_interference.recipes import check  # pylint: disable=g-import-not-at-top

  workdir = os.path.join(_ROOT.value, recipe.replace(":", "-"))
  if _FRESH.value:
    shutil.rmtree(workdir, ignore_errors=True)
  start = time.time()
  si.train(module.get_config(recipe.split(":")[1]), workdir)
  frame = check(si.load_run(workdir), expectations).assign(recipe=recipe, seconds=round(time.time() - start, 1))
  return frame


def main(argv):
  del argv
  found = stated_recipes()
  try:
    names = chosen(found, _RECIPES.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  frames = []
  for recipe in names:
    frame = cli.run_or_exit(run_recipe, recipe, *found[recipe])
    print(f"\n{recipe} ({frame.seconds.iloc[0]:.0f} s, training included)")
    print(frame.drop(columns=["recipe", "seconds"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    frames.append(frame)
  checks = pd.concat(frames, ignore_index=True)
  failed = checks[~checks.holds]
  print(f"\n{len(checks) - len(failed)} of {len(checks)} expectations hold in {len(names)} recipes")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(checks.to_dict(orient="records"), f, indent=1)
  sys.exit(1 if len(failed) else 0)


if __name__ == "__main__":
  app.run(main)
