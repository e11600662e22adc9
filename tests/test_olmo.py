"""The OLMo decoder against independent references: numpy norms and losses, causality, RoPE algebra, muP."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_interference.models.olmo import OLMoDef, lm_loss, rotary

V, D, L = 37, 32, 8
TRUNCATED_STD = 0.98658  # std of a unit normal truncated at +-3


def tiny(**fields):
  return OLMoDef(**{"vocab_size": V, "d_model": D, "n_heads": 4, "n_layers": 2, "max_seq_len": 16, **fields})


def count(params):
  return sum(x.size for x in jax.tree.leaves(params))


@functools.partial(jax.jit, static_argnums=0)
def logits_of(model, params, tokens_BxL):
  return model.apply(params, tokens_BxL)


@functools.partial(jax.jit, static_argnums=0)
def streams_of(model, params, tokens_BxL):
  return model.hidden_states(params, tokens_BxL)


def rms_norm(x, scale):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale


@pytest.fixture(scope="module")
def params():
  return tiny().init(jax.random.key(0))


@pytest.fixture(scope="module")
def tokens():
  return jax.random.randint(jax.random.key(1), (2, L), 0, V)


def test_param_count_and_layout(params):
  # V*D + 2 layers * (4*D*D attention + 3*D*4D SwiGLU + 2*D norms + 2*D QK-norms) + D final norm
  assert count(params) == tiny().n_params == 37 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 128 + 4 * 32) + 32 == 34240
  assert tiny(qk_norm=False).n_params == tiny().n_params_without_qk_norm == 34240 - 2 * 2 * 32
  assert count(jax.eval_shape(tiny(qk_norm=False).init, jax.random.key(0))) == 34240 - 128
  assert set(params) == {"embedding", "blocks", "final_norm"}, "tied: no separate readout matrix"
  assert set(params["blocks"][1]["attn"]) == {"q", "k", "v", "o", "q_norm", "k_norm"}
  assert params["blocks"][0]["mlp"]["gate"]["kernel"].shape == (D, 4 * D)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_init_is_truncated_normal_std_002(params):
  kernel = np.asarray(params["blocks"][0]["mlp"]["up"]["kernel"])
  assert abs(kernel.std() / (0.02 * TRUNCATED_STD) - 1) < 0.05
  assert np.abs(kernel).max() <= 3 * 0.02 + 1e-7, "OLMo truncates at 3 std"
  assert np.all(np.asarray(params["blocks"][0]["attn_norm"]["scale"]) == 1)


def test_logits_do_not_depend_on_future_tokens(params, tokens):
  logits = logits_of(tiny(), params, tokens)
  for t in range(L - 1):
    changed = tokens.at[:, t + 1 :].set((tokens[:, t + 1 :] + 1) % V)
    other = logits_of(tiny(), params, changed)
    np.testing.assert_allclose(
      other[:, : t + 1],
      logits[:, : t + 1],
      rtol=0,
      atol=1e-6,
      err_msg=f"position <= {t} sees a later token: the causal mask is broken",
    )
    assert np.abs(other[:, t + 1 :] - logits[:, t + 1 :]).max() > 1e-4


def test_rotary_matches_complex_rotation():
  x = np.asarray(jax.random.normal(jax.random.key(2), (1, L, 2, 8)))
  theta = 10_000.0
  z = x[..., :4] + 1j * x[..., 4:]  # rotate-half pairs coordinate i with i + H/2
  angle = np.arange(L)[:, None, None] * theta ** (-np.arange(4) / 4)
  expected = z * np.exp(1j * angle)
  out = np.asarray(jax.jit(rotary, static_argnums=1)(jnp.asarray(x), theta))
  np.testing.assert_allclose(out[..., :4] + 1j * out[..., 4:], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rotary_dot_depends_only_on_relative_position():
  q_H, k_H = jax.random.normal(jax.random.key(3), (2, 16))
  rq_LxH = rotary(jnp.broadcast_to(q_H, (1, 12, 1, 16)), 500_000.0)[0, :, 0]
  rk_LxH = rotary(jnp.broadcast_to(k_H, (1, 12, 1, 16)), 500_000.0)[0, :, 0]
  dots_LxL = np.asarray(rq_LxH @ rk_LxH.T)  # [m, n] = q_m . k_n
  for offset in (-5, -1, 0, 2, 7):
    diagonal = np.diagonal(dots_LxL, offset)
    np.testing.assert_allclose(diagonal, diagonal[0], rtol=1e-4, atol=1e-5)
  assert np.ptp(dots_LxL[0]) > 1e-3, "the dot product must change with the offset"


def test_tied_readout_uses_the_embedding(params, tokens):
  model = tiny()
  streams = streams_of(model, params, tokens)
  assert len(streams) == model.n_layers + 1
  np.testing.assert_allclose(streams[0], np.asarray(params["embedding"])[np.asarray(tokens)], rtol=1e-6)
  x = rms_norm(np.asarray(streams[-1]), np.asarray(params["final_norm"]["scale"]))
  expected = x @ np.asarray(params["embedding"]).T
  np.testing.assert_allclose(logits_of(model, params, tokens), expected, rtol=1e-4, atol=1e-5)


def test_untied_readout_has_its_own_matrix(params, tokens):
  model = tiny(tie_embeddings=False)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  assert shapes["unembed"].shape == (D, V)
  assert count(shapes) == model.n_params == tiny().n_params + D * V
  as_tied = {**params, "unembed": params["embedding"].T}
  np.testing.assert_allclose(
    logits_of(model, as_tied, tokens),
    logits_of(tiny(), params, tokens),
    rtol=1e-5,
    atol=1e-6,
    err_msg="an unembedding equal to the embedding's transpose must match tying",
  )
  other = {**params, "unembed": jax.random.normal(jax.random.key(4), (D, V))}
  x = rms_norm(np.asarray(streams_of(tiny(), params, tokens)[-1]), np.asarray(params["final_norm"]["scale"]))
  np.testing.assert_allclose(logits_of(model, other, tokens), x @ np.asarray(other["unembed"]), rtol=1e-4, atol=1e-4)


def test_lm_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = 3 * rng.normal(size=(2, 5, 11))
  targets = rng.integers(0, 11, (2, 5))
  weights = rng.integers(0, 2, (2, 5)).astype(np.float64)
  loss = jax.jit(functools.partial(lm_loss, z_loss=1e-4))
  ce, z = loss(jnp.asarray(logits, jnp.float32), jnp.asarray(targets), jnp.asarray(weights, jnp.float32))
  top = logits.max(-1)
  lse = top + np.log(np.exp(logits - top[..., None]).sum(-1))
  target_logit = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(ce, (lse - target_logit) * weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(z, 1e-4 * lse**2 * weights, rtol=1e-5, atol=1e-9)


def test_bf16_compute_returns_float32_logits_close_to_float32(params, tokens):
  full = logits_of(tiny(), params, tokens)
  half = logits_of(tiny(compute_dtype="bfloat16"), params, tokens)
  assert half.dtype == jnp.float32
  assert np.abs(half - full).max() < 0.05 * np.abs(full).max()


def test_remat_gives_identical_outputs_and_gradients(params, tokens):
  one_block = {**params, "blocks": {0: params["blocks"][0]}}

  def value_and_grad(model):
    def loss(p):
      ce, z = lm_loss(model.apply(p, tokens[:, :-1]), tokens[:, 1:], jnp.ones((2, L - 1)))
      return (ce + z).mean()

    return jax.jit(jax.value_and_grad(loss))(one_block)

  jaxpr = str(jax.make_jaxpr(tiny(n_layers=1, remat=True).apply)(one_block, tokens))
  assert "remat" in jaxpr, "remat=True must checkpoint each block"
  plain_loss, plain_grads = value_and_grad(tiny(n_layers=1))
  remat_loss, remat_grads = value_and_grad(tiny(n_layers=1, remat=True))
  np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(plain_grads), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_apply_under_vmap_equals_each_member(params, tokens):
  model = tiny()
  other = model.init(jax.random.key(5))
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
  logits_2xBxLxV = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, tokens)
  np.testing.assert_allclose(logits_2xBxLxV[1], logits_of(model, other, tokens), rtol=1e-5, atol=1e-6)


def test_flops_per_token_is_palm_formula():
  model = tiny()
  matmul = 2 * (4 * D * D + 3 * D * 4 * D) + D * V
  assert model.flops_per_token(seq_len=8) == 6 * matmul + 12 * 2 * D * 8
  assert model.flops_per_token() == 6 * matmul + 12 * 2 * D * 16


def test_mup_lr_scales_per_leaf():
  model = tiny(d_model=128, mup_base_width=32, tie_embeddings=False)
  scales = model.mup_lr_scales(jax.eval_shape(model.init, jax.random.key(0)))
  block = scales["blocks"][1]
  for matrix in (block["attn"]["q"], block["attn"]["o"], block["mlp"]["gate"], block["mlp"]["down"]):
    assert matrix["kernel"] == 0.25, "hidden matrices: lr x base / d_model"
  assert scales["embedding"] == scales["unembed"] == 1.0
  assert block["attn"]["q_norm"]["scale"] == block["mlp_norm"]["scale"] == scales["final_norm"]["scale"] == 1.0
  assert sorted(jax.tree.leaves(scales)).count(0.25) == 7 * model.n_layers
  assert set(jax.tree.leaves(tiny().mup_lr_scales(jax.eval_shape(tiny().init, jax.random.key(0))))) == {1.0}
  assert model.attn_scale == 1 / 32 and model.logit_scale == 0.25
  assert tiny(d_model=128).attn_scale == 1 / 32**0.5


def test_mup_hidden_init_shrinks_with_width():
  model = OLMoDef(vocab_size=64, d_model=256, n_heads=4, n_layers=1, mup_base_width=32)
  params = model.init(jax.random.key(0))
  hidden = np.asarray(params["blocks"][0]["mlp"]["gate"]["kernel"]).std()
  assert abs(hidden / (0.02 * (32 / 256) ** 0.5 * TRUNCATED_STD) - 1) < 0.05
  assert abs(np.asarray(params["embedding"]).std() / (0.02 * TRUNCATED_STD) - 1) < 0.05


def logit_change_after_first_adam_step(model, lr=1e-3):
  """Std of the logit change after Adam's first step (lr x multiplier x sign(grad)) from init."""
  tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, model.vocab_size)

  def loss(p):
    logits = model.apply(p, tokens[:, :-1])
    return lm_loss(logits, tokens[:, 1:], jnp.ones((2, 8)))[0].mean(), logits

  @jax.jit
  def change(key):
    params = model.init(key)
    grads, logits = jax.grad(loss, has_aux=True)(params)
    stepped = jax.tree.map(lambda w, g, s: w - lr * s * jnp.sign(g), params, grads, model.mup_lr_scales(params))
    return (model.apply(stepped, tokens[:, :-1]) - logits).std()

  return float(change(jax.random.key(0)))


def test_mup_update_size_is_width_independent():
  def model(d_model, base):
    return OLMoDef(vocab_size=64, d_model=d_model, n_heads=4, n_layers=1, max_seq_len=8, mup_base_width=base)

  narrow, wide = logit_change_after_first_adam_step(model(32, 32)), logit_change_after_first_adam_step(model(256, 32))
  standard_wide = logit_change_after_first_adam_step(model(256, None))
  assert 0.5 < wide / narrow < 2, f"muP: one step moves logits by {narrow:.3g} at width 32, {wide:.3g} at 256"
  assert standard_wide / narrow > 3, "standard parametrisation: the same step moves wide models' logits more"
