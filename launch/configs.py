"""Lists every config in configs/ with its presets: python -m launch.configs.

Per config: the first line of its docstring, the train command, and its presets (module PRESETS),
each marked "checked" where the module states its EXPECTED results (make check-recipes).
"""

import glob
import importlib
import os

from absl import app

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def listing() -> str:
  """The text `python -m launch.configs` prints."""
  blocks = []
  for path in sorted(glob.glob(os.path.join(CONFIGS, "*.py"))):
    name = os.path.basename(path)[:-3]
    module = importlib.import_module(f"configs.{name}")
    if not hasattr(module, "get_config"):
      continue
    summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "(no docstring)"
    checked = getattr(module, "EXPECTED", {})
    presets = ", ".join(f"{p} (checked)" if p in checked else p for p in getattr(module, "PRESETS", ()))
    blocks.append(
      f"configs/{name}.py: {summary}\n  presets: {presets or '(none listed)'}\n"
      f"  python -m launch.train --config=configs/{name}.py:PRESET --workdir=DIR"
    )
  return "\n\n".join(blocks)


def main(argv):
  del argv
  print(listing())


if __name__ == "__main__":
  app.run(main)
