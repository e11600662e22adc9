"""An OLMo 2 style decoder-only transformer in Flax NNX, used through pure functions.

Architecture (OLMo 2): token embedding, then `n_layers` blocks
    h = h + RMSNorm(attention(h));  h = h + RMSNorm(SwiGLU(h))
(the "reordered norm": each sublayer's OUTPUT is normed before the residual add), a final
RMSNorm and a readout. Details:
- RMSNorm: learned scale (init 1), eps 1e-6, computed in float32.
- QK-norm: one RMSNorm over the full d_model-wide q projection and one over the k
  projection (as OLMo 2 does), before the split into heads and before the rotary embedding.
- Rotary embeddings on q and k, rotate-half layout (GPT-NeoX / OLMo), theta 500,000 by
  default (OLMo 2; OLMo 1 used 10,000).
- SwiGLU MLP: down(silu(gate(x)) * up(x)), hidden size mlp_ratio * d_model.
- No biases. Every matrix (embedding included) is drawn from a normal with std 0.02
  truncated at 3 std, as OLMo's `trunc_normal_(std=0.02, a=-3 std, b=3 std)`.
- Causal attention through `jax.nn.dot_product_attention(is_causal=True)`. Its default
  (`attention_impl=None`) is XLA's kernel in jax 0.10; pass "cudnn" on GPU (bf16 compute
  only) for the fused flash kernel.
- Tied embeddings by default: logits = final_norm(h) @ embedding^T; untied adds a
  (d_model, vocab) `unembed` matrix. Logits are float32 whatever the compute dtype.
- `compute_dtype` "bfloat16" runs matmuls and the residual stream in bf16; params stay
  float32 (norms and rotary run in float32 and cast back).

muP (`mup_base_width=B`, width multiplier m = d_model / B): hidden matrices (q, k, v, o,
gate, up, down) start with std 0.02 / sqrt(m); logits are multiplied by 1 / m; attention
scores use 1/d_head instead of 1/sqrt(d_head); and `mup_lr_scales(params)` gives Adam
learning-rate multipliers 1/m for hidden matrices and 1 for embedding, unembedding and
norm scales. Embedding and readout keep std 0.02. What muP makes width-independent is the
size of an update's effect (the tests check the logit change after Adam's first step);
logits at init shrink like 1/sqrt(m). With 1/d_head, muP at the base width is not exactly
the standard model (whose scores use 1/sqrt(d_head)).

Params are a pure dict (nested by module, integer keys for blocks):
    {"embedding": VxD, "blocks": {i: {"attn": {"q"|"k"|"v"|"o": {"kernel": DxD},
     "q_norm"|"k_norm": {"scale": D}}, "attn_norm": {"scale": D},
     "mlp": {"gate"|"up": {"kernel": DxW}, "down": {"kernel": WxD}}, "mlp_norm": {"scale": D}}},
     "final_norm": {"scale": D}, "unembed": DxV (untied only)}
The sweep engine stacks members' dicts on a leading axis (`jax.vmap(model_def.init)(keys)`
builds them stacked) and calls `jax.vmap(model_def.apply, in_axes=(0, None))(params, tokens_BxL)`.
`hidden_states` gives n_layers + 1 residual streams (index i: after i blocks) for probes.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_interference.errors import ConfigError
from scaling_interference.models.mlp import COMPUTE_DTYPES

INIT_STD = 0.02
NORM_EPS = 1e-6
ATTENTION_IMPLS = (None, "xla", "cudnn")


def truncated_init(std):
  """Normal(0, std) truncated at 3 std, as OLMo initialises its matrices."""
  return jax.nn.initializers.truncated_normal(stddev=std, lower=-3.0, upper=3.0)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, computed in float32, returned in x's dtype."""

  def __init__(self, dim):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))

  def __call__(self, x_BxLxD):
    x = x_BxLxD.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + NORM_EPS)
    return (y * self.scale[...]).astype(x_BxLxD.dtype)


