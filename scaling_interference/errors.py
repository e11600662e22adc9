"""Errors the framework raises on purpose, each with a one-line message for the user."""


class ConfigError(ValueError):
  """A config field holds a value the framework cannot run; the message names the field."""


class WorkdirError(RuntimeError):
  """A workdir cannot be used for this run (e.g. it holds a different config)."""


class NonFiniteLossError(FloatingPointError):
  """A member's training loss became NaN or infinite; the message names member and step."""


class WriteError(RuntimeError):
  """A file could not be written (full disk, unwritable directory, ...); the message names the file and why."""


class CheckpointError(WriteError):
  """A checkpoint could not be written (full disk, unwritable directory, ...)."""


class ReplayError(RuntimeError):
  """A replay of training did not reproduce what training recorded (a bug, or a changed environment)."""


class StorageError(RuntimeError):
  """A path cannot be used: an unsupported scheme, a missing backend, an unreachable bucket."""
