"""The OLMo size ladder: parameter counts, sizing rules, messages, memory, and `python -m launch.ladder`."""

import json
import os
import subprocess
import sys

import jax
import pytest

from scaling_interference.errors import ConfigError
from scaling_interference.models import ladder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER_NAMES = "4M, 6M, 8M, 10M, 14M, 16M, 20M, 60M, 90M, 150M, 300M, 530M, 750M, 1B, 4B"


def expected_params(d_model, n_layers, vocab, qk_norm=True):
  """Tied embedding + per layer (4 D^2 attention + 3 D 4D SwiGLU + 2 D norms [+ 2 D QK-norms]) + final norm."""
  per_layer = 4 * d_model**2 + 3 * d_model * 4 * d_model + 2 * d_model + (2 * d_model if qk_norm else 0)
  return vocab * d_model + n_layers * per_layer + d_model


def count_without_allocating(model):
  return sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))


@pytest.mark.parametrize("name", list(ladder.PRESETS))
def test_every_preset_counts_its_parameters(name):
  model = ladder.preset(name, vocab_size=None if name in ladder.LADDER else 97)
  shape = ladder.PRESETS[name]
  assert model.n_params == expected_params(shape["d_model"], shape["n_layers"], model.vocab_size)
  assert count_without_allocating(model) == model.n_params


def test_4m_preset_is_the_ladders_3744832():
  model = ladder.preset("4M")
  assert (model.vocab_size, model.d_model, model.n_heads, model.n_layers) == (50_304, 64, 8, 8)
  # 50304*64 embedding + 8 * (4*64*64 + 3*64*256 + 2*64) + 64 final norm
  assert 50_304 * 64 + 8 * (4 * 64 * 64 + 3 * 64 * 256 + 2 * 64) + 64 == 3_744_832
  assert model.n_params_without_qk_norm == 3_744_832, "the OLMo ladder's published 4M count"
  assert model.n_params == 3_744_832 + 8 * 2 * 64


def test_small_preset_real_count():
  model = ladder.preset("tiny-a", vocab_size=64)
  assert sum(x.size for x in jax.tree.leaves(model.init(jax.random.key(0)))) == model.n_params


def test_vocab_and_field_overrides():
  model = ladder.preset("4M", vocab_size=1000, remat=True, compute_dtype="bfloat16")
  assert model.vocab_size == 1000 and model.remat and model.compute_dtype == "bfloat16"
  assert ladder.preset("4M").n_params - model.n_params == (50_304 - 1000) * 64
  with pytest.raises(ConfigError, match=r"model\.widht: not an OLMo field"):
    ladder.preset("4M", widht=3)


def test_unknown_size_lists_the_ladder():
  with pytest.raises(ConfigError) as error:
    ladder.preset("5M")
  assert str(error.value).startswith(f"model.sizes: unknown size '5M'; the ladder is: {LADDER_NAMES}")


def test_heads_must_divide_d_model():
  with pytest.raises(ConfigError, match=r"^model\.n_heads: must divide d_model=64, got n_heads=7$"):
    ladder.preset("4M", n_heads=7)
  with pytest.raises(ConfigError, match=r"^model\.n_heads: must divide d_model=100"):
    ladder.validate_shape(100, 8)
  with pytest.raises(ConfigError, match=r"^model\.n_heads: head size .* must be even"):
    ladder.validate_shape(96, 32)


def test_bad_options_name_their_field():
  with pytest.raises(ConfigError, match=r"^model\.compute_dtype: must be one of"):
    ladder.preset("4M", compute_dtype="fp8")
  with pytest.raises(ConfigError, match=r"^model\.attention_impl: 'cudnn' needs compute_dtype='bfloat16'"):
    ladder.preset("4M", attention_impl="cudnn")
  with pytest.raises(ConfigError, match=r"^model\.d_model: must be a positive integer, got 0"):
    ladder.validate_shape(0, 8)


def test_tiny_presets_need_the_run_vocabulary():
  with pytest.raises(ConfigError, match=r"^model\.vocab_size: preset 'tiny-c' takes the run's vocabulary"):
    ladder.preset("tiny-c")


def test_ladder_rules_for_4m_150m_1b():
  rows = {row["name"]: row for row in ladder.ladder_table()}
  # golden numbers: lr = 0.0047 (N/108M)^(-1/3), batch = round(160 (N/108M)^(2/3)), warmup = N / (batch*2048)
  golden = {
    "4M": (3_745_856, 0.014412, 17, 108),
    "150M": (151_917_312, 0.0041947, 201, 369),
    "1B": (1_176_897_536, 0.0021200, 786, 731),
  }
  for name, (n, lr, batch, warmup) in golden.items():
    row = rows[name]
    assert row["n_params"] == n
    assert row["lr"] == pytest.approx(0.0047 * (n / 108e6) ** (-1 / 3), rel=1e-12)
    assert row["lr"] == pytest.approx(lr, rel=1e-4), f"{name}: ladder lr changed"
    assert (row["batch_size"], row["warmup_steps"]) == (batch, warmup), f"{name}: ladder batch/warmup changed"
  assert ladder.ladder_warmup_steps(108e6, 2048 * 160) == 330


def test_memory_estimate():
  model = ladder.preset("4M")
  n = model.n_params
  assert ladder.memory_bytes(model, 0, 2048) == 16 * n, "fp32 params + grads + two Adam moments"
  assert ladder.memory_bytes(model, 0, 2048, optimizer_states=0, param_bytes=2) == 4 * n
  one, two = ladder.memory_bytes(model, 1, 2048), ladder.memory_bytes(model, 2, 2048)
  assert two - one == one - 16 * n > 0, "activations grow linearly with the batch"
  assert ladder.memory_bytes(ladder.preset("4M", remat=True), 1, 2048) < one
  assert ladder.memory_bytes(ladder.preset("4M", compute_dtype="bfloat16"), 1, 2048) < one


def test_launch_ladder_prints_json():
  cmd = [sys.executable, "-m", "launch.ladder", "--format=json"]
  result = subprocess.run(
    cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"}
  )
  assert result.returncode == 0, result.stderr
  rows = json.loads(result.stdout)
  assert [row["name"] for row in rows] == list(ladder.LADDER)
  assert rows == json.loads(json.dumps(ladder.ladder_table()))


def test_the_plan_table_prices_each_size_from_its_flops_and_memory():
  rows = {r["name"]: r for r in ladder.plan_table(batch_size=512, remat=True, peak_flops=1e15, mfu=0.5)}
  model = ladder.preset("1B", remat=True, compute_dtype="bfloat16")
  assert rows["1B"]["tokens_per_step"] == 512 * 2048
  assert rows["1B"]["gpu_hours_per_1b_tokens"] == pytest.approx(model.flops_per_token(2048) * 1e9 / 5e14 / 3600)
  assert rows["1B"]["devices_80gib"] == -(-ladder.memory_bytes(model, 512, 2048) // (80 * 2**30))
  assert list(rows) == list(ladder.LADDER)
