"""Writes TensorBoard event files for an existing workdir from its metrics:
python -m analysis.export_tensorboard --workdir=DIR [--out=FOLDER] (default FOLDER: DIR, files in DIR/tensorboard)."""

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by launch.train.")
_OUT = flags.DEFINE_string("out", None, "Folder to write tensorboard/ into; default: the workdir.")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  import scaling_interference as si  # pylint: disable=g-import-not-at-top
  from launch import cli  # pylint: disable=g-import-not-at-top
  from scaling_interference import storage  # pylint: disable=g-import-not-at-top
  from scaling_interference.sweep import tensorboard  # pylint: disable=g-import-not-at-top

  run = cli.run_or_exit(si.load_run, _WORKDIR.value)
  out = None if _OUT.value is None else cli.run_or_exit(storage.as_path, _OUT.value, "--out")
  folder = cli.run_or_exit(tensorboard.export_metrics, run, out)  # a full disk: one line, exit 4
  print(f"event files of {len(run.members)} members in {folder}; tensorboard --logdir={folder}")


if __name__ == "__main__":
  app.run(main)
