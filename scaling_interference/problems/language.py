"""The language-model problem: a base token stream with token tasks injected by schedules.

Task ids of metrics rows: 0 is the base stream; token task i (config.token_tasks in name
order) has id i for its trained operand tuples and id n + i for its held-out tuples (never
shown in training), so analysis can tell memorisation from generalisation. A task's
`frequency` is its injected examples per sequence over the run (the base stream's is 1).

Training loss: mean next-token cross-entropy (+ z-loss) over every position of every row.
Eval: base-stream loss and next-token accuracy on fixed rows; per token task, answer-token
loss and accuracy on fixed examples, each placed as in training (after a few fixed base-stream
tokens for inject_mode "splice", at the start of the row for "replace"); signal =
(accuracy - chance) / (1 - chance), chance = 1 / (number of possible answers).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from scaling_interference.data import schedules as schedules_lib
from scaling_interference.data.injection import base_batch, inject_sequences
from scaling_interference.data.schedules import realised_counts
from scaling_interference.data.token_streams import ShardStack, make_host_iterator, make_stream, sample_language
from scaling_interference.errors import ConfigError, WorkdirError
from scaling_interference.models.olmo import lm_loss
from scaling_interference.problems.base import Problem
from scaling_interference.problems.synthetic import data_keys, trace_tasks
from scaling_interference.tasks import TaskInfo
from scaling_interference.tasks.token_tasks import make_token_tasks

BASE_TASK = 0
INJECT_MODES = ("splice", "replace")


def token_task_configs(config, vocab_size: int) -> list:
  """config.token_tasks in name order, each told the model's vocabulary (EOS kept free)."""
  out = []
  for name in sorted(config.token_tasks):
    task = config.token_tasks[name].copy_and_resolve_references()
    with task.unlocked():
      task.vocab_size = vocab_size
      task.reserved_tokens = max(1, task.reserved_tokens)
    out.append(task)
  return out


def chance(task) -> float:
  return 1.0 / task.modulus if task.kind == "modular_addition" else 0.5


