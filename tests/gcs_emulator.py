"""A GCS emulator on 127.0.0.1 for the storage tests: `python tests/gcs_emulator.py PORT BUCKET`.

It is the gcp-storage-emulator package's server, in memory, plus what TensorStore (Orbax's array
store) relies on and the package leaves out: media downloads carry the object's generation in
`x-goog-generation`, and `ifGenerationMatch` / `ifGenerationNotMatch` are honoured (412 for a
failed write condition, 304 for an unchanged read), atomically per request.
"""

import sys
import threading
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.server import create_server

LOCK = threading.Lock()
_download, _media_upload = objects.download, objects._media_upload  # pylint: disable=protected-access


def generation(storage, bucket: str, name: str) -> str:
  """The object's generation; "0" when it does not exist (GCS's convention for preconditions)."""
  try:
    return str(storage.get_file_obj(bucket, name)["generation"])
  except NotFound:
    return "0"


def unmet(request, current: str, on_not_match: HTTPStatus) -> HTTPStatus | None:
  """The status a request's generation preconditions answer with, or None when they hold."""
  match, not_match = request.query.get("ifGenerationMatch"), request.query.get("ifGenerationNotMatch")
  if match and match[0] != current:
    return HTTPStatus.PRECONDITION_FAILED
  if not_match and not_match[0] == current:
    return on_not_match
  return None


def download(request, response, storage, *args, **kwargs):
  with LOCK:
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    current = generation(storage, bucket, name)
    status = unmet(request, current, HTTPStatus.NOT_MODIFIED) if current != "0" else None
    if status is not None:
      response.status = status
      return None
    if current != "0":
      response["x-goog-generation"] = current
    return _download(request, response, storage, *args, **kwargs)


def media_upload(request, response, storage):
  with LOCK:
    status = unmet(
      request,
      generation(storage, request.params["bucket_name"], request.query["name"][0]),
      HTTPStatus.PRECONDITION_FAILED,
    )
    if status is not None:
      response.status = status
      return None
    return _media_upload(request, response, storage)


def main(port: int, bucket: str) -> None:
  objects.download, objects._media_upload = download, media_upload  # pylint: disable=protected-access
  server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
  server.start()
  threading.Event().wait()


if __name__ == "__main__":
  main(int(sys.argv[1]), sys.argv[2])
