"""Runs one training run on this machine's GPUs: python -m launch.local_gpus --config=configs/NAME.py
--workdir=DIR [--processes=N] [--dry_run=false]. One process sees every GPU, or N processes one GPU each."""

import sys

from absl import app, flags

from launch import cli
from scaling_interference import cluster, distributed

_CONFIG = flags.DEFINE_string("config", None, "Config path, with an optional :preset.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of the run.")
_PROCESSES = flags.DEFINE_integer("processes", 1, "1: one process sees every GPU; N: one per GPU 0..N-1.")
_PORT = flags.DEFINE_integer("port", distributed.PORT, "Coordinator port on 127.0.0.1 when processes > 1.")
_EXTRA = flags.DEFINE_string("extra", "", "More launch.train flags, as shell words.")
_DRY_RUN = flags.DEFINE_bool("dry_run", True, "Only print the commands.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  processes = cli.run_or_exit(
    cluster.local_gpu_processes,
    _CONFIG.value,
    _WORKDIR.value,
    _PROCESSES.value,
    _EXTRA.value,
    sys.executable,
    _PORT.value,
  )
  print(cluster.shell_text(processes))
  if not _DRY_RUN.value:
    sys.exit(cluster.run_processes(processes))


if __name__ == "__main__":
  app.run(main)
