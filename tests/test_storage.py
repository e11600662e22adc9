"""Workdirs in cloud storage: train, resume and analyse a gs:// workdir on a GCS emulator at 127.0.0.1.

The emulator (tests/gcs_emulator.py: the gcp-storage-emulator package with the generation
preconditions TensorStore needs) is started and stopped here. gcsfs (epath's gs://
backend) finds it through STORAGE_EMULATOR_HOST, and TensorStore (Orbax's array store) through
TENSORSTORE_GCS_HTTP_URL, so every file goes through the same gs:// code a real bucket sees.
"""

import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import metrics_text
from etils import epath
from test_multiprocess_train import free_port
from test_resume import ROOT

import scaling_interference as si
from scaling_interference import storage
from scaling_interference.analysis import report
from scaling_interference.errors import StorageError

BUCKET = "runs"
FLAGS = [
  f"--config={ROOT}/configs/injection.py:demo",
  "--config.task.input_dim=2",
  "--config.task.output_dim=2",
  "--config.inject.burst.at=150",
  "--config.inject.burst.count=16",
  "--config.inject.rare.count=8",
  "--config.model.widths=4,8",
  "--config.sweep.seeds=0",
  "--config.train.steps=200",
  "--config.train.batch_size=64",
  "--config.train.eval_every=50",
  "--config.train.checkpoint_every=100",
  "--config.train.steps_per_dispatch=25",
  "--config.train.eval_examples_per_task=32",
  "--config.train.trace_every=10",
]
REPORT_OPTIONS = {"replay": dict(events=1, max_steps=20)}  # the tables compared below, the signal figure,
REPORT_SKIP = (  # and nothing else: each table costs compiles
  "probes,neurons,allocation,counterfactual,replay_steps,next_update,next_update_cosines,"
  "oracle,sizing,power_law,emergence,learned,retention,event_average"
).split(",")


def emulator_env(port: int) -> dict:
  url = f"http://127.0.0.1:{port}"
  return {
    "STORAGE_EMULATOR_HOST": url,
    "TENSORSTORE_GCS_HTTP_URL": url,
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
    storage.TIMEOUT_ENV: "5",
  }