def rotary(x_BxLxXxH, theta):
  """Rotary position embedding (rotate-half layout) for positions 0..L-1."""
  L, H = x_BxLxXxH.shape[-3], x_BxLxXxH.shape[-1]
  half = H // 2
  inv_freq_F = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_LxF = jnp.arange(L, dtype=jnp.float32)[:, None] * inv_freq_F[None, :]
  cos_Lx1xF, sin_Lx1xF = jnp.cos(angle_LxF)[:, None, :], jnp.sin(angle_LxF)[:, None, :]
  x = x_BxLxXxH.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos_Lx1xF - x2 * sin_Lx1xF, x2 * cos_Lx1xF + x1 * sin_Lx1xF], -1)
  return out.astype(x_BxLxXxH.dtype)


class Dense(nnx.Module):
  """x @ kernel, no bias; the float32 kernel is cast to the compute dtype for the matmul."""

  def __init__(self, d_in, d_out, std, dtype, key):
    self.kernel = nnx.Param(truncated_init(std)(key, (d_in, d_out), jnp.float32))
    self.dtype = dtype

  def __call__(self, x_BxLxI):
    return x_BxLxI.astype(self.dtype) @ self.kernel[...].astype(self.dtype)


def _dense(cfg, d_in, d_out, key):
  return Dense(d_in, d_out, cfg.hidden_std, cfg.dtype, key)


class Attention(nnx.Module):
  """Causal multi-head self-attention with optional QK-norm and rotary embeddings."""

  def __init__(self, cfg, key):
    D = cfg.d_model
    self.q, self.k, self.v, self.o = (_dense(cfg, D, D, k) for k in jax.random.split(key, 4))
    self.q_norm = RMSNorm(D) if cfg.qk_norm else None
    self.k_norm = RMSNorm(D) if cfg.qk_norm else None
    self.cfg = cfg

  def __call__(self, h_BxLxD):
    cfg = self.cfg
    B, L, D = h_BxLxD.shape
    q_BxLxD, k_BxLxD, v_BxLxD = self.q(h_BxLxD), self.k(h_BxLxD), self.v(h_BxLxD)
    if cfg.qk_norm:
      q_BxLxD, k_BxLxD = self.q_norm(q_BxLxD), self.k_norm(k_BxLxD)
    heads = (B, L, cfg.n_heads, cfg.d_head)
    q_BxLxXxH = rotary(q_BxLxD.reshape(heads), cfg.rope_theta)
    k_BxLxXxH = rotary(k_BxLxD.reshape(heads), cfg.rope_theta)
    out_BxLxXxH = jax.nn.dot_product_attention(
      q_BxLxXxH,
      k_BxLxXxH,
      v_BxLxD.reshape(heads),
      scale=cfg.attn_scale,
      is_causal=True,
      implementation=cfg.attention_impl,
    )
    return self.o(out_BxLxXxH.reshape(B, L, D))


class SwiGLU(nnx.Module):
  """down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg, key):
    gate_key, up_key, down_key = jax.random.split(key, 3)
    self.gate = _dense(cfg, cfg.d_model, cfg.mlp_hidden, gate_key)
    self.up = _dense(cfg, cfg.d_model, cfg.mlp_hidden, up_key)
    self.down = _dense(cfg, cfg.mlp_hidden, cfg.d_model, down_key)

  def __call__(self, h_BxLxD):
    return self.down(jax.nn.silu(self.gate(h_BxLxD)) * self.up(h_BxLxD))


class Block(nnx.Module):
  """One OLMo 2 block: the norm on each sublayer's output, before the residual add."""

  def __init__(self, cfg, key):
    attn_key, mlp_key = jax.random.split(key)
    self.attn = Attention(cfg, attn_key)
    self.attn_norm = RMSNorm(cfg.d_model)
    self.mlp = SwiGLU(cfg, mlp_key)
    self.mlp_norm = RMSNorm(cfg.d_model)

  def __call__(self, h_BxLxD):
    h_BxLxD = h_BxLxD + self.attn_norm(self.attn(h_BxLxD))
    return h_BxLxD + self.mlp_norm(self.mlp(h_BxLxD))


