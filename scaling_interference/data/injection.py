"""Injecting task examples into rows of a base token stream, on device (token side).

A `TokenBatch` carries, for each token position, its token, its task id (0: base stream,
i > 0: injected task i) and `answer_mask`: True where the NEXT token is an injected answer,
i.e. where the logits predicting an answer sit and answer loss/accuracy are computed.

`inject_sequences` inserts N examples into chosen rows; rows keep their length L:
  mode="splice":  each example is inserted at a random position of its row, before a base
                  token; the tokens after it shift right and the row is cut at L.
  mode="replace": a row's examples, then one EOS, are placed at the start of the row; the
                  row's base tokens follow, shifted right and cut at L.
Several examples may share a row (they keep their index order in "replace", their random
positions in "splice"); a row's insertion positions are drawn so that all of its examples
fit (length sum <= L, plus the EOS in "replace"). Examples may have different lengths
(`length_N`, padded to Q). An example whose row is outside [0, B) is skipped, so a fixed N
can carry a varying count (e.g. row -1 for unused slots). Inject all examples of a batch in
one call: a later call could splice into an earlier call's example.
"""

import dataclasses

import jax
import jax.numpy as jnp

from scaling_interference.errors import ConfigError

Array = jax.Array
MODES = ("replace", "splice")


@dataclasses.dataclass(frozen=True)
class TokenBatch:
  """Rows of tokens with per-position task ids and answer mask."""

  tokens: Array  # (B, L) int32
  task: Array  # (B, L) int32: 0 base stream, i injected task i
  answer_mask: Array  # (B, L) bool: the next token is an injected answer


jax.tree_util.register_dataclass(TokenBatch, data_fields=["tokens", "task", "answer_mask"], meta_fields=[])


def base_batch(tokens_BxL: Array) -> TokenBatch:
  """Base-stream rows: task 0 everywhere, no answers."""
  tokens_BxL = jnp.asarray(tokens_BxL, jnp.int32)
  return TokenBatch(tokens_BxL, jnp.zeros_like(tokens_BxL), jnp.zeros(tokens_BxL.shape, bool))


def inject_sequences(
  batch: TokenBatch,
  examples_NxQ: Array,
  example_task_N: Array,
  rows_N: Array,
  *,
  mode: str,
  key: Array,
  eos_id: int = 0,
  length_N: Array | None = None,
) -> TokenBatch:
  """`batch` with example n inserted into row rows_N[n], labelled task example_task_N[n]."""
  if mode not in MODES:
    raise ConfigError(f"mode: must be one of {list(MODES)}, got {mode!r}")
  b, length = batch.tokens.shape
  n, q = examples_NxQ.shape
  length_N = jnp.full((n,), q, jnp.int32) if length_N is None else jnp.asarray(length_N, jnp.int32)
  row_N = jnp.where((rows_N >= 0) & (rows_N < b), rows_N, b).astype(jnp.int32)  # b: skipped
  total_B = jnp.zeros(b, jnp.int32).at[row_N].add(length_N, mode="drop")
  if mode == "splice":
    room_N = jnp.maximum(length - total_B.at[row_N].get(mode="fill", fill_value=0), 0)
    insert_N = jax.random.randint(key, (n,), 0, room_N + 1)
    shift_BxL = jnp.cumsum(jnp.zeros((b, length), jnp.int32).at[row_N, insert_N].add(length_N, mode="drop"), 1)
  else:
    insert_N = jnp.zeros(n, jnp.int32)
    shift_BxL = jnp.broadcast_to((total_B + (total_B > 0))[:, None], (b, length))
  start_N = insert_N + _length_before(row_N, insert_N, length_N)
  out = _move_base(batch, shift_BxL)
  out = _place_examples(out, examples_NxQ, example_task_N, row_N, start_N, length_N)
  return _place_eos(out, total_B, eos_id) if mode == "replace" else out


def _length_before(row_N: Array, insert_N: Array, length_N: Array) -> Array:
  """Total length of the examples placed before each one in its row (by position, then index)."""
  n = row_N.shape[0]
  order_N = jnp.lexsort((jnp.arange(n), insert_N, row_N))
  sorted_row_N, sorted_length_N = row_N[order_N], length_N[order_N]
  before_N = jnp.cumsum(sorted_length_N) - sorted_length_N
  first_N = jnp.searchsorted(sorted_row_N, sorted_row_N, side="left")
  return jnp.zeros(n, jnp.int32).at[order_N].set(before_N - before_N[first_N])


def _move_base(batch: TokenBatch, shift_BxL: Array) -> TokenBatch:
  """Moves base position i of each row to i + shift; positions past L are cut."""
  b, length = batch.tokens.shape
  rows_BxL = jnp.broadcast_to(jnp.arange(b)[:, None], (b, length))
  cols_BxL = jnp.arange(length)[None, :] + shift_BxL

  def move(x):
    return jnp.zeros_like(x).at[rows_BxL, cols_BxL].set(x, mode="drop")

  return jax.tree.map(move, batch)


def _place_examples(out: TokenBatch, examples_NxQ, example_task_N, row_N, start_N, length_N) -> TokenBatch:
  """Writes the examples, their task ids, and the answer mask before each answer inside L."""
  n, q = examples_NxQ.shape
  length = out.tokens.shape[1]
  offset_Q = jnp.arange(q)
  cols_NxQ = jnp.where(offset_Q < length_N[:, None], start_N[:, None] + offset_Q, length)  # padding: cut
  rows_NxQ = jnp.broadcast_to(row_N[:, None], (n, q))
  answer_inside_N = start_N + length_N - 1 < length
  mask_NxQ = (offset_Q == length_N[:, None] - 2) & answer_inside_N[:, None]
  task_NxQ = jnp.broadcast_to(jnp.asarray(example_task_N, jnp.int32)[:, None], (n, q))

  def put(x, v):
    return x.at[rows_NxQ, cols_NxQ].set(v, mode="drop")

  return TokenBatch(
    put(out.tokens, examples_NxQ.astype(jnp.int32)), put(out.task, task_NxQ), put(out.answer_mask, mask_NxQ)
  )


def _place_eos(out: TokenBatch, total_B: Array, eos_id: int) -> TokenBatch:
  """Writes EOS (task 0, no answer) right after the examples of each row that has any."""
  b = total_B.shape[0]
  rows_B = jnp.where(total_B > 0, jnp.arange(b), b)

  def put(x, v):
    return x.at[rows_B, total_B].set(v, mode="drop")

  return TokenBatch(put(out.tokens, eos_id), put(out.task, 0), put(out.answer_mask, False))