class LanguageProblem(Problem):
  """Base stream + injected token tasks; batches on device, or from a host stream."""

  probe_examples_per_task = 256

  def __init__(self, config):
    data, train = config.data, config.train
    self.config = config
    self.stream = make_stream(config)
    self.on_device = self.stream.on_device
    self.vocab_size, self.seq_len, self.batch_size = self.stream.vocab_size, data.seq_len, train.batch_size
    self.names = sorted(config.token_tasks)
    self.token_tasks = make_token_tasks(token_task_configs(config, self.vocab_size))
    self.schedules = check_schedules(config, len(self.token_tasks))
    self.mode = check_mode(data.inject_mode)
    self.example_len = max([t.seq_len for t in self.token_tasks], default=1)
    check_seq_len(self.seq_len, self.example_len)
    self.z_loss = config.model.z_loss
    self.train_key, self.eval_key = data_keys(train.data_seed)
    self.eval_n, self.trace_n = train.eval_examples_per_task, train.trace_examples
    self.trace_T = trace_tasks(config, self.schedules, range(1, len(self.token_tasks) + 1))
    self.eval_rows = self._eval_rows(config)
    self.eval_prefix = min(8, self.seq_len - 1 - self.example_len) if self.mode == "splice" else 0
    self.tasks = self._task_infos(train.steps)

  def _task_infos(self, steps: int) -> list[TaskInfo]:
    counts = realised_counts(self.schedules, steps).sum(axis=0)
    per_task = np.zeros(len(self.token_tasks) + 1)
    for s, c in zip(self.schedules, counts, strict=True):
      per_task[s.task] += c / max(steps * self.batch_size, 1)
    n = len(self.token_tasks)
    infos = [TaskInfo(BASE_TASK, "base", 1.0, 0.0, name="base", split="train")]
    infos += [
      TaskInfo(i + 1, t.kind, float(per_task[i + 1]), t.complexity(), name=self.names[i], split="train")
      for i, t in enumerate(self.token_tasks)
    ]
    infos += [
      TaskInfo(n + i + 1, t.kind, 0.0, t.complexity(), name=self.names[i], split="heldout")
      for i, t in enumerate(self.token_tasks)
    ]
    return infos

  def _eval_rows(self, config):
    """Fixed base-stream rows for eval: from the eval key (on device) or a second host iterator."""
    if self.on_device:
      return sample_language(self.stream.tables, self.eval_key, self.eval_n, self.seq_len)
    seed = config.train.data_seed + 1_000_003
    return jnp.asarray(make_host_iterator(config.data, self.eval_n, self.seq_len, seed).next())

  # ---- training batches ----------------------------------------------------------------
  def batch(self, step, host=None):
    keys = jax.random.split(jax.random.fold_in(self.train_key, step), 4)
    tokens = host if host is not None else sample_language(self.stream.tables, keys[0], self.batch_size, self.seq_len)
    batch = base_batch(tokens)
    if not self.schedules:
      return batch
    examples, task_N, length_N, active_N = self._scheduled_examples(keys[1], step)
    rank_N = jnp.cumsum(active_N) - 1
    rows_N = jnp.where(active_N, jax.random.permutation(keys[2], self.batch_size)[rank_N % self.batch_size], -1)
    return inject_sequences(
      batch, examples, task_N, rows_N, mode=self.mode, key=keys[3], eos_id=self.stream.eos_id, length_N=length_N
    )

  def _scheduled_examples(self, key, step):
    """Every schedule's slots (max_count each): examples, task ids, lengths, and which are used."""
    examples, task_N, length_N, active_N = [], [], [], []
    for j, s in enumerate(self.schedules):
      task = self.token_tasks[s.task - 1]
      tokens = task.sample(jax.random.fold_in(key, j), s.max_count, "train")["tokens"]
      examples.append(jnp.pad(tokens, ((0, 0), (0, self.example_len - task.seq_len))))
      task_N.append(jnp.full((s.max_count,), s.task, jnp.int32))
      length_N.append(jnp.full((s.max_count,), task.seq_len, jnp.int32))
      active_N.append(jnp.arange(s.max_count) < s.counts(jnp.asarray(step, jnp.int32)))
    return tuple(jnp.concatenate(a) for a in (examples, task_N, length_N, active_N))

  def host_batches(self, num_steps: int):
    """(num_steps, B/P, L): this process's rows of the next batches (the engine assembles the global ones)."""
    if self.on_device:
      return None
    return np.stack([self.stream.next() for _ in range(num_steps)])

  def host_block_spec(self, num_steps: int):
    if self.on_device:
      return None
    return jax.ShapeDtypeStruct((num_steps, self.batch_size, self.seq_len), jnp.int32)

  def host_state(self):
    """Every process's iterator state, in process order (a collective: every process calls it)."""
    if self.on_device:
      return None
    return self.stream.get_state() if isinstance(self.stream, ShardStack) else gather_json(self.stream.get_state())

  def restore_host_state(self, state) -> None:
    if state is None or self.on_device:
      return
    states = state if isinstance(state, list) else [state]  # a one-process state saved before issue 12
    if jax.process_count() == 1 and len(states) > 1:  # one process reads every shard (analysis, replay)
      self.stream = make_stream(self.config, shards=len(states))
      self.stream.set_state(states)
      return
    if len(states) != jax.process_count():
      raise WorkdirError(
        f"the checkpoint holds the data iterator states of {len(states)} processes: "
        f"resume it on {len(states)} processes, not {jax.process_count()}"
      )
    self.stream.set_state(states[jax.process_index()])

  def loss_shares(self, step_S) -> np.ndarray:
    """(K,) each task id's expected share of the training loss's terms (predicted positions) over steps step_S.

    The loss is a mean over the B (L - 1) positions, each belonging to the task of the token it
    predicts. An injected example of length L_k holds L_k of them, less its marker when it starts
    its row (always for "replace"; for "splice" when inserted at 0, chance 1 / (L - L_k + 1));
    held-out ids hold none and the base stream the rest.
    """
    step_S, shares = np.asarray(step_S, np.int64), np.zeros(len(self.tasks))
    for s in self.schedules:
      length = self.token_tasks[s.task - 1].seq_len
      unseen_marker = 1.0 if self.mode == "replace" else 1.0 / (self.seq_len - length + 1)
      shares[s.task] += s.counts(step_S, xp=np).mean() * (length - unseen_marker)
    shares /= self.batch_size * (self.seq_len - 1)
    shares[BASE_TASK] = 1.0 - shares.sum()
    return shares

  # ---- loss and eval -------------------------------------------------------------------
  def loss(self, model, params, batch):
    logits = model.apply(params, batch.tokens[:, :-1])
    weights = jnp.ones(batch.tokens[:, 1:].shape, jnp.float32)
    ce, z = lm_loss(logits, batch.tokens[:, 1:], weights, self.z_loss)
    return (ce + z).sum() / weights.sum()

  def class_losses(self, model, params, batch, class_K, num_classes: int):
    """Each position's loss (cross-entropy + z-loss) goes to the class of the task of the token it predicts."""
    logits = model.apply(params, batch.tokens[:, :-1])
    weights = jnp.ones(batch.tokens[:, 1:].shape, jnp.float32)
    ce, z = lm_loss(logits, batch.tokens[:, 1:], weights, self.z_loss)
    class_N = class_K[batch.task[:, 1:]].reshape(-1)
    return jax.ops.segment_sum(((ce + z) / weights.sum()).reshape(-1), class_N, num_classes)

  def signal_of(self, model, params, task_T):
    return jnp.stack([self._token_signal(model, params, int(t)) for t in task_T])

  def _token_signal(self, model, params, t: int):
    """(accuracy - chance) / (1 - chance) on task t's eval examples (trained or held-out); NaN for the base stream."""
    if t == BASE_TASK:
      return jnp.float32(jnp.nan)
    count = len(self.token_tasks)
    i, split = (t - 1) % count, "train" if t <= count else "heldout"
    key = jax.random.fold_in(self.eval_key, (i + 1) * 2 + (split == "heldout"))
    _, a = self._answer_metrics(model, params, self.token_tasks[i], split, self.eval_n, key)
    return (a - chance(self.token_tasks[i])) / (1 - chance(self.token_tasks[i]))

  def _answer_metrics(self, model, params, task, split: str, n: int, key):
    """Answer-token loss and accuracy of n examples, each after `eval_prefix` base tokens (as in training)."""
    example = task.sample(key, n, split)["tokens"]
    prefix = jnp.resize(self.eval_rows[:, : self.eval_prefix], (n, self.eval_prefix))
    tokens = jnp.concatenate([prefix, example], axis=1)
    logits = model.apply(params, tokens[:, :-1])[:, self.eval_prefix + task.answer_position]
    answer = example[:, task.answer_position + 1]
    ce, _ = lm_loss(logits[:, None], answer[:, None], jnp.ones((n, 1)), 0.0)
    acc = (jnp.argmax(logits, -1) == answer).astype(jnp.float32)
    return ce.mean(), acc.mean()

  def _base_metrics(self, model, params):
    logits = model.apply(params, self.eval_rows[:, :-1])
    targets = self.eval_rows[:, 1:]
    ce, _ = lm_loss(logits, targets, jnp.ones(targets.shape), 0.0)
    return ce.mean(), (jnp.argmax(logits, -1) == targets).mean()

  def evaluate(self, model, params, data=None):
    del data  # eval_data() is None: the base rows are kept, the task examples drawn here
    loss, acc, signal = [], [], []
    base_loss, base_acc = self._base_metrics(model, params)
    loss.append(base_loss), acc.append(base_acc), signal.append(jnp.nan)
    for split in ("train", "heldout"):
      for i, task in enumerate(self.token_tasks):
        key = jax.random.fold_in(self.eval_key, (i + 1) * 2 + (split == "heldout"))
        task_loss, a = self._answer_metrics(model, params, task, split, self.eval_n, key)
        loss.append(task_loss), acc.append(a), signal.append((a - chance(task)) / (1 - chance(task)))
    return jnp.stack(loss), jnp.stack(acc), jnp.stack(signal)

  def task_batch(self, task_T, n: int):
    """Per task: rows of seq_len tokens and the weights of the positions its loss counts.

    The base stream (task 0) counts every position of fixed eval rows; a token task counts the
    position predicting its answer on the first n of eval's examples, placed as in eval (train
    or held-out tuples), so with n = eval_examples_per_task its loss is the eval loss.
    """
    rows = [self._task_rows(int(t), n) for t in task_T]
    return {"tokens": jnp.stack([r[0] for r in rows]), "weights": jnp.stack([r[1] for r in rows])}

  def _task_rows(self, t: int, n: int):
    length = self.seq_len
    if t == BASE_TASK:
      return jnp.resize(self.eval_rows, (n, length)), jnp.ones((n, length - 1), jnp.float32)
    count = len(self.token_tasks)
    task, split = self.token_tasks[(t - 1) % count], "train" if t <= count else "heldout"
    key = jax.random.fold_in(self.eval_key, ((t - 1) % count + 1) * 2 + (split == "heldout"))  # eval's examples
    example = task.sample(key, n, split)["tokens"]
    prefix = jnp.resize(self.eval_rows[:, : self.eval_prefix], (n, self.eval_prefix))
    tokens = jnp.concatenate([prefix, example], axis=1)
    tokens = jnp.pad(tokens, ((0, 0), (0, length - tokens.shape[1])), constant_values=self.stream.eos_id)
    weights = jax.nn.one_hot(jnp.full((n,), self.eval_prefix + task.answer_position), length - 1)
    return tokens, weights

  def task_loss(self, model, params, batch):
    logits = model.apply(params, batch["tokens"][:, :-1])
    ce, _ = lm_loss(logits, batch["tokens"][:, 1:], batch["weights"], 0.0)
    return ce.sum() / batch["weights"].sum()

  def trace(self, model, params):
    loss, signal = [], []
    for t in self.trace_T:
      task = self.token_tasks[t - 1]
      task_loss, a = self._answer_metrics(
        model, params, task, "train", self.trace_n, jax.random.fold_in(self.eval_key, 2 * t)
      )
      loss.append(task_loss), signal.append((a - chance(task)) / (1 - chance(task)))
    return jnp.stack(loss), jnp.stack(signal)


