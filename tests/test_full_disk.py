"""A full disk, for real: a small tmpfs the test mounts and fills just before one write site writes.

Each site's failure is one WriteError naming the file, the error and the newest complete checkpoint;
nothing half-written is left for a later run to read; once the filler is removed, the same call resumes
and ends bit for bit like an uninterrupted run. Where this machine may not mount a tmpfs (not root), the
tests are skipped with that reason.
"""

import errno
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import metrics_text, small_injection, small_regression
from etils import epath

import scaling_interference as si
from configs import regression as regression_config
from scaling_interference import storage
from scaling_interference.analysis import report, tables
from scaling_interference.errors import CheckpointError, WriteError
from scaling_interference.sweep.build import build
from scaling_interference.sweep.checkpoint import Checkpoints
from scaling_interference.sweep.members import all_members
from scaling_interference.sweep.tensorboard import TensorBoardLog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = r"No space left on device \[errno 28\]"
# the report's quick tables (a few seconds): enough for tables/, figures/, cache/ and index.html
REPORT_SKIP = [n for n, s in tables.SPECS.items() if s.scope == "step" or n.startswith(("replay", "counterfactual"))]


def mount_tmpfs(path: pathlib.Path, size: str) -> None:
  path.mkdir(parents=True, exist_ok=True)
  try:
    done = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True, check=False
    )
  except FileNotFoundError:
    pytest.skip("no mount command on this machine: the full-disk tests need a tmpfs")
  if done.returncode:
    pytest.skip(
      f"this machine may not mount a tmpfs ({done.stderr.strip() or 'mount failed'}); the full-disk tests need root"
    )


@pytest.fixture
def disk(tmp_path):
  """A real 64 MB filesystem of its own at tmp_path/disk."""
  path = tmp_path / "disk"
  mount_tmpfs(path, "64m")
  yield path
  subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: pathlib.Path) -> pathlib.Path:
  """Takes every free byte of the filesystem at `disk` into one file; deleting it frees them again."""
  filler = disk / "filler"
  with open(filler, "ab", buffering=0) as f:
    for chunk in (1 << 20, 1 << 12, 1):
      try:
        while True:
          f.write(b"\0" * chunk)
      except OSError as e:
        assert e.errno == errno.ENOSPC, e
  return filler


def wait_for(path: pathlib.Path, timeout: float = 60.0) -> None:
  deadline = time.time() + timeout
  while not path.exists():
    assert time.time() < deadline, f"{path} did not appear"
    time.sleep(0.01)


def fill_before_writing(monkeypatch, disk, name: str, after: pathlib.Path | None = None, nth: int = 1) -> None:
  """Fills the disk just before the framework's nth write of a file called `name` (once `after` exists)."""
  real, seen = storage.write_bytes, []

  def write_bytes(path, data):
    if path.name == name:
      seen.append(path)
      if len(seen) == nth:
        if after is not None:
          wait_for(after)
        fill(disk)
    return real(path, data)

  monkeypatch.setattr(storage, "write_bytes", write_bytes)


