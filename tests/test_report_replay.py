"""The report (its command line, short replay windows) on a run whose rare task comes in discrete events:
the replay tables with their documented columns, the replay figure, and claims 3 and 4 judged from the replay."""

import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
from conftest import small_injection

import scaling_interference as si
from scaling_interference.analysis import claims, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = "probes,neurons,allocation,next_update,next_update_cosines"  # checkpoint tables: not what this tests
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
  """A report on small_injection() with task 4 injected 4 at a time every 10 batches from step 5."""
  config = small_injection()
  config.inject.rare = dict(task=4, kind="every", count=4, every=10, offset=5)
  workdir = str(tmp_path_factory.mktemp("events") / "run")
  si.train(config, workdir)
  out = str(tmp_path_factory.mktemp("report"))
  cmd = [
    sys.executable,
    "-m",
    "analysis.run",
    f"--workdir={workdir}",
    f"--out={out}",
    "--steps=last",
    f"--skip={SKIP}",
    "--replay_events=2",
    "--replay_steps=20",
  ]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and "(0 failed)" in result.stdout, result.stdout + result.stderr[-3000:]
  return out


@pytest.mark.parametrize("name", ["replay", "replay_steps", "counterfactual"])
def test_replay_tables_have_their_documented_columns(out, name):
  frame = pd.read_csv(os.path.join(out, "tables", f"{name}.csv"))
  assert len(frame) and set(tables.SPECS[name].columns) <= set(frame.columns), f"{name}.csv: {list(frame.columns)}"
  windows = frame.drop_duplicates("window")
  assert list(zip(windows.schedule, windows.start, windows.stop, strict=True)) == [
    ("rare", 5, 15),
    ("burst", 7, 27),
    ("rare", 15, 25),
  ], "2 events, at most 20 steps"


def test_replay_reproduces_training_and_closes(out):
  replay = pd.read_csv(os.path.join(out, "tables", "replay.csv"))
  assert (replay.replay_max_diff < 1e-4).all() and (replay.closure_error < 0.01).all()


def test_replay_figure_and_its_measured_caption(out):
  with open(os.path.join(out, "figures", "run-replay.png"), "rb") as f:
    data = f.read()
  assert data.startswith(PNG_MAGIC) and len(data) > 5000
  text = pathlib.Path(out, "index.html").read_text()
  assert "figures/run-replay.png" in text
  assert "Measured, means over the windows and members (dL: summed over each window): burst (task 5" in text
  assert "Table options: replay: events=2, max_steps=20, after=0, by=class." in text


def test_claims_3_and_4_are_judged_from_the_replay(out):
  verdicts = pd.read_csv(os.path.join(out, "tables", "claims.csv")).set_index("claim")
  for number in (3, 4):
    status, evidence = verdicts.loc[number, "status"], verdicts.loc[number, "evidence"]
    assert status in (claims.HELD, claims.NOT_HELD), evidence
    assert evidence.startswith(
      "replay of 3 window(s) after injection events (burst at step(s) 7; rare at step(s) 5, 15)"
    ), evidence
  assert "signal_kept_by_removal" in verdicts.loc[4, "evidence"] and "dL_own" in verdicts.loc[4, "evidence"]
