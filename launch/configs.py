"""Lists every config in configs/ with its presets: python -m launch.configs.

Per config: the first line of its docstring, the train command, and its presets (module PRESETS),
each marked "checked" where the module states its EXPECTED results (make check-recipes), with the start
of the docstring's paragraph on it (the one that starts "PRESET:" or "PRESET (...):").
"""

import glob
import importlib
import os

from absl import app

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def preset_lines(doc: str, presets, width: int = 110) -> dict[str, str]:
  """Each preset's paragraph in the docstring (it starts "PRESET:" or "PRESET (...):"), cut to one line."""
  found = {}
  for paragraph in doc.split("\n\n"):
    text = " ".join(paragraph.split())
    for preset in presets:
      if text.startswith((f"{preset}:", f"{preset} (")):
        found.setdefault(preset, text if len(text) <= width else text[: text.rfind(" ", 0, width)] + " ...")
  return found


def listing() -> str:
  """The text `python -m launch.configs` prints."""
  blocks = []
  for path in sorted(glob.glob(os.path.join(CONFIGS, "*.py"))):
    name = os.path.basename(path)[:-3]
    module = importlib.import_module(f"configs.{name}")
    if not hasattr(module, "get_config"):
      continue
    doc = module.__doc__ or ""
    summary = doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"
    checked, presets = getattr(module, "EXPECTED", {}), getattr(module, "PRESETS", ())
    names = ", ".join(f"{p} (checked)" if p in checked else p for p in presets)
    described = preset_lines(doc, presets)
    lines = [f"    {described[p]}" for p in presets if p in described]
    blocks.append(
      "\n".join(
        [
          f"configs/{name}.py: {summary}",
          f"  presets: {names or '(none listed)'}",
          *lines,
          f"  python -m launch.train --config=configs/{name}.py:PRESET --workdir=DIR",
        ]
      )
    )
  return "\n\n".join(blocks)


def main(argv):
  del argv
  print(listing())


if __name__ == "__main__":
  app.run(main)
