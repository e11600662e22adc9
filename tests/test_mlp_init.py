"""model.init: "lecun" is Flax's default, unchanged; "torch" is PyTorch nn.Linear's default."""

import jax
import numpy as np
import pytest

from scaling_interference.models.mlp import MLPDef

# hidden[0] kernel of MLPDef(5, 4, 2, depth=2) from key 3, computed before model.init existed.
LECUN_HIDDEN0_KEY3 = np.array(
  [
    [-0.9484876, -0.77084565, -0.23757614, -0.45986995],
    [0.09225636, 0.52830166, 0.3618439, -0.89754033],
    [0.95823663, -0.53474784, -0.99696434, 0.19690084],
    [-0.0387601, 0.06914385, -0.01279311, 0.27576238],
    [0.31713426, 0.31048763, -0.4056942, 0.22270235],
  ]
)
LECUN_READOUT_KEY3 = np.array(
  [[0.82730234, 1.1290028], [0.17941785, -0.7734069], [0.20210834, -0.41617265], [0.0123083, -0.28204882]]
)


def test_lecun_is_unchanged():
  params = MLPDef(5, 4, 2, depth=2).init(jax.random.key(3))
  np.testing.assert_allclose(params["hidden"][0]["kernel"], LECUN_HIDDEN0_KEY3, rtol=1e-6)
  np.testing.assert_allclose(params["readout"]["kernel"], LECUN_READOUT_KEY3, rtol=1e-6)
  assert all(not np.any(layer["bias"]) for layer in [*params["hidden"].values(), params["readout"]])


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_torch_is_uniform_with_bound_one_over_sqrt_fan_in(scale):
  fan_ins = {"hidden0": 150, "hidden1": 400, "readout": 400}
  params = MLPDef(150, 400, 300, depth=2, initializer="torch", init_scale=scale).init(jax.random.key(0))
  layers = {"hidden0": params["hidden"][0], "hidden1": params["hidden"][1], "readout": params["readout"]}
  for name, layer in layers.items():
    bound = scale / np.sqrt(fan_ins[name])
    for leaf in ("kernel", "bias"):
      values = np.asarray(layer[leaf], np.float64).ravel()
      assert np.all(np.abs(values) <= bound), (name, leaf)
      # U(-b, b) has variance b^2 / 3; the sample variance's std is about b^2 * sqrt(4 / (45 n)).
      tolerance = 5 * bound**2 * np.sqrt(4 / (45 * values.size))
      assert abs(values.var() - bound**2 / 3) < tolerance, (name, leaf, values.var(), bound**2 / 3)
      assert abs(values.mean()) < 5 * bound / np.sqrt(3 * values.size), (name, leaf)
