"""Per-task gradients and the first-order interference of the optimizer's next update.

For every member and checkpoint step we take per-task gradients g_k (mean loss over a fixed
batch of n eval examples of task k, `jax.grad` vmapped over tasks and members) and measure:
  * their norms and the cosine matrix cos(g_i, g_j) (Euclidean, in parameter space);
  * how the optimizer's actual next update u changes each task's loss, dL_k = g_k . u, and
    which task's share of u causes it.

The linearisation. Training steps on the gradient of the batch loss, a mean over its terms (a
task family's examples; a language model's predicted token positions), so g = sum_j p_j g_j with
p_j task j's share of the terms (the problem's `loss_shares`: over the run by default, at one
step with `step_frequencies`) and g_j the mean gradient of its terms. For a task family the
measured g_j is exactly that, on eval examples. For a language model the sum approximates g: a
token task's measured g_j is the gradient at its answer position alone, standing in for all L_j
positions its examples hold (p_j counts them all; the marker, operand and separator predictions
are left out: random operands have irreducible loss and the format is learned early, but while
they still move the sum misses them and weighs the answer L_j-fold); the base stream's g_0 is the
mean over every position of fixed base-stream rows, standing in for the training rows' base
positions (which also hold EOS tokens and follow injected examples). Adam's next update is

  u = -lr_t * (b1 mu + (1 - b1) f g) / (1 - b1^t) / (sqrt(v_hat) + eps)  [- lr_t wd theta, AdamW]

with t = saved count + 1, lr_t = peak lr x schedule_shape(saved count), wd applied where
`sweep.optim.decay_mask` says (matrices), f = the global-norm
clipping factor of g (1 without clipping), and v_hat = (b2 nu + (1 - b2) (f g)^2) / (1 - b2^t):
the second moment AFTER the step, updated with this same g. With v_hat held fixed, u is linear
in (mu, g), so it splits exactly into a carry-over term and one term per task:

  u = u_carry + sum_j u_j,   u_carry = -lr_t (b1 mu / (1 - b1^t)) / (sqrt(v_hat) + eps) [- lr_t wd theta]
                             u_j     = -lr_t f c p_j g_j / (sqrt(v_hat) + eps),   c = (1 - b1) / (1 - b1^t)

and the sum equals `optimizer.update(g, opt_state, params)` to float tolerance (the test checks
it). Using nu after the step (rather than the saved nu) is what makes this exact; the only
approximation is that v_hat, f (and the loss, to first order) do not depend on how g splits into
tasks. SGD: the preconditioner is 1, c = 1 and the carry is the momentum trace. (muP's
per-layer lr scales, which only OLMo members use, are not modelled.) Then

  dL_k(j) = g_k . u_j          (task j's update acting on task k)
  dL_k    = g_k . u = g_k . u_carry + sum_j dL_k(j)
  overwrite_k = sum_{j != k} dL_k(j): the other tasks' part of task k's loss change
                (> 0: they raise task k's loss; < 0: they help it).
  overwrite_share_k = overwrite_k / (|g_k . u_carry| + |dL_k(k)| + |overwrite_k|), in [-1, 1]:
                the overwrite's signed share of the total magnitude of the three parts of dL_k
                (bounded where dL_k itself nearly cancels, as it does near equilibrium).
Common tasks: the most frequent tasks whose frequencies first reach `common_mass` (0.9) of
the mixture; overwrite = overwrite_common + overwrite_rare (the rest).

Memory: one member's per-task gradients are held as a (T, P) array; tasks are chunked
(`task_chunk`) while differentiating.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jax.flatten_util import ravel_pytree

from scaling_interference.analysis.classes import COMMON_MASS, common_tasks
from scaling_interference.analysis.split_update import ADAM_EPS, clip_factor, find_state, flatten, scheduled_lr
from scaling_interference.problems.base import Problem
from scaling_interference.reader import Run
from scaling_interference.sweep.members import Group
from scaling_interference.sweep.optim import decay_mask


# ---- examples ----------------------------------------------------------------------------
def task_examples(run: Run, task_T, n_per_task: int):
  """n_per_task fixed examples of each task in task_T (from the run's eval key), task-major."""
  batch = run.problem.task_batch(np.asarray(task_T), n_per_task)
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), batch)


# ---- per-task gradients -------------------------------------------------------------------
def _task_gradients(model, problem: Problem, params_M: dict, batch_TxN) -> dict:
  """Gradients of each task's mean loss: leaves (M, T, ...) for stacked params and (T, N) examples."""
  grad = jax.grad(functools.partial(problem.task_loss, model))
  per_task = jax.vmap(grad, in_axes=(None, 0))
  return jax.vmap(per_task, in_axes=(0, None))(params_M, batch_TxN)