def _call_block(block, h_BxLxD):
  return block(h_BxLxD)


class OLMo(nnx.Module):
  """Embedding, `n_layers` blocks, final norm, tied or untied readout."""

  def __init__(self, cfg, key):
    init = truncated_init(INIT_STD)
    embed_key, unembed_key, blocks_key = jax.random.split(key, 3)
    self.embedding = nnx.Param(init(embed_key, (cfg.vocab_size, cfg.d_model), jnp.float32))
    self.blocks = nnx.List([Block(cfg, k) for k in jax.random.split(blocks_key, cfg.n_layers)])
    self.final_norm = RMSNorm(cfg.d_model)
    self.unembed = (
      None if cfg.tie_embeddings else nnx.Param(init(unembed_key, (cfg.d_model, cfg.vocab_size), jnp.float32))
    )
    self.cfg = cfg

  def residual_streams(self, tokens_BxL):
    """[embedding, after block 1, ..., after block n_layers], each BxLxD in compute dtype."""
    call = nnx.remat(_call_block) if self.cfg.remat else _call_block
    streams = [self.embedding[...][tokens_BxL].astype(self.cfg.dtype)]
    for block in self.blocks:
      streams.append(call(block, streams[-1]))
    return streams

  def readout(self, h_BxLxD):
    """float32 logits from the last residual stream."""
    x_BxLxD = self.final_norm(h_BxLxD)
    if self.cfg.tie_embeddings:
      logits_BxLxV = jnp.einsum(
        "bld,vd->blv", x_BxLxD, self.embedding[...].astype(x_BxLxD.dtype), preferred_element_type=jnp.float32
      )
    else:
      logits_BxLxV = jnp.einsum(
        "bld,dv->blv", x_BxLxD, self.unembed[...].astype(x_BxLxD.dtype), preferred_element_type=jnp.float32
      )
    return logits_BxLxV * self.cfg.logit_scale

  def __call__(self, tokens_BxL):
    return self.readout(self.residual_streams(tokens_BxL)[-1])


def validate_shape(d_model, n_heads, n_layers=1, vocab_size=1):
  """Raises ConfigError naming the field when the shape cannot be built."""
  for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers), ("vocab_size", vocab_size)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"model.{name}: must be a positive integer, got {value!r}")
  if d_model % n_heads:
    raise ConfigError(f"model.n_heads: must divide d_model={d_model}, got n_heads={n_heads}")
  if (d_model // n_heads) % 2:
    raise ConfigError(
      f"model.n_heads: head size d_model / n_heads = {d_model // n_heads} must be even "
      f"for rotary embeddings (d_model={d_model}, n_heads={n_heads})"
    )


def _validate_options(cfg):
  if cfg.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"model.compute_dtype: must be one of {sorted(COMPUTE_DTYPES)}, got {cfg.compute_dtype!r}")
  if cfg.attention_impl not in ATTENTION_IMPLS:
    raise ConfigError(f"model.attention_impl: must be one of {ATTENTION_IMPLS}, got {cfg.attention_impl!r}")
  if cfg.attention_impl == "cudnn" and cfg.compute_dtype != "bfloat16":
    raise ConfigError("model.attention_impl: 'cudnn' needs compute_dtype='bfloat16'")
  base = cfg.mup_base_width
  if base is not None and (not isinstance(base, int) or base < 1):
    raise ConfigError(f"model.mup_base_width: must be None or a positive integer, got {base!r}")


