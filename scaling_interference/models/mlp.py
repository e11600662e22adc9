"""The MLP members of synthetic sweeps, in Flax NNX, used through pure functions.

The engine stacks members' parameters on a leading axis and steps them with `jax.vmap`, so
it needs params as plain pytrees: `MLPDef.init(key)` returns a nested dict, and
`MLPDef.apply(params, x)` merges it into the NNX module for one call.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
  "linear": lambda x: x,
  "relu": jax.nn.relu,
  "gelu": jax.nn.gelu,
  "tanh": jnp.tanh,
  "silu": jax.nn.silu,
}


def torch_init(fan_in: int) -> dict:
  """PyTorch nn.Linear's default: kernel and bias uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
  bound = 1.0 / math.sqrt(fan_in)

  def uniform(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return dict(kernel_init=uniform, bias_init=uniform)


INITS = {
  "lecun": lambda fan_in: {},  # Flax's default: LeCun-normal kernel, zero bias
  "torch": torch_init,
}

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # model.compute_dtype


class MLP(nnx.Module):
  """`depth` hidden layers of `width` units, then a linear readout.

  `dtype` is the matmuls' dtype (bfloat16 on accelerators); parameters stay float32 and the output
  is returned in float32, so losses and metrics are float32 either way."""

  def __init__(
    self, input_dim, width, output_dim, *, depth, activation, use_bias, init="lecun", dtype=jnp.float32, rngs
  ):
    dims = [input_dim] + [width] * depth
    self.hidden = nnx.List(
      [
        nnx.Linear(a, b, use_bias=use_bias, dtype=dtype, rngs=rngs, **INITS[init](a))
        for a, b in zip(dims[:-1], dims[1:], strict=True)
      ]
    )
    self.readout = nnx.Linear(dims[-1], output_dim, use_bias=use_bias, dtype=dtype, rngs=rngs, **INITS[init](dims[-1]))
    self.activation = activation

  def __call__(self, x_BxI):
    if not len(self.hidden):
      return self.readout(x_BxI).astype(jnp.float32)
    return self.from_first(self.hidden[0](x_BxI))

  def from_first(self, pre_BxH):
    """The output from the first hidden layer's pre-activations (packed members: sweep/packed.py)."""
    act = ACTIVATIONS[self.activation]
    h = act(pre_BxH)
    for i in range(1, len(self.hidden)):
      h = act(self.hidden[i](h))
    return self.readout(h).astype(jnp.float32)

  def hidden_states(self, x_BxI):
    """The post-activation representation after every hidden layer (float32)."""
    act = ACTIVATIONS[self.activation]
    states, h = [], x_BxI
    for layer in self.hidden:
      h = act(layer(h))
      states.append(h.astype(jnp.float32))
    return states


@dataclasses.dataclass(frozen=True)
class MLPDef:
  """The shape of an MLP member; a hashable description that builds and applies it."""

  input_dim: int
  width: int
  output_dim: int
  depth: int = 1
  activation: str = "relu"
  use_bias: bool = True
  initializer: str = "lecun"  # a key of INITS (config: model.init)
  init_scale: float = 1.0  # multiplies the init (small values: the rich, saddle-to-saddle regime)
  compute_dtype: str = "float32"  # a key of COMPUTE_DTYPES: the matmuls' dtype

  @property
  def dtype(self):
    return COMPUTE_DTYPES[self.compute_dtype]

  def _module(self, key):
    return MLP(
      self.input_dim,
      self.width,
      self.output_dim,
      depth=self.depth,
      activation=self.activation,
      use_bias=self.use_bias,
      init=self.initializer,
      dtype=self.dtype,
      rngs=nnx.Rngs(params=key),
    )

  def init(self, key) -> dict:
    params = nnx.to_pure_dict(nnx.state(self._module(key), nnx.Param))
    return jax.tree.map(lambda p: p * self.init_scale, params) if self.init_scale != 1.0 else params

  def bind(self, params: dict) -> MLP:
    """The NNX module holding `params` (for apply, probes and analysis)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: self._module(jax.random.key(0))))
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)

  def apply(self, params: dict, x_BxI):
    return self.bind(params)(x_BxI)

  def first_layer(self, params: dict):
    """(kernel, bias or None) of the first hidden layer (any leading member axes kept)."""
    layer = params["hidden"][0]
    return layer["kernel"], layer.get("bias")

  def apply_from_first(self, params: dict, pre_BxH):
    """The member's output from its first layer's pre-activations (apply = this on x @ kernel + bias)."""
    return self.bind(params).from_first(pre_BxH)

  @property
  def is_linear(self) -> bool:
    return self.activation == "linear"

  def linear_part(self, params: dict):
    """x -> f(x) - f(0): for linear members, x @ M with M their end-to-end map."""
    return lambda x_NxI: self.apply(params, x_NxI) - self.apply(params, jnp.zeros((1, self.input_dim)))

  def linear_map(self, params: dict):
    """End-to-end matrix M with f(x) = x @ M + f(0), exact for linear members."""
    return self.linear_part(params)(jnp.eye(self.input_dim, dtype=jnp.float32))

  @property
  def n_params(self) -> int:
    dims = [self.input_dim] + [self.width] * self.depth + [self.output_dim]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    return weights + (sum(dims[1:]) if self.use_bias else 0)
