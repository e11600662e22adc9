"""A family defined outside the package trains, summarises and goes through the report.

The toy family names no probe features, task inputs or oracle: analysis must ask the family
(tasks/base.py's defaults), never its name.
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pandas as pd
import pytest

import scaling_interference as si
from scaling_interference import defaults
from scaling_interference.analysis import allocation, learned, probes, report, scaling
from scaling_interference.checks import require_int
from scaling_interference.tasks import FAMILIES, Batch, Family, register
from scaling_interference.tasks.base import check_frequencies, frequencies_from_config


class CopyBit(Family):
  """K tasks on n random bits and a one-hot task code: task t's label is bit t of the input."""

  name = "test_copy_bit"
  has_accuracy = True

  def __init__(self, task_config):
    self.num_tasks, self.n_bits = task_config.num_tasks, task_config.n_bits
    self.input_dim, self.output_dim = self.num_tasks + self.n_bits, 2
    self.frequencies = frequencies_from_config(task_config)
    self.complexities = np.ones(self.num_tasks)

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(family=cls.name, num_tasks=4, n_bits=4, alpha=1.0, frequencies=(), seed=0))

  @classmethod
  def validate_config(cls, task_config) -> None:
    check_frequencies(task_config)
    require_int(task_config, "task.n_bits", task_config.num_tasks)

  def sample(self, key, task_B) -> Batch:
    bits_BxD = jax.random.bernoulli(key, 0.5, (task_B.shape[0], self.n_bits)).astype(jnp.float32)
    code_BxK = jax.nn.one_hot(task_B, self.num_tasks, dtype=jnp.float32)
    label_B = jnp.take_along_axis(bits_BxD, task_B[:, None], axis=1)[:, 0].astype(jnp.int32)
    return Batch(x=jnp.concatenate([code_BxK, bits_BxD], -1), y=label_B, task=task_B.astype(jnp.int32))

  def loss(self, out_BxO, batch: Batch):
    return optax.softmax_cross_entropy_with_integer_labels(out_BxO, batch.y)

  def accuracy(self, out_BxO, batch: Batch):
    return (jnp.argmax(out_BxO, -1) == batch.y).astype(jnp.float32)

  def signal(self, task_T, loss_T, accuracy_T, linear_fn=None):
    return 2.0 * accuracy_T - 1.0


def copy_bit_config():
  config = defaults.base_config(CopyBit.default_config())
  config.model.update(widths=(4, 32), activation="relu")
  config.sweep.update(seeds=(0,), lrs=(3e-2,))
  config.train.update(
    steps=150, batch_size=64, eval_every=50, checkpoint_every=75, steps_per_dispatch=25, eval_examples_per_task=128
  )
  return config


@pytest.fixture(scope="module", autouse=True)
def registered():
  """CopyBit is a family for this module's tests only (other tests list the built-in families)."""
  register(CopyBit)
  yield
  FAMILIES.pop(CopyBit.name)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, registered):
  path = str(tmp_path_factory.mktemp("copy_bit") / "run")
  si.train(copy_bit_config(), path)
  return path


def test_the_widest_member_learns_the_frequent_task(workdir):
  final = scaling.final_table(si.load_run(workdir)).set_index(["width", "task"])
  assert final.signal[32, 0] > 0.9, "copying one bit of the input is easy for 32 units"
  assert set(final.index.get_level_values("task")) == {0, 1, 2, 3}


def test_summary_has_no_oracle_and_lists_every_task(workdir):
  run = si.load_run(workdir)
  assert not learned.has_oracle(run) and (scaling.loss_floor(run) == 0).all()
  table = learned.signal_table(run)
  assert list(table.index) == [(4, "trained"), (32, "trained")] and list(table.columns) == [0, 1, 2, 3]
  assert list(learned.total_loss_table(run).columns) == ["eval_loss"]
  text = learned.render(run)
  header = text.splitlines()[1]
  assert all(str(t) in header.split() for t in range(4)), f"the signal table names every task: {header!r}"
  assert "oracle" not in text and "frequency" in text and "complexity" in text
  assert scaling.oracle_comparison(run).empty


def test_analysis_reports_what_the_family_does_not_define(workdir):
  run = si.load_run(workdir)
  step = run.steps()[-1]
  table = allocation.allocation_table(run, step, n_per_task=32)
  assert len(table) == 2 * 4 and table.capacity.isna().all() and table.n_features.isna().all()
  assert (table.owned_neurons >= 0).all()
  table = probes.probe_table(run, step, n_per_task=50)
  assert set(table.feature) == {"task_id"}, "no family features: the probes read task identity only"
  assert set(table.layer) == {"input", "hidden0", "output"}
  assert (table[table.layer == "input"].value > 0.95).all(), "the input's one-hot code tells the tasks apart"


def test_report_builds_with_no_failed_job(workdir, tmp_path):
  r = report.build([workdir], str(tmp_path / "out"), steps="last")
  assert r.failed == [], r.notes
  assert os.path.exists(r.index) and "test_copy_bit" in pathlib.Path(r.index).read_text()
  assert r.claims.set_index("claim").status[2] == "not measurable", "no analytic oracle for this family"
  for name in ("final", "emergence", "learned", "allocation", "probes"):
    assert os.path.exists(os.path.join(r.out, "tables", f"{name}.csv")), f"missing table {name}.csv"
  assert pd.read_csv(os.path.join(r.out, "tables", "oracle.csv")).empty
