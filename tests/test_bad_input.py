"""Bad input stops before anything compiles, with one line naming the field; the workdir is untouched."""

import os
import subprocess
import sys

import pytest
from conftest import small_regression

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.errors import ConfigError, WorkdirError
from scaling_interference.sweep.build import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
  ("model.widths", (8, 0), r"model\.widths: every entry must be an integer > 0, got 0"),
  ("model.widths", (-4,), r"model\.widths: every entry must be an integer > 0, got -4"),
  ("model.widths", (), r"model\.widths: must list at least one value"),
  ("model.activation", "swish2", r"model\.activation: must be one of \[.*'relu'.*\], got 'swish2'"),
  ("model.init", "xavier", r"model\.init: must be one of \['lecun', 'torch'\], got 'xavier'"),
  ("task.alpha", -0.5, r"task\.alpha: must be a finite number >= 0, got -0\.5"),
  ("task.num_tasks", 0, r"task\.num_tasks: must be an integer >= 1, got 0"),
  ("task.family", "vision", r"task\.family: unknown family 'vision'; choose one of \['regression', 'sparse_parity'\]"),
  ("task.frequencies", (0.5, 0.5, 0.5, -0.5), r"task\.frequencies: entries must be numbers >= 0"),
  ("task.frequencies", (0.5, 0.2, 0.2, 0.2), r"task\.frequencies: must sum to 1, got sum 1\.1"),
  ("task.frequencies", (0.5, 0.5), r"task\.frequencies: needs one entry per task \(4\), got 2"),
  ("train.batch_size", 0, r"train\.batch_size: must be an integer >= 1, got 0"),
  ("train.eval_every", 0, r"train\.eval_every: must be an integer >= 1, got 0"),
  ("train.eval_every", -5, r"train\.eval_every: must be an integer >= 1, got -5"),
  ("train.steps", -1, r"train\.steps: must be an integer >= 0, got -1"),
  ("sweep.lrs", (1e-3, -1e-3), r"sweep\.lrs: every entry must be a finite number > 0, got -0\.001"),
  ("train.optimizer", "lion", r"train\.optimizer: must be one of \['adam', 'adamw', 'sgd'\], got 'lion'"),
]


@pytest.mark.parametrize("field,value,message", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_bad_field_is_named(field, value, message):
  config = small_regression()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message):
    build(config)


def test_bad_field_writes_nothing(tmp_path):
  config = small_regression()
  config.train.batch_size = 0
  with pytest.raises(ConfigError):
    si.train(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_workdir_of_another_run_is_refused_untouched(tmp_path, regression_config):
  workdir = str(tmp_path / "run")
  si.train(regression_config, workdir)
  snapshot = {n: os.path.getmtime(os.path.join(workdir, n)) for n in os.listdir(workdir)}
  regression_config.model.widths = (8, 32)
  regression_config.task.alpha = 2.0
  with pytest.raises(WorkdirError, match=r"holds a different run \(fields differ: model\.widths, task\.alpha\)"):
    si.train(regression_config, workdir)
  assert {n: os.path.getmtime(os.path.join(workdir, n)) for n in os.listdir(workdir)} == snapshot


def test_a_folder_holding_other_files_is_refused_untouched(tmp_path, regression_config):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "notes.txt").write_text("mine")
  with pytest.raises(WorkdirError, match=r"is not empty and holds no config.json \(it holds notes.txt\)"):
    si.train(regression_config, str(tmp_path / "run"))
  assert os.listdir(tmp_path / "run") == ["notes.txt"]


def run_cli(*flags):
  cmd = [sys.executable, "-m", "launch.train", "--config=configs/regression.py:demo", *flags]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
  "flag,message",
  [
    ("--config.model.widths=8,-2", "error: model.widths: every entry must be an integer > 0, got -2 in [8, -2]"),
    ("--config.task.alpha=-1", "error: task.alpha: must be a finite number >= 0, got -1.0"),
  ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path, flag, message):
  result = run_cli(f"--workdir={tmp_path / 'run'}", flag)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [message], result.stderr
  assert "Traceback" not in result.stdout + result.stderr
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize(
  "config,message",
  [
    (
      "configs/regression.py:nope",
      "error: --config: configs/regression.py has no preset 'nope'; its presets: demo, paper",
    ),
    ("configs/nothere.py:demo", "error: --config: no config file 'configs/nothere.py'"),
  ],
)
def test_a_bad_config_flag_gets_one_line_not_the_flag_parser_traceback(tmp_path, config, message):
  cmd = [sys.executable, "-m", "launch.train", f"--config={config}", f"--workdir={tmp_path / 'run'}"]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [message], result.stderr
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("inside", ["", "run"])
def test_a_workdir_that_is_a_file_gets_one_line(tmp_path, inside):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("mine")
  workdir = a_file / inside if inside else a_file
  result = run_cli(f"--workdir={workdir}", "--config.train.steps=10")
  assert result.returncode == 2, result.stderr
  what = "its parent " + str(a_file) if inside else "the workdir"
  assert result.stderr.strip().splitlines() == [
    f"error: workdir {workdir}: {what} is a file, not a directory; choose another --workdir"
  ], result.stderr
  assert a_file.read_text() == "mine"


def test_launch_configs_lists_every_config_and_its_presets():
  result = subprocess.run(
    [sys.executable, "-m", "launch.configs"], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr
  for name in ("injection", "olmo_injection", "regression", "sparse_parity"):
    assert f"configs/{name}.py: " in result.stdout
  assert "presets: demo (checked), rare (checked), complexity (checked), rates, paper" in result.stdout
  assert "presets: demo (checked), paper, reference (checked)" in result.stdout
  assert "    paper: the paper's setting: 500 tasks, 100 bits" in result.stdout, "each preset's line of the docstring"
  assert "    rare (CPU): comparison over 6 items" in result.stdout


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("model.init_scale", 0.0, r"model\.init_scale: must be a finite number > 0\.0, got 0\.0"),
    ("train.nonfinite", "skip", r"train\.nonfinite: must be one of \['halt', 'drop'\], got 'skip'"),
    ("train.trace_tasks", (9,), r"train\.trace_tasks: every entry must be a task id in \[0, 4\), got 9"),
  ],
)
def test_later_fields_are_named(field, value, message):
  config = small_regression()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message):
    build(config)


def test_a_config_trains_on_a_task_family_or_a_token_stream():
  both = small_regression()
  both.data = defaults.data_config()
  with pytest.raises(ConfigError, match=r"^task, data: a config trains on a task family .* it has both$"):
    build(both)
  neither = small_regression()
  del neither["task"]
  with pytest.raises(ConfigError, match=r"^task, data: .* it has neither$"):
    build(neither)
