"""Commands that start one training run as many processes: a TPU pod, a SLURM job, one machine's GPUs.

Pure functions build argv lists and scripts; launch/tpu_pod.py, launch/slurm.py and
launch/local_gpus.py print them and, asked to, run them. Every process runs the same
`launch.train` command; `scaling_interference.distributed` joins them.
"""

import os
import re
import shlex
import subprocess

from scaling_interference import distributed
from scaling_interference.errors import ConfigError


def train_argv(config: str, workdir: str, extra: str = "", python: str = "python3") -> list[str]:
  """`python -m launch.train --config=C --workdir=W EXTRA...`; extra holds more flags as shell words."""
  try:
    extra_words = shlex.split(extra)
  except ValueError as e:
    raise ConfigError(f"--extra must be shell words, got {extra!r} ({e})") from None
  return [python, "-m", "launch.train", f"--config={config}", f"--workdir={workdir}", *extra_words]


def process_flags(address: str, count, index) -> list[str]:
  """The flags that place one process in a run of count, coordinated at address."""
  return [f"--coordinator_address={address}", f"--num_processes={count}", f"--process_id={index}"]


def tpu_pod_argv(
  tpu_name: str,
  zone: str,
  repo_dir: str,
  config: str,
  workdir: str,
  extra: str = "",
  setup: str | None = None,
  project: str | None = None,
) -> list[str]:
  """`gcloud compute tpus tpu-vm ssh` that runs the same training command on every worker.

  The workers find each other through `jax.distributed.initialize()` (GCE metadata), which
  `AUTO_ENV=auto` asks for; setup is shell code run first in repo_dir (e.g. pip install -e .).
  """
  train = f"{distributed.AUTO_ENV}=auto {shlex.join(train_argv(config, workdir, extra))}"
  steps = [f"cd {remote_path(repo_dir)}", *([setup] if setup else []), train]
  project_flag = [f"--project={project}"] if project else []
  return [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "ssh",
    tpu_name,
    f"--zone={zone}",
    *project_flag,
    "--worker=all",
    f"--command={' && '.join(steps)}",
  ]


def remote_path(path: str) -> str:
  """path quoted for a remote shell; a leading ~/ still means that machine's home directory."""
  return "~/" + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


def sbatch_script(
  nodes: int,
  gpus_per_node: int,
  config: str,
  workdir: str,
  extra: str = "",
  job_name: str = "scaling_interference",
  partition: str | None = None,
  time: str | None = None,
  account: str | None = None,
) -> str:
  """A bash script for sbatch: one task per GPU (per node without GPUs), all tasks one JAX run.

  Every task sees its node's GPUs and drives GPU SLURM_LOCALID; `jax.distributed.initialize()`
  finds the coordinator itself (the first node, on a port derived from SLURM_JOB_ID).
  """
  if nodes < 1:
    raise ConfigError(f"--nodes must be >= 1, got {nodes}")
  if gpus_per_node < 0:
    raise ConfigError(f"--gpus_per_node must be >= 0, got {gpus_per_node}")
  lines = [
    "#!/bin/bash",
    *sbatch_directives(nodes, gpus_per_node, job_name, partition, time, account),
    "set -eu",
    "# JAX finds the tasks from SLURM's variables: process 0 coordinates on the first node.",
    f"srun {shlex.join(train_argv(config, workdir, extra))}",
  ]
  return "\n".join(lines) + "\n"


def sbatch_directives(nodes, gpus_per_node, job_name, partition, time, account) -> list[str]:
  """#SBATCH lines for the resources; optional ones only when given."""
  options = {
    "job-name": job_name,
    "nodes": nodes,
    "ntasks-per-node": max(gpus_per_node, 1),
    "gpus-per-node": gpus_per_node or None,
    "partition": partition,
    "time": time,
    "account": account,
  }
  lines = []
  for name, value in options.items():
    if value is not None and not re.fullmatch(r"[\w.:@%+-]+", str(value)):
      raise ConfigError(f"--{name.replace('-', '_')} must be one word (letters, digits, .:@%+-_), got {value!r}")
    if value is not None:
      lines.append(f"#SBATCH --{name}={value}")
  return lines


def sbatch_argv(script_path: str) -> list[str]:
  """The command that submits a written script."""
  return ["sbatch", script_path]


def local_gpu_processes(
  config: str, workdir: str, processes: int = 1, extra: str = "", python: str = "python3", port: int = distributed.PORT
):
  """(environment, argv) per process: one that sees every GPU, or one per GPU joined at 127.0.0.1:port."""
  if processes < 1:
    raise ConfigError(f"--processes must be >= 1, got {processes}")
  train = train_argv(config, workdir, extra, python)
  if processes == 1:
    return [({}, train)]
  return [
    ({"CUDA_VISIBLE_DEVICES": str(index)}, train + process_flags(f"127.0.0.1:{port}", processes, index))
    for index in range(processes)
  ]


def shell_text(processes) -> str:
  """Processes as shell lines; several run in the background, then `wait`."""
  lines = [
    " ".join([*(f"{name}={shlex.quote(value)}" for name, value in env.items()), shlex.join(argv)])
    for env, argv in processes
  ]
  if len(lines) > 1:
    lines = [line + " &" for line in lines] + ["wait"]
  return "\n".join(lines)


def run_processes(processes, environ=os.environ) -> int:
  """Starts every process at once, waits for all; the first nonzero exit code, else 0."""
  children = [subprocess.Popen(argv, env={**environ, **env}) for env, argv in processes]
  codes = [child.wait() for child in children]
  return next((code for code in codes if code), 0)