@pytest.fixture(scope="module")
def gcs():
  """The emulator's environment; the server runs for this module, in memory, with one bucket."""
  port = free_port()
  server = subprocess.Popen(
    [sys.executable, os.path.join(ROOT, "tests", "gcs_emulator.py"), str(port), BUCKET],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 30
  while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
    assert time.time() < deadline and server.poll() is None, "the GCS emulator did not start"
    time.sleep(0.1)
  env = emulator_env(port)
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield env
  for k, v in saved.items():
    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
  server.terminate()
  server.wait(timeout=30)


def run(module: str, *flags, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
  result = subprocess.run(
    [sys.executable, "-m", module, *flags],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **(env or {})),
  )
  return result


def event_files(folder: epath.Path) -> list:
  """The TensorBoard event files under a gs:// folder (epath's rglob refuses buckets)."""
  found = []
  for path in folder.iterdir():
    found += event_files(path) if path.is_dir() else [path] if path.name.startswith("events.out.tfevents.") else []
  return found


def flags_config():
  """FLAGS' config, built in this process: the same run as `launch.train` with FLAGS trains."""
  from configs import injection

  config = injection.get_config("demo")
  config.task.update(input_dim=2, output_dim=2)
  config.inject.burst.update(at=150, count=16)
  config.inject.rare.count = 8
  config.model.widths = (4, 8)
  config.sweep.seeds = (0,)
  config.train.update(
    steps=200, batch_size=64, eval_every=50, checkpoint_every=100, steps_per_dispatch=25, eval_examples_per_task=32
  )
  config.train.trace_every = 10
  return config


def test_a_gs_workdir_trains_resumes_and_is_analysed_like_a_local_one(gcs, tmp_path):
  """Trained and analysed in this process (one compile of each program), resumed by the command line."""
  local, remote = str(tmp_path / "r1"), f"gs://{BUCKET}/r1"  # one name: the report labels runs by it
  for workdir in (local, remote):
    si.train(flags_config(), workdir)
  bucket_run = epath.Path(remote)
  assert sorted(p.name for p in (bucket_run / "metrics").iterdir()) == [f"{s:09d}.jsonl" for s in range(0, 201, 50)]
  assert metrics_text(remote) == metrics_text(local)
  assert not os.path.exists("gs:") and not os.path.exists(os.path.join(ROOT, "gs:")), "a gs:// workdir made a folder"

  (bucket_run / "checkpoints" / "200").rmtree()  # as if killed after the step-100 checkpoint
  for step in (150, 200):
    (bucket_run / "metrics" / f"{step:09d}.jsonl").unlink()
  result = run("launch.train", f"--workdir={remote}", *FLAGS)
  assert result.returncode == 0 and "from step 100" in result.stderr, result.stderr
  assert metrics_text(remote) == metrics_text(local), "the resumed gs:// run differs from the local run"
  pd.testing.assert_frame_equal(si.load_run(remote).metrics, si.load_run(local).metrics)
  assert si.load_run(remote).steps() == [100, 200]
  local_events = sorted(
    p.parent.relative_to(tmp_path / "r1").as_posix()
    for p in (tmp_path / "r1" / "tensorboard").rglob("events.out.tfevents.*")
  )
  remote_events = sorted(str(p.parent).split("/r1/", 1)[1] for p in event_files(bucket_run / "tensorboard"))
  assert set(remote_events) == set(local_events) and len(remote_events) >= len(local_events), (
    "the gs:// run's event files are copied into the bucket, one folder per member"
  )

  reports = {}
  for name, workdir, out in (("local", local, str(tmp_path / "report")), ("remote", remote, f"{remote}/report")):
    built = report.build([workdir], out, steps="last", skip=REPORT_SKIP, options=REPORT_OPTIONS)
    assert not built.failed, built.notes
    reports[name] = storage.as_path(out)
  assert (reports["remote"] / "index.html").read_text().count("<figure>") >= 1
  for table in ("final", "replay", "events"):
    local_csv, remote_csv = ((r / "tables" / f"{table}.csv").read_text() for r in reports.values())
    assert remote_csv == local_csv, f"tables/{table}.csv differs"


def test_an_unreachable_or_missing_bucket_is_one_line_and_writes_nothing(gcs, tmp_path):
  closed = {**emulator_env(free_port()), storage.TIMEOUT_ENV: "1"}  # nothing listens: the whole wait is spent
  for env, workdir, message in (
    (closed, f"gs://{BUCKET}/r2", "did not answer within 1 s"),
    (gcs, "gs://no-such-bucket/r2", "the bucket gs://no-such-bucket does not exist"),
  ):
    result = run("launch.train", f"--workdir={workdir}", *FLAGS, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: workdir {workdir}: "), result.stderr
    assert message in result.stderr, result.stderr
    assert os.listdir(tmp_path) == [], "a local folder was made for a URL workdir"


def test_a_scheme_without_backend_or_support_is_one_line(monkeypatch):
  with pytest.raises(
    StorageError,
    match=r"^workdir ftp://h/r: the scheme ftp:// is not supported \(supported: "
    r"local paths, gs://, s3://",
  ):
    storage.as_path("ftp://h/r", "workdir")
  monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(
    StorageError,
    match=r"^workdir gs://b/r: gs:// needs the gcsfs package, which is not "
    r"installed; pip install 'scaling_interference\[gcs\]'$",
  ):
    storage.as_path("gs://b/r", "workdir")


def test_local_writes_are_whole_and_leave_no_temporary_file(tmp_path):
  path = storage.as_path(str(tmp_path / "a.json"))
  assert path == epath.Path(os.path.abspath(tmp_path / "a.json"))
  storage.write_json(path, {"x": 1})
  storage.write_npz(storage.as_path(str(tmp_path / "b.npz")), step=[1, 2])
  assert sorted(os.listdir(tmp_path)) == ["a.json", "b.npz"]
  assert storage.read_json(path) == {"x": 1}
  assert storage.read_npz(storage.as_path(str(tmp_path / "b.npz")))["step"].tolist() == [1, 2]


def test_a_bad_timeout_is_one_line(monkeypatch):
  monkeypatch.setenv(storage.TIMEOUT_ENV, "soon")
  with pytest.raises(
    StorageError,
    match=r"^\$SCALING_INTERFERENCE_STORAGE_TIMEOUT: must be a number of seconds, "
    r"got 'soon'$",
  ):
    storage.check_reachable(epath.Path("gs://b/r"), "workdir")