@dataclasses.dataclass(frozen=True)
class OLMoDef:
  """The shape of an OLMo member; a hashable description that builds and applies it."""

  vocab_size: int
  d_model: int
  n_heads: int
  n_layers: int
  mlp_ratio: int = 4
  rope_theta: float = 500_000.0
  tie_embeddings: bool = True
  qk_norm: bool = True
  remat: bool = False
  compute_dtype: str = "float32"
  max_seq_len: int = 2048
  mup_base_width: int | None = None
  attention_impl: str | None = None

  def __post_init__(self):
    validate_shape(self.d_model, self.n_heads, self.n_layers, self.vocab_size)
    _validate_options(self)

  @property
  def d_head(self) -> int:
    return self.d_model // self.n_heads

  @property
  def mlp_hidden(self) -> int:
    return self.mlp_ratio * self.d_model

  @property
  def dtype(self):
    return COMPUTE_DTYPES[self.compute_dtype]

  @property
  def width_mult(self) -> float:
    """muP's d_model / base width; 1 without muP."""
    return 1.0 if self.mup_base_width is None else self.d_model / self.mup_base_width

  @property
  def hidden_std(self) -> float:
    return INIT_STD / self.width_mult**0.5

  @property
  def logit_scale(self) -> float:
    return 1.0 / self.width_mult

  @property
  def attn_scale(self) -> float:
    return 1.0 / (self.d_head if self.mup_base_width is not None else self.d_head**0.5)

  def _module(self, key):
    return OLMo(self, key)

  def init(self, key) -> dict:
    """Fresh params as a pure dict (jitted, compiled once per shape)."""
    return _init_params(self, key)

  def bind(self, params: dict) -> OLMo:
    """The NNX module holding `params` (for apply, probes and analysis)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: self._module(jax.random.key(0))))
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)

  def _check_length(self, tokens_BxL):
    if tokens_BxL.shape[-1] > self.max_seq_len:
      raise ValueError(f"sequence length {tokens_BxL.shape[-1]} exceeds max_seq_len={self.max_seq_len}")

  def apply(self, params: dict, tokens_BxL):
    """float32 logits BxLxV."""
    self._check_length(tokens_BxL)
    return self.bind(params)(tokens_BxL)

  def hidden_states(self, params: dict, tokens_BxL) -> list:
    """n_layers + 1 residual streams (float32 BxLxD): index i is the stream after i blocks."""
    self._check_length(tokens_BxL)
    return [h.astype(jnp.float32) for h in self.bind(params).residual_streams(tokens_BxL)]

  @property
  def n_params_without_qk_norm(self) -> int:
    D, V = self.d_model, self.vocab_size
    per_layer = 4 * D * D + 3 * D * self.mlp_hidden + 2 * D
    readout = 0 if self.tie_embeddings else D * V
    return V * D + readout + self.n_layers * per_layer + D

  @property
  def n_params(self) -> int:
    return self.n_params_without_qk_norm + (2 * self.d_model * self.n_layers if self.qk_norm else 0)

  def flops_per_token(self, seq_len: int | None = None) -> int:
    """Training FLOPs per token, PaLM's count: 6 x matmul params + 12 x n_layers x d_model x seq_len.

    Matmul params are the blocks' matrices plus the d_model x vocab readout (tied or not);
    the embedding lookup and norms are free. The attention term counts full (not causal)
    score and value products, forward and backward, as PaLM (Chowdhery et al. 2022, app. B).
    """
    seq_len = self.max_seq_len if seq_len is None else seq_len
    D = self.d_model
    matmul = self.n_layers * (4 * D * D + 3 * D * self.mlp_hidden) + D * self.vocab_size
    return 6 * matmul + 12 * self.n_layers * D * seq_len

  def mup_lr_scales(self, params: dict) -> dict:
    """Per-leaf learning-rate multipliers: 1 / width_mult for hidden matrices, 1 elsewhere."""
    hidden = 1.0 / self.width_mult

    def scale(path, _):
      return hidden if getattr(path[-1], "key", None) == "kernel" else 1.0

    return jax.tree_util.tree_map_with_path(scale, params)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model_def, key):
  return nnx.to_pure_dict(nnx.state(model_def._module(key), nnx.Param))


def lm_loss(logits_BxLxV, targets_BxL, weights_BxL, z_loss=1e-5):
  """(cross-entropy, z_loss * logsumexp^2), each BxL and multiplied by the weights.

  The training loss is (ce + z).sum() / weights.sum(), as OLMo / PaLM.
  """
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  lse_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
  target_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  return (lse_BxL - target_BxL) * weights_BxL, z_loss * jnp.square(lse_BxL) * weights_BxL
