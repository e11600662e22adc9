"""The analysis report of one or more workdirs (tables, figures, index.html with the study's claims):

python -m analysis.run --workdir=DIR [--workdir=DIR2 ...] --out=OUT [--steps=all|last] [--skip=probes,...]
    [--replay_events=3] [--replay_steps=200] [--replay_after=0] [--replay_classes=class|task]
"""

from absl import app, flags

from launch import cli

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "Workdirs written by launch.train (repeat the flag for several).")
_OUT = flags.DEFINE_string("out", None, "Output folder: tables/, figures/, cache/, index.html.")
_STEPS = flags.DEFINE_enum("steps", "all", ["all", "last"], "Checkpoint steps of the per-step tables.")
_SKIP = flags.DEFINE_list("skip", [], "Tables not to compute, e.g. probes,neurons.")
_REPLAY_EVENTS = flags.DEFINE_integer("replay_events", 3, "Replay windows after the first N events of each schedule.")
_REPLAY_STEPS = flags.DEFINE_integer("replay_steps", 200, "Longest replay window, in training steps.")
_REPLAY_AFTER = flags.DEFINE_integer("replay_after", 0, "Replay the events at or after this training step.")
_REPLAY_CLASSES = flags.DEFINE_enum(
  "replay_classes",
  "class",
  ["class", "task"],
  "Split the replayed update by class (injected, common, other) or by task.",
)
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  del argv
  from scaling_interference.analysis import report

  options = {
    "replay": dict(
      events=_REPLAY_EVENTS.value, max_steps=_REPLAY_STEPS.value, after=_REPLAY_AFTER.value, by=_REPLAY_CLASSES.value
    )
  }
  result = cli.run_or_exit(report.build, _WORKDIR.value, _OUT.value, _STEPS.value, _SKIP.value, options)
  print(
    f"{len(result.computed)} jobs computed ({len(result.failed)} failed), {len(result.cached)} from the cache, "
    f"{result.seconds:.1f}s"
  )
  if result.table_seconds:
    print("computing time per table: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.table_seconds.items()))
  for note in result.notes:
    print("note:", note)
  print(f"report: {result.index}")


if __name__ == "__main__":
  app.run(main)
