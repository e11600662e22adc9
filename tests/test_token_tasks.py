"""Token tasks (modular addition, comparison) against numpy recomputations of their definitions."""

import collections
import itertools

import jax
import numpy as np
import pytest

from scaling_interference import defaults
from scaling_interference.errors import ConfigError
from scaling_interference.tasks.token_tasks import Comparison, ModularAddition, make_token_task, make_token_tasks


def _addition(**overrides):
  fields = dict(
    kind="modular_addition", seed=0, vocab_size=300, modulus=11, n_operands=2, heldout_fraction=0.1, reserved_tokens=0
  )
  fields.update(overrides)
  return defaults.token_task(**fields)


def _comparison(**overrides):
  fields = dict(kind="comparison", seed=0, vocab_size=300, n_items=9, heldout_fraction=0.1, reserved_tokens=0)
  fields.update(overrides)
  return defaults.token_task(**fields)


def _values(task, tokens_NxQ):
  """Token ids -> values through the task's number/item tokens, -1 where not a value."""
  lookup = np.full(task.vocab_size, -1)
  lookup[task.tokens.values] = np.arange(task.num_values)
  return lookup[np.asarray(tokens_NxQ)]


def _sample(task, n, split="train", seed=0):
  batch = jax.jit(task.sample, static_argnums=(1, 2))(jax.random.key(seed), n, split)
  return {k: np.asarray(v) for k, v in batch.items()}


@pytest.mark.parametrize("n_operands", [2, 3])
def test_modular_addition_answers_every_example(n_operands):
  task = make_token_task(_addition(n_operands=n_operands, modulus=7))
  assert isinstance(task, ModularAddition) and task.seq_len == n_operands + 3
  batch = _sample(task, 512)
  tokens_NxQ = batch["tokens"]
  assert tokens_NxQ.shape == (512, n_operands + 3) and tokens_NxQ.dtype == np.int32
  np.testing.assert_array_equal(tokens_NxQ[:, 0], task.tokens.marker)
  np.testing.assert_array_equal(tokens_NxQ[:, -2], task.tokens.separator)
  values_NxQ = _values(task, tokens_NxQ)
  operands_NxJ, answer_N = values_NxQ[:, 1:-2], values_NxQ[:, -1]
  np.testing.assert_array_equal(operands_NxJ, batch["operands"], "tokens must spell the operands")
  np.testing.assert_array_equal(answer_N, operands_NxJ.sum(1) % 7, "answer must be the sum mod P")
  np.testing.assert_array_equal(batch["answer"], answer_N)
  assert task.answer_position == n_operands + 1


def test_decode_shows_values():
  task = make_token_task(_addition())
  tokens_Q = _sample(task, 1)["tokens"][0]
  a, b, c = _values(task, tokens_Q[None])[0, [1, 2, 4]]
  assert task.decode(tokens_Q) == f"<add> {a} {b} = {c}"
  assert task.decode(np.array([task.tokens.marker, 5000])) == "<add> #5000"


def test_comparison_answers_follow_one_hidden_total_order():
  task = make_token_task(_comparison(n_items=6, heldout_fraction=0.0))
  assert isinstance(task, Comparison)
  batch = _sample(task, 2000)
  values_NxQ = _values(task, batch["tokens"])
  a_N, b_N, answer_N = values_NxQ[:, 1], values_NxQ[:, 2], values_NxQ[:, 4]
  assert np.all(a_N != b_N) and np.all((answer_N == a_N) | (answer_N == b_N))
  wins = {}
  for a, b, w in zip(a_N, b_N, answer_N, strict=True):
    assert wins.setdefault(frozenset((a, b)), w) == w, "a pair must always have the same answer"
  assert len(wins) == 15, "all unordered pairs of 6 items should be drawn"
  wins_N = np.bincount([w for w in wins.values()], minlength=6)
  np.testing.assert_array_equal(np.sort(wins_N), np.arange(6), "answers must form a total order")
  np.testing.assert_array_equal(
    np.argsort(wins_N), np.argsort(task.item_rank_N), "the order must be the hidden item_rank_N"
  )


