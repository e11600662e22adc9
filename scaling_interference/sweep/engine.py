"""The sweep engine: one jitted program steps every group on the same on-device batches.

Inside the program each group is one `jax.vmap` over its members (stacked parameters and
optimizer states); groups of different shapes sit side by side, unpadded, so a step costs
in proportion to the sum of the members' parameters. Several steps run per dispatch under
`jax.lax.scan`, and the batch of step s is a pure function of (data seed, s).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling_interference.data import Mixture, schedules
from scaling_interference.sweep.members import Group
from scaling_interference.sweep.optim import member_optimizer
from scaling_interference.tasks import Batch, Family

GroupState = dict  # {"params": pytree, "opt_state": pytree}, leaves with a leading member axis

TRAIN_STREAM, EVAL_STREAM = 0, 1


def trace_tasks(config, mixture: Mixture) -> list[int]:
  """Tasks whose signal is traced densely: `train.trace_tasks`, else the injected ones."""
  explicit = list(config.train.get("trace_tasks", ()) or ())
  return explicit or sorted({s.task for s in mixture.schedules})


def data_keys(data_seed: int):
  """Independent keys for the training stream and for the fixed eval set."""
  base = jax.random.key(data_seed)
  return jax.random.fold_in(base, TRAIN_STREAM), jax.random.fold_in(base, EVAL_STREAM)


def train_batch(family: Family, mixture: Mixture, train_key, step, batch_size: int) -> Batch:
  """The batch every member sees at `step`."""
  task_key, example_key = jax.random.split(jax.random.fold_in(train_key, step))
  return family.sample(example_key, mixture.task_ids(task_key, step, batch_size))


def eval_examples(family: Family, eval_key, task_C, n: int) -> Batch:
  """n examples of each task in task_C, task-major; task t's examples depend on t alone."""
  one_task = lambda t: family.sample(jax.random.fold_in(eval_key, t), jnp.full((n,), t, jnp.int32))
  stacked = jax.vmap(one_task)(task_C)
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), stacked)


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Per-group metrics, each (members, tasks); accuracy is None where it does not apply."""
  loss: np.ndarray
  accuracy: np.ndarray | None
  signal: np.ndarray


class Engine:
  """Builds, steps and evaluates the stacked states of every group of a sweep."""

  def __init__(self, config, family: Family, groups: list[Group]):
    self.family, self.groups = family, groups
    self.mixture = Mixture(family.frequencies, schedules.from_config(config.get("inject"), config.train.batch_size,
                                                                      family.num_tasks))
    self.trace_every = config.train.trace_every
    self.trace_T = jnp.asarray(trace_tasks(config, self.mixture), jnp.int32)
    self.trace_n = config.train.trace_examples
    self.batch_size = config.train.batch_size
    self.eval_n = config.train.eval_examples_per_task
    self.eval_chunk = max(1, min(family.num_tasks, config.train.get("eval_chunk_examples", 32768) // self.eval_n))
    self.train_key, self.eval_key = data_keys(config.train.data_seed)
    self.optimizer = member_optimizer(config.train)
    self.train_segment = jax.jit(self._train_segment, static_argnums=2, donate_argnums=0)
    self.evaluate_on_device = jax.jit(self._evaluate)

  # ---- state ---------------------------------------------------------------------------
  def _init_member(self, group: Group, key, lr) -> GroupState:
    params = group.model.init(key)
    return {"params": params, "opt_state": self.optimizer(learning_rate=lr).init(params)}

  def init_group(self, group: Group) -> GroupState:
    keys = jnp.stack([jax.random.key(m.seed) for m in group.members])
    lrs = jnp.asarray([m.lr for m in group.members], jnp.float32)
    return jax.jit(jax.vmap(functools.partial(self._init_member, group)))(keys, lrs)

  def init_states(self) -> list[GroupState]:
    return [self.init_group(g) for g in self.groups]

  def abstract_states(self) -> list[GroupState]:
    """Shapes and dtypes of the states, for restoring checkpoints without computing inits."""
    return [jax.eval_shape(lambda g=g: self.init_group(g)) for g in self.groups]

  # ---- training ------------------------------------------------------------------------
  def _member_step(self, group: Group, state: GroupState, batch: Batch):
    def loss_fn(params):
      return self.family.loss(group.model.apply(params, batch.x), batch).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt_state = self.optimizer(learning_rate=0.0).update(grads, state["opt_state"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, loss

  def _one_step(self, states, step):
    batch = train_batch(self.family, self.mixture, self.train_key, step, self.batch_size)
    new_states, losses = [], []
    for group, state in zip(self.groups, states):
      new_state, loss_G = jax.vmap(functools.partial(self._member_step, group), in_axes=(0, None))(state, batch)
      new_states.append(new_state)
      losses.append(loss_G)
    return new_states, (tuple(losses), self._maybe_trace(new_states, step + 1))

  def _train_segment(self, states, start_step, num_steps: int):
    """num_steps steps from start_step; returns new states, per-group losses (S, G) and traces (S, G, T)."""
    steps = start_step + jnp.arange(num_steps, dtype=jnp.int32)
    states, (losses, traces) = jax.lax.scan(self._one_step, states, steps)
    return states, losses, traces

  # ---- dense signal traces -------------------------------------------------------------
  def _maybe_trace(self, states, step):
    """Signal of the traced tasks after `step` updates when step % trace_every == 0, else NaN."""
    if not self.trace_every or not self.trace_T.size:
      return ()
    empty = tuple(jnp.full((g.size, self.trace_T.size), jnp.nan) for g in self.groups)
    return jax.lax.cond(step % self.trace_every == 0, lambda: self._trace(states), lambda: empty)

  def _trace(self, states):
    batch = eval_examples(self.family, self.eval_key, self.trace_T, self.trace_n)
    out = []
    for group, state in zip(self.groups, states):
      metrics = functools.partial(self._member_metrics, group, batch=batch, num_tasks=self.trace_T.size)
      loss_GxT, acc_GxT = jax.vmap(metrics)(state["params"])
      out.append(self._signal(group, state["params"], self.trace_T, loss_GxT, acc_GxT))
    return tuple(out)

  # ---- evaluation ----------------------------------------------------------------------
  def _member_metrics(self, group: Group, params, batch: Batch, num_tasks: int):
    out = group.model.apply(params, batch.x)
    loss_C = self.family.loss(out, batch).reshape(num_tasks, -1).mean(axis=1)
    acc = self.family.accuracy(out, batch)
    acc_C = None if acc is None else acc.reshape(num_tasks, -1).mean(axis=1)
    return loss_C, acc_C

  def _evaluate(self, states):
    num_tasks, chunk = self.family.num_tasks, self.eval_chunk
    num_chunks = -(-num_tasks // chunk)
    task_NxC = jnp.minimum(jnp.arange(num_chunks * chunk, dtype=jnp.int32), num_tasks - 1).reshape(num_chunks, chunk)

    def chunk_metrics(task_C):
      batch = eval_examples(self.family, self.eval_key, task_C, self.eval_n)
      return tuple(jax.vmap(functools.partial(self._member_metrics, g, batch=batch, num_tasks=chunk))(s["params"])
                   for g, s in zip(self.groups, states))

    per_chunk = jax.lax.map(chunk_metrics, task_NxC)
    results = []
    for group, state, (loss_NxGxC, acc_NxGxC) in zip(self.groups, states, per_chunk):
      loss_GxT = _unchunk(loss_NxGxC, num_tasks)
      acc_GxT = None if acc_NxGxC is None else _unchunk(acc_NxGxC, num_tasks)
      signal_GxT = self._signal(group, state["params"], jnp.arange(num_tasks), loss_GxT, acc_GxT)
      results.append((loss_GxT, acc_GxT, signal_GxT))
    return results

  def _signal(self, group: Group, params, task_T, loss_GxT, acc_GxT):
    def one(p, loss_T, acc_T):
      return self.family.signal(task_T, loss_T, acc_T, linear_fn(group.model, p))
    return jax.vmap(one)(params, loss_GxT, acc_GxT)

  def evaluate(self, states) -> list[EvalResult]:
    host = jax.device_get(self.evaluate_on_device(states))
    return [EvalResult(np.asarray(l), None if a is None else np.asarray(a), np.asarray(s)) for l, a, s in host]


def linear_fn(model, params):
  """x -> model(x) - model(0) for linear members (their map, applied), else None."""
  if not model.is_linear:
    return None
  return lambda x_NxI: model.apply(params, x_NxI) - model.apply(params, jnp.zeros((1, x_NxI.shape[-1])))


def _unchunk(x_NxGxC, num_tasks: int):
  g = x_NxGxC.shape[1]
  return jnp.moveaxis(x_NxGxC, 1, 0).reshape(g, -1)[:, :num_tasks]
