"""Every file the framework reads or writes, through etils.epath.

A local path, gs://, s3://, az:// and hf:// work alike; `as_path` is the one entry point, and a
URL whose scheme has no backend installed, or whose bucket cannot be reached, stops with one
line naming the path and what is missing, before anything is written. Object stores have no
rename and no append: a file written here appears whole or not at all (a temporary name and a
rename on local disks, one upload on object stores).
"""

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import threading

import numpy as np
from etils import epath

from scaling_interference.errors import StorageError, WriteError

TIMEOUT_ENV = "SCALING_INTERFERENCE_STORAGE_TIMEOUT"  # seconds `check_reachable` waits (default 20)
CLIENT_LOGGERS = ("gcsfs", "fsspec", "s3fs", "google", "urllib3")

# scheme -> (the module its epath backend needs, what to install for it)
BACKENDS = {
  "gs": ("gcsfs", "pip install 'scaling_interference[gcs]'"),
  "s3": ("s3fs", "pip install s3fs"),
  "az": ("adlfs", "pip install adlfs"),
  "hf": ("huggingface_hub", "pip install huggingface_hub"),
}


def scheme(path) -> str:
  """'gs', 's3', ... for a URL; '' for a local path."""
  text = os.fspath(path)
  return text.split("://", 1)[0] if "://" in text else ""


def is_remote(path) -> bool:
  return bool(scheme(path))


def as_path(path, what: str = "path") -> epath.Path:
  """The epath of a local path (made absolute) or a URL whose scheme this installation supports."""
  name = scheme(path)
  if not name:
    return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
  if name not in BACKENDS:
    raise StorageError(
      f"{what} {path}: the scheme {name}:// is not supported "
      f"(supported: local paths, {', '.join(s + '://' for s in BACKENDS)})"
    )
  module, install = BACKENDS[name]
  if not any(importlib.util.find_spec(m) for m in (module, "tensorflow")):
    raise StorageError(f"{what} {path}: {name}:// needs the {module} package, which is not installed; {install}")
  return epath.Path(os.fspath(path))


def check_reachable(path: epath.Path, what: str = "path") -> None:
  """Raises a one-line StorageError when a remote path's bucket does not answer, or is missing; local paths pass.

  Storage clients retry for a minute or more before giving up, so the check waits at most
  $SCALING_INTERFERENCE_STORAGE_TIMEOUT seconds (default 20) and keeps their retry logs quiet.
  """
  if not is_remote(path):
    return
  bucket = epath.Path(f"{scheme(path)}://{os.fspath(path).split('://', 1)[1].split('/', 1)[0]}")
  try:
    seconds = float(os.environ.get(TIMEOUT_ENV, 20))
  except ValueError:
    raise StorageError(f"${TIMEOUT_ENV}: must be a number of seconds, got {os.environ[TIMEOUT_ENV]!r}") from None
  answer: list = []
  thread = threading.Thread(target=_ask_quietly, args=(bucket.exists, answer), daemon=True)
  thread.start()
  thread.join(seconds)
  if not answer:
    raise StorageError(
      f"{what} {path}: {bucket} did not answer within {seconds:g} s "
      f"(network, credentials or endpoint; ${TIMEOUT_ENV} sets the wait)"
    )
  found, error = answer[0]
  if error is not None:
    raise StorageError(
      f"{what} {path}: {bucket} cannot be reached ({type(error).__name__}: "
      f"{str(error).splitlines()[0][:200] if str(error) else 'no message'})"
    )
  if not found:
    raise StorageError(f"{what} {path}: the bucket {bucket} does not exist or this account cannot see it")


def _ask_quietly(question, answer: list) -> None:
  """Appends (question(), None) or (None, the exception), with the clients' logs off meanwhile."""
  with quiet_clients():
    try:
      answer.append((question(), None))
    except Exception as e:  # any client error: credentials, network, permissions
      answer.append((None, e))


@contextlib.contextmanager
def quiet_clients():
  """Storage clients' own logs (retries, credential fallbacks) off for the duration."""
  loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
  levels = [log.level for log in loggers]
  for log in loggers:
    log.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    for log, level in zip(loggers, levels, strict=True):
      log.setLevel(level)


def describe_error(e: BaseException) -> str:
  """A write error in one short phrase: 'No space left on device [errno 28]' where the OS error is known."""
  if isinstance(e, OSError) and e.errno:
    return f"{e.strerror or os.strerror(e.errno)} [errno {e.errno}]"
  found = re.search(r"os_error_code='?(\d+)", str(e))  # TensorStore's errors (Orbax) carry the OS error code
  if found:
    return f"{os.strerror(int(found[1]))} [errno {found[1]}]"
  text = str(e).splitlines()[0][:300] if str(e) else "no message"
  return f"{type(e).__name__}: {text}"


def write_bytes(path: epath.Path, data: bytes) -> None:
  """Writes a whole file that readers see complete or not at all; a failed write is a WriteError naming it.

  On local disks the bytes go to NAME.tmp, renamed over NAME once complete; a failed write removes
  NAME.tmp and leaves NAME as it was.
  """
  tmp = None if is_remote(path) else path.parent / (path.name + ".tmp")
  try:
    if tmp is None:
      path.write_bytes(data)  # an object upload is atomic
    else:
      tmp.write_bytes(data)
      tmp.replace(path)
  except OSError as e:
    if tmp is not None:
      tmp.unlink(missing_ok=True)
    raise WriteError(f"could not write {path}: {describe_error(e)}") from e


def make_folder(path: epath.Path) -> None:
  """mkdir -p; a failure is a WriteError naming the folder."""
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WriteError(f"could not make the folder {path}: {describe_error(e)}") from e


def write_text(path: epath.Path, text: str) -> None:
  write_bytes(path, text.encode())


def write_json(path: epath.Path, obj) -> None:
  write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: epath.Path):
  return json.loads(path.read_text())


def write_npz(path: epath.Path, **arrays) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def read_npz(path: epath.Path) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(path.read_bytes())) as f:
    return {k: f[k] for k in f.files}
