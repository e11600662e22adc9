"""Writes and submits a SLURM job of N nodes x G GPUs, one task per GPU, running one run:

python -m launch.slurm --nodes=N --gpus_per_node=G --config=configs/NAME.py --workdir=DIR
    [--partition=P] [--time=HH:MM:SS] [--dry_run=false]
"""

import shlex
import shutil
import subprocess
import sys

from absl import app, flags

from launch import cli
from scaling_interference import cluster

_NODES = flags.DEFINE_integer("nodes", 1, "Nodes.")
_GPUS_PER_NODE = flags.DEFINE_integer(
  "gpus_per_node", 0, "GPUs per node, one process each; 0: none, one process per node."
)
_PARTITION = flags.DEFINE_string("partition", None, "SLURM partition; default the cluster's.")
_TIME = flags.DEFINE_string("time", None, "Time limit, e.g. 24:00:00; default the partition's.")
_ACCOUNT = flags.DEFINE_string("account", None, "SLURM account to charge.")
_JOB_NAME = flags.DEFINE_string("job_name", "scaling_interference", "SLURM job name.")
_OUTPUT = flags.DEFINE_string("output", "train.sbatch", "Where to write the script.")
_CONFIG = flags.DEFINE_string("config", None, "Config path, with an optional :preset.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir on a file system every node shares.")
_EXTRA = flags.DEFINE_string("extra", "", "More launch.train flags, as shell words.")
_DRY_RUN = flags.DEFINE_bool("dry_run", True, "Only print the script and the sbatch command.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  script = cli.run_or_exit(
    cluster.sbatch_script,
    _NODES.value,
    _GPUS_PER_NODE.value,
    _CONFIG.value,
    _WORKDIR.value,
    _EXTRA.value,
    _JOB_NAME.value,
    _PARTITION.value,
    _TIME.value,
    _ACCOUNT.value,
  )
  submit = shlex.join(cluster.sbatch_argv(_OUTPUT.value))
  if _DRY_RUN.value:
    print(f"{script}\n# write it to {_OUTPUT.value}, then: {submit}")
    return
  with open(_OUTPUT.value, "w") as f:
    f.write(script)
  if not shutil.which("sbatch"):
    print(f"wrote {_OUTPUT.value}; sbatch is not on PATH here: submit it on the cluster with {submit}")
    return
  sys.exit(subprocess.run(cluster.sbatch_argv(_OUTPUT.value)).returncode)


if __name__ == "__main__":
  app.run(main)