def gather_json(obj) -> list:
  """[obj of process 0, obj of process 1, ...]: JSON-serialisable values gathered from every process."""
  if jax.process_count() == 1:
    return [obj]
  data_N = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  size_P = np.asarray(multihost_utils.process_allgather(np.int32(data_N.size)))
  data_PxN = np.asarray(multihost_utils.process_allgather(np.pad(data_N, (0, int(size_P.max()) - data_N.size))))
  return [json.loads(bytes(row[:size])) for row, size in zip(data_PxN, size_P, strict=True)]


def check_schedules(config, num_token_tasks: int):
  found = schedules_lib.from_config(config.inject, config.train.batch_size, num_token_tasks + 1)
  for s in found:
    if s.task == BASE_TASK:
      raise ConfigError(
        f"inject.{s.name}.task: must be a token task id in [1, {num_token_tasks}] (0 is the base stream), got 0"
      )
  return found


def check_mode(mode: str) -> str:
  if mode not in INJECT_MODES:
    raise ConfigError(f"data.inject_mode: must be one of {list(INJECT_MODES)}, got {mode!r}")
  return mode


def check_seq_len(seq_len: int, example_len: int) -> None:
  if seq_len < example_len + 1:
    raise ConfigError(
      f"data.seq_len: must be >= {example_len + 1} to hold the injected tasks' format "
      f"({example_len} tokens) and a next token, got {seq_len}"
    )
