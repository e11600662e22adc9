"""Which processes a run has: explicit flags, SLURM, auto-detected clusters, one process; bad input in one line."""
import pytest

from scaling_interference import distributed
from scaling_interference.distributed import DistributedSpec, resolve
from scaling_interference.errors import ConfigError

SLURM = {"SLURM_JOB_NODELIST": "node[01-04]", "SLURM_NTASKS": "4", "SLURM_PROCID": "2"}


def test_explicit_flags():
  spec = resolve("10.0.0.1:1234", 2, 1, env={})
  assert spec == DistributedSpec("10.0.0.1:1234", 2, 1, source="flags")


def test_explicit_flags_win_over_the_environment():
  spec = resolve("10.0.0.1:1234", 2, 0, env={**SLURM, "TPU_WORKER_HOSTNAMES": "a,b"})
  assert spec == DistributedSpec("10.0.0.1:1234", 2, 0, source="flags")


def test_one_flag_overrides_one_slurm_field():
  spec = resolve("10.0.0.1:999", env=SLURM)
  assert (spec.coordinator_address, spec.num_processes, spec.process_id) == ("10.0.0.1:999", 4, 2)


def test_num_processes_one_means_a_single_process_even_under_a_cluster():
  assert resolve(num_processes=1, env=SLURM) is None


def test_partial_flags_outside_slurm_name_what_is_missing():
  with pytest.raises(ConfigError, match=r"go together; missing --num_processes, --process_id$"):
    resolve("10.0.0.1:1234", env={})


def test_no_cluster_is_one_process():
  assert resolve(env={}) is None
  assert resolve(env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOME": "/root"}) is None


@pytest.mark.parametrize("nodelist,coordinator", [
    ("node01", "node01"),
    ("node[01-04]", "node01"),
    ("node[01-04],gpu7", "node01"),
    ("gpu7,node[01-04]", "gpu7"),
    ("node[7,9-10]", "node7"),
    ("rack[2-3]-n[08-09]", "rack2-n08"),
])
def test_slurm_coordinator_is_the_first_node(nodelist, coordinator):
  spec = resolve(env={**SLURM, "SLURM_JOB_NODELIST": nodelist})
  assert spec == DistributedSpec(f"{coordinator}:{distributed.PORT}", 4, 2, source="slurm")


def test_slurm_step_nodelist_wins_inside_a_step():
  spec = resolve(env={**SLURM, "SLURM_STEP_NODELIST": "gpu[3-4]"})
  assert spec.coordinator_address == f"gpu3:{distributed.PORT}"


def test_slurm_with_one_task_is_one_process():
  assert resolve(env={**SLURM, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


@pytest.mark.parametrize("nodelist,hosts", [
    ("node01", ["node01"]),
    ("node[01-04],gpu7", ["node01", "node02", "node03", "node04", "gpu7"]),
    ("node[8-11]", ["node8", "node9", "node10", "node11"]),
    ("node[001,007-008]", ["node001", "node007", "node008"]),
    ("a[1-2]-ib,b3", ["a1-ib", "a2-ib", "b3"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
])
def test_expand_nodelist(nodelist, hosts):
  assert distributed.expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist,message", [
    ("node[01-04", r"must look like 'node\[01-04\],gpu7', got 'node\[01-04'"),
    ("a,,b", r"must look like .*, got 'a,,b'"),
    ("node[4-1]", r"bad range '4-1' in 'node\[4-1\]'"),
    ("node[1-2-3]", r"bad range '1-2-3'"),
])
def test_bad_nodelist(nodelist, message):
  with pytest.raises(ConfigError, match=message):
    distributed.expand_nodelist(nodelist)


def test_bad_slurm_integer_is_named():
  with pytest.raises(ConfigError, match=r"^SLURM_NTASKS must be an integer, got 'four'$"):
    resolve(env={**SLURM, "SLURM_NTASKS": "four"})


@pytest.mark.parametrize("env,source", [
    ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3", "TPU_WORKER_ID": "1"}, "tpu"),
    ({"TPU_PROCESS_ADDRESSES": "t0:8476,t1:8476"}, "tpu"),
    ({"MEGASCALE_COORDINATOR_ADDRESS": "t0"}, "tpu"),
    ({"CLOUD_TPU_TASK_ID": "3"}, "tpu"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "0"}, "kubernetes"),
    ({"JAX_COORDINATOR_ADDRESS": "trainer-0.trainer:1234"}, "kubernetes"),
    ({"OMPI_MCA_orte_hnp_uri": "123.0;tcp://10.0.0.1:5000"}, "mpi"),
    ({distributed.AUTO_ENV: "auto"}, distributed.AUTO_ENV),
])
def test_clusters_jax_detects_itself_are_auto(env, source):
  assert resolve(env=env) == DistributedSpec(auto=True, source=source)


def test_slurm_wins_over_auto_detection():
  assert resolve(env={**SLURM, "JAX_COORDINATOR_ADDRESS": "x:1"}).source == "slurm"


def test_bad_auto_marker():
  with pytest.raises(ConfigError, match=rf"^{distributed.AUTO_ENV} must be 'auto' or unset, got 'yes'$"):
    resolve(env={distributed.AUTO_ENV: "yes"})


@pytest.mark.parametrize("flags,message", [
    (("h:1", 0, 0), r"^--num_processes must be >= 1, got 0$"),
    (("h:1", 2, 2), r"^--process_id must be in \[0, 2\) for --num_processes=2, got 2$"),
    (("h:1", 2, -1), r"^--process_id must be in \[0, 2\) for --num_processes=2, got -1$"),
    (("10.0.0.1", 2, 0), r"^--coordinator_address must be host:port \(e\.g\. 10\.0\.0\.1:\d+\), got '10\.0\.0\.1'$"),
    ((":1234", 2, 0), r"^--coordinator_address must be host:port .*, got ':1234'$"),
    (("h:port", 2, 0), r"^--coordinator_address must be host:port .*, got 'h:port'$"),
    (("h:70000", 2, 0), r"^--coordinator_address must be host:port .*, got 'h:70000'$"),
])
def test_bad_flags_are_named(flags, message):
  with pytest.raises(ConfigError, match=message):
    resolve(*flags, env={})


def test_ipv6_coordinator_is_accepted():
  assert resolve("[::1]:1234", 2, 0, env={}).coordinator_address == "[::1]:1234"


def test_initialize_alone_touches_no_runtime(monkeypatch):
  monkeypatch.setattr(distributed.jax.distributed, "initialize", pytest.fail)
  assert distributed.initialize(None) == (0, 1)
  assert distributed.is_primary()


def test_initialize_passes_an_explicit_spec_with_jax_detection_off(monkeypatch):
  """Else JAX's SLURM detection would show a one-task-per-node process only GPU SLURM_LOCALID."""
  calls = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  distributed.initialize(DistributedSpec("node01:1234", 4, 2, local_device_ids=(0, 1)))
  distributed.initialize(DistributedSpec(auto=True, source="tpu"))
  assert calls == [(("node01:1234", 4, 2), {"local_device_ids": (0, 1), "cluster_detection_method": "deactivate"}),
                   ((), {})]
