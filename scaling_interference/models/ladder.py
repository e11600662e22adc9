"""The OLMo size ladder as named presets, its sizing rules, and a memory estimate.

Ladder presets (d_model / heads / layers) follow OLMo's ladder: SwiGLU hidden 4 x d_model,
vocabulary 50,304 (overridable), tied embeddings, sequences of 2048 tokens. The 4B point is
ours: 3328/32/32 would hold 5.84B parameters with 4x SwiGLU, so "4B" continues the
300M..1B rule instead (16 layers, width grows, head size 128 as at 1B): 3840/30/16, 3.97B.
Tiny presets ("tiny-a".."tiny-e") are for CPU runs and take the run's vocabulary size.

Sizing rules (OLMo ladder, N = parameters): peak lr 0.0047 (N / 108M)^(-1/3); batch
160 (N / 108M)^(2/3) sequences of 2048 tokens; warmup N / tokens-per-batch steps.
"""

import dataclasses

from scaling_interference.errors import ConfigError
from scaling_interference.models.olmo import OLMoDef, validate_shape  # noqa: F401 (validate_shape is API)

LADDER_VOCAB = 50_304
LADDER_SEQ_LEN = 2048
REFERENCE_PARAMS = 108e6


def _shape(d_model, n_heads, n_layers):
  return {"d_model": d_model, "n_heads": n_heads, "n_layers": n_layers}


LADDER = {
  "4M": _shape(64, 8, 8),
  "6M": _shape(96, 8, 8),
  "8M": _shape(128, 8, 8),
  "10M": _shape(144, 8, 8),
  "14M": _shape(192, 8, 8),
  "16M": _shape(208, 8, 8),
  "20M": _shape(192, 8, 16),
  "60M": _shape(384, 12, 16),
  "90M": _shape(528, 12, 16),
  "150M": _shape(768, 12, 12),
  "300M": _shape(1024, 16, 16),
  "530M": _shape(1344, 16, 16),
  "750M": _shape(1536, 16, 16),
  "1B": _shape(2048, 16, 16),
  "4B": _shape(3840, 30, 16),
}
TINY = {
  "tiny-a": _shape(32, 4, 2),
  "tiny-b": _shape(48, 4, 2),
  "tiny-c": _shape(64, 4, 3),
  "tiny-d": _shape(96, 4, 3),
  "tiny-e": _shape(128, 4, 4),
}
PRESETS = {**LADDER, **TINY}


def _unknown_size(name):
  return ConfigError(
    f"model.sizes: unknown size {name!r}; the ladder is: {', '.join(LADDER)} (CPU presets: {', '.join(TINY)})"
  )


def preset(name: str, vocab_size: int | None = None, **overrides) -> OLMoDef:
  """The OLMoDef of a named size; ladder sizes default to vocabulary 50,304."""
  if name not in PRESETS:
    raise _unknown_size(name)
  if vocab_size is None and name in TINY:
    raise ConfigError(f"model.vocab_size: preset {name!r} takes the run's vocabulary size; none was given")
  fields = {f.name for f in dataclasses.fields(OLMoDef)}
  for key in overrides:
    if key not in fields or key == "vocab_size":
      raise ConfigError(f"model.{key}: not an OLMo field to override; fields: {', '.join(sorted(fields))}")
  kwargs = {**PRESETS[name], "max_seq_len": LADDER_SEQ_LEN, **overrides}
  return OLMoDef(vocab_size=LADDER_VOCAB if vocab_size is None else vocab_size, **kwargs)


def ladder_lr(n_params: int) -> float:
  return 0.0047 * (n_params / REFERENCE_PARAMS) ** (-1 / 3)


def ladder_batch_size(n_params: int) -> int:
  """Sequences of 2048 tokens per batch, at least 1."""
  return max(1, round(160 * (n_params / REFERENCE_PARAMS) ** (2 / 3)))


def ladder_warmup_steps(n_params: int, tokens_per_batch: int) -> int:
  """N / tokens-per-batch, at least 1 step."""
  return max(1, round(n_params / tokens_per_batch))


def ladder_table(vocab_size: int | None = None) -> list[dict]:
  """One row per ladder preset: shape, parameters and the ladder's lr, batch and warmup."""
  rows = []
  for name in LADDER:
    model = preset(name, vocab_size)
    n = model.n_params
    batch = ladder_batch_size(n)
    rows.append(
      {
        "name": name,
        "d_model": model.d_model,
        "n_heads": model.n_heads,
        "n_layers": model.n_layers,
        "n_params": n,
        "lr": ladder_lr(n),
        "batch_size": batch,
        "warmup_steps": ladder_warmup_steps(n, batch * LADDER_SEQ_LEN),
      }
    )
  return rows


