"""Injection schedules: exact counts on host and device, the mixture they make, files, traces, science."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_injection, small_regression

import scaling_interference as si
from scaling_interference.data.schedules import Schedule, realised_counts
from scaling_interference.errors import ConfigError
from scaling_interference.problems.synthetic import train_batch
from scaling_interference.sweep.build import build


@pytest.mark.parametrize(
  "schedule,expected_total,first_steps",
  [
    (Schedule("a", 0, "share", 512, share=0.0025), 0.0025 * 512 * 10_000, None),
    (Schedule("b", 0, "per_batch", 64, count=3), 30_000, [0, 1, 2]),
    (Schedule("c", 0, "every", 64, count=2, every=10, offset=3), 2 * 1000, [3, 13, 23]),
    (Schedule("d", 0, "burst", 64, count=5, at=77), 5, [77]),
    (Schedule("e", 0, "per_batch", 64, count=1, windows=((5, 8), (100, 102))), 5, [5, 6, 7, 100, 101]),
  ],
)
def test_counts_are_exact_and_equal_on_host_and_device(schedule, expected_total, first_steps):
  host = schedule.counts(np.arange(10_000), xp=np)
  device = np.asarray(schedule.counts(jnp.arange(10_000, dtype=jnp.int32)))
  np.testing.assert_array_equal(host, device)
  assert host.sum() == pytest.approx(expected_total)
  if first_steps:
    assert list(np.nonzero(host)[0][: len(first_steps)]) == first_steps


def injection_config():
  config = small_injection()
  config.model.init_scale = 1.0
  return config


def test_batches_hold_exactly_the_scheduled_examples():
  config = injection_config()
  problem, _ = build(config)
  expected = realised_counts(problem.schedules, 200)  # schedules in name order: burst, rare
  for step in range(200):
    task = np.asarray(train_batch(problem.family, problem.mixture, problem.train_key, step, 64).task)
    assert [(task == 5).sum(), (task == 4).sum()] == list(expected[step]), f"step {step}"


def test_schedule_file_frequencies_and_traces(tmp_path):
  config = injection_config()
  config.train.trace_examples = config.train.eval_examples_per_task  # the same examples as eval: the same loss
  workdir = str(tmp_path / "run")
  si.train(config, workdir)
  with np.load(os.path.join(workdir, "schedule.npz")) as f:
    assert list(f["name"]) == ["burst", "rare"] and list(f["task"]) == [5, 4]
    counts = np.zeros((60, 2), int)
    counts[f["step"]] = f["count"]
  np.testing.assert_array_equal(
    counts[:, 1], [int(np.floor((s + 1) * 0.64)) - int(np.floor(s * 0.64)) for s in range(60)]
  )
  assert counts[:, 0].sum() == 16 and counts[7, 0] == 16
  tasks = json.loads(pathlib.Path(workdir, "tasks.json").read_text())
  shares = [t["frequency"] for t in tasks]
  assert shares[5] == pytest.approx(16 / (60 * 64)) and shares[4] == pytest.approx(counts[:, 1].sum() / (60 * 64))
  assert sum(shares) == pytest.approx(1.0)
  with np.load(os.path.join(workdir, "traces.npz")) as f:
    assert list(f["step"]) == list(range(5, 61, 5)) and list(f["task"]) == [4, 5]
    assert f["signal"].shape == f["loss"].shape == (12, 2, 2)
    run = si.load_run(workdir)
    at_20 = run.metrics[(run.metrics.step == 20) & run.metrics.task.isin([4, 5])]
    np.testing.assert_allclose(
      f["signal"][3],
      at_20.signal.values.reshape(2, 2),
      rtol=1e-5,
      err_msg="traced signal differs from the eval signal at the same step",
    )
    np.testing.assert_allclose(
      f["loss"][3],
      at_20.loss.values.reshape(2, 2),
      rtol=1e-5,
      err_msg="traced loss differs from the eval loss at the same step",
    )


@pytest.mark.parametrize(
  "fields,message",
  [
    (
      dict(task=4, kind="often"),
      r"inject\.x\.kind: must be one of \['share', 'per_batch', 'every', 'burst'\], got 'often'",
    ),
    (dict(task=9, kind="per_batch", count=1), r"inject\.x\.task: must be a task id in \[0, 6\), got 9"),
    (dict(task=4, kind="share", share=1.5), r"inject\.x\.share: must be a number in \(0, 1\], got 1\.5"),
    (dict(task=4, kind="burst", count=0, at=3), r"inject\.x\.count: must be an integer >= 1, got 0"),
    (dict(task=4, kind="every", count=1, every=0), r"inject\.x\.every: must be an integer >= 1"),
    (
      dict(task=4, kind="per_batch", count=1, windows=((5, 2),)),
      r"inject\.x\.windows: must be a list of \[start, stop\)",
    ),
    (
      dict(task=4, kind="per_batch", count=65),
      r"inject: schedules can ask for 65 examples in one batch, more than train\.batch_size=64",
    ),
  ],
)
def test_bad_schedules_are_named(fields, message):
  config = small_regression(num_tasks=6)
  config.inject.x = fields
  with pytest.raises(ConfigError, match=message):
    build(config)


def test_unknown_schedule_field_is_named():
  config = small_regression(num_tasks=6)
  config.inject.x = dict(task=4, kind="per_batch", count=1, cuont=2)
  with pytest.raises(ConfigError, match=r"inject\.x\.cuont: not a schedule field; the fields are \['at', 'count', "):
    build(config)


def test_injecting_every_task_is_refused():
  config = small_regression(num_tasks=1)
  config.inject.x = dict(task=0, kind="per_batch", count=1)
  with pytest.raises(ConfigError, match="leave at least one task in the base mixture"):
    build(config)


def test_small_width_forgets_and_large_width_keeps_a_rare_task(tmp_path):
  """The study's protocol, small: a task at 0.25% (26 examples every 10 batches) spikes and decays in a
  narrow member (width 64; width 16 never spikes), persists in a wide one."""
  from configs import injection

  config = injection.get_config("demo")
  config.model.widths = (64, 128)
  config.inject.burst.at = 10_000  # off
  config.train.update(steps=1500, eval_every=500, checkpoint_every=1500, trace_every=10)
  si.train(config, str(tmp_path / "run"))
  with np.load(str(tmp_path / "run" / "traces.npz")) as f:
    rare = f["signal"][:, :, list(f["task"]).index(32)]
  narrow, wide = rare[:, 0], rare[:, 1]
  assert narrow.max() > 5 * max(narrow[-10:].max(), 1e-3), "narrow member: no spike-then-decay"
  assert narrow[-10:].max() < 0.05
  assert wide[-10:].min() > 0.7, "wide member did not keep the rare task"


def test_base_mixture_draws_match_frequencies():
  from scaling_interference.data.mixture import Mixture

  mixture = Mixture(np.array([0.5, 0.25, 0.0, 0.2, 0.05]))
  task = np.asarray(mixture.task_ids(jax.random.key(0), 0, 400_000))
  np.testing.assert_allclose(np.bincount(task, minlength=5) / task.size, [0.5, 0.25, 0.0, 0.2, 0.05], atol=3e-3)
