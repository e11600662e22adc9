"""Faults: corrupt checkpoints, failed saves, non-finite losses (preemption signals: test_resume.py)."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import metrics_text

import scaling_interference as si
from scaling_interference.errors import CheckpointError, NonFiniteLossError


def test_corrupt_latest_checkpoint_is_named_and_skipped(tmp_path, regression_config, caplog):
  full, damaged = str(tmp_path / "full"), str(tmp_path / "damaged")
  si.train(regression_config, full)
  shutil.copytree(full, damaged)
  for path in glob.glob(os.path.join(damaged, "checkpoints", "60", "group_1", "**", "*"), recursive=True):
    if os.path.isfile(path) and os.path.getsize(path) > 100:
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  result = si.train(regression_config, damaged)
  assert result.resumed_from == 30
  assert "checkpoints/60 is unreadable" in caplog.text
  assert os.path.isdir(os.path.join(damaged, "checkpoints", "60.corrupt"))
  assert metrics_text(full) == metrics_text(damaged)


def test_failed_save_is_an_error_and_never_the_latest(tmp_path, regression_config, monkeypatch):
  workdir = str(tmp_path / "run")
  real_save = ocp.CheckpointManager.save

  def save_fails_after_step_30(self, step, *args, **kwargs):
    if step > 30:
      raise OSError(28, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_fails_after_step_30)
  with pytest.raises(
    CheckpointError,
    match=r"could not write the checkpoint of step 60 in .*checkpoints: No space "
    r"left on device \[errno 28\]; the newest complete checkpoint is step 30",
  ):
    si.train(regression_config, workdir)
  assert si.load_run(workdir).steps() == [30]


def test_halt_keeps_the_last_good_state(tmp_path, regression_config):
  regression_config.sweep.lrs = (1e-2, 1e12)
  regression_config.train.optimizer = "sgd"
  workdir = str(tmp_path / "run")
  with pytest.raises(
    NonFiniteLossError,
    match=r"member 1 \(width=8.*lr=1e\+12\): training loss is not finite at step "
    r"\d+ \(train.nonfinite=halt; the last good state is in the checkpoint",
  ):
    si.train(regression_config, workdir)
  run = si.load_run(workdir)
  state = run.restore(member=1)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state["params"]))
  assert not bool(state["active"])


def test_drop_freezes_the_member_and_the_others_train_as_alone(tmp_path, regression_config):
  regression_config.sweep.update(seeds=(0,), lrs=(1e-2, 1e12))
  regression_config.train.update(optimizer="sgd", nonfinite="drop")
  result = si.train(regression_config, str(tmp_path / "drop"))
  assert list(result.dropped) == [1, 3]
  members = json.loads((tmp_path / "drop" / "members.json").read_text())
  assert [("dropped_at" in m) for m in members] == [False, True, False, True]
  regression_config.sweep.lrs = (1e-2,)
  si.train(regression_config, str(tmp_path / "alone"))
  both, alone = si.load_run(str(tmp_path / "drop")).metrics, si.load_run(str(tmp_path / "alone")).metrics
  healthy = both[both.member.isin([0, 2])].reset_index(drop=True)
  alone = alone.assign(member=alone.member * 2).reset_index(drop=True)  # ids 0, 1 there are 0, 2 here
  np.testing.assert_allclose(healthy.loss.values, alone.loss.values, rtol=1e-5)
  dropped_train = both[(both.member == 1) & (both.task == "all") & (both.step > 0)]
  assert dropped_train.loss.isna().all(), "a dropped member's training loss rows are null"
