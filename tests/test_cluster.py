"""Cluster launch commands: quoted right, valid bash, the same training command on every process."""

import os
import shlex
import stat
import subprocess
import sys

import pytest

from scaling_interference import cluster, distributed
from scaling_interference.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ODD_CONFIG = "configs/my runs/it's.py:demo"
TRAIN = ["python3", "-m", "launch.train", "--config=configs/regression.py:demo", "--workdir=gs://b/run"]


def test_train_argv_splits_extra_flags_as_shell_words():
  extra = "--config.train.steps=10 '--config.x=(0, 1)'"
  argv = cluster.train_argv("configs/regression.py:demo", "gs://b/run", extra)
  assert argv == TRAIN + ["--config.train.steps=10", "--config.x=(0, 1)"]


def test_bad_extra_is_named():
  with pytest.raises(ConfigError, match=r"^--extra must be shell words, got \"--a='1\""):
    cluster.train_argv("c.py", "w", "--a='1")


def test_tpu_pod_command():
  argv = cluster.tpu_pod_argv(
    "pod", "us-central2-b", "scaling_interference", "configs/regression.py:demo", "gs://b/run"
  )
  assert argv == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "ssh",
    "pod",
    "--zone=us-central2-b",
    "--worker=all",
    "--command=cd scaling_interference && SCALING_INTERFERENCE_DISTRIBUTED=auto " + shlex.join(TRAIN),
  ]


def test_tpu_pod_command_with_project_setup_and_odd_paths():
  argv = cluster.tpu_pod_argv(
    "pod", "z", "~/my repo", ODD_CONFIG, "gs://b/run", "--config.seed=3", setup="pip install -e .", project="proj"
  )
  assert argv[6:9] == ["--zone=z", "--project=proj", "--worker=all"]
  remote = argv[-1].removeprefix("--command=")
  cd, setup, train = remote.split(" && ")
  assert (cd, setup) == ("cd ~/'my repo'", "pip install -e .")
  assert shlex.split(train) == [
    f"{distributed.AUTO_ENV}=auto",
    "python3",
    "-m",
    "launch.train",
    f"--config={ODD_CONFIG}",
    "--workdir=gs://b/run",
    "--config.seed=3",
  ]
  assert shlex.split(shlex.join(argv)) == argv


def run_script(script, tmp_path):
  """Runs script with a fake srun (runs its command once) and python3 that prints its argv."""
  fake = {"srun": 'exec "$@"', "python3": 'printf "%s\\n" "$@"'}
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, body in fake.items():
    (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
    (bin_dir / name).chmod(stat.S_IRWXU)
  path = tmp_path / "job.sbatch"
  path.write_text(script)
  env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
  return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, check=True).stdout


def test_sbatch_script_is_valid_bash_and_leaves_the_processes_to_jax(tmp_path):
  script = cluster.sbatch_script(
    2, 8, ODD_CONFIG, "/shared/runs/r1", "--config.seed=3", partition="gpu", time="24:00:00", account="lab"
  )
  path = tmp_path / "check.sbatch"
  path.write_text(script)
  subprocess.run(["bash", "-n", str(path)], check=True)
  argv = run_script(script, tmp_path).splitlines()
  assert argv == ["-m", "launch.train", f"--config={ODD_CONFIG}", "--workdir=/shared/runs/r1", "--config.seed=3"]


def test_sbatch_script_runs_one_task_per_gpu():
  lines = cluster.sbatch_script(4, 8, "c.py", "/w", partition="gpu", time="2:00:00", account="lab").splitlines()
  assert lines[:8] == [
    "#!/bin/bash",
    "#SBATCH --job-name=scaling_interference",
    "#SBATCH --nodes=4",
    "#SBATCH --ntasks-per-node=8",
    "#SBATCH --gpus-per-node=8",
    "#SBATCH --partition=gpu",
    "#SBATCH --time=2:00:00",
    "#SBATCH --account=lab",
  ]
  assert lines[-1] == "srun python3 -m launch.train --config=c.py --workdir=/w"


def test_sbatch_script_without_gpus_runs_one_task_per_node():
  assert "#SBATCH --ntasks-per-node=1" in cluster.sbatch_script(3, 0, "c.py", "/w").splitlines()


def test_sbatch_script_leaves_out_what_is_not_asked_for():
  script = cluster.sbatch_script(1, 0, "c.py", "/w")
  for absent in ("--gpus-per-node", "--partition", "--time", "--account"):
    assert absent not in script


