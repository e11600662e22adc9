"""Many hosts, one program: which processes join, who coordinates, which one this is.

`resolve` finds the processes of a run; `initialize` joins them through JAX's own
multi-host runtime (`jax.distributed.initialize`). All three flags win and turn JAX's
cluster detection off; otherwise the environment decides, and JAX fills in what flags leave out:

- SLURM, as JAX detects it (`SLURM_JOB_ID`, `SLURM_STEP_NODELIST`, `SLURM_NTASKS`, `SLURM_PROCID`,
  `SLURM_LOCALID`: inside an `srun` step): JAX coordinates on the step's first node, on a port
  derived from `SLURM_JOB_ID` (`JAX_COORDINATOR_PORT` overrides it). When a node runs several
  tasks, they share its GPUs one each (task `SLURM_LOCALID` drives GPU `SLURM_LOCALID`);
  one task per node, or GPUs SLURM binds to each task (`--gpus-per-task`), leave a task every
  GPU it sees.
- Environments `jax.distributed.initialize()` detects by itself (the spec is `auto`):
  TPU pods (`TPU_WORKER_HOSTNAMES`, `TPU_PROCESS_ADDRESSES`, `MEGASCALE_COORDINATOR_ADDRESS`,
  `CLOUD_TPU_TASK_ID`); Kubernetes (`JAX_COORDINATOR_ADDRESS`, or `KUBERNETES_SERVICE_HOST`
  with `JOB_COMPLETION_INDEX` as in an Indexed Job or a JobSet; JAX needs `jax[k8s]`); Open MPI
  (`OMPI_MCA_orte_hnp_uri`); and `AUTO_ENV=auto`, which `launch/tpu_pod.py` sets because a
  TPU VM pod names its workers in GCE metadata, not in the environment.
- Anything else, a one-task SLURM step, or `--num_processes=1` alone: one process (None).
"""

import dataclasses
import logging
import os

from scaling_interference.errors import ConfigError

PORT = 12355  # the coordinator's port on 127.0.0.1 for launch/local_gpus.py
AUTO_ENV = "SCALING_INTERFERENCE_DISTRIBUTED"
FIELDS = ("coordinator_address", "num_processes", "process_id")
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
AUTO_VARS = (
  ("tpu", ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS", "CLOUD_TPU_TASK_ID")),
  ("kubernetes", ("JAX_COORDINATOR_ADDRESS",)),
  ("mpi", ("OMPI_MCA_orte_hnp_uri",)),
)


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
  """The processes of one run; `auto` lets `jax.distributed.initialize()` detect the fields left None.

  local_device_ids: the GPUs this process drives, numbered among those it sees; () for all of them.
  """

  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  auto: bool = False
  source: str = "flags"


def resolve(coordinator_address=None, num_processes=None, process_id=None, env=os.environ):
  """The run's processes from flags, else from the cluster's environment; None for one process."""
  given = {
    name: value
    for name, value in zip(FIELDS, (coordinator_address, num_processes, process_id), strict=True)
    if value is not None
  }
  if given == {"num_processes": 1}:
    return None
  if len(given) == len(FIELDS):
    return validate(DistributedSpec(**given))
  detected = from_env(env)
  if not given:
    return detected
  if detected is None:
    missing = [f"--{name}" for name in FIELDS if name not in given]
    raise ConfigError(
      f"--coordinator_address, --num_processes and --process_id go together outside a "
      f"cluster; missing {', '.join(missing)}"
    )
  return validate(dataclasses.replace(detected, **given))


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
  """A SLURM step of several tasks, left to JAX but for the GPUs each task drives; None outside one or for one task."""
  if not all(name in env for name in SLURM_VARS):
    return None
  tasks = env_int(env, "SLURM_NTASKS")
  if tasks == 1:
    return None
  nodes = env_int(env, "SLURM_STEP_NUM_NODES" if "SLURM_STEP_NUM_NODES" in env else "SLURM_NNODES", "1")
  shared = tasks > nodes and "SLURM_GPUS_PER_TASK" not in env  # the node's tasks share its GPUs
  return DistributedSpec(local_device_ids=(env_int(env, "SLURM_LOCALID"),) if shared else (), auto=True, source="slurm")


def env_int(env, name: str, default: str | None = None) -> int:
  """An integer environment variable (default when unset), or a ConfigError naming it."""
  value = env.get(name, default)
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def validate(spec: DistributedSpec) -> DistributedSpec:
  """spec, or a ConfigError naming the first given field that cannot describe a run."""
  count, index, address = spec.num_processes, spec.process_id, spec.coordinator_address
  if count is not None and count < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {count}")
  if None not in (count, index) and not 0 <= index < count:
    raise ConfigError(f"--process_id must be in [0, {count}) for --num_processes={count}, got {index}")
  host, colon, port = (address or "").rpartition(":")
  if address is not None and not (colon and host and port.isdigit() and 0 < int(port) < 65536):
    raise ConfigError(f"--coordinator_address must be host:port (e.g. 10.0.0.1:{PORT}), got {address!r}")
  return spec


def initialize(spec: DistributedSpec | None) -> tuple[int, int]:
  """Joins spec's processes (None: runs alone); returns (process_index, process_count).

  Call it before anything touches a device. An `auto` spec lets JAX detect the fields it
  leaves None; an explicit one turns JAX's detection off, which under SLURM would otherwise
  show each process only the GPU numbered SLURM_LOCALID.
  """
  import jax  # here, not at the top: the launchers read this module's constants and print commands without jax

  if spec is not None:
    jax.distributed.initialize(
      spec.coordinator_address,
      spec.num_processes,
      spec.process_id,
      local_device_ids=spec.local_device_ids,
      cluster_detection_method=None if spec.auto else "deactivate",
    )
  if not is_primary():  # progress lines come from process 0; warnings and errors from every process
    logging.getLogger("scaling_interference").setLevel(logging.WARNING)
  return jax.process_index(), jax.process_count()


def is_primary() -> bool:
  """Whether this is process 0, the one that writes shared files and prints."""
  import jax

  return jax.process_index() == 0