def test_comparison_order_is_a_function_of_the_seed():
  a, b, c = (make_token_task(_comparison(seed=s)) for s in (3, 3, 4))
  np.testing.assert_array_equal(a.item_rank_N, b.item_rank_N)
  np.testing.assert_array_equal(a.tokens.ids(), b.tokens.ids())
  assert not np.array_equal(a.item_rank_N, c.item_rank_N)
  np.testing.assert_array_equal(_sample(a, 64)["tokens"], _sample(b, 64)["tokens"])


@pytest.mark.parametrize("config", [_addition(), _comparison()], ids=["addition", "comparison"])
def test_split_is_disjoint_and_heldout_never_trained(config):
  task = make_token_task(config)
  all_tuples = {tuple(t) for t in _all_tuples(task)}
  heldout = {tuple(t) for t in task.heldout_operands().tolist()}
  assert abs(len(heldout) - round(0.1 * len(all_tuples))) <= 1, "pairs: within one tuple of the fraction"
  assert len(heldout) == task.n_heldout > 0
  assert heldout <= all_tuples
  train = [tuple(t) for t in _sample(task, 20000, "train")["operands"].tolist()]
  assert not heldout & set(train), "a held-out tuple was sampled for training"
  assert set(train) == all_tuples - heldout, "every train tuple should be drawn"
  counts = np.array(list(collections.Counter(train).values()))
  assert counts.min() > 0.5 * counts.mean(), "train tuples should be drawn uniformly"
  drawn_heldout = {tuple(t) for t in _sample(task, 2000, "heldout")["operands"].tolist()}
  assert drawn_heldout == heldout


def _all_tuples(task):
  """Every operand tuple of the task's definition, enumerated independently."""
  if isinstance(task, ModularAddition):
    return list(itertools.product(range(task.modulus), repeat=task.n_operands))
  return list(itertools.permutations(range(task.n_items), 2))


SPLIT_CONFIGS = {
  "addition2": _addition(modulus=11, n_operands=2, heldout_fraction=0.3),
  "addition3": _addition(modulus=6, n_operands=3, heldout_fraction=0.3),
  "comparison": _comparison(n_items=12, heldout_fraction=0.3),
}


@pytest.mark.parametrize("name", sorted(SPLIT_CONFIGS))
def test_heldout_holds_out_every_ordering_of_its_operand_sets(name):
  """(a, b) and (b, a) share an answer: a reordered held-out tuple in training would be memorised."""
  task = make_token_task(SPLIT_CONFIGS[name])
  heldout = {tuple(t) for t in task.heldout_operands().tolist()}
  heldout_sets = {tuple(sorted(t)) for t in heldout}
  reordered = {p for t in heldout for p in itertools.permutations(t)}
  assert reordered == heldout, "every ordering of a held-out tuple must itself be held out"
  trained = {tuple(t) for t in _all_tuples(task)} - heldout
  assert not {tuple(sorted(t)) for t in trained} & heldout_sets, "a held-out set is reachable in training"
  drawn = _sample(task, 50000, "train", seed=1)["operands"]
  assert not {tuple(sorted(t)) for t in drawn.tolist()} & heldout_sets, "training sampled a held-out set"
  drawn_heldout = {tuple(t) for t in _sample(task, 5000, "heldout", seed=2)["operands"].tolist()}
  assert drawn_heldout <= heldout and len(drawn_heldout) > 0.9 * len(heldout)
  largest_orbit = max(len(set(itertools.permutations(s))) for s in heldout_sets)
  assert abs(task.n_heldout - round(0.3 * task.n_tuples)) <= largest_orbit / 2, "fraction: of tuples, to half a set"


