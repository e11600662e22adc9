"""Trains (or resumes) a sweep: python -m launch.train --config=configs/NAME.py[:preset] --workdir=DIR."""

import gc
import sys

from absl import app, flags
from ml_collections import config_flags

from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, with an optional :preset.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 in a run of many processes.")
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes in the run; default: detected (SLURM, TPU, k8s) or 1."
)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from scaling_interference import distributed, train

  spec = cli.run_or_exit(distributed.resolve, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  distributed.initialize(spec)  # before anything touches a device
  result = cli.run_or_exit(train, _CONFIG.value, _WORKDIR.value)
  gc.freeze()  # the interpreter's exit then skips collecting the run's objects (a second on a large sweep)
  if not distributed.is_primary():
    return
  if result.preempted_by:
    print(
      f"stopped by {result.preempted_by} at step {result.step} after saving a checkpoint; "
      "run the same command to resume"
    )
  else:
    print(f"trained {len(result.members)} members to step {result.step}; workdir: {result.workdir}")


if __name__ == "__main__":
  cli.check_config_argument(sys.argv)
  app.run(main)
