"""Prints which tasks each width learned: python -m analysis.summary --workdir=DIR [--step=N]."""

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by launch.train.")
_STEP = flags.DEFINE_integer("step", None, "Eval step to show (default: the last).")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  import scaling_interference as si
  from launch import cli
  from scaling_interference.analysis import learned

  run = cli.run_or_exit(si.load_run, _WORKDIR.value)
  print(learned.render(run, _STEP.value))


if __name__ == "__main__":
  app.run(main)