def test_heldout_sets_are_a_function_of_the_seed():
  a, b, c = (make_token_task(_addition(seed=s, heldout_fraction=0.3)) for s in (3, 3, 4))
  np.testing.assert_array_equal(a.heldout_N, b.heldout_N)
  assert not np.array_equal(a.heldout_N, c.heldout_N)


def test_large_modulus_keeps_only_the_heldout_indices():
  task = make_token_task(_addition(vocab_size=50304, modulus=1000))
  assert task._heldout.shape == (100_000,), "device memory must stay at heldout_fraction x tuples"
  operands_NxJ = _sample(task, 4096)["operands"]
  heldout_index = set((task.heldout_operands() @ [1000, 1]).tolist())
  assert not heldout_index & set((operands_NxJ @ [1000, 1]).tolist())


def test_tokens_avoid_reserved_ids_markers_and_other_tasks():
  configs = [
    _addition(seed=1, reserved_tokens=40, vocab_size=120, modulus=30),
    _comparison(seed=1, reserved_tokens=40, vocab_size=120, n_items=40),
  ]
  tasks = make_token_tasks(configs)
  ids = [t.tokens.ids() for t in tasks]
  for task_ids, task in zip(ids, tasks, strict=True):
    assert len(set(task_ids.tolist())) == task.num_values + 2, "marker, separator, values distinct"
    assert task_ids.min() >= 40 and task_ids.max() < 120
  assert not set(ids[0].tolist()) & set(ids[1].tolist()), "two tasks of a run share a token"
  alone = make_token_task(configs[1])
  assert set(alone.tokens.ids().tolist()) & set(ids[0].tolist()), "exclusion should matter here"


def test_vocab_too_small_names_field_and_need():
  with pytest.raises(ConfigError, match=r"task\.vocab_size: modular_addition needs 13 free"):
    make_token_task(_addition(vocab_size=20, reserved_tokens=10))
  with pytest.raises(ConfigError, match=r"task\.vocab_size: comparison needs 11 free .* leaves 8"):
    make_token_tasks([_addition(vocab_size=21, modulus=11), _comparison(vocab_size=21)])


@pytest.mark.parametrize(
  "overrides, field",
  [
    (dict(kind="parity"), "task.kind"),
    (dict(modulus=1), "task.modulus"),
    (dict(n_operands=1), "task.n_operands"),
    (dict(heldout_fraction=0.7), "task.heldout_fraction"),
    (dict(reserved_tokens=-1), "task.reserved_tokens"),
    (dict(modulus=20_000, n_operands=2), "task.heldout_fraction"),
    (dict(modulus=2_000, n_operands=3), "task.modulus"),
  ],
)
def test_bad_config_names_the_field(overrides, field):
  with pytest.raises(ConfigError, match=rf"^{field}:"):
    make_token_task(_addition(**overrides))


def test_heldout_split_without_heldout_tuples_is_refused():
  task = make_token_task(_comparison(heldout_fraction=0.0))
  with pytest.raises(ConfigError, match="task.heldout_fraction"):
    task.sample(jax.random.key(0), 4, "heldout")


def test_sampling_is_pure_jittable_and_vmappable():
  task = make_token_task(_addition())
  eager = task.sample(jax.random.key(5), 32)["tokens"]
  jitted = jax.jit(lambda k: task.sample(k, 32)["tokens"])(jax.random.key(5))
  np.testing.assert_array_equal(eager, jitted)
  keys = jax.random.split(jax.random.key(0), 3)
  assert jax.vmap(lambda k: task.sample(k, 8)["tokens"])(keys).shape == (3, 8, 5)


def test_info_reports_complexity():
  addition = make_token_task(_addition(modulus=13, n_operands=3))
  info = addition.info(task_id=2, frequency=0.0025)
  assert (info.id, info.family, info.frequency, info.complexity) == (2, "modular_addition", 0.0025, 26.0)
  assert make_token_task(_comparison(n_items=9)).info(1, 0.1).complexity == 9.0
