"""Prints the OLMo size ladder: python -m launch.ladder [--format=json|table] [--vocab_size=N]."""
import json

from absl import app, flags

from launch import cli
from scaling_interference.models import ladder

_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output format.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", None, "Vocabulary size; default the ladder's 50,304.")


def main(argv):
  del argv
  rows = cli.run_or_exit(ladder.ladder_table, _VOCAB_SIZE.value)
  print(json.dumps(rows, indent=2) if _FORMAT.value == "json" else ladder.table_text(rows))


if __name__ == "__main__":
  app.run(main)
