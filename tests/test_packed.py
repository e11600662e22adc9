"""Packed MLP members (train.pack): each equals the member trained alone, a stopped and resumed run
equals an uninterrupted one, checkpoints keep the per-group layout, and the engine packs only what
it may."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import metrics_text, small_regression
from etils import epath
from test_language import tiny_lm

import scaling_interference as si
from scaling_interference import storage
from scaling_interference.config import resolve_saved
from scaling_interference.errors import ConfigError
from scaling_interference.sweep import packed
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine


def packed_config(pack="on"):
  config = small_regression(num_tasks=4)
  config.model.update(widths=(4, 8, 16), depth=2, activation="relu", use_bias=True)
  config.sweep.update(seeds=(0, 1), lrs=(1e-2,))
  config.train.update(pack=pack, steps=40, checkpoint_every=20, eval_every=20, steps_per_dispatch=10)
  return config


def trained_params(config, steps=30):
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  states = engine.init_states()
  for start in range(0, steps, 10):
    states, *_ = engine.train_segment(states, jnp.int32(start), 10)
  return engine, [jax.device_get(s["params"]) for s in states]


def relative(a, b) -> float:
  def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])

  return float(np.abs(flat(a) - flat(b)).max() / np.abs(flat(b)).max())


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
  """A packed run trained without interruption."""
  path = str(tmp_path_factory.mktemp("packed") / "whole")
  si.train(packed_config(), path)
  return path


def test_a_packed_member_equals_the_member_trained_alone():
  engine, packed = trained_params(packed_config())
  assert engine.packed_G == (0, 1, 2)
  for g, (width, seed) in enumerate(((4, 0), (8, 1), (16, 0))):  # one member of each group
    alone = packed_config("off")
    alone.model.widths, alone.sweep.seeds = (width,), (seed,)
    _, (single,) = trained_params(alone)
    member = jax.tree.map(lambda x, m=seed: x[m], packed[g])
    assert relative(member, jax.tree.map(lambda x: x[0], single)) < 1e-5, (width, seed)


def test_a_packed_bfloat16_member_equals_the_bfloat16_member_trained_alone():
  config = packed_config()
  config.model.compute_dtype = "bfloat16"
  engine, packed = trained_params(config)
  assert engine.packed_G == (0, 1, 2)
  assert {x.dtype for x in jax.tree.leaves(packed)} == {np.dtype(np.float32)}  # parameters stay float32
  _, float32 = trained_params(packed_config())
  assert 1e-4 < relative(packed, float32) < 5e-2  # the matmuls ran in bf16, and trained the same members
  for g, (width, seed) in enumerate(((4, 0), (8, 1), (16, 0))):
    alone = packed_config("off")
    alone.model.update(widths=(width,), compute_dtype="bfloat16")
    alone.sweep.seeds = (seed,)
    _, (single,) = trained_params(alone)
    member = jax.tree.map(lambda x, m=seed: x[m], packed[g])
    assert relative(member, jax.tree.map(lambda x: x[0], single)) < 1e-5, (width, seed)


def test_a_stopped_and_resumed_packed_run_equals_an_uninterrupted_one(whole, tmp_path, monkeypatch):
  real = Engine.train_segment

  def stop_after_step_20(self, states, start, num_steps, host=None):
    out = real(self, states, start, num_steps, host)
    if int(start) + num_steps == 20:
      os.kill(os.getpid(), signal.SIGTERM)  # the loop checkpoints at the boundary and stops
    return out

  monkeypatch.setattr(Engine, "train_segment", stop_after_step_20)
  assert si.train(packed_config(), str(tmp_path / "stopped")).preempted_by == "SIGTERM"
  monkeypatch.setattr(Engine, "train_segment", real)
  si.train(packed_config(), str(tmp_path / "stopped"))
  assert metrics_text(whole) == metrics_text(tmp_path / "stopped")


def test_a_packed_run_checkpoints_in_the_per_group_layout(whole, tmp_path):
  si.train(packed_config("off"), str(tmp_path / "plain"))
  packed, plain = si.load_run(whole), si.load_run(str(tmp_path / "plain"))
  a, b = packed.restore_all(40)[0], plain.restore_all(40)[0]
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert jax.tree.map(np.shape, a) == jax.tree.map(np.shape, b)
  assert relative([s["params"] for s in a], [s["params"] for s in b]) < 1e-5


def test_the_engine_packs_only_mlp_groups_of_a_shared_input():
  assert Engine(*_built(packed_config("off"))).packed_G == ()
  narrow = packed_config("auto")
  assert Engine(*_built(narrow)).packed_G == ()  # auto: 16 input features, where packing measured slower
  wide = packed_config("auto")
  wide.task.update(num_tasks=8, input_dim=16)  # 128 features
  assert Engine(*_built(wide)).packed_G == (0, 1, 2)
  assert packed.packed_groups("auto", *_built(wide)[1:], num_devices=2) == ()  # a mesh: not measured, not chosen
  wide.model.widths = (8,)
  assert Engine(*_built(wide)).packed_G == ()  # nothing to pack with one group
  lm = tiny_lm()
  lm.train.pack = "on"
  assert Engine(*_built(lm)).packed_G == ()  # a language model's members read token embeddings


def test_a_bad_pack_mode_is_named():
  config = packed_config("maybe")
  with pytest.raises(ConfigError, match=r"train.pack: must be one of"):
    build(config)
  config = packed_config()
  config.model.compute_dtype = "float16"
  with pytest.raises(ConfigError, match=r"model.compute_dtype: must be one of"):
    build(config)


def _built(config):
  problem, groups = build(config)
  return config, problem, groups


def test_a_workdir_written_before_packing_resumes_with_plain_groups(whole):
  saved = storage.read_json(epath.Path(whole) / "config.json")
  assert resolve_saved(saved).train.pack == "on"
  del saved["train"]["pack"]
  assert resolve_saved(saved).train.pack == "off"
