"""W&B logging in offline mode: one run per member with its hyperparameters, the series equal to the metrics,
the same run ids when the workdir resumes."""

import shutil

import numpy as np
import pytest
from conftest import small_regression

import scaling_interference as si
from scaling_interference.sweep import wandb_log

wandb = pytest.importorskip("wandb")


@pytest.fixture
def logged(monkeypatch, tmp_path):
  """Offline W&B; every Run.log call recorded as (run id, step, values)."""
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  calls, log = [], wandb.sdk.wandb_run.Run.log

  def spy(self, data, step=None, **kwargs):
    calls.append((self.id, step, dict(data)))
    return log(self, data, step=step, **kwargs)

  monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy)
  return calls


def config():
  c = small_regression()
  c.sweep.update(seeds=(0,), lrs=(1e-2,))
  c.train.update(steps=40, eval_every=20, checkpoint_every=20, tensorboard=False, wandb_project="si-test")
  return c


def test_offline_runs_log_every_members_series(logged, tmp_path):
  workdir = tmp_path / "run"
  si.train(config(), str(workdir))
  run = si.load_run(str(workdir))
  ids = {m: wandb_log.run_id(workdir, m) for m in run.members.id}
  folders = sorted(p.name.rsplit("-", 1)[1] for p in (workdir / "wandb").glob("offline-run-*"))
  assert folders == sorted(ids.values()), "one offline run per member, named by its fixed id"
  for member, run_id in ids.items():
    mine = [(step, values) for i, step, values in logged if i == run_id]
    assert [s for s, v in mine if "train/loss" in v] == [10, 20, 30, 40]
    evals = {s: v for s, v in mine if "eval/loss/task_000" in v}
    assert sorted(evals) == [0, 20, 40]
    rows = run.metrics[(run.metrics.member == member) & (run.metrics.task.astype(str) == "2")].set_index("step")
    np.testing.assert_allclose(
      [evals[s]["eval/signal/task_002"] for s in (0, 20, 40)], rows.signal.loc[[0, 20, 40]], rtol=1e-6
    )


def test_a_resumed_workdir_logs_to_the_same_runs(logged, tmp_path):
  workdir = tmp_path / "run"
  si.train(config(), str(workdir))
  first = {i for i, _, _ in logged}
  shutil.rmtree(workdir / "checkpoints" / "40")
  logged.clear()
  si.train(config(), str(workdir))
  assert {i for i, _, _ in logged} == first and sorted({s for _, s, v in logged if "train/loss" in v}) == [30, 40]
