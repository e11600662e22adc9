"""A token-file stream on two processes on 127.0.0.1, each reading only its rows of every batch: the same
metrics as one process, and the pair resumes from a checkpoint's per-process iterator states bit for bit."""

import os
import shutil
import types

import jax
import numpy as np
import pandas as pd
import pytest
from test_language import tiny_lm, write_token_files
from test_multiprocess_preemption import finish, launch_pair

import scaling_interference as si
from scaling_interference.data.token_streams import make_host_iterator
from scaling_interference.errors import WorkdirError
from scaling_interference.problems import make_problem
from scaling_interference.sweep.engine import process_row_order

FLAGS = [
  "--config=configs/olmo_injection.py:demo",
  "--config.data.source=token_files",
  "--config.data.vocab_size=64",
  "--config.data.seq_len=16",
  "--config.model.sizes=32/4/1",
  "--config.sweep.seeds=0",
  "--config.train.steps=40",
  "--config.train.eval_every=10",
  "--config.train.checkpoint_every=20",
  "--config.train.batch_size=32",
  "--config.train.steps_per_dispatch=10",
  "--config.train.eval_examples_per_task=16",
]


def flags_config(tokens):
  """FLAGS' config, built in this process: the one-process run that the pairs must match."""
  from configs import olmo_injection

  config = olmo_injection.get_config("demo")
  config.data.update(source="token_files", vocab_size=64, seq_len=16, paths=(f"{tokens}/*.npy",))
  config.model.sizes, config.sweep.seeds = ("32/4/1",), (0,)
  config.train.update(
    steps=40, eval_every=10, checkpoint_every=20, batch_size=32, steps_per_dispatch=10, eval_examples_per_task=16
  )
  return config


def run_pair(workdir, tokens) -> list[str]:
  return finish(launch_pair(workdir, [*FLAGS, f"--config.data.paths={tokens}/*.npy"]))


@pytest.mark.processes
def test_two_processes_read_a_token_file_stream_like_one_and_resume(tmp_path):
  tokens = str(tmp_path / "tokens")
  write_token_files(tokens)
  one, two, resumed = (str(tmp_path / name) for name in ("one", "two", "resumed"))
  si.train(flags_config(tokens), one)  # in this process: metrics equal up to float rounding
  run_pair(two, tokens)
  a, b = si.load_run(one).metrics, si.load_run(two).metrics
  assert len(a) > 0
  pd.testing.assert_frame_equal(
    b, a, check_exact=False, rtol=1e-5, obj="metrics of 2 processes vs 1 (their global batches must be the same rows)"
  )
  shutil.copytree(two, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "40"))  # as if both were killed after the step-20 checkpoint
  outputs = run_pair(resumed, tokens)
  assert "resuming" in outputs[0] and "from step 20" in outputs[0], outputs[0]
  pd.testing.assert_frame_equal(
    si.load_run(resumed).metrics,
    b,
    check_exact=True,
    obj="metrics of the resumed pair vs the uninterrupted pair (other batches after step 20?)",
  )


def test_one_process_reads_the_checkpoint_of_two_as_one_stream(tmp_path):
  """Analysis (and replay) of a two-process run on one process: both shards from their saved states, stacked."""
  write_token_files(str(tmp_path / "tokens"))
  config = tiny_lm()
  config.data.update(source="token_files", paths=(str(tmp_path / "tokens" / "*.npy"),))
  alone, pair = make_problem(config), make_problem(config)
  shards = [
    make_host_iterator(config.data, config.train.batch_size, config.data.seq_len, config.train.data_seed, (i, 2))
    for i in range(2)
  ]
  for _ in range(5):
    alone.stream.next()
    for shard in shards:
      shard.next()
  pair.restore_host_state([shard.get_state() for shard in shards])
  assert len(pair.host_state()) == 2, "the stack keeps both processes' states for its checkpoints"
  np.testing.assert_array_equal(pair.host_batches(3), alone.host_batches(3))


def test_rows_of_processes_interleaved_in_the_mesh_come_back_in_process_order():
  devices = [types.SimpleNamespace(process_index=p) for p in (1, 0, 0, 1, 1, 0)]  # mesh order, 3 devices each
  global_B, per_device = np.arange(12), 2  # process p's rows: [6p, 6p + 6)
  blocks_B = np.empty(12, int)  # as jax.make_array_from_process_local_data lays them out: a process's rows fill
  for p in (0, 1):  # its devices' blocks in mesh order
    for i, k in enumerate(k for k, d in enumerate(devices) if d.process_index == p):
      blocks_B[k * per_device : (k + 1) * per_device] = global_B[6 * p + i * per_device : 6 * p + (i + 1) * per_device]
  np.testing.assert_array_equal(blocks_B[process_row_order(devices, 12)], global_B)
  assert process_row_order(sorted(devices, key=lambda d: d.process_index), 12) is None, "process order: no gather"


def test_a_checkpoint_of_three_processes_does_not_resume_on_two(tmp_path, monkeypatch):
  write_token_files(str(tmp_path / "tokens"))
  config = tiny_lm()
  config.data.update(source="token_files", paths=(str(tmp_path / "tokens" / "*.npy"),))
  problem = make_problem(config)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(WorkdirError, match="data iterator states of 3 processes: resume it on 3 processes, not 2"):
    problem.restore_host_state([problem.stream.get_state()] * 3)
