"""A token-file stream on two processes on 127.0.0.1: the same metrics as one process, and the pair resumes
from a checkpoint's iterator state bit for bit (each process reads the whole stream, in the same order)."""
import os
import shutil
import subprocess
import sys

import numpy as np

import scaling_interference as si
from test_language import write_token_files
from test_multiprocess_train import ROOT, free_port

FLAGS = ["--config=configs/olmo_injection.py:demo", "--config.data.source=token_files",
         "--config.data.vocab_size=64", "--config.data.seq_len=16", "--config.model.sizes=32/4/1",
         "--config.sweep.seeds=0", "--config.train.steps=40", "--config.train.eval_every=10",
         "--config.train.checkpoint_every=20", "--config.train.batch_size=32", "--config.train.steps_per_dispatch=10",
         "--config.train.eval_examples_per_task=16"]


def launch(workdir, tokens, processes: int) -> list[str]:
  env, port = dict(os.environ, JAX_PLATFORMS="cpu"), free_port()
  flags = [f"--workdir={workdir}", *FLAGS, f"--config.data.paths={tokens}/*.npy"]
  place = lambda i: [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
  procs = [subprocess.Popen([sys.executable, "-m", "launch.train", *flags, *(place(i) if processes > 1 else [])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(processes)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0] * processes, outputs
  return outputs


def test_two_processes_read_a_token_file_stream_like_one_and_resume(tmp_path):
  tokens = str(tmp_path / "tokens")
  write_token_files(tokens)
  one, two, resumed = (str(tmp_path / name) for name in ("one", "two", "resumed"))
  launch(one, tokens, 1)
  launch(two, tokens, 2)
  a, b = si.load_run(one).metrics, si.load_run(two).metrics
  assert len(a) == len(b) > 0
  np.testing.assert_allclose(b.loss.values, a.loss.values, rtol=1e-5)
  shutil.copytree(two, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "40"))  # as if both were killed after the step-20 checkpoint
  outputs = launch(resumed, tokens, 2)
  assert "resuming" in outputs[0] and "from step 20" in outputs[0], outputs[0]
  with open(os.path.join(two, "metrics.jsonl")) as x, open(os.path.join(resumed, "metrics.jsonl")) as y:
    assert x.read() == y.read(), "the resumed pair saw other batches than the uninterrupted pair"
