"""Prints the first batches of a config: python -m launch.preview_data --config=configs/NAME.py[:preset] [--steps=N]."""

import sys

from absl import app, flags
from ml_collections import config_flags

from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, with an optional :preset.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 3, "How many batches to show.")
_EXAMPLES = flags.DEFINE_integer("examples", 4, "Examples shown per batch (injected ones first).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  from scaling_interference.problems import preview

  print(cli.run_or_exit(preview.preview, _CONFIG.value, _STEPS.value, _EXAMPLES.value))


if __name__ == "__main__":
  cli.check_config_argument(sys.argv)
  app.run(main)
