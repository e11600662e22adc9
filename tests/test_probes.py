"""Ridge probes vs least squares, decodable vs random features, task identity, MLP and LM probe tables."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from conftest import small_regression

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.analysis import probes
from scaling_interference.problems.synthetic import eval_examples
from scaling_interference.tasks import make_family


def test_ridge_at_zero_is_least_squares():
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal((50, 5)), rng.standard_normal((50, 2))
  w, b = probes.ridge_fit(x, y, 0.0)
  coef = np.linalg.lstsq(np.concatenate([x, np.ones((50, 1))], 1), y, rcond=None)[0]
  np.testing.assert_allclose(w, coef[:5], rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(b, coef[5], rtol=1e-10, atol=1e-12)
  w_path, b_path = probes.ridge_path(x, y, [0.0, 3.0])
  for i, lam in enumerate([0.0, 3.0]):
    w_lam, b_lam = probes.ridge_fit(x, y, lam)
    np.testing.assert_allclose(w_path[i], w_lam, rtol=1e-9, atol=1e-12, err_msg="eigh path = direct solve")
    np.testing.assert_allclose(b_path[i], b_lam, rtol=1e-9, atol=1e-12)


def test_embedded_feature_decodes_and_random_does_not():
  rng = np.random.default_rng(1)
  rep = rng.standard_normal((600, 12))
  embedded = rep @ rng.standard_normal((12, 1))
  features = {
    "embedded": ("r2", embedded),
    "random": ("r2", rng.standard_normal((600, 1))),
    "sign": ("accuracy", (embedded > 0).astype(float)),
  }
  scores = probes.feature_scores(rep, features, probes.split_labels(600))
  assert scores["embedded"][1] > 0.999
  assert abs(scores["random"][1]) < 0.1, "held-out R^2 of an independent feature is about 0"
  assert scores["sign"][1] > 0.9


def test_task_identity_from_the_regression_input():
  family = make_family(small_regression().task)
  n = 200
  batch = eval_examples(family, jax.random.key(0), jnp.arange(4), n)
  task_N, split_N = np.asarray(batch.task), np.tile(probes.split_labels(n), 4)
  recall_T = probes.task_id_recall(np.asarray(batch.x), task_N, 4, split_N)
  assert recall_T.min() > 0.95, "which block is active is linear in x^2"
  linear_only = probes.probe_predictions(np.asarray(batch.x), np.eye(4)[task_N], split_N).argmax(1)
  assert np.mean(linear_only == task_N[split_N == 2]) < 0.7, "zero-mean blocks: x alone is far from decoding them"


def test_probe_table_on_a_regression_run(tmp_path):
  config = small_regression()
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  si.train(config, str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = probes.probe_table(run, 60, n_per_task=200)
  assert set(table.layer) == {"input", "hidden0", "output"}
  assert len(table) == 2 * 3 * 4 * (1 + 4 + 1), "per member, layer, task: task_id, z@v1..4, answer"
  inputs = table[(table.layer == "input") & (table.feature != "task_id")]
  assert (inputs.value > 0.99).all(), "the input embeds every task's z and, linearly, its answer"
  counts = probes.decodable_counts(table)
  assert list(counts.columns) == ["step", "member", "width", "layer", "n_decodable"] and len(counts) == 6
  assert (counts.set_index(["member", "layer"]).n_decodable.xs("input", level="layer") == 24).all()


def tiny_language_config():
  config = defaults.language_config()
  config.data.update(source="synthetic", vocab_size=64, seq_len=16, inject_mode="replace")
  config.token_tasks.compare = defaults.token_task("comparison", 1, n_items=5)
  config.inject.compare = ml_collections.ConfigDict(dict(task=1, kind="per_batch", count=16))
  config.model.sizes = ("32/4/1",)
  config.sweep.update(seeds=(0,), lrs=(1e-2,))
  config.train.update(
    steps=200, batch_size=32, eval_every=100, checkpoint_every=200, steps_per_dispatch=100, eval_examples_per_task=32
  )
  return config


def test_probe_table_on_a_language_model_run(tmp_path):
  si.train(tiny_language_config(), str(tmp_path / "run"))
  run = si.load_run(str(tmp_path / "run"))
  table = probes.probe_table(run, 200)
  assert list(table.columns) == ["step", "member", "width", "layer", "task", "feature", "metric", "value", "decodable"]
  assert set(table.layer) == {"embed", "block1"} and set(table.task) == {1}
  assert set(table.feature) == {"operand1", "operand2", "answer"}, "one token task: no task_id"
  value = table.set_index(["layer", "feature"]).value
  assert value["embed", "operand1"] < 0.5 and value["embed", "operand2"] < 0.5, (
    "the separator's embedding is the same in every example"
  )
  assert not table.set_index(["layer", "feature"]).decodable["embed", "answer"]
  assert value["block1", "answer"] > 0.9, "the trained model answers from the last block's stream"
  counts = probes.decodable_counts(table)
  assert list(counts.layer) == ["embed", "block1"] and counts.n_decodable.iloc[0] == 0
