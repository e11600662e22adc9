"""Text files as a TFDS dataset in ArrayRecord format, built and read without TensorFlow.

`text_files_source(paths, data_dir)` builds the dataset once (a builder config named by a
digest of the paths, their sizes and modification times, so another corpus or an edited
file gets its own directory) and returns its random-access data source: record i is
{"text": bytes} of one document. A document is a whole file (documents="file") or one
non-empty line (documents="line"). Paths are local or URLs (gs://, ...), read through etils.epath.
"""

import hashlib
import os

import jax
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from scaling_interference import storage

DOCUMENTS = ("file", "line")


class TextFiles(tfds.core.GeneratorBasedBuilder):
  """Documents of local text files, one record each, in the train split."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, paths, documents: str = "file", **kwargs):
    self._paths = tuple(paths)
    self._documents = documents
    config = tfds.core.BuilderConfig(name=corpus_digest(self._paths, documents))
    super().__init__(config=config, file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="Documents of local text files.",
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, path in enumerate(self._paths):
      for j, document in enumerate(read_documents(path, self._documents)):
        yield f"{i}:{j}", {"text": document}


def read_documents(path: str, documents: str) -> list[bytes]:
  """The non-empty documents of one file, as bytes."""
  data = storage.as_path(path, "data.paths").read_bytes()
  parts = data.splitlines() if documents == "line" else [data]
  return [part for part in parts if part.strip()]


def corpus_digest(paths, documents: str) -> str:
  """A name for the corpus: changes when a path, a file's size or its mtime (where the store keeps one) changes."""
  h = hashlib.sha256(documents.encode())
  for path in paths:
    path = storage.as_path(path, "data.paths")
    stat = path.stat()
    h.update(f"{os.fspath(path)}\0{stat.length}\0{stat.mtime}\0".encode())
  return "c" + h.hexdigest()[:16]


def text_files_source(paths, data_dir: str, documents: str = "file"):
  """The built dataset's train split as a random-access source of {"text": bytes}.

  With several processes, process 0 builds first; the others then find it built (a shared
  data_dir) or build their own copy.
  """
  builder = TextFiles(paths=paths, documents=documents, data_dir=data_dir)
  if jax.process_index() == 0:
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("scaling_interference: text files built")
    builder.download_and_prepare()
  return builder.as_data_source(split="train")