def leftovers(folder) -> list[str]:
  """Temporary files and folders a failed write could leave behind for a later run to read."""
  return [str(p) for p in pathlib.Path(folder).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """small_regression() trained on a roomy disk."""
  path = str(tmp_path_factory.mktemp("reference") / "run")
  si.train(small_regression(), path)
  return path


@pytest.mark.parametrize("name", ["schedule.npz", "members.json", "tasks.json", "config.json"])
def test_a_claim_on_a_full_disk_is_one_error_and_can_be_claimed_again(disk, reference, monkeypatch, name):
  workdir = str(disk / "run")
  fill_before_writing(monkeypatch, disk, name)
  with pytest.raises(WriteError, match=rf"could not write {workdir}/{name}: {FULL}; no checkpoint is complete yet"):
    si.train(small_regression(), workdir)
  assert not (disk / "run" / "config.json").exists() and not leftovers(workdir)
  with pytest.raises(WriteError, match=rf"could not write {workdir}/schedule.npz: {FULL}"):
    si.train(small_regression(), workdir)  # the disk still full: the same one line, from the first write
  (disk / "filler").unlink()
  assert si.train(small_regression(), workdir).resumed_from is None
  assert metrics_text(workdir) == metrics_text(reference)


def test_metrics_on_a_full_disk(disk, reference, monkeypatch):
  workdir = disk / "run"
  fill_before_writing(monkeypatch, disk, "000000040.jsonl", after=workdir / "checkpoints" / "30")
  with pytest.raises(
    WriteError,
    match=rf"could not write {workdir}/metrics/000000040.jsonl: {FULL}; the newest "
    "complete checkpoint is step 30: once the write can succeed",
  ):
    si.train(small_regression(), str(workdir))
  assert not (workdir / "metrics" / "000000040.jsonl").exists() and not leftovers(workdir)
  (disk / "filler").unlink()
  assert si.train(small_regression(), str(workdir)).resumed_from == 30
  assert metrics_text(workdir) == metrics_text(reference)


def test_traces_on_a_full_disk(disk, injection_workdir, monkeypatch):
  workdir = disk / "run"
  fill_before_writing(monkeypatch, disk, "traces.npz", after=workdir / "checkpoints" / "30", nth=2)
  with pytest.raises(
    WriteError,
    match=rf"could not write {workdir}/traces.npz: {FULL}; the newest complete "
    "checkpoint is step 30",
  ):
    si.train(small_injection(), str(workdir))
  assert not leftovers(workdir)
  with np.load(workdir / "traces.npz") as f:
    assert f["step"].max() == 30, "the traces of the last complete checkpoint, whole"
  (disk / "filler").unlink()
  assert si.train(small_injection(), str(workdir)).resumed_from == 30
  assert metrics_text(workdir) == metrics_text(injection_workdir)
  with np.load(workdir / "traces.npz") as a, np.load(os.path.join(injection_workdir, "traces.npz")) as b:
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["signal"], b["signal"])


def long_regression():
  config = small_regression()
  config.train.update(steps=120, checkpoint_every=30)
  return config


def test_a_failed_checkpoint_stops_the_run_at_the_next_dispatch(disk, tmp_path, monkeypatch):
  workdir = disk / "run"
  real_save = Checkpoints.save

  def save(self, step, states, meta):
    if step == 60:
      wait_for(workdir / "checkpoints" / "30")
      fill(disk)
    real_save(self, step, states, meta)
    while step == 60 and self.manager.is_saving_in_progress():  # the save has failed before the next dispatch ends
      time.sleep(0.01)

  monkeypatch.setattr(Checkpoints, "save", save)
  with pytest.raises(
    CheckpointError,
    match=rf"could not write the checkpoint of step 60 in {workdir}/checkpoints: "
    rf"{FULL}; the newest complete checkpoint is step 30",
  ):
    si.train(long_regression(), str(workdir))
  assert not (workdir / "metrics" / "000000080.jsonl").exists(), "stopped at step 70, not trained on to step 90"
  assert not (workdir / "checkpoints" / "60").exists()
  monkeypatch.setattr(Checkpoints, "save", real_save)
  (disk / "filler").unlink()
  assert si.train(long_regression(), str(workdir)).resumed_from == 30, "the failed save's folder is no checkpoint"
  si.train(long_regression(), str(tmp_path / "straight"))
  assert metrics_text(workdir) == metrics_text(tmp_path / "straight")


def test_tensorboard_on_a_full_disk(disk):
  problem, groups = build(small_regression())
  members = all_members(groups)
  log = TensorBoardLog(epath.Path(disk / "run"), members, problem.tasks, resumed_from=None)
  fill(disk)
  log.train_loss(10, np.ones(len(members)))
  rows = [{"step": 10, "member": m.id, "task": 0, "loss": 1.0, "signal": 0.5, "accuracy": None} for m in members]
  with pytest.raises(WriteError, match=rf"could not write the TensorBoard files in {disk}/run/tensorboard: {FULL}"):
    log.eval_rows(rows)  # the eval's flush: the first write that needs the disk
  with pytest.raises(WriteError, match="could not write the TensorBoard files"):
    log.close()  # every file closed all the same: nothing is left to fail again at the interpreter's exit
  assert all(f.file.closed for f in log.files.values())


