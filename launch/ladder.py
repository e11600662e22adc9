"""Prints the OLMo size ladder: python -m launch.ladder [--format=json|table] [--vocab_size=N];
with --plan, what each size costs at a batch: python -m launch.ladder --plan [--batch_size=512]
[--seq_len=2048] [--remat] [--peak_tflops=989] [--mfu=0.4] (the MFU is an assumption until measured)."""

import json

from absl import app, flags

from launch import cli
from scaling_interference.models import ladder

_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output format.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", None, "Vocabulary size; default the ladder's 50,304.")
_PLAN = flags.DEFINE_bool("plan", False, "Print parameters, tokens per step, memory and time per 1B tokens instead.")
_BATCH = flags.DEFINE_integer("batch_size", 512, "--plan: sequences per step (the paper preset's 512).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", ladder.LADDER_SEQ_LEN, "--plan: tokens per sequence.")
_REMAT = flags.DEFINE_bool("remat", False, "--plan: recompute each block in the backward pass.")
_PEAK = flags.DEFINE_float("peak_tflops", ladder.H100_BF16_FLOPS / 1e12, "--plan: the accelerator's peak TFLOP/s.")
_MFU = flags.DEFINE_float("mfu", ladder.ASSUMED_MFU, "--plan: the model FLOPs utilisation to assume.")


def main(argv):
  del argv
  if _PLAN.value:
    rows = cli.run_or_exit(
      ladder.plan_table, _BATCH.value, _SEQ_LEN.value, "bfloat16", _REMAT.value, _PEAK.value * 1e12, _MFU.value
    )
    print(
      json.dumps(rows, indent=2) if _FORMAT.value == "json" else ladder.plan_text(rows, _MFU.value, _PEAK.value * 1e12)
    )
    return
  rows = cli.run_or_exit(ladder.ladder_table, _VOCAB_SIZE.value)
  print(json.dumps(rows, indent=2) if _FORMAT.value == "json" else ladder.table_text(rows))


if __name__ == "__main__":
  app.run(main)
