"""The optimizer's update split exactly into one term per task class, plus history and weight decay.

The batch gradient is a sum of class gradients, g = sum_c g_c (each the gradient of the batch
mean's terms of one class's examples). The clipping factor f and Adam's second moment come from
the actual total gradient; Adam's first moment is linear in the gradients, so one first-moment
buffer per class, started at 0 at the window's start, plus a history buffer started at the first
moment of that step, sum to the optimizer's first moment at every later step:

  Adam:  m_c <- b1 m_c + (1 - b1) f g_c,   m_h <- b1 m_h,
         u_c = -lr_t (m_c / (1 - b1^t)) / (sqrt(nu_t / (1 - b2^t)) + eps),   the same for m_h,
         u_wd = -lr_t wd mask theta (AdamW);
  SGD:   m_c <- momentum m_c + f g_c, m_h <- momentum m_h, u_c = -lr_t m_c (no momentum: m_c = f g_c).

with nu_t the second moment after the step and lr_t the member's scheduled rate; muP's per-layer
factors multiply every term. sum_c u_c + u_h + u_wd equals the optimizer's update to float
tolerance (tests check it against optax). Buffers and terms are stacked on a leading axis:
classes first, then history; terms add the weight-decay term last.
"""

import jax
import jax.numpy as jnp
import optax

from scaling_interference.sweep.optim import decay_mask, schedule_shape

ADAM_EPS = 1e-8  # optax.adam's default, which sweep.optim keeps
HISTORY, WEIGHT_DECAY = "history", "weight_decay"


def flatten(tree, lead: int = 0):
  """Leaves raveled and concatenated after the first `lead` axes: (..., P), in tree-leaf order."""
  leaves = jax.tree.leaves(tree)
  return jnp.concatenate([a.reshape(a.shape[:lead] + (-1,)) for a in leaves], axis=-1)


def find_state(state, cls):
  """The first sub-state of type cls inside an optax state, or None."""
  found = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, cls)) if isinstance(s, cls)]
  return found[0] if found else None


def clip_factor(train_config, g: dict):
  """optax.clip_by_global_norm's factor for gradient g (1 without clipping)."""
  if not train_config.grad_clip:
    return jnp.float32(1.0)
  norm = optax.tree.norm(g)
  return train_config.grad_clip / jnp.maximum(norm, train_config.grad_clip)


def scheduled_lr(train_config, opt_state):
  """The learning rate the optimizer applies at this step: peak x schedule_shape(count before the step)."""
  sched = find_state(opt_state, optax.ScaleByScheduleState)
  return opt_state.hyperparams["learning_rate"] * schedule_shape(train_config)(sched.count)


def first_moment(opt_state):
  """Adam's mu, or SGD's momentum trace, or None (plain SGD): the history buffer's start."""
  adam = find_state(opt_state, optax.ScaleByAdamState)
  if adam is not None:
    return adam.mu
  trace = find_state(opt_state, optax.TraceState)
  return None if trace is None else trace.trace


def initial_buffers(opt_state, params: dict, num_classes: int) -> dict:
  """Leaves (C + 1, ...): zero class buffers and the history buffer (the first moment now)."""
  history = first_moment(opt_state)
  history = jax.tree.map(jnp.zeros_like, params) if history is None else history
  return jax.tree.map(lambda h: jnp.concatenate([jnp.zeros((num_classes,) + h.shape, h.dtype), h[None]]), history)


def _moment_rule(train_config, old_opt_state, new_opt_state, params: dict, f):
  """(decay, gain, bias correction, preconditioner tree) of the first-moment rule of this step."""
  adam_old = find_state(old_opt_state, optax.ScaleByAdamState)
  if adam_old is None:
    return train_config.momentum, f, 1.0, jax.tree.map(jnp.ones_like, params)
  b1, b2 = train_config.b1, train_config.b2
  t = (adam_old.count + 1).astype(jnp.float32)
  nu = find_state(new_opt_state, optax.ScaleByAdamState).nu
  precond = jax.tree.map(lambda v: 1.0 / (jnp.sqrt(v / (1.0 - b2**t)) + ADAM_EPS), nu)
  return b1, (1.0 - b1) * f, 1.0 - b1**t, precond


def _weight_decay(train_config, params: dict) -> dict:
  wd = train_config.weight_decay if train_config.optimizer == "adamw" else 0.0
  return jax.tree.map(lambda w, decays: wd * decays * w, params, decay_mask(params))


def split_update(
  train_config, model, old_opt_state, new_opt_state, params: dict, g_used: dict, g_C: dict, buffers: dict
):
  """(terms, new buffers) of one step: terms leaves (C + 2, ...) = classes, history, weight decay.

  g_used: the gradient the optimizer stepped on; g_C: class gradients (leaves (C, ...)) summing
  to it; buffers: leaves (C + 1, ...) from `initial_buffers` or the previous step.
  """
  f = clip_factor(train_config, g_used)
  decay, gain, bias, precond = _moment_rule(train_config, old_opt_state, new_opt_state, params, f)
  gain_C1 = jnp.concatenate([jnp.full((_num_stacked(g_C),), gain), jnp.zeros((1,))])
  new_buffers = jax.tree.map(
    lambda b, g: decay * b + gain_C1.reshape((-1,) + (1,) * (b.ndim - 1)) * jnp.concatenate([g, jnp.zeros_like(g[:1])]),
    buffers,
    g_C,
  )
  lr = scheduled_lr(train_config, old_opt_state)
  terms = jax.tree.map(
    lambda b, p, w: jnp.concatenate([-lr * b / bias * p, -lr * w[None]]),
    new_buffers,
    precond,
    _weight_decay(train_config, params),
  )
  if getattr(model, "mup_base_width", None):
    terms = jax.tree.map(lambda u, s: u * s, terms, model.mup_lr_scales(params))
  return terms, new_buffers


def _num_stacked(g_C: dict) -> int:
  """The length of the leading (class) axis of stacked class gradients."""
  return jax.tree.leaves(g_C)[0].shape[0]
