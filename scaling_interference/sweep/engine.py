"""The sweep engine: one jitted program steps every group on the same batches.

Inside the program each group is one `jax.vmap` over its members (stacked parameters and
optimizer states); groups of different shapes sit side by side, unpadded, so a step costs
in proportion to the sum of the members' parameters. Several steps run per dispatch under
`jax.lax.scan`. The data side (batches, loss, eval, traces) is the Problem's. On several
processes each one brings its rows of the host batches and `train_segment` assembles them.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling_interference.errors import ConfigError
from scaling_interference.problems.base import Problem
from scaling_interference.sweep import packed, sharding
from scaling_interference.sweep.members import Group
from scaling_interference.sweep.optim import member_optimizer

GroupState = dict  # {"params", "opt_state", "active"}: leaves with a leading member axis

# The seeded init runs once: on CPU it compiles with LLVM's level-1 pipeline and XLA's elemental emitters
# (fusion emitters off), 1.5-3.2x faster for the CPU presets, with the same values bit for bit
# (tests/test_engine.py). Level 0 would be faster still but rounds some draws differently (one ulp).
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def compile_run_once(jitted, *args):
  """jitted compiled for args: with RUN_ONCE_OPTIONS on CPU where this jaxlib knows them."""
  lowered = jitted.lower(*args)
  if jax.default_backend() != "cpu":
    return lowered.compile()
  try:
    return lowered.compile(RUN_ONCE_OPTIONS)
  except jax.errors.JaxRuntimeError as e:
    if "No such compile option" not in str(e):
      raise
    return lowered.compile()


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Per-group metrics, each (members, tasks); accuracy is None where it does not apply."""

  loss: np.ndarray
  accuracy: np.ndarray | None
  signal: np.ndarray