task_gradients = jax.jit(_task_gradients, static_argnums=(0, 1))


def leaf_names(tree) -> list[str]:
  """Path of each leaf as 'hidden/0/kernel', in tree-leaf order."""
  paths = jax.tree_util.tree_flatten_with_path(tree)[0]
  return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in paths]


def part_mask(params: dict, part: str | None) -> np.ndarray:
  """(P,) bool: the coordinates of the leaves whose path starts with `part` (None: all)."""
  names, leaves = leaf_names(params), jax.tree.leaves(params)
  keep = [part is None or name.startswith(part) for name in names]
  if not any(keep):
    raise ValueError(f"part: no parameter path starts with {part!r}; paths are {names}")
  return np.concatenate([np.full(a.size, k) for a, k in zip(leaves, keep, strict=True)])


def chunk_size(num_tasks: int, task_chunk: int) -> int:
  """Tasks per chunk: at most task_chunk, as even as the chunks can be (least padding)."""
  chunks = -(-num_tasks // max(1, min(task_chunk, num_tasks)))
  return -(-num_tasks // chunks)


@functools.partial(jax.jit, static_argnums=(0, 1, 4, 5))
def _chunked_gradients(model, problem: Problem, params_M: dict, batch, num_tasks: int, chunk: int):
  """(M, T, P) gradients of task-major `batch`, chunk tasks at a time under lax.map (bounded memory)."""
  num_chunks = -(-num_tasks // chunk)
  idx_XxT = np.minimum(np.arange(num_chunks * chunk), num_tasks - 1).reshape(num_chunks, chunk)
  example_T = jax.tree.map(lambda a: a.reshape((num_tasks, -1) + a.shape[1:]), batch)
  example_X = jax.tree.map(lambda a: a[idx_XxT], example_T)
  grads_X = jax.lax.map(
    lambda ex: flatten(_task_gradients(model, problem, params_M, ex), lead=2), example_X
  )  # (X, M, T, P)
  g_MxXxTxP = jnp.moveaxis(grads_X, 0, 1)
  return g_MxXxTxP.reshape(g_MxXxTxP.shape[0], num_chunks * chunk, -1)[:, :num_tasks]


def group_gradients(model, problem: Problem, params_M: dict, batch, num_tasks: int, task_chunk: int = 16) -> np.ndarray:
  """g_MxTxP (float32) for task-major `batch` of num_tasks tasks, at most task_chunk tasks at a time.

  One jitted program: the chunks are differentiated in turn under lax.map, each vmapped over its
  tasks and the group's members.
  """
  chunk = chunk_size(num_tasks, task_chunk)
  return np.asarray(_chunked_gradients(model, problem, params_M, batch, num_tasks, chunk))


# ---- the optimizer's next update, linearised ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UpdateTerms:
  """u = carry + scale * precond * g for the mixture gradient g (see the module docstring)."""

  scale: jax.Array  # -lr_t * f * c, a scalar
  precond: dict  # 1 / (sqrt(v_hat) + eps) for Adam, ones for SGD; params-shaped
  carry: dict  # momentum carry-over (and AdamW decay); params-shaped


jax.tree_util.register_dataclass(UpdateTerms, data_fields=["scale", "precond", "carry"], meta_fields=[])


def _adam_terms(train_config, adam, lr, f, params: dict, g: dict) -> UpdateTerms:
  b1, b2 = train_config.b1, train_config.b2
  t = (adam.count + 1).astype(jnp.float32)
  bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
  nu_after = jax.tree.map(lambda v, x: b2 * v + (1.0 - b2) * jnp.square(f * x), adam.nu, g)
  precond = jax.tree.map(lambda v: 1.0 / (jnp.sqrt(v / bc2) + ADAM_EPS), nu_after)
  wd = train_config.weight_decay if train_config.optimizer == "adamw" else 0.0
  carry = jax.tree.map(
    lambda m, d, w, decays: -lr * (b1 * m / bc1 * d + wd * decays * w), adam.mu, precond, params, decay_mask(params)
  )
  return UpdateTerms(-lr * f * (1.0 - b1) / bc1, precond, carry)


def _sgd_terms(train_config, opt_state, lr, f, params: dict) -> UpdateTerms:
  trace = find_state(opt_state, optax.TraceState)
  momentum = train_config.momentum
  carry = (
    jax.tree.map(lambda x: -lr * momentum * x, trace.trace)
    if trace is not None
    else jax.tree.map(jnp.zeros_like, params)
  )
  return UpdateTerms(-lr * f, jax.tree.map(jnp.ones_like, params), carry)


def update_terms(train_config, opt_state, params: dict, g: dict) -> UpdateTerms:
  """The linearised next update of one member from its saved state, for mixture gradient g."""
  lr = scheduled_lr(train_config, opt_state)
  f = clip_factor(train_config, g)
  adam = find_state(opt_state, optax.ScaleByAdamState)
  if adam is not None:
    return _adam_terms(train_config, adam, lr, f, params, g)
  return _sgd_terms(train_config, opt_state, lr, f, params)


# ---- interference of one member --------------------------------------------------------------
def member_interference(g_TxP, p_T, scale, precond_P, carry_P) -> dict:
  """grad_norm (T,), cosine (T, T), dL (T, T) with dL[k, j] = g_k . u_j, dL_carry (T,); float64."""
  g = np.asarray(g_TxP, np.float64)
  norm_T = np.linalg.norm(g, axis=1)
  denom = np.outer(norm_T, norm_T)
  cos = np.divide(g @ g.T, denom, out=np.full(denom.shape, np.nan), where=denom > 0)
  dL = float(scale) * ((g * np.asarray(precond_P, np.float64)) @ g.T) * np.asarray(p_T, np.float64)[None, :]
  return {"grad_norm": norm_T, "cosine": cos, "dL": dL, "dL_carry": g @ np.asarray(carry_P, np.float64)}


def realised_frequencies(run: Run) -> np.ndarray:
  """(K,) each task's share of the training loss's terms over the run, injection included.

  Task families: its share of the examples (run.tasks' frequency). Language models: its share of
  the predicted token positions (`LanguageProblem.loss_shares`), not run.tasks' examples per row.
  """
  return run.problem.loss_shares(np.arange(run.config.train.steps))


def step_frequencies(run: Run, step: int) -> np.ndarray:
  """(K,) each task's expected share of the training loss's terms at `step` (the next update from checkpoint `step`).

  Injected tasks get their scheduled share at that step, the base mixture (or base stream) the
  rest; use it instead of the realised shares to weigh the update right at an injection event.
  """
  return run.problem.loss_shares(np.array([step]))


# ---- per group -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GroupInterference:
  """The interference arrays of one group's members at one step (M leading)."""

  step: int
  group: Group
  p_T: np.ndarray
  grad_norm_MxT: np.ndarray
  cosine_MxTxT: np.ndarray
  dL_MxTxT: np.ndarray  # [m, k, j] = dL_k(j) = g_k . u_j
  dL_carry_MxT: np.ndarray


def _mixture_terms(run: Run, state: dict, g_MxTxP: np.ndarray, p_T: np.ndarray):
  """scale_M, precond_MxP, carry_MxP of the group's members for the mixture gradient."""
  params_M = state["params"]
  unravel = ravel_pytree(jax.tree.map(lambda a: a[0], params_M))[1]
  g_mix = jax.vmap(unravel)(jnp.asarray(np.einsum("t,mtp->mp", p_T, g_MxTxP), jnp.float32))
  terms = jax.vmap(functools.partial(update_terms, run.config.train))(state["opt_state"], params_M, g_mix)
  return np.asarray(terms.scale), np.asarray(flatten(terms.precond, 1)), np.asarray(flatten(terms.carry, 1))


def group_interference(
  run: Run,
  step: int,
  group: Group,
  n_per_task: int = 256,
  frequencies=None,
  part: str | None = None,
  task_chunk: int = 16,
) -> GroupInterference:
  """Per-task gradients of a group's members at `step` and their interference under the next update.

  frequencies: (K,) task shares of the mixture gradient (default: realised_frequencies).
  part: restrict norms, cosines and dL to parameters whose path starts with it ('hidden/0');
  the update itself is always built from all parameters.
  """
  num_tasks = len(run.problem.tasks)
  p_T = realised_frequencies(run) if frequencies is None else np.asarray(frequencies, np.float64)
  state = run.restore(step, group=group.index)
  batch = task_examples(run, np.arange(num_tasks), n_per_task)
  g_MxTxP = group_gradients(group.model, run.problem, state["params"], batch, num_tasks, task_chunk)
  scale_M, precond_MxP, carry_MxP = _mixture_terms(run, state, g_MxTxP, p_T)
  keep = part_mask(jax.tree.map(lambda a: a[0], state["params"]), part)
  per_member = [
    member_interference(g_MxTxP[m][:, keep], p_T, scale_M[m], precond_MxP[m][keep], carry_MxP[m][keep])
    for m in range(group.size)
  ]

  def stack(key):
    return np.stack([r[key] for r in per_member])

  return GroupInterference(step, group, p_T, stack("grad_norm"), stack("cosine"), stack("dL"), stack("dL_carry"))


# ---- tables ----------------------------------------------------------------------------------
def _overwrite_columns(gi: GroupInterference, m: int, common_T: np.ndarray) -> dict:
  dL = gi.dL_MxTxT[m]
  self_T = np.diag(dL)
  others = dL - np.diag(self_T)
  overwrite_T = others.sum(axis=1)
  total_T = np.abs(gi.dL_carry_MxT[m]) + np.abs(self_T) + np.abs(overwrite_T)
  return {
    "dL_self": self_T,
    "dL_carry": gi.dL_carry_MxT[m],
    "dL_mixture": gi.dL_carry_MxT[m] + dL.sum(axis=1),
    "overwrite": overwrite_T,
    "overwrite_common": others[:, common_T].sum(axis=1),
    "overwrite_rare": others[:, ~common_T].sum(axis=1),
    "overwrite_share": np.divide(overwrite_T, total_T, out=np.zeros_like(total_T), where=total_T > 0),
  }


def _gradient_frame(gi: GroupInterference, common_T: np.ndarray) -> pd.DataFrame:
  frames = []
  for m, member in enumerate(gi.group.members):
    frames.append(
      pd.DataFrame(
        {
          "step": gi.step,
          "member": member.id,
          "width": member.width,
          "task": np.arange(gi.p_T.size),
          "frequency": gi.p_T,
          "common": common_T,
          "grad_norm": gi.grad_norm_MxT[m],
          **_overwrite_columns(gi, m, common_T),
        }
      )
    )
  return pd.concat(frames, ignore_index=True)


_RECENT: dict = {}  # the last few groups' interference, so gradient_table and cosine_table share the work


def cached_group_interference(
  run: Run, step: int, group: Group, n_per_task: int, frequencies, part
) -> GroupInterference:
  """group_interference, reused for the same (workdir, step, group, arguments) within a process."""
  p = None if frequencies is None else tuple(np.asarray(frequencies, np.float64).tolist())
  key = (run.path, step, group.index, n_per_task, p, part)
  if key not in _RECENT:
    while len(_RECENT) >= 8:
      _RECENT.pop(next(iter(_RECENT)))
    _RECENT[key] = group_interference(run, step, group, n_per_task, frequencies, part)
  return _RECENT[key]


def gradient_table(
  run: Run,
  step: int,
  n_per_task: int = 256,
  frequencies=None,
  part: str | None = None,
  common_mass: float = COMMON_MASS,
) -> pd.DataFrame:
  """One row per (member, task) at checkpoint `step`.

  Columns: step, member, width, task; frequency (p_k used for the mixture gradient); common
  (among the most frequent tasks, by realised frequency, covering `common_mass`); grad_norm
  ||g_k||; dL_self = dL_k(k); dL_carry = g_k . u_carry; dL_mixture = g_k . u; overwrite =
  sum_{j != k} dL_k(j), split into overwrite_common + overwrite_rare by the other task's
  class; overwrite_share (module docstring). All dL are per one optimizer step.
  """
  common_T = common_tasks(realised_frequencies(run), common_mass)
  frames = [
    _gradient_frame(cached_group_interference(run, step, g, n_per_task, frequencies, part), common_T)
    for g in run.groups
  ]
  return pd.concat(frames, ignore_index=True)


def _cosine_frame(gi: GroupInterference) -> pd.DataFrame:
  t = gi.p_T.size
  i_TxT, j_TxT = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
  frames = [
    pd.DataFrame(
      {
        "step": gi.step,
        "member": member.id,
        "width": member.width,
        "task_i": i_TxT.ravel(),
        "task_j": j_TxT.ravel(),
        "cosine": gi.cosine_MxTxT[m].ravel(),
        "dL": gi.dL_MxTxT[m].ravel(),
      }
    )
    for m, member in enumerate(gi.group.members)
  ]
  return pd.concat(frames, ignore_index=True)


def cosine_table(run: Run, step: int, n_per_task: int = 256, frequencies=None, part: str | None = None) -> pd.DataFrame:
  """One row per (member, task_i, task_j) at `step`: cosine(g_i, g_j) and dL = dL_{task_i}(task_j)."""
  return pd.concat(
    [_cosine_frame(cached_group_interference(run, step, g, n_per_task, frequencies, part)) for g in run.groups],
    ignore_index=True,
  )
