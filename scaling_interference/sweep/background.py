"""Background errors of Orbax's asynchronous saves kept off the terminal.

A failed save is reported once, as one line, by the trainer. What Orbax logs or raises about it in
its own threads and event loops (a traceback per array, per thread, and per future collected at exit)
goes to the DEBUG level of the "scaling_interference.background" logger instead: `--verbosity=1`
shows it. The filter and hooks stay once installed (TensorStore completes writes, and futures are
collected, as late as the interpreter's exit); each passes on whatever is not such an error.
"""

import logging
import os
import sys
import threading
import traceback

LIBRARIES = ("orbax", "tensorstore")  # packages whose background errors are diverted
LOGGERS = ("absl", "asyncio")  # the loggers they reach the terminal through (Orbax logs through absl)
debug_log = logging.getLogger("scaling_interference.background")


def _in_library(path: str) -> bool:
  return any(f"{os.sep}{name}{os.sep}" in path for name in LIBRARIES)


def _from_library(tb) -> bool:
  """Whether a traceback passes through one of LIBRARIES."""
  return tb is not None and any(_in_library(frame.filename) for frame in traceback.extract_tb(tb))


class _Divert(logging.Filter):
  """Turns the libraries' ERROR records (and records with a traceback through them) into DEBUG records."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR and not record.exc_info:
      return True
    if not (
      _in_library(record.pathname) or (record.exc_info and _from_library(record.exc_info[2])) or _orbax_future(record)
    ):
      return True
    text = record.getMessage()
    if record.exc_info:
      text += "\n" + "".join(traceback.format_exception(*record.exc_info))
    debug_log.debug("%s: %s", record.name, text)
    return False


def _orbax_future(record: logging.LogRecord) -> bool:
  """asyncio's "exception was never retrieved" for a future TensorStore failed (often no Python frames to tell by)."""
  return record.name == "asyncio" and bool(record.exc_info) and "orbax-checkpoint-tmp" in str(record.exc_info[1])


_DIVERT = _Divert()
_PREVIOUS: dict = {}  # the hooks found when divert_background_errors first ran


def _thread_hook(args) -> None:
  if not _from_library(args.exc_traceback):
    _PREVIOUS["thread"](args)
    return
  debug_log.debug(
    "thread %s: %s",
    args.thread.name if args.thread else "?",
    "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)),
  )


def _closed_loop_callback(exc_value, tb) -> bool:
  """TensorStore completing a write after Orbax closed its event loop (reported as unraisable, from its thread)."""
  frames = traceback.extract_tb(tb) if tb is not None else []
  return (
    isinstance(exc_value, RuntimeError)
    and str(exc_value) == "Event loop is closed"
    and bool(frames)
    and f"{os.sep}asyncio{os.sep}" in frames[-1].filename
  )


def _unraisable_hook(args) -> None:
  if not (_from_library(args.exc_traceback) or _closed_loop_callback(args.exc_value, args.exc_traceback)):
    _PREVIOUS["unraisable"](args)
    return
  debug_log.debug(
    "unraisable: %s", "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
  )


def divert_background_errors() -> None:
  """From now on the libraries' background errors go to debug_log (see the module docstring); idempotent.

  Each hook passes on everything else to the hook it replaced: other records, threads and exceptions are
  reported as before.
  """
  for name in LOGGERS:
    if _DIVERT not in logging.getLogger(name).filters:
      logging.getLogger(name).addFilter(_DIVERT)
  if not _PREVIOUS:
    _PREVIOUS.update({"thread": threading.excepthook, "unraisable": sys.unraisablehook})
    threading.excepthook, sys.unraisablehook = _thread_hook, _unraisable_hook
