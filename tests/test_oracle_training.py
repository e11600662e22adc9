"""Science that must hold: trained two-layer linear members reach the analytic rank-N optimum."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import small_regression

from scaling_interference.analysis import oracle
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine


def test_linear_members_reach_the_oracle():
  # alpha, beta chosen so the utilities p_k s_ki^2 have no ties at the cut of any width.
  config = small_regression(num_tasks=16, input_dim=4, output_dim=4, alpha=1.3, beta=0.8)
  config.model.widths = (4, 8, 16, 32)
  config.sweep.update(seeds=(0,), lrs=(2e-2,))
  config.train.update(steps=3000, batch_size=512, steps_per_dispatch=500, decay="cosine", final_lr_fraction=0.01)
  problem, groups = build(config)
  family = problem.family
  engine = Engine(config, problem, groups)
  states = engine.init_states()
  for start in range(0, 3000, 500):
    states, *_ = engine.train_segment(states, jnp.int32(start), 500)
  for group, state in zip(engine.groups, states, strict=True):
    params = jax.tree.map(lambda a: a[0], state["params"])
    map_IxO = np.asarray(group.model.linear_map(params), np.float64)
    best = oracle.oracle(family, group.model.width)
    total = oracle.population_total(family, map_IxO)
    assert abs(total / best.total_loss - 1) < 0.02, (
      f"width {group.model.width}: trained loss {total:.5f} vs oracle {best.total_loss:.5f}"
    )
    learned = np.linalg.norm([map_IxO[4 * k : 4 * k + 4, 4 * k : 4 * k + 4] for k in range(16)], axis=(1, 2))
    signal = learned / np.linalg.norm(family.w_star_KxYxD, axis=(1, 2))
    np.testing.assert_allclose(
      signal, best.signal_K, atol=0.1, err_msg=f"width {group.model.width} kept other tasks than the oracle"
    )
