"""The report on a language-model run: learned per token task (trained and held-out tuples), probes
against the seeded init, and the interference replay of a rare task's injection windows, each
claim measured."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from test_language import tiny_lm

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.analysis import claims, report

REPLAY = {"replay": dict(events=2, max_steps=5, after=10)}  # two rare windows of 5 steps, mid-run
SKIP = ("neurons", "allocation", "next_update", "next_update_cosines")  # MLP only; description only


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """Two sizes trained on a frequent addition and a comparison injected every 5 batches; the report."""
  config = tiny_lm()
  config.token_tasks.cmp = defaults.token_task("comparison", 2, n_items=6)
  config.inject.add = dict(task=1, kind="per_batch", count=8)
  config.inject.cmp = dict(task=2, kind="every", count=4, every=5, offset=0)  # windows from the step-10 checkpoint
  config.model.sizes = ("16/2/1", "32/4/1")
  config.sweep.update(seeds=(0,), lrs=(3e-3,))
  config.train.update(steps=30, eval_every=10, checkpoint_every=10, trace_every=1, trace_examples=16)
  config.train.steps_per_dispatch = 5  # the replay's 5-step checks load training's program from the cache
  path = str(tmp_path_factory.mktemp("lm") / "run")
  si.train(config, path)
  out = str(tmp_path_factory.mktemp("lm_report"))
  return si.load_run(path), out, report.build([path], out, steps="all", skip=SKIP, options=REPLAY)


def test_every_table_of_a_language_model_run_computes(built):
  _, _, result = built
  assert not result.failed, result.notes


def test_token_tasks_table_has_trained_and_heldout_tuples_of_every_size(built):
  run, out, _ = built
  table = pd.read_csv(f"{out}/tables/token_tasks.csv")
  assert set(table["size"]) == {"16/2/1", "32/4/1"}
  for _, rows in table.groupby("size"):
    assert sorted(zip(rows.name, rows.split, strict=True)) == [
      ("add", "heldout"),
      ("add", "train"),
      ("cmp", "heldout"),
      ("cmp", "train"),
    ]
  metrics = run.metrics[(run.metrics.step == run.metrics.step.max()) & (run.metrics.task != "all")]
  heldout_cmp = int(run.tasks[(run.tasks.name == "cmp") & (run.tasks.split == "heldout")].id.iloc[0])
  recorded = metrics[metrics.task.astype(int) == heldout_cmp].accuracy.mean()  # one member per size
  assert abs(table[(table.name == "cmp") & (table.split == "heldout")].accuracy.mean() - recorded) < 1e-6
  assert (table.learned == (table.signal >= 0.5)).all()


def test_replay_covers_the_rare_tasks_windows_of_every_member(built):
  run, out, _ = built
  replay = pd.read_csv(f"{out}/tables/replay.csv")
  rare = replay[replay.schedule == "cmp"]
  assert sorted(rare.start.unique()) == [10, 15]  # the first two events at or after step 10
  assert set(rare.member) == set(run.members.id)


def test_the_language_model_claims_are_measured(built):
  _, _, result = built
  by_claim = result.claims.set_index("claim")
  for number in (3, 4, 6, 7):  # 1 needs a learned task: 30 steps learn none
    assert by_claim.loc[number, "status"] in (claims.HELD, claims.NOT_HELD), by_claim.loc[number, "evidence"]


def test_summary_prints_each_token_task_per_size(built):
  run, out, _ = built
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
    [sys.executable, "-m", "analysis.summary", f"--workdir={run.path}"],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[1].split() == ["name", "add", "cmp"] and lines[2].split() == [
    "split",
    "train",
    "heldout",
    "train",
    "heldout",
  ], lines[:3]
  table = pd.read_csv(f"{out}/tables/token_tasks.csv").set_index(["size", "name", "split"])
  for size in ("16/2/1", "32/4/1"):
    row = next(line for line in lines if line.startswith(size))
    accuracy = [float(v) for v in re.findall(r"(\d\.\d\d) \[", row)]  # each cell: mean [min, max], * if learned
    expected = [table.loc[(size, n, s), "accuracy"] for n in ("add", "cmp") for s in ("train", "heldout")]
    assert accuracy == [round(v, 2) for v in expected], (row, expected)
  assert "Base-stream eval loss per size" in result.stdout
