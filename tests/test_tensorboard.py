"""TensorBoard event files: written while training, read back by TensorBoard's own reader, equal to the
metrics; a resumed run continues each series with no step twice; an existing workdir can be exported."""

import os
import shutil
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from conftest import small_regression

import scaling_interference as si
from scaling_interference.sweep import tensorboard

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config():
  c = small_regression()
  c.sweep.update(seeds=(0,), lrs=(1e-2, 3e-3))
  c.train.update(steps=40, eval_every=20, checkpoint_every=20, tensorboard=True)
  return c


def scalars(run_folder, tag) -> dict:
  acc = event_accumulator.EventAccumulator(str(run_folder))
  acc.Reload()
  return {e.step: e.value for e in acc.Scalars(tag)}


def member_folders(workdir) -> dict:
  run = si.load_run(str(workdir))
  return {m.id: workdir / "tensorboard" / tensorboard.run_name(m) for m in run.members.itertuples()}


def test_training_writes_every_members_series_equal_to_the_metrics(tmp_path):
  si.train(config(), str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  folders = member_folders(tmp_path / "run")
  assert sorted(p.relative_to(tmp_path / "run" / "tensorboard").as_posix() for p in folders.values()) == [
    "width_16/seed_0/lr_0.003/member_3",
    "width_16/seed_0/lr_0.01/member_2",
    "width_8/seed_0/lr_0.003/member_1",
    "width_8/seed_0/lr_0.01/member_0",
  ]
  for member, folder in folders.items():
    assert sorted(scalars(folder, "train/loss")) == [10, 20, 30, 40], "one point per dispatch"
    mine = run.metrics[(run.metrics.member == member) & (run.metrics.task != "all")]
    for task in range(4):
      rows = mine[mine.task.astype(int) == task].set_index("step")
      for field in ("loss", "signal"):
        written = scalars(folder, f"eval/{field}/task_{task:03d}")
        assert sorted(written) == [0, 20, 40]
        np.testing.assert_allclose([written[s] for s in (0, 20, 40)], rows.loc[[0, 20, 40], field], rtol=1e-6)
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
      acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info.hparams
    described = run.members.set_index("id").loc[member]
    assert {k: v.number_value for k, v in start.items()} == {
      "width": described.width,
      "depth": described.depth,
      "seed": described.seed,
      "lr": pytest.approx(described.lr),
    }


def test_a_resumed_run_writes_no_step_twice(tmp_path, monkeypatch):
  # hold the clock's second still, as on a fast machine where the resumed process opens its files within the
  # same second as the first: a file named by the second alone would be written over
  monkeypatch.setattr(tensorboard, "time", types.SimpleNamespace(time=lambda: 1.8e9, time_ns=time.time_ns))
  workdir = tmp_path / "run"
  si.train(config(), str(workdir))
  shutil.rmtree(workdir / "checkpoints" / "40")  # as if killed after step 40's events, before its checkpoint
  si.train(config(), str(workdir))
  reference = tmp_path / "straight"
  si.train(config(), str(reference))
  for member, folder in member_folders(workdir).items():
    resumed = scalars(folder, "train/loss")
    straight = scalars(member_folders(reference)[member], "train/loss")
    assert sorted(resumed) == [10, 20, 30, 40] and len(os.listdir(folder)) >= 2, "two processes, one series"
    np.testing.assert_allclose(
      [resumed[s] for s in (10, 20, 30, 40)], [straight[s] for s in (10, 20, 30, 40)], rtol=1e-6
    )
    assert sorted(scalars(folder, "eval/loss/task_000")) == [0, 20, 40]


def test_export_writes_the_event_files_of_an_existing_workdir(tmp_path):
  c = config()
  c.train.tensorboard = False
  workdir = tmp_path / "run"
  si.train(c, str(workdir))
  assert not (workdir / "tensorboard").exists()
  result = subprocess.run(
    [sys.executable, "-m", "analysis.export_tensorboard", f"--workdir={workdir}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  run = si.load_run(str(workdir))
  for member, folder in member_folders(workdir).items():
    train = run.metrics[(run.metrics.member == member) & (run.metrics.task == "all") & run.metrics.loss.notna()]
    written = scalars(folder, "train/loss")
    assert sorted(written) == sorted(train.step.tolist()) == [20, 40], "the eval intervals' mean training loss"
    np.testing.assert_allclose([written[s] for s in (20, 40)], train.set_index("step").loss.loc[[20, 40]], rtol=1e-6)
    assert sorted(scalars(folder, "eval/signal/task_003")) == [0, 20, 40]