@pytest.mark.parametrize(
  "kwargs,message",
  [
    (dict(nodes=0), r"^--nodes must be >= 1, got 0$"),
    (dict(gpus_per_node=-1), r"^--gpus_per_node must be >= 0, got -1$"),
    (dict(job_name="my job"), r"^--job_name must be one word .*, got 'my job'$"),
    (dict(time="1:00\n#SBATCH --x"), r"^--time must be one word"),
  ],
)
def test_bad_sbatch_input_is_named(kwargs, message):
  args = {**dict(nodes=1, gpus_per_node=1, config="c.py", workdir="/w"), **kwargs}
  with pytest.raises(ConfigError, match=message):
    cluster.sbatch_script(**args)


def test_one_process_sees_every_gpu():
  processes = cluster.local_gpu_processes("c.py", "runs/r")
  assert processes == [({}, ["python3", "-m", "launch.train", "--config=c.py", "--workdir=runs/r"])]
  assert cluster.shell_text(processes) == "python3 -m launch.train --config=c.py --workdir=runs/r"


def test_one_process_per_gpu():
  text = cluster.shell_text(cluster.local_gpu_processes("c.py", "runs/r", processes=2, port=4321))
  assert text.splitlines() == [
    f"CUDA_VISIBLE_DEVICES={i} python3 -m launch.train --config=c.py --workdir=runs/r "
    f"--coordinator_address=127.0.0.1:4321 --num_processes=2 --process_id={i} &"
    for i in range(2)
  ] + ["wait"]


def test_bad_process_count_is_named():
  with pytest.raises(ConfigError, match=r"^--processes must be >= 1, got 0$"):
    cluster.local_gpu_processes("c.py", "w", processes=0)


def test_run_processes_gives_each_its_environment_and_reports_failure():
  exit_with_gpu = [sys.executable, "-c", "import os, sys; sys.exit(int(os.environ['CUDA_VISIBLE_DEVICES']))"]
  assert cluster.run_processes([({"CUDA_VISIBLE_DEVICES": "0"}, exit_with_gpu)] * 2) == 0
  assert cluster.run_processes([({"CUDA_VISIBLE_DEVICES": str(i)}, exit_with_gpu) for i in range(3)]) == 1


def launcher_runs(tmp_path):
  """(module, flags, parts of stdout) per run; the last writes its script where no sbatch is on PATH."""
  dry, written = tmp_path / "dry.sbatch", tmp_path / "written.sbatch"
  tpu_flags = ["--tpu_name=pod", "--zone=z", "--repo_dir=repo", "--config=c.py", "--workdir=gs://b/r"]
  tpu_line = (
    "gcloud compute tpus tpu-vm ssh pod --zone=z --worker=all '--command=cd repo && "
    "SCALING_INTERFERENCE_DISTRIBUTED=auto python3 -m launch.train --config=c.py --workdir=gs://b/r'\n"
  )
  return [
    ("tpu_pod", tpu_flags, [tpu_line]),
    (
      "slurm",
      ["--nodes=2", "--gpus_per_node=4", "--config=c.py", "--workdir=/w", f"--output={dry}"],
      [
        "#SBATCH --ntasks-per-node=4\n#SBATCH --gpus-per-node=4\n",
        "srun python3 -m launch.train --config=c.py --workdir=/w\n",
        f"\n# write it to {dry}, then: sbatch {dry}\n",
      ],
    ),
    ("local_gpus", ["--config=c.py", "--workdir=w", "--processes=2"], ["--num_processes=2 --process_id=1 &\nwait\n"]),
    (
      "slurm",
      ["--nodes=2", "--config=c.py", "--workdir=/w", f"--output={written}", "--nodry_run"],
      [f"wrote {written}; sbatch is not on PATH here: submit it on the cluster with sbatch {written}\n"],
    ),
  ]


@pytest.mark.parametrize("launcher", ["slurm", "tpu_pod", "local_gpus"])
def test_a_launcher_starts_without_jax(launcher):
  """A launcher only prints or submits commands: importing one brings neither jax nor flax."""
  probe = f"import sys, launch.{launcher}; print(sorted({{'jax', 'flax'}} & set(sys.modules)))"
  result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)


def test_launchers_print_their_commands(tmp_path):
  """Started together, as each costs a package import; PATH is empty, so nothing is submitted."""
  env = {**os.environ, "PATH": ""}
  runs = [
    (
      subprocess.Popen(
        [sys.executable, "-m", f"launch.{module}", *flags],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
      ),
      expected,
    )
    for module, flags, expected in launcher_runs(tmp_path)
  ]
  for run, expected in runs:
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert all(part in out for part in expected), out
  assert not (tmp_path / "dry.sbatch").exists()
  subprocess.run(["bash", "-n", str(tmp_path / "written.sbatch")], check=True)
