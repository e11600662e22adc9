"""Injecting task examples into token rows, checked against numpy reconstructions of the rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_interference.data.injection import TokenBatch, base_batch, inject_sequences
from scaling_interference.errors import ConfigError

B, L, T, EOS = 6, 24, 5, 0


def _base():
  return np.arange(1000, 1000 + B * L, dtype=np.int32).reshape(B, L)


def _examples(n, t=T):
  return np.arange(1, 1 + n * t, dtype=np.int32).reshape(n, t)


@jax.jit
def _splice(batch, examples, tasks, rows, length, key):
  return inject_sequences(batch, examples, tasks, rows, mode="splice", key=key, length_N=length)


@jax.jit
def _replace(batch, examples, tasks, rows, length, key):
  return inject_sequences(batch, examples, tasks, rows, mode="replace", key=key, eos_id=EOS, length_N=length)


def _run(inject, batch, examples, tasks, rows, length=None, seed=0):
  length = np.full(len(rows), examples.shape[1], np.int32) if length is None else np.asarray(length)
  out = inject(
    batch,
    jnp.asarray(examples),
    jnp.asarray(tasks, jnp.int32),
    jnp.asarray(rows, jnp.int32),
    jnp.asarray(length, jnp.int32),
    jax.random.key(seed),
  )
  return [np.asarray(x) for x in (out.tokens, out.task, out.answer_mask)]


def _expected_replace_row(base_L, examples, tasks):
  """Examples, EOS, then the base row, cut at L; task ids and answer mask alike."""
  if not len(examples):
    return base_L, np.zeros(L), np.zeros(L, bool)
  tokens = np.concatenate([*examples, [EOS], base_L])[:L]
  task = np.concatenate([*[np.full(len(e), k) for e, k in zip(examples, tasks, strict=True)], [0], np.zeros(L)])[:L]
  mask = np.concatenate([*[np.arange(len(e)) == len(e) - 2 for e in examples], np.zeros(L + 1, bool)])[:L]
  return tokens, task, mask


def test_replace_puts_examples_then_eos_at_row_start():
  examples = _examples(4)
  rows, tasks = [2, 4, 2, -1], [1, 2, 3, 1]
  tokens, task, mask = _run(_replace, base_batch(_base()), examples, tasks, rows)
  assert tokens.shape == task.shape == mask.shape == (B, L)
  for r in range(B):
    chosen = [n for n, row in enumerate(rows) if row == r]
    want = _expected_replace_row(_base()[r], examples[chosen], np.array(tasks)[chosen])
    for got, expected, what in zip(
      (tokens[r], task[r], mask[r]), want, ("tokens", "task ids", "answer mask"), strict=True
    ):
      np.testing.assert_array_equal(got, expected, f"row {r}: {what}")


def _blocks(task_L):
  """(start, stop, task) of the runs of injected (task > 0) positions of one row."""
  edges = np.flatnonzero(np.diff(np.concatenate([[0], task_L, [0]])))
  return [(a, b, int(task_L[a])) for a, b in zip(edges[:-1], edges[1:], strict=True) if task_L[a] > 0]


def _check_spliced_row(base_L, tokens_L, task_L, mask_L, examples, tasks):
  """Every example intact as one block; removing the blocks leaves the base row's prefix."""
  blocks = _blocks(task_L)
  assert sorted(k for _, _, k in blocks) == sorted(tasks), "one block per example, labelled by its task"
  by_task = dict(zip(tasks, examples, strict=True))
  kept = np.ones(L, bool)
  for start, stop, k in blocks:
    np.testing.assert_array_equal(tokens_L[start:stop], by_task[k], "the example must appear intact")
    kept[start:stop] = False
  np.testing.assert_array_equal(tokens_L[kept], base_L[: kept.sum()], "base tokens must keep their order")
  want_mask = np.zeros(L, bool)
  want_mask[[stop - 2 for _, stop, _ in blocks]] = True
  np.testing.assert_array_equal(mask_L, want_mask, "answer mask exactly before each answer")


def test_splice_inserts_examples_intact_and_shifts_the_rest():
  examples, rows, tasks = _examples(5), [1, 3, 1, 1, 9], [1, 2, 3, 4, 5]
  for seed in range(20):
    tokens, task, mask = _run(_splice, base_batch(_base()), examples, tasks, rows, seed=seed)
    for r in range(B):
      chosen = [n for n, row in enumerate(rows) if row == r]
      if chosen:
        _check_spliced_row(_base()[r], tokens[r], task[r], mask[r], examples[chosen], [tasks[n] for n in chosen])
      else:
        np.testing.assert_array_equal(tokens[r], _base()[r], f"row {r} was not chosen: untouched")
        assert not task[r].any() and not mask[r].any()


def test_splice_positions_cover_the_row():
  starts = set()
  for seed in range(300):
    _, task, _ = _run(_splice, base_batch(_base()), _examples(1), [1], [0], seed=seed)
    starts.add(int(np.argmax(task[0] > 0)))
  assert starts == set(range(L - T + 1)), "an example can start anywhere it fits, and only there"


def test_variable_lengths_and_labels_carried_by_shifted_tokens():
  examples = _examples(2, t=6)
  length = [5, 6]  # the first example is padded to 6
  start = base_batch(_base())
  start = TokenBatch(start.tokens, start.task.at[:, 10].set(7), start.answer_mask.at[:, 9].set(True))
  tokens, task, mask = _run(_replace, start, examples, [1, 2], [0, 0], length=length)
  np.testing.assert_array_equal(tokens[0, :13], np.concatenate([examples[0, :5], examples[1], [EOS], _base()[0, :1]]))
  shift = 5 + 6 + 1
  assert task[0, 10 + shift] == 7 and mask[0, 9 + shift], "labels must move with their tokens"
  np.testing.assert_array_equal(np.flatnonzero(mask[0]), [3, 9, 9 + shift])
  np.testing.assert_array_equal(task[1:, 10], 7, "untouched rows keep their labels")


def test_answers_cut_off_by_the_row_end_get_no_mask():
  examples = _examples(5)
  tokens, task, mask = _run(_replace, base_batch(_base()), examples, [1] * 5, [0] * 5)
  np.testing.assert_array_equal(tokens[0], examples.ravel()[:L])
  np.testing.assert_array_equal(np.flatnonzero(mask[0]), [3, 8, 13, 18], "the 5th answer is past L")


def test_bad_mode_is_refused():
  with pytest.raises(ConfigError, match=r"mode: must be one of \['replace', 'splice'\]"):
    inject_sequences(
      base_batch(_base()),
      jnp.asarray(_examples(1)),
      jnp.ones(1, jnp.int32),
      jnp.zeros(1, jnp.int32),
      mode="overwrite",
      key=jax.random.key(0),
    )
