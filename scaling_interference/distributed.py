"""Many hosts, one program: which processes join, who coordinates, which one this is.

`resolve` finds the processes of a run; `initialize` joins them through JAX's own
multi-host runtime (`jax.distributed.initialize`). Explicit flags win; otherwise the
environment decides:

- SLURM (`SLURM_JOB_NODELIST` or, inside a step, `SLURM_STEP_NODELIST`; `SLURM_NTASKS`;
  `SLURM_PROCID`): the coordinator is the first host of the node list, on `PORT`.
- Environments `jax.distributed.initialize()` detects by itself (the spec is `auto`):
  TPU pods (`TPU_WORKER_HOSTNAMES`, `TPU_PROCESS_ADDRESSES`, `MEGASCALE_COORDINATOR_ADDRESS`,
  `CLOUD_TPU_TASK_ID`); Kubernetes (`JAX_COORDINATOR_ADDRESS`, or `KUBERNETES_SERVICE_HOST`
  with `JOB_COMPLETION_INDEX` as in an Indexed Job or a JobSet; JAX needs `jax[k8s]`); Open MPI
  (`OMPI_MCA_orte_hnp_uri`); and `AUTO_ENV=auto`, which `launch/tpu_pod.py` sets because a
  TPU VM pod names its workers in GCE metadata, not in the environment.
- Anything else, a one-task SLURM job, or `--num_processes=1` alone: one process (None).
"""
import dataclasses
import logging
import os
import re

import jax

from scaling_interference.errors import ConfigError

PORT = 12355
AUTO_ENV = "SCALING_INTERFERENCE_DISTRIBUTED"
FIELDS = ("coordinator_address", "num_processes", "process_id")
AUTO_VARS = (
    ("tpu", ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS",
             "CLOUD_TPU_TASK_ID")),
    ("kubernetes", ("JAX_COORDINATOR_ADDRESS",)),
    ("mpi", ("OMPI_MCA_orte_hnp_uri",)),
)


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
  """The processes of one run; `auto` leaves all of it to `jax.distributed.initialize()`."""
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  auto: bool = False
  source: str = "flags"


def resolve(coordinator_address=None, num_processes=None, process_id=None, env=os.environ):
  """The run's processes from flags, else from the cluster's environment; None for one process."""
  given = {name: value for name, value in zip(FIELDS, (coordinator_address, num_processes, process_id))
           if value is not None}
  if given == {"num_processes": 1}:
    return None
  detected = from_env(env)
  if not given:
    return detected
  if detected is not None and not detected.auto:
    return validate(dataclasses.replace(detected, source="flags", **given))
  missing = [f"--{name}" for name in FIELDS if name not in given]
  if missing:
    raise ConfigError(f"--coordinator_address, --num_processes and --process_id go together; "
                      f"missing {', '.join(missing)}")
  return validate(DistributedSpec(**given))


def from_env(env) -> DistributedSpec | None:
  """The spec a cluster's environment variables describe, or None."""
  slurm = from_slurm(env)
  if slurm is not None:
    return slurm
  for source, names in AUTO_VARS:
    if any(env.get(name) for name in names):
      return DistributedSpec(auto=True, source=source)
  if env.get("KUBERNETES_SERVICE_HOST") and env.get("JOB_COMPLETION_INDEX"):
    return DistributedSpec(auto=True, source="kubernetes")
  if env.get(AUTO_ENV):
    if env[AUTO_ENV] != "auto":
      raise ConfigError(f"{AUTO_ENV} must be 'auto' or unset, got {env[AUTO_ENV]!r}")
    return DistributedSpec(auto=True, source=AUTO_ENV)
  return None


def from_slurm(env) -> DistributedSpec | None:
  """A SLURM step's processes, coordinated by its first node on PORT; None outside one or for one task."""
  nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
  if not nodelist or "SLURM_NTASKS" not in env or "SLURM_PROCID" not in env:
    return None
  num_processes = env_int(env, "SLURM_NTASKS")
  if num_processes == 1:
    return None
  host = expand_nodelist(nodelist)[0]
  return validate(DistributedSpec(f"{host}:{PORT}", num_processes, env_int(env, "SLURM_PROCID"),
                                  source="slurm"))


def env_int(env, name: str) -> int:
  """An integer environment variable, or a ConfigError naming it."""
  try:
    return int(env[name])
  except ValueError:
    raise ConfigError(f"{name} must be an integer, got {env[name]!r}") from None


def expand_nodelist(nodelist: str) -> list[str]:
  """SLURM's compact host list as host names: 'node[01-03,07],gpu7' -> node01 node02 node03 node07 gpu7."""
  names = re.split(r",(?![^\[]*\])", nodelist)
  if not all(re.fullmatch(r"(?:[^\[\],]+|\[[0-9,\-]+\])+", name) for name in names):
    raise ConfigError(f"SLURM node list must look like 'node[01-04],gpu7', got {nodelist!r}")
  return [host for name in names for host in expand_name(name)]


def expand_name(name: str) -> list[str]:
  """One entry of a node list, brackets expanded left to right: 'r[1-2]n[1-2]' -> r1n1 r1n2 r2n1 r2n2."""
  head, bracket, rest = name.partition("[")
  if not bracket:
    return [name]
  ranges, _, tail = rest.partition("]")
  return [head + number + host for number in expand_ranges(ranges, name) for host in expand_name(tail)]


def expand_ranges(ranges: str, name: str) -> list[str]:
  """'01-03,7' -> 01 02 03 7: numbers keep the width of their range's first bound."""
  numbers = []
  for part in ranges.split(","):
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
    if not match or int(match[2] or match[1]) < int(match[1]):
      raise ConfigError(f"SLURM node list has a bad range {part!r} in {name!r}")
    low, high = match[1], match[2] or match[1]
    numbers += [str(i).zfill(len(low)) for i in range(int(low), int(high) + 1)]
  return numbers


def validate(spec: DistributedSpec) -> DistributedSpec:
  """spec, or a ConfigError naming the first field that cannot describe a run."""
  if spec.num_processes < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {spec.num_processes}")
  if not 0 <= spec.process_id < spec.num_processes:
    raise ConfigError(f"--process_id must be in [0, {spec.num_processes}) for "
                      f"--num_processes={spec.num_processes}, got {spec.process_id}")
  host, colon, port = spec.coordinator_address.rpartition(":")
  if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
    raise ConfigError(f"--coordinator_address must be host:port (e.g. 10.0.0.1:{PORT}), "
                      f"got {spec.coordinator_address!r}")
  return spec


def initialize(spec: DistributedSpec | None) -> tuple[int, int]:
  """Joins spec's processes (None: runs alone); returns (process_index, process_count).

  Call it before anything touches a device. An explicit spec turns JAX's own cluster
  detection off: under SLURM it would otherwise show each task only the GPU numbered
  SLURM_LOCALID, hiding the others from a one-task-per-node run.
  """
  if spec is not None and spec.auto:
    jax.distributed.initialize()
  elif spec is not None:
    jax.distributed.initialize(spec.coordinator_address, spec.num_processes, spec.process_id,
                               local_device_ids=spec.local_device_ids,
                               cluster_detection_method="deactivate")
  if not is_primary():  # progress lines come from process 0; warnings and errors from every process
    logging.getLogger("scaling_interference").setLevel(logging.WARNING)
  return jax.process_index(), jax.process_count()


def is_primary() -> bool:
  """Whether this is process 0, the one that writes shared files and prints."""
  return jax.process_index() == 0
