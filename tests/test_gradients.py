"""Per-task gradients vs closed forms, the update decomposition vs optax's real update, the weights vs real batches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_regression
from jax.flatten_util import ravel_pytree
from test_language import tiny_lm

import scaling_interference as si
from scaling_interference.analysis import gradients
from scaling_interference.analysis.split_update import flatten
from scaling_interference.models import MLPDef
from scaling_interference.problems.synthetic import FamilyProblem, eval_examples
from scaling_interference.sweep.build import build
from scaling_interference.sweep.optim import member_optimizer
from scaling_interference.tasks import make_family


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  config = small_regression()
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  workdir = str(tmp_path_factory.mktemp("grad") / "run")
  si.train(config, workdir)
  return si.load_run(workdir)


def as_problem(family):
  """The synthetic problem around `family` (the analysis differentiates a problem's task losses)."""
  return FamilyProblem(small_regression(), family)


def linear_setup(n=32, width=8, members=2, use_bias=False):
  """A regression family, a linear member def, stacked params and 4 tasks' examples."""
  family = make_family(small_regression().task)
  model = MLPDef(family.input_dim, width, family.output_dim, activation="linear", use_bias=use_bias)
  params_M = jax.vmap(model.init)(jax.random.split(jax.random.key(1), members))
  batch = eval_examples(family, jax.random.key(2), jnp.arange(family.num_tasks), n)
  return family, model, params_M, batch


def numpy_gradients(w1_IxW, w2_WxO, x_NxI, y_NxO):
  """Closed-form gradients of mean ||x W1 W2 - y||^2, float64."""
  x, y, w1, w2 = (np.asarray(a, np.float64) for a in (x_NxI, y_NxO, w1_IxW, w2_WxO))
  err = x @ w1 @ w2 - y
  return 2 / len(x) * x.T @ err @ w2.T, 2 / len(x) * (x @ w1).T @ err


def test_task_gradients_match_closed_form():
  family, model, params_M, batch = linear_setup()
  k, n = family.num_tasks, 32
  example_K = jax.tree.map(lambda a: a.reshape((k, n) + a.shape[1:]), batch)
  grads = gradients.task_gradients(model, as_problem(family), params_M, example_K)
  for m in range(2):
    for t in range(k):
      d1, d2 = numpy_gradients(
        params_M["hidden"][0]["kernel"][m], params_M["readout"]["kernel"][m], example_K.x[t], example_K.y[t]
      )
      np.testing.assert_allclose(grads["hidden"][0]["kernel"][m, t], d1, rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(grads["readout"]["kernel"][m, t], d2, rtol=1e-4, atol=1e-6)
  chunked = gradients.group_gradients(model, as_problem(family), params_M, batch, k, task_chunk=3)
  np.testing.assert_allclose(
    chunked,
    flatten(grads, lead=2),
    rtol=1e-6,
    err_msg="chunking tasks (with a padded last chunk) must not change gradients",
  )


def test_cosines_identical_and_disjoint_blocks(run):
  full = gradients.cosine_table(run, 60, n_per_task=64)
  diag = full[full.task_i == full.task_j]
  np.testing.assert_allclose(diag.cosine, 1.0, rtol=1e-5, err_msg="a task's gradient is parallel to itself")
  first = gradients.cosine_table(run, 60, n_per_task=64, part="hidden/0")
  off = first[first.task_i != first.task_j]
  assert np.abs(off.cosine).max() < 1e-6, "disjoint input blocks: first-layer gradients have disjoint support"
  assert np.abs(full[full.task_i != full.task_j].cosine).max() > 1e-4, "the shared readout couples tasks"


def optimizer_state(train_config, params, steps=3, lr=1e-2):
  """An optax state after a few random steps, so moments, counts and schedules are non-trivial."""
  opt = member_optimizer(train_config)(learning_rate=lr)
  state = opt.init(params)
  for i in range(steps):
    g = jax.tree.map(lambda a, i=i: jax.random.normal(jax.random.key(10 + i), a.shape), params)
    _, state = opt.update(g, state, params)
  return opt, state


TRAIN_VARIANTS = {
  "adam": dict(optimizer="adam"),
  "adamw_clip_cosine": dict(
    optimizer="adamw", weight_decay=0.1, grad_clip=0.05, warmup_steps=2, decay="cosine", final_lr_fraction=0.1, steps=10
  ),
  "sgd": dict(optimizer="sgd"),
  "sgd_momentum": dict(optimizer="sgd", momentum=0.9, warmup_steps=5),
}


@pytest.mark.parametrize("variant", sorted(TRAIN_VARIANTS))
def test_decomposition_sums_to_optax_update(variant):
  family, model, params_M, batch = linear_setup(members=1, use_bias=True)
  params_M = jax.tree.map(lambda a: a + 0.05, params_M)  # nonzero biases, which AdamW must not decay
  tc = small_regression().train
  tc.update(**TRAIN_VARIANTS[variant])
  params = jax.tree.map(lambda a: a[0], params_M)
  g_TxP = gradients.group_gradients(model, as_problem(family), params_M, batch, family.num_tasks)[0]
  p_T = np.array([0.5, 0.3, 0.15, 0.05])
  flat_params, unravel = ravel_pytree(params)
  g_mix = unravel(jnp.asarray(p_T @ g_TxP, jnp.float32))
  opt, state = optimizer_state(tc, params)
  real_P = ravel_pytree(opt.update(g_mix, state, params)[0])[0]
  terms = gradients.update_terms(tc, state, params, g_mix)
  scale, precond_P, carry_P = float(terms.scale), ravel_pytree(terms.precond)[0], ravel_pytree(terms.carry)[0]
  u_TxP = scale * p_T[:, None] * np.asarray(precond_P)[None] * g_TxP
  np.testing.assert_allclose(
    np.asarray(carry_P) + u_TxP.sum(0),
    real_P,
    rtol=1e-5,
    atol=1e-9,
    err_msg="carry + per-task terms must equal optax's update on the mixture gradient",
  )
  parts = gradients.member_interference(g_TxP, p_T, scale, precond_P, carry_P)
  np.testing.assert_allclose(
    parts["dL_carry"] + parts["dL"].sum(1), g_TxP @ np.asarray(real_P, np.float64), rtol=1e-4, atol=1e-10
  )


def test_dL_is_the_first_order_loss_change():
  family, model, params_M, batch = linear_setup(members=1)
  tc = small_regression().train
  params = jax.tree.map(lambda a: a[0], params_M)
  g_TxP = gradients.group_gradients(model, as_problem(family), params_M, batch, family.num_tasks)[0]
  p_T = np.full(4, 0.25)
  g_mix = ravel_pytree(params)[1](jnp.asarray(p_T @ g_TxP, jnp.float32))
  opt, state = optimizer_state(tc, params, lr=1e-4)
  update = opt.update(g_mix, state, params)[0]
  terms = gradients.update_terms(tc, state, params, g_mix)
  parts = gradients.member_interference(
    g_TxP, p_T, float(terms.scale), ravel_pytree(terms.precond)[0], ravel_pytree(terms.carry)[0]
  )
  predicted_T = parts["dL_carry"] + parts["dL"].sum(1)

  def task_losses(p):
    return np.asarray(family.loss(model.apply(p, batch.x), batch).reshape(4, -1).mean(1), np.float64)

  actual_T = task_losses(optax.apply_updates(params, update)) - task_losses(params)
  np.testing.assert_allclose(actual_T, predicted_T, rtol=0.01, err_msg="dL is the loss change to first order")


def test_gradient_table_matches_the_restored_optimizer(run):
  table = gradients.gradient_table(run, 30, n_per_task=64)
  np.testing.assert_allclose(table.dL_mixture, table.dL_carry + table.dL_self + table.overwrite, rtol=1e-9, atol=1e-15)
  np.testing.assert_allclose(table.overwrite, table.overwrite_common + table.overwrite_rare, rtol=1e-9, atol=1e-15)
  assert table.overwrite_share.abs().max() <= 1.0
  group = run.groups[1]
  state = run.restore(30, member=group.members[0].id)
  params_M = jax.tree.map(lambda a: a[None], state["params"])
  batch = gradients.task_examples(run, np.arange(4), 64)
  g_TxP = gradients.group_gradients(group.model, run.problem, params_M, batch, 4)[0]
  p_T = gradients.realised_frequencies(run)
  g_mix = ravel_pytree(state["params"])[1](jnp.asarray(p_T @ g_TxP, jnp.float32))
  optimizer = member_optimizer(run.config.train)(learning_rate=0.0)  # the peak lr is read from the state
  real_P = ravel_pytree(optimizer.update(g_mix, state["opt_state"], state["params"])[0])[0]
  rows = table[table.member == group.members[0].id]
  np.testing.assert_allclose(rows.dL_mixture, g_TxP @ np.asarray(real_P, np.float64), rtol=1e-3, atol=1e-12)
  np.testing.assert_allclose(rows.grad_norm, np.linalg.norm(g_TxP, axis=1), rtol=1e-5)


def counted_shares(problem, steps):
  """(K,) share of the predicted positions of the real training batches at `steps`, by task id."""
  batch = jax.jit(problem.batch)
  task_SxBxL = np.stack([np.asarray(batch(jnp.int32(s)).task[:, 1:]) for s in steps])
  return np.bincount(task_SxBxL.ravel(), minlength=len(problem.tasks)) / task_SxBxL.size


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
  """A tiny LM whose token task (5 tokens) starts 16 of 32 rows every other step ("replace")."""
  config = tiny_lm(inject_mode="replace")
  config.inject.add = dict(task=1, kind="every", count=16, every=2)
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  workdir = str(tmp_path_factory.mktemp("lm_grad") / "run")
  si.train(config, workdir)
  return si.load_run(workdir)


def test_language_model_weights_are_shares_of_trained_positions(lm_run):
  gi = gradients.group_interference(lm_run, 20, lm_run.groups[0], n_per_task=4)
  np.testing.assert_allclose(gi.p_T.sum(), 1.0, rtol=1e-12, err_msg="the shares of the loss's terms sum to 1")
  np.testing.assert_allclose(
    gi.p_T,
    counted_shares(lm_run.problem, range(20)),
    atol=1e-12,
    err_msg="replace: each example holds its 5 positions but the marker at column 0",
  )
  np.testing.assert_allclose(gi.p_T[1], 8 * 4 / (32 * 15), err_msg="8 examples a step, 4 positions each, 32 x 15")
  assert gi.p_T[2] == 0.0, "held-out tuples are never trained"
  examples_per_row = lm_run.tasks.sort_values("id").frequency.to_numpy()
  assert not np.allclose(gi.p_T, examples_per_row), "run.tasks' frequency counts examples per row, not positions"


def test_step_weights_count_that_steps_batch(lm_run):
  for step in (4, 5):
    shares = gradients.step_frequencies(lm_run, step)
    np.testing.assert_allclose(shares, counted_shares(lm_run.problem, [step]), atol=1e-12)
  assert gradients.step_frequencies(lm_run, 5)[0] == 1.0, "no injection at odd steps: the base stream's alone"


def test_splice_weights_count_the_positions_of_real_batches():
  """Spliced examples hold all 5 positions unless inserted at column 0 (chance 1 / (16 - 5 + 1))."""
  problem, _ = build(tiny_lm())
  shares = problem.loss_shares(np.arange(100))
  np.testing.assert_allclose(shares.sum(), 1.0, rtol=1e-12)
  np.testing.assert_allclose(shares[1], 16 * (5 - 1 / 12) / (32 * 15))
  np.testing.assert_allclose(
    shares,
    counted_shares(problem, range(100)),
    atol=1e-3,
    err_msg="expected shares must match counting positions of real batches",
  )


def test_family_weights_are_shares_of_examples(injection_workdir):
  run = si.load_run(injection_workdir)
  np.testing.assert_allclose(
    gradients.realised_frequencies(run),
    run.tasks.sort_values("id").frequency,
    rtol=1e-9,
    err_msg="a task family's loss terms are examples: run.tasks' realised frequencies",
  )
  shares = gradients.step_frequencies(run, 7)
  assert shares[5] == 16 / 64, "the burst's 16 examples of 64 at step 7"
  task_B = np.asarray(run.problem.batch(jnp.int32(7)).task)
  np.testing.assert_allclose(np.bincount(task_B, minlength=6) / 64, shares, atol=0.1)
