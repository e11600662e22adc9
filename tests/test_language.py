"""Language-model sweeps: vmapped member = member alone, learning an injected task, host streams resume, bad input."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import metrics_text

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.errors import ConfigError
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine


def tiny_lm(**data):
  config = defaults.language_config()
  config.data.update(source="synthetic", vocab_size=64, seq_len=16, **data)
  config.token_tasks.add = defaults.token_task("modular_addition", 1, modulus=5)
  config.inject.add = dict(task=1, kind="per_batch", count=16)
  config.model.sizes = ("32/4/1",)
  config.sweep.update(seeds=(0, 1), lrs=(1e-2, 3e-3))
  config.train.update(
    steps=20,
    batch_size=32,
    eval_every=10,
    checkpoint_every=10,
    steps_per_dispatch=10,
    warmup_steps=5,
    eval_examples_per_task=32,
    tensorboard=False,
  )
  return config


def trained(config, steps):
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  states = engine.init_states()
  for start in range(0, steps, 10):
    states, *_ = engine.train_segment(states, jnp.int32(start), 10)
  return states


def test_member_in_group_equals_member_alone():
  group = trained(tiny_lm(), 20)[0]["params"]
  alone_config = tiny_lm()
  alone_config.sweep.update(seeds=(1,), lrs=(3e-3,))
  alone = trained(alone_config, 20)[0]["params"]
  for a, b in zip(jax.tree.leaves(group), jax.tree.leaves(alone), strict=True):
    assert float(jnp.linalg.norm(a[3] - b[0]) / jnp.linalg.norm(b[0])) < 1e-5


def test_tiny_model_learns_a_frequent_injected_task(tmp_path):
  config = tiny_lm(inject_mode="replace")
  config.token_tasks.add = defaults.token_task("comparison", 1, n_items=5)
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  config.train.update(steps=300, eval_every=300, checkpoint_every=300, steps_per_dispatch=100)
  si.train(config, str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  assert list(run.tasks.name) == ["base", "add", "add"] and list(run.tasks.split) == ["train", "train", "heldout"]
  final = run.metrics[run.metrics.step == 300].set_index("task")
  assert final.loc[1, "accuracy"] > 0.9, final
  first = run.metrics[run.metrics.step == 0].set_index("task")
  assert first.loc[1, "accuracy"] < 0.3 and final.loc[0, "loss"] < first.loc[0, "loss"]


def write_token_files(directory, vocab=64, n_files=3, tokens=4000):
  rng = np.random.default_rng(0)
  os.makedirs(directory)
  for i in range(n_files):
    np.save(os.path.join(directory, f"shard{i}.npy"), rng.integers(1, vocab, tokens).astype(np.uint16))


def test_host_stream_run_resumes_with_the_same_batches(tmp_path):
  write_token_files(str(tmp_path / "tokens"))
  config = tiny_lm()
  config.data.update(source="token_files", paths=(str(tmp_path / "tokens" / "*.npy"),), vocab_size=64)
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  config.train.update(steps=40, eval_every=10, checkpoint_every=20)
  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  si.train(config, full)
  shutil.copytree(full, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "40"))  # as if killed after the step-20 checkpoint
  result = si.train(config, resumed)
  assert result.resumed_from == 20
  assert metrics_text(full) == metrics_text(resumed), "the resumed run saw other batches than the uninterrupted one"


@pytest.mark.parametrize(
  "change,message",
  [
    (dict(sizes=("5M",)), r"model\.sizes: unknown size '5M'; the ladder is: 4M, 6M, 8M"),
    (dict(sizes=("48/5/2",)), r"model\.n_heads: must divide d_model=48, got n_heads=5"),
    (dict(seq_len=4), r"data\.seq_len: must be >= 6 to hold the injected tasks' format \(5 tokens\)"),
    (dict(vocab_size=7), r"task\.vocab_size: modular_addition needs"),
  ],
)
def test_bad_language_config_is_named(change, message):
  config = tiny_lm()
  if "sizes" in change:
    config.model.sizes = change["sizes"]
  else:
    config.data.update(**change)
  with pytest.raises(ConfigError, match=message):
    build(config)


def test_gradient_interference_on_a_language_model_run(tmp_path):
  from scaling_interference.analysis import gradients

  config = tiny_lm(inject_mode="replace")
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  config.train.update(steps=20, checkpoint_every=20)
  si.train(config, str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = gradients.gradient_table(run, 20, n_per_task=16)
  assert list(table.task) == [0, 1, 2] and np.isfinite(table.grad_norm).all() and (table.grad_norm > 0).all()
  np.testing.assert_allclose(table.dL_mixture, table.dL_carry + table.dL_self + table.overwrite, rtol=1e-6, atol=1e-12)
  assert table.loc[table.task == 2, "frequency"].item() == 0.0, "held-out tuples are never trained on"


@pytest.mark.parametrize(
  "section,field,value,message",
  [
    ("data", "inject_mode", "prepend", r"data\.inject_mode: must be one of \['splice', 'replace'\], got 'prepend'"),
    ("model", "sizes", ("tiny-a", "tiny-a"), r"model\.sizes: entries must be distinct, got \['tiny-a', 'tiny-a'\]"),
    (
      "inject",
      "add",
      dict(task=0, kind="per_batch", count=1),
      r"inject\.add\.task: must be a token task id in \[1, 1\]",
    ),
  ],
)
def test_more_bad_language_fields_are_named(section, field, value, message):
  config = tiny_lm()
  config[section][field] = value
  with pytest.raises(ConfigError, match=message):
    build(config)
