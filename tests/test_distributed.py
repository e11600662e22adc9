"""Which processes a run has: explicit flags, SLURM, auto-detected clusters, one process; bad input in one line."""

import jax
import pytest

from scaling_interference import distributed
from scaling_interference.distributed import DistributedSpec, resolve
from scaling_interference.errors import ConfigError

SLURM = {
  "SLURM_JOB_ID": "4242",
  "SLURM_STEP_NODELIST": "node[01-04]",
  "SLURM_NTASKS": "4",
  "SLURM_PROCID": "2",
  "SLURM_LOCALID": "0",
  "SLURM_STEP_NUM_NODES": "4",
}  # what JAX's SlurmCluster reads, inside an srun step


def test_explicit_flags():
  spec = resolve("10.0.0.1:1234", 2, 1, env={})
  assert spec == DistributedSpec("10.0.0.1:1234", 2, 1, source="flags")


def test_explicit_flags_win_over_the_environment():
  spec = resolve("10.0.0.1:1234", 2, 0, env={**SLURM, "TPU_WORKER_HOSTNAMES": "a,b"})
  assert spec == DistributedSpec("10.0.0.1:1234", 2, 0, source="flags")


def test_one_flag_under_slurm_leaves_the_rest_to_jax():
  spec = resolve("10.0.0.1:999", env=SLURM)
  assert spec == DistributedSpec("10.0.0.1:999", local_device_ids=(), auto=True, source="slurm")


def test_num_processes_one_means_a_single_process_even_under_a_cluster():
  assert resolve(num_processes=1, env=SLURM) is None


def test_partial_flags_outside_a_cluster_name_what_is_missing():
  with pytest.raises(ConfigError, match=r"go together outside a cluster; missing --num_processes, --process_id$"):
    resolve("10.0.0.1:1234", env={})


def test_no_cluster_is_one_process():
  assert resolve(env={}) is None
  assert resolve(env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOME": "/root"}) is None


def test_slurm_one_task_per_node_drives_every_gpu_it_sees():
  """JAX's coordinator (first node, port from SLURM_JOB_ID) and ranks; () keeps JAX from hiding GPUs 1.."""
  assert resolve(env=SLURM) == DistributedSpec(local_device_ids=(), auto=True, source="slurm")


@pytest.mark.parametrize("nodes", [{"SLURM_STEP_NUM_NODES": "2"}, {"SLURM_NNODES": "1"}, {}])
def test_slurm_tasks_sharing_a_node_drive_one_gpu_each(nodes):
  env = {key: value for key, value in SLURM.items() if key != "SLURM_STEP_NUM_NODES"}
  spec = resolve(env={**env, **nodes, "SLURM_LOCALID": "3"})
  assert spec == DistributedSpec(local_device_ids=(3,), auto=True, source="slurm")


def test_slurm_gpus_bound_per_task_are_all_the_task_drives():
  """--gpus-per-task: SLURM shows each task only its own GPUs, so GPU SLURM_LOCALID may not exist."""
  spec = resolve(env={**SLURM, "SLURM_STEP_NUM_NODES": "1", "SLURM_LOCALID": "3", "SLURM_GPUS_PER_TASK": "1"})
  assert spec.local_device_ids == ()


def test_slurm_with_one_task_is_one_process():
  assert resolve(env={**SLURM, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


@pytest.mark.parametrize("missing", ["SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_LOCALID"])
def test_slurm_outside_a_step_is_not_detected(missing):
  """A batch script's own shell, say: JAX would not detect it, so neither do we."""
  assert resolve(env={k: v for k, v in SLURM.items() if k != missing}) is None


def test_bad_slurm_integer_is_named():
  with pytest.raises(ConfigError, match=r"^SLURM_NTASKS must be an integer, got 'four'$"):
    resolve(env={**SLURM, "SLURM_NTASKS": "four"})


@pytest.mark.parametrize(
  "env,source",
  [
    ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3", "TPU_WORKER_ID": "1"}, "tpu"),
    ({"TPU_PROCESS_ADDRESSES": "t0:8476,t1:8476"}, "tpu"),
    ({"MEGASCALE_COORDINATOR_ADDRESS": "t0"}, "tpu"),
    ({"CLOUD_TPU_TASK_ID": "3"}, "tpu"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "0"}, "kubernetes"),
    ({"JAX_COORDINATOR_ADDRESS": "trainer-0.trainer:1234"}, "kubernetes"),
    ({"OMPI_MCA_orte_hnp_uri": "123.0;tcp://10.0.0.1:5000"}, "mpi"),
    ({distributed.AUTO_ENV: "auto"}, distributed.AUTO_ENV),
  ],
)
def test_clusters_jax_detects_itself_are_auto(env, source):
  assert resolve(env=env) == DistributedSpec(auto=True, source=source)


def test_slurm_wins_over_auto_detection():
  assert resolve(env={**SLURM, "JAX_COORDINATOR_ADDRESS": "x:1"}).source == "slurm"


def test_bad_auto_marker():
  with pytest.raises(ConfigError, match=rf"^{distributed.AUTO_ENV} must be 'auto' or unset, got 'yes'$"):
    resolve(env={distributed.AUTO_ENV: "yes"})


@pytest.mark.parametrize(
  "flags,message",
  [
    (("h:1", 0, 0), r"^--num_processes must be >= 1, got 0$"),
    (("h:1", 2, 2), r"^--process_id must be in \[0, 2\) for --num_processes=2, got 2$"),
    (("h:1", 2, -1), r"^--process_id must be in \[0, 2\) for --num_processes=2, got -1$"),
    (("10.0.0.1", 2, 0), r"^--coordinator_address must be host:port \(e\.g\. 10\.0\.0\.1:\d+\), got '10\.0\.0\.1'$"),
    ((":1234", 2, 0), r"^--coordinator_address must be host:port .*, got ':1234'$"),
    (("h:port", 2, 0), r"^--coordinator_address must be host:port .*, got 'h:port'$"),
    (("h:70000", 2, 0), r"^--coordinator_address must be host:port .*, got 'h:70000'$"),
  ],
)
def test_bad_flags_are_named(flags, message):
  with pytest.raises(ConfigError, match=message):
    resolve(*flags, env={})


def test_ipv6_coordinator_is_accepted():
  assert resolve("[::1]:1234", 2, 0, env={}).coordinator_address == "[::1]:1234"


def test_initialize_alone_touches_no_runtime(monkeypatch):
  monkeypatch.setattr(jax.distributed, "initialize", pytest.fail)
  assert distributed.initialize(None) == (0, 1)
  assert distributed.is_primary()


def test_initialize_turns_jax_detection_off_only_for_an_explicit_spec(monkeypatch):
  """Else JAX's SLURM detection would show an explicit process only GPU SLURM_LOCALID."""
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  distributed.initialize(DistributedSpec("node01:1234", 4, 2, local_device_ids=(0, 1)))
  distributed.initialize(DistributedSpec(local_device_ids=(), auto=True, source="slurm"))
  assert calls == [
    (("node01:1234", 4, 2), {"local_device_ids": (0, 1), "cluster_detection_method": "deactivate"}),
    ((None, None, None), {"local_device_ids": (), "cluster_detection_method": None}),
  ]
