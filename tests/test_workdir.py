"""The workdir contract: files, load_run, restore, and errors that name what went wrong."""

import json
import os
import pathlib

import numpy as np
import pytest
from conftest import metrics_text

import scaling_interference as si
from scaling_interference.errors import NonFiniteLossError


def test_workdir_contract_and_load_run(tmp_path, regression_config):
  workdir = str(tmp_path / "run")
  si.train(regression_config, workdir)
  for name in ("config.json", "members.json", "tasks.json", "metrics", "checkpoints"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert sorted(os.listdir(os.path.join(workdir, "metrics"))) == [f"{s:09d}.jsonl" for s in (0, 20, 40, 60)]
  run = si.load_run(workdir)
  assert run.config.model.widths == (8, 16)
  assert list(run.members.columns[:7]) == ["id", "group", "width", "depth", "seed", "lr", "n_params"]
  assert run.members.n_params.tolist() == [256] * 4 + [512] * 4
  evals = [0, 20, 40, 60]
  assert sorted(run.metrics.step.unique()) == evals
  assert len(run.metrics) == len(evals) * 8 * (4 + 1), "one row per (step, member, task) plus 'all'"
  train_rows = run.metrics[run.metrics.task == "all"]
  assert train_rows[train_rows.step == 0].loss.isna().all()
  assert (train_rows[train_rows.step > 0].loss > 0).all()
  assert run.metrics.accuracy.isna().all(), "regression has no accuracy"
  assert run.steps() == [30, 60]
  group = run.restore(group=1)
  member = run.restore(member=5)
  assert group["params"]["hidden"][0]["kernel"].shape == (4, 16, 16)
  np.testing.assert_array_equal(member["params"]["readout"]["kernel"], group["params"]["readout"]["kernel"][1])


def test_an_eval_file_left_half_written_is_ignored(tmp_path, regression_config):
  """A crash inside a local write leaves only the temporary file, which readers and resumes skip."""
  workdir = str(tmp_path / "run")
  si.train(regression_config, workdir)
  n = len(si.load_run(workdir).metrics)
  with open(os.path.join(workdir, "metrics", "000000080.jsonl.tmp"), "w") as f:
    f.write('{"step": 80, "member": 0, "ta')
  assert len(si.load_run(workdir).metrics) == n


def test_non_finite_loss_names_member_and_step(tmp_path, regression_config):
  regression_config.sweep.lrs = (1e-2, 1e12)
  regression_config.train.optimizer = "sgd"
  with pytest.raises(NonFiniteLossError, match=r"member 1 \(width=8, depth=1, seed=0, lr=1e\+12\).* at step \d+"):
    si.train(regression_config, str(tmp_path / "run"))


def test_resume_of_a_finished_run_changes_nothing(tmp_path, regression_config):
  workdir = str(tmp_path / "run")
  si.train(regression_config, workdir)
  before = metrics_text(workdir)
  result = si.train(regression_config, workdir)
  assert result.resumed_from == 60
  assert metrics_text(workdir) == before
  assert json.loads(pathlib.Path(workdir, "config.json").read_text())["train"]["steps"] == 60


def test_checkpoint_retention_keeps_history(tmp_path, regression_config):
  regression_config.train.update(checkpoint_every=10, max_to_keep=2, keep_every=20)
  si.train(regression_config, str(tmp_path / "run"))
  assert si.load_run(str(tmp_path / "run")).steps() == [20, 40, 50, 60], "last 2, plus every multiple of 20"


def test_a_workdir_from_before_a_new_field_still_opens(tmp_path, regression_config):
  workdir = str(tmp_path / "run")
  si.train(regression_config, workdir)
  path = os.path.join(workdir, "config.json")
  saved = json.loads(pathlib.Path(path).read_text())
  del saved["train"]["nonfinite"], saved["train"]["mesh"]  # fields added after some workdirs were written
  pathlib.Path(path).write_text(json.dumps(saved))
  run = si.load_run(workdir)
  assert run.config.train.nonfinite == "halt" and run.config.model.widths == (8, 16)
  assert run.restore(member=0)["params"]["readout"]["kernel"].shape == (8, 16)
