"""Optimizers with the learning rate as per-member state (`optax.inject_hyperparams`).

The peak learning rate lives in the optimizer state, so a sweep over learning rates compiles
once; the schedule's shape (warmup, then constant or cosine decay) is shared by all members.
"""

import jax
import jax.numpy as jnp
import optax


def schedule_shape(train_config):
  """Multiplier of the peak learning rate at each step: warmup then decay, in [0, 1]."""
  steps = max(train_config.steps, 1)
  warmup, final, decay = train_config.warmup_steps, train_config.final_lr_fraction, train_config.decay

  def shape(count):
    t = jnp.asarray(count, jnp.float32)
    warm = jnp.minimum(1.0, (t + 1.0) / max(warmup, 1))
    frac = jnp.clip((t - warmup) / max(steps - warmup, 1), 0.0, 1.0)
    if decay == "cosine":
      body = final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    elif decay == "linear":
      body = 1.0 - (1.0 - final) * frac
    else:
      body = jnp.ones_like(frac)
    return jnp.where(t < warmup, warm, body)

  return shape


def decay_mask(params):
  """Weight decay applies to matrices, never to embeddings, norms or biases."""

  def decays(path, leaf):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return leaf.ndim >= 2 and "embedding" not in names

  return jax.tree_util.tree_map_with_path(decays, params)


def scale_by_tree(scale_fn):
  """Multiplies each update leaf by a per-leaf factor (e.g. muP's per-layer learning rates)."""

  def update(updates, state, params=None):
    return jax.tree.map(lambda u, s: u * s, updates, scale_fn(updates)), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(train_config, learning_rate, model=None):
  """The member optimizer; `learning_rate` is the member's peak rate (a traced scalar is fine)."""
  shape = schedule_shape(train_config)

  def lr(count):
    return learning_rate * shape(count)

  name = train_config.optimizer
  b1, b2 = train_config.b1, train_config.b2
  if name == "sgd":
    tx = optax.sgd(lr, momentum=train_config.momentum or None)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=b1, b2=b2, weight_decay=train_config.weight_decay, mask=decay_mask)
  else:
    tx = optax.adam(lr, b1=b1, b2=b2)
  lr_scales = getattr(model, "mup_lr_scales", None)
  if lr_scales is not None and getattr(model, "mup_base_width", None):
    tx = optax.chain(tx, scale_by_tree(lr_scales))
  clip = train_config.grad_clip
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx


def member_optimizer(train_config, model=None):
  """A GradientTransformation whose init takes the member's learning rate as a hyperparameter."""
  return optax.inject_hyperparams(lambda learning_rate: make_optimizer(train_config, learning_rate, model))