def table_text(rows: list[dict]) -> str:
  """The ladder table as aligned text."""
  lines = [f"{'name':>6} {'shape':>12} {'n_params':>15} {'lr':>9} {'batch':>6} {'warmup':>7}"]
  for r in rows:
    shape = f"{r['d_model']}/{r['n_heads']}/{r['n_layers']}"
    lines.append(
      f"{r['name']:>6} {shape:>12} {r['n_params']:>15,} {r['lr']:>9.2e} {r['batch_size']:>6} {r['warmup_steps']:>7}"
    )
  return "\n".join(lines)


def memory_bytes(
  model: OLMoDef,
  batch_size: int,
  seq_len: int,
  optimizer_states: int = 2,
  param_bytes: int = 4,
  compute_bytes: int | None = None,
) -> int:
  """Training memory estimate for one model, in bytes.

  params + grads + optimizer states: N x param_bytes x (2 + optimizer_states);
  activations kept for the backward pass, per layer and token: (16 + 4 x mlp_ratio) x d_model
  values of compute_bytes (attention: input, q, k, v, normed and rotated q/k, output,
  projection, its norm, residual = 12; SwiGLU: input, output, norm, residual + gate, up,
  silu, product of size mlp_ratio x d_model), plus n_heads x seq_len softmax probabilities
  unless attention_impl is "cudnn" (fused). With remat only each block's input is kept,
  plus one block's activations during its recomputation. Logits and their gradient: 2 x
  batch x seq_len x vocab float32 values. compute_bytes defaults to the compute dtype's size.
  """
  if compute_bytes is None:
    compute_bytes = 2 if model.compute_dtype == "bfloat16" else 4
  tokens = batch_size * seq_len
  state = model.n_params * param_bytes * (2 + optimizer_states)
  per_token = (16 + 4 * model.mlp_ratio) * model.d_model
  if model.attention_impl != "cudnn":
    per_token += model.n_heads * seq_len
  layer = tokens * per_token * compute_bytes
  if model.remat:
    activations = model.n_layers * tokens * model.d_model * compute_bytes + layer
  else:
    activations = model.n_layers * layer
  logits = 2 * tokens * model.vocab_size * 4
  return state + activations + logits


H100_BF16_FLOPS = 989e12  # an H100 SXM's dense bfloat16 peak
H100_BYTES = 80 * 2**30
ASSUMED_MFU = 0.4


def plan_table(
  batch_size: int,
  seq_len: int = LADDER_SEQ_LEN,
  compute_dtype: str = "bfloat16",
  remat: bool = False,
  peak_flops: float = H100_BF16_FLOPS,
  mfu: float = ASSUMED_MFU,
) -> list[dict]:
  """One row per ladder size for planning a run: parameters, tokens per step, the memory estimate of
  one member with the whole batch on one device, the 80 GiB devices that memory needs when batch
  and states are sharded over them, and the time per 1B training tokens at `mfu` of `peak_flops`
  (flops_per_token)."""
  rows = []
  for name in LADDER:
    model = preset(name, max_seq_len=seq_len, compute_dtype=compute_dtype, remat=remat)
    seconds = model.flops_per_token(seq_len) * 1e9 / (mfu * peak_flops)
    memory = memory_bytes(model, batch_size, seq_len)
    rows.append(
      {
        "name": name,
        "n_params": model.n_params,
        "tokens_per_step": batch_size * seq_len,
        "memory_gib": memory / 2**30,
        "devices_80gib": -(-memory // H100_BYTES),
        "gpu_hours_per_1b_tokens": seconds / 3600,
      }
    )
  return rows


def plan_text(rows: list[dict], mfu: float, peak_flops: float) -> str:
  """The plan as a Markdown table."""
  lines = [
    "| size | parameters | tokens per step | memory per member (GiB) | 80 GiB devices | "
    f"GPU-hours per 1B tokens at {mfu:.0%} of {peak_flops / 1e12:.0f} TFLOP/s |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  lines += [
    f"| {r['name']} | {r['n_params']:,} | {r['tokens_per_step']:,} | {r['memory_gib']:.1f} | "
    f"{r['devices_80gib']} | {r['gpu_hours_per_1b_tokens']:.3g} |"
    for r in rows
  ]
  return "\n".join(lines)
