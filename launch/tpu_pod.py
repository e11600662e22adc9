"""Starts one run on every worker of a TPU VM pod: python -m launch.tpu_pod --tpu_name=NAME --zone=ZONE
--repo_dir=DIR --config=configs/NAME.py --workdir=gs://BUCKET/RUN [--setup='pip install -e .'] [--dry_run=false]."""

import shlex
import subprocess
import sys

from absl import app, flags

from launch import cli
from scaling_interference import cluster

_TPU_NAME = flags.DEFINE_string("tpu_name", None, "Name of the TPU VM pod.")
_ZONE = flags.DEFINE_string("zone", None, "Zone of the TPU VM pod.")
_PROJECT = flags.DEFINE_string("project", None, "Google Cloud project; default gcloud's.")
_REPO_DIR = flags.DEFINE_string("repo_dir", None, "This repository on every worker; relative to home.")
_CONFIG = flags.DEFINE_string("config", None, "Config path (relative to repo_dir), with an optional :preset.")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir every worker reaches: gs://BUCKET/RUN (needs the [gcs] extra) or a shared file system."
)
_EXTRA = flags.DEFINE_string("extra", "", "More launch.train flags, as shell words.")
_SETUP = flags.DEFINE_string("setup", None, "Shell command each worker runs first in repo_dir.")
_DRY_RUN = flags.DEFINE_bool("dry_run", True, "Only print the command.")
flags.mark_flags_as_required(["tpu_name", "zone", "repo_dir", "config", "workdir"])


def main(argv):
  del argv
  command = cli.run_or_exit(
    cluster.tpu_pod_argv,
    _TPU_NAME.value,
    _ZONE.value,
    _REPO_DIR.value,
    _CONFIG.value,
    _WORKDIR.value,
    _EXTRA.value,
    _SETUP.value,
    _PROJECT.value,
  )
  print(shlex.join(command))
  if not _DRY_RUN.value:
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
  app.run(main)
