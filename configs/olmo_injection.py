"""OLMo-style language models trained in parallel on a token stream with injected novel tasks.

  python -m launch.train --config=configs/olmo_injection.py:demo --workdir=runs/olmo_demo
  python -m analysis.run --workdir=runs/olmo_demo --out=runs/olmo_demo/report

Token tasks over randomly chosen tokens (ids in name order; held-out tuples get id + 4):
  1 add_frequent: a + b mod 11, 8 examples in every batch
  2 add_rare:     a + b mod 11 (other tokens), 1 example every 4 batches
  3 cmp_frequent: comparison of 2 of 10 items under a hidden order, 8 examples in every batch
  4 cmp_rare:     comparison (other tokens), 1 example every 4 batches
spliced into rows of the base stream at random positions.

demo: DEMO_TEXT

paper: the OLMo ladder 4M..4B (vocabulary 50,304, 2048-token rows), comparison and modular
addition injected from 1,000 examples per batch down to one every ten batches, on a real
pre-tokenised corpus (set data.source=token_files and data.paths=...). Learning rates follow
the ladder (python -m launch.ladder); one group per size, so launch one size per job or a few
small sizes together, on GPU/TPU:
  python -m launch.train --config=configs/olmo_injection.py:paper --workdir=gs://BUCKET/olmo \
      --config.model.sizes=20M,60M --config.data.paths=/data/olmo/*.npy
"""
from scaling_interference import defaults


def get_config(preset: str = "demo"):
  config = defaults.language_config()
  task = defaults.token_task
  if preset == "demo":
    config.data.update(source="synthetic", vocab_size=512, seq_len=32)
    config.token_tasks.add_frequent = task("modular_addition", 1, modulus=11)
    config.token_tasks.add_rare = task("modular_addition", 2, modulus=11)
    config.token_tasks.cmp_frequent = task("comparison", 3, n_items=10)
    config.token_tasks.cmp_rare = task("comparison", 4, n_items=10)
    config.inject.add_frequent = dict(task=1, kind="per_batch", count=8)
    config.inject.add_rare = dict(task=2, kind="every", count=1, every=4)
    config.inject.cmp_frequent = dict(task=3, kind="per_batch", count=8)
    config.inject.cmp_rare = dict(task=4, kind="every", count=1, every=4)
    config.model.sizes = ("tiny-a", "tiny-b", "tiny-c", "tiny-d")
    config.sweep.lrs = (3e-3,)
    config.train.update(steps=1200, batch_size=32, eval_every=200, checkpoint_every=400, keep_every=400,
                        steps_per_dispatch=50, warmup_steps=100, eval_examples_per_task=128,
                        trace_every=25, trace_examples=64)
  elif preset == "paper":
    config.data.update(source="token_files", vocab_size=50_304, seq_len=2049, dtype="uint16", eos_id=50_279)
    config.token_tasks.add = task("modular_addition", 1, modulus=97)
    config.token_tasks.add_rare = task("modular_addition", 2, modulus=97)
    config.token_tasks.cmp = task("comparison", 3, n_items=100)
    config.token_tasks.cmp_rare = task("comparison", 4, n_items=100)
    config.inject.add = dict(task=1, kind="per_batch", count=1000)
    config.inject.add_rare = dict(task=2, kind="every", count=1, every=10)
    config.inject.cmp = dict(task=3, kind="per_batch", count=1000)
    config.inject.cmp_rare = dict(task=4, kind="every", count=1, every=10)
    config.model.update(sizes=("4M", "6M", "8M", "10M", "14M", "16M", "20M", "60M", "90M", "150M", "300M",
                               "530M", "750M", "1B", "4B"), compute_dtype="bfloat16")
    config.sweep.lrs = (4e-3,)
    config.train.update(steps=100_000, batch_size=512, eval_every=1000, checkpoint_every=5000, keep_every=10_000,
                        steps_per_dispatch=100, warmup_steps=2000, eval_examples_per_task=512,
                        trace_every=100, trace_examples=256)
  else:
    raise ValueError(f"preset: unknown {preset!r}; choose demo or paper")
  return config
