"""Trains (or resumes) a sweep: python -m launch.train --config=configs/NAME.py[:preset] --workdir=DIR."""
from absl import app, flags
from ml_collections import config_flags

from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, with an optional :preset.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from scaling_interference import train
  result = cli.run_or_exit(train, _CONFIG.value, _WORKDIR.value)
  if result.preempted_by:
    print(f"stopped by {result.preempted_by} at step {result.step} after saving a checkpoint; "
          "run the same command to resume")
  else:
    print(f"trained {len(result.members)} members to step {result.step}; workdir: {result.workdir}")


if __name__ == "__main__":
  app.run(main)