@pytest.fixture(scope="module")
def reference_report(injection_workdir, tmp_path_factory):
  out = tmp_path_factory.mktemp("report")
  report.build([injection_workdir], str(out), skip=REPORT_SKIP)
  return out


@pytest.mark.parametrize("folder", ["cache", "tables", "figures", "index.html"])
def test_the_report_on_a_full_disk(disk, injection_workdir, reference_report, monkeypatch, folder):
  out = disk / "report"
  real, filled = storage.write_bytes, []

  def write_bytes(path, data):
    if folder in pathlib.PurePosixPath(os.fspath(path)).relative_to(out).parts and not filled:
      filled.append(fill(disk))
    return real(path, data)

  monkeypatch.setattr(storage, "write_bytes", write_bytes)
  with pytest.raises(WriteError, match=rf"could not write {out}/{folder}\S*: {FULL}"):
    report.build([injection_workdir], str(out), skip=REPORT_SKIP)
  assert not leftovers(out)
  (disk / "filler").unlink()
  report.build([injection_workdir], str(out), skip=REPORT_SKIP)
  for name in sorted(os.listdir(reference_report / "tables")):
    if name != "claims.csv":  # its notes name the report folder
      assert (out / "tables" / name).read_text() == (reference_report / "tables" / name).read_text(), name
  assert sorted(os.listdir(out / "figures")) == sorted(os.listdir(reference_report / "figures"))


OVERRIDES = {
  "train.steps": 200,
  "train.checkpoint_every": 100,
  "train.eval_every": 100,
  "train.tensorboard": False,
  "model.widths": (4, 8),
  "sweep.seeds": (0,),
}


def command(workdir):
  flags = [f"--config.{k}={v}".replace(" ", "") for k, v in OVERRIDES.items()]
  return [sys.executable, "-m", "launch.train", "--config=configs/regression.py:demo", f"--workdir={workdir}", *flags]


@pytest.mark.processes
def test_the_command_line_on_a_full_disk_says_one_line_and_resumes(tmp_path):
  """The issue's case: a first checkpoint larger than the disk, the same command again, then with room."""
  disk = tmp_path / "small"
  mount_tmpfs(disk, "100k")
  try:
    workdir = disk / "run"
    for attempt in ("first", "again on the full disk"):
      done = subprocess.run(command(workdir), cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
      assert done.returncode == 4, (attempt, done.stderr)
      errors = [line for line in done.stderr.splitlines() if not line[:2].isdigit()]  # all but progress lines
      assert len(errors) == 1 and errors[0].startswith("error: could not write "), (attempt, done.stderr)
      assert "No space left on device [errno 28]" in errors[0] and "no checkpoint is complete yet" in errors[0]
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    done = subprocess.run(command(workdir), cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    config = regression_config.get_config("demo")
    for field, value in OVERRIDES.items():
      section, name = field.split(".")
      config[section][name] = value
    si.train(config, str(tmp_path / "straight"))
    assert metrics_text(workdir) == metrics_text(tmp_path / "straight")
  finally:
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_write_error_is_one_line_and_exit_4(capsys):
  from launch import cli  # pylint: disable=g-import-not-at-top

  def report_on_a_full_disk():
    raise WriteError("could not write OUT/tables/final.csv: No space left on device [errno 28]")

  with pytest.raises(SystemExit) as exited:
    cli.run_or_exit(report_on_a_full_disk)
  assert exited.value.code == 4
  assert capsys.readouterr().err == "error: could not write OUT/tables/final.csv: No space left on device [errno 28]\n"