class Engine:
  """Builds, steps and evaluates the stacked states of every group of a sweep."""

  def __init__(self, config, problem: Problem, groups: list[Group]):
    self.problem, self.groups = problem, groups
    self.mesh = sharding.make_mesh(config.train)
    self.batch_size = config.train.batch_size
    self.trace_every = config.train.trace_every if problem.trace_T else 0
    self.optimizers = [member_optimizer(config.train, g.model) for g in groups]
    self.packed_G = packed.packed_groups(config.train.pack, problem, groups, self.mesh.devices.size)
    fsdp = config.train.fsdp
    self.init_on_device = jax.jit(self._init_groups)
    self._abstract_states = jax.eval_shape(self.init_on_device, *self._seeds_and_lrs())
    self.state_shardings = [
      sharding.state_shardings(self.mesh, g.size, a, fsdp) for g, a in zip(groups, self.abstract_states(), strict=True)
    ]
    replicated = sharding.replicated(self.mesh)
    self.host_sharding, self.host_order_B = None, None
    if not problem.on_device and jax.process_count() > 1:
      self.host_sharding = host_sharding(self.mesh, self.batch_size)
      self.host_order_B = process_row_order(list(self.mesh.devices.flat), self.batch_size)
    self.train_segment_on_device = jax.jit(
      self._train_segment,
      static_argnums=2,
      donate_argnums=0,
      out_shardings=(self.state_shardings, replicated, replicated),
    )
    self.evaluate_on_device = jax.jit(self._evaluate, out_shardings=replicated)
    self.compiled_segments: dict = {}  # num_steps -> the training program compiled ahead of time (compile_segment)

  # ---- state ---------------------------------------------------------------------------
  def _init_member(self, index: int, key, lr) -> GroupState:
    params = self.groups[index].model.init(key)
    return {
      "params": params,
      "opt_state": self.optimizers[index](learning_rate=lr).init(params),
      "active": jnp.asarray(True),
    }

  def _init_groups(self, keys, lrs) -> list[GroupState]:
    """Every group's seeded init (keys and peak rates per group, stacked over members), one program."""
    return [
      jax.vmap(functools.partial(self._init_member, i))(k, lr) for i, (k, lr) in enumerate(zip(keys, lrs, strict=True))
    ]

  def _seeds_and_lrs(self):
    keys = [jnp.stack([jax.random.key(m.seed) for m in g.members]) for g in self.groups]
    return keys, [jnp.asarray([m.lr for m in g.members], jnp.float32) for g in self.groups]

  @functools.cached_property
  def _compiled_init(self):
    return compile_run_once(self.init_on_device, *self._seeds_and_lrs())

  def init_states(self) -> list[GroupState]:
    return self.place(self._compiled_init(*self._seeds_and_lrs()))

  def place(self, states) -> list[GroupState]:
    """States laid out on the mesh: member axes over `members` where the group size allows, FSDP if asked."""
    return [sharding.place(s, sh) for s, sh in zip(states, self.state_shardings, strict=True)]

  def placed_abstract_states(self) -> list[GroupState]:
    """abstract_states with each leaf's mesh sharding: checkpoints restore straight onto the mesh,
    each process reading its own shards (a many-process run cannot gather global arrays)."""
    return [
      jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
      for abstract, shardings in zip(self.abstract_states(), self.state_shardings, strict=True)
    ]

  def abstract_states(self) -> list[GroupState]:
    """Shapes and dtypes of the states, for restoring checkpoints without computing inits (traced once)."""
    return self._abstract_states

  # ---- training ------------------------------------------------------------------------
  def _member_step(self, index: int, state: GroupState, batch):
    """One update on `batch` (see apply_gradient)."""
    model = self.groups[index].model
    loss, grads = jax.value_and_grad(lambda p: self.problem.loss(model, p, batch))(state["params"])
    return self._member_update(index, state, loss, grads)

  def apply_gradient(self, index: int, state: GroupState, loss, grads):
    """(new state, applied updates) of one member: the optimizer's step on `grads`.

    A member whose loss or gradient is non-finite is frozen at its last good state (its
    applied updates are zero). The replay of training in analysis steps through this too.
    """
    updates, opt_state = self.optimizers[index](learning_rate=0.0).update(grads, state["opt_state"], state["params"])
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    active = state["active"] & finite
    new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
    kept = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, {k: state[k] for k in new})
    applied = jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), updates)
    return {**kept, "active": active}, applied

  def _member_update(self, index: int, state: GroupState, loss, grads):
    """One update from the member's loss and gradient (see apply_gradient); loss NaN once frozen."""
    new_state, _ = self.apply_gradient(index, state, loss, grads)
    return new_state, jnp.where(state["active"], loss, jnp.nan)

  def _one_step(self, states, step_and_host):
    step, host = step_and_host
    batch = sharding.batch_constraint(self.problem.batch(step, host), self.mesh, self.batch_size)
    from_packed = {}
    if self.packed_G:
      grads, losses = packed.packed_grads(
        self.problem, [self.groups[i] for i in self.packed_G], [states[i]["params"] for i in self.packed_G], batch
      )
      from_packed = dict(zip(self.packed_G, zip(losses, grads, strict=True), strict=True))
    new_states, losses = [], []
    for index, state in enumerate(states):
      if index in from_packed:
        new_state, loss_M = jax.vmap(functools.partial(self._member_update, index))(state, *from_packed[index])
      else:
        new_state, loss_M = jax.vmap(functools.partial(self._member_step, index), in_axes=(0, None))(state, batch)
      new_states.append(new_state)
      losses.append(loss_M)
    return new_states, (tuple(losses), self._maybe_trace(new_states, step + 1))

  def train_segment(self, states, start_step, num_steps: int, host=None):
    """num_steps steps from start_step (see _train_segment); host: this process's rows of the host batches."""
    program = self.compiled_segments.get(num_steps)
    if program is not None:
      return program(states, start_step, self.global_host(host))
    return self.train_segment_on_device(states, start_step, num_steps, self.global_host(host))

  def compile_segment(self, num_steps: int, host_spec=None):
    """The program of num_steps training steps, compiled ahead of time from abstract states (nothing is
    allocated); train_segment runs it for segments of that length. host_spec: the host block's
    ShapeDtypeStruct (global shape), or None for on-device problems."""
    if host_spec is not None and self.host_sharding is not None:
      host_spec = jax.ShapeDtypeStruct(host_spec.shape, host_spec.dtype, sharding=self.host_sharding)
    lowered = self.train_segment_on_device.lower(
      self.placed_abstract_states(), jax.ShapeDtypeStruct((), jnp.int32), num_steps, host_spec
    )
    self.compiled_segments[num_steps] = lowered.compile()
    return self.compiled_segments[num_steps]

  def global_host(self, rows_SxRxL):
    """The global (steps, B, ...) host block, batch sharded over the devices, from each process's (steps, B/P, ...)."""
    if rows_SxRxL is None or self.host_sharding is None:
      return rows_SxRxL
    shape = (rows_SxRxL.shape[0], self.batch_size, *rows_SxRxL.shape[2:])
    return jax.make_array_from_process_local_data(self.host_sharding, rows_SxRxL, shape)

  def _train_segment(self, states, start_step, num_steps: int, host=None):
    """num_steps steps from start_step; returns states, per-group losses (S, M) and traces ((S, M, T) loss, signal)."""
    if self.host_order_B is not None:  # the mesh interleaves processes: put process p's rows back at [p B/P, ...)
      host = host[:, self.host_order_B]
    steps = start_step + jnp.arange(num_steps, dtype=jnp.int32)
    states, (losses, traces) = jax.lax.scan(self._one_step, states, (steps, host))
    return states, losses, traces

  # ---- dense signal traces -------------------------------------------------------------
  def _maybe_trace(self, states, step):
    """Per group (loss, signal), each (M, T), of the traced tasks after `step` updates; NaN off the trace steps."""
    if not self.trace_every:
      return ()
    size = len(self.problem.trace_T)
    empty = tuple((jnp.full((g.size, size), jnp.nan), jnp.full((g.size, size), jnp.nan)) for g in self.groups)
    return jax.lax.cond(step % self.trace_every == 0, lambda: self._trace(states), lambda: empty)

  def _trace(self, states):
    return tuple(
      jax.vmap(functools.partial(self.problem.trace, g.model))(s["params"])
      for g, s in zip(self.groups, states, strict=True)
    )

  # ---- evaluation ----------------------------------------------------------------------
  def _evaluate(self, states, data):
    return [
      jax.vmap(functools.partial(self.problem.evaluate, g.model, data=data))(s["params"])
      for g, s in zip(self.groups, states, strict=True)
    ]

  @functools.cached_property
  def eval_data(self):
    """The problem's eval examples, made once on the mesh (replicated) and read by every eval; None
    where the problem makes them at each eval."""
    return jax.jit(self.problem.eval_data, out_shardings=sharding.replicated(self.mesh))()

  def evaluate(self, states) -> list[EvalResult]:
    host = jax.device_get(self.evaluate_on_device(states, self.eval_data))
    return [EvalResult(np.asarray(loss), None if a is None else np.asarray(a), np.asarray(s)) for loss, a, s in host]


def host_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
  """Host blocks (steps, batch, ...) with the batch axis over every device of the mesh, in mesh order."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise ConfigError(
      f"train.batch_size: a host stream on {jax.process_count()} processes splits each batch over "
      f"all {devices} devices, so it must be a multiple of {devices}, got {batch_size}"
    )
  return NamedSharding(mesh, PartitionSpec(None, mesh.axis_names))


def process_row_order(devices, batch_size: int):
  """order_B with global_B = blocks_B[order_B], or None where the two agree.

  global_B is the batch with process p's rows at [p B/P, (p+1) B/P); blocks_B is what
  `host_sharding` assembles: device k (mesh order) holds rows [k B/D, (k+1) B/D), taken from
  its process's rows in the order its devices appear in the mesh.
  """
  per_device = batch_size // len(devices)
  owner_D = np.asarray([d.process_index for d in devices])
  order_B = np.concatenate(
    [k * per_device + np.arange(per_device) for p in np.unique(owner_D) for k in np.flatnonzero(owner_D == p)]
  )
  return None if np.array_equal(order_B, np.arange(batch_size)) else order_B
