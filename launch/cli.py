"""Shared behaviour of entry points: readable progress, and expected errors as one line."""

import importlib.util
import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging

from scaling_interference.errors import ConfigError, NonFiniteLossError, StorageError, WorkdirError, WriteError


def show_progress() -> None:
  """Our progress lines on stderr (set up once; a process other than 0 keeps only warnings, see
  distributed.initialize). Without --verbosity: our INFO lines, and libraries' INFO chatter (Orbax)
  stays quiet; with it, absl's level applies to every logger, ours included (-1: warnings only)."""
  chosen = flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present
  if not chosen:
    absl_logging.set_verbosity(absl_logging.WARNING)
  log = logging.getLogger("scaling_interference")
  if not log.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
  if log.level == logging.NOTSET:  # set once: distributed.initialize then quiets processes other than 0
    log.setLevel(absl_logging.converter.absl_to_standard(absl_logging.get_verbosity()) if chosen else logging.INFO)
  log.propagate = False


def run_or_exit(fn, *args):
  """Calls fn; a bad config, path or workdir exits 2, a diverged member 3, a failed write 4, each with one line."""
  show_progress()
  try:
    return fn(*args)
  except (ConfigError, StorageError, WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  except WriteError as e:  # a checkpoint, a metrics file, a table, ...
    print(f"error: {e}", file=sys.stderr)
    sys.exit(4)
  except FileNotFoundError as e:  # e.g. a --workdir that holds no run
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _flag_value(argv, name: str) -> str | None:
  """The value of --name in argv (as --name=V or --name V), the last one given; None if absent."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def check_config_argument(argv) -> None:
  """Exits 2 with one line when --config names no file, or a preset its module's PRESETS lacks.

  Run before absl parses the flags: its parser would answer both with a traceback.
  """
  value = _flag_value(argv, "config")
  if value is None:
    return
  path, _, rest = value.partition(":")
  if not os.path.isfile(path):
    print(f"error: --config: no config file {path!r}", file=sys.stderr)
    sys.exit(2)
  preset = rest.split(":")[0]
  if not preset:
    return
  spec = importlib.util.spec_from_file_location("config_under_check", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  presets = getattr(module, "PRESETS", None)
  if presets is not None and preset not in presets:
    print(f"error: --config: {path} has no preset {preset!r}; its presets: {', '.join(presets)}", file=sys.stderr)
    sys.exit(2)
