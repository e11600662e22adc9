"""Shared behaviour of entry points: readable progress, and expected errors as one line."""
import logging
import sys

from absl import logging as absl_logging

from scaling_interference.errors import CheckpointError, ConfigError, NonFiniteLossError, StorageError, WorkdirError


def show_progress() -> None:
  """Our progress lines on stderr (set up once; a process other than 0 keeps only warnings, see
  distributed.initialize); libraries' INFO chatter (Orbax) stays quiet."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  log = logging.getLogger("scaling_interference")
  if not log.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
  log.propagate = False


def run_or_exit(fn, *args):
  """Calls fn; a bad config, path or workdir exits 2, a diverged member 3, a failed save 4, each with one line."""
  show_progress()
  try:
    return fn(*args)
  except (ConfigError, StorageError, WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(4)
  except FileNotFoundError as e:  # e.g. a --workdir that holds no run
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
