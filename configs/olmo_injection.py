"""OLMo-style language models trained in parallel on a token stream with injected novel tasks.

  python -m launch.train --config=configs/olmo_injection.py:demo --workdir=runs/olmo_demo
  python -m analysis.run --workdir=runs/olmo_demo --out=runs/olmo_demo/report

Token tasks over randomly chosen tokens (ids in name order; held-out tuples get id + 4):
  1 add_frequent / 2 add_rare:  a + b mod P over random tokens (P=7 demo, 97 paper)
  3 cmp_frequent / 4 cmp_rare:  which of two items comes later in a hidden order of n items
                                (n=8 demo, 100 paper)
spliced into rows of the base stream at random positions; frequent tasks come 8 times per
batch in the demo (1,000 in the paper), rare ones 2 times per batch (once every ten batches).

demo: 4 tiny sizes (tiny-a 32/4/2 .. tiny-d 96/4/3) on the embedded synthetic language
(vocabulary 512, rows of 32 tokens), 1200 steps of batch 32. Measured on 2 CPU cores shared
with other jobs: 575 s. What it showed (answer accuracy at step 1200, trained / held-out pairs):
  cmp_frequent: every size learned it and generalised (tiny-a 0.98/1.00 .. tiny-d 1.00/1.00);
  cmp_rare: only the largest learned it (tiny-d 0.95/1.00; tiny-c 0.60, tiny-b 0.51, tiny-a
  0.24); modular addition (frequent or rare): no size learned it in this budget (accuracy at
  chance, about 0.15).

paper: the OLMo ladder 4M..4B (vocabulary 50,304, 2048-token rows), comparison and modular
addition injected from 1,000 examples per batch down to one every ten batches, on a real
pre-tokenised corpus (set data.source=token_files and data.paths=...). Learning rates follow
the ladder (python -m launch.ladder); one group per size, so launch one size per job or a few
small sizes together, on GPU/TPU:
  python -m launch.train --config=configs/olmo_injection.py:paper --workdir=gs://BUCKET/olmo \
      --config.model.sizes=20M,60M --config.data.paths=/data/olmo/*.npy
"""
from scaling_interference import defaults


def add_tasks_and_schedules(config, modulus: int, n_items: int, frequent: dict, rare: dict) -> None:
  """Modular addition and comparison, each as a frequent and a rare task with its own tokens."""
  kinds = {"add": ("modular_addition", dict(modulus=modulus)), "cmp": ("comparison", dict(n_items=n_items))}
  for task_id, (name, how) in enumerate([(n, h) for n in kinds for h in ("frequent", "rare")], start=1):
    kind, fields = kinds[name]
    config.token_tasks[f"{name}_{how}"] = defaults.token_task(kind, task_id, **fields)
    config.inject[f"{name}_{how}"] = dict(task=task_id, **(frequent if how == "frequent" else rare))


def get_config(preset: str = "demo"):
  config = defaults.language_config()
  if preset == "demo":
    config.data.update(source="synthetic", vocab_size=512, seq_len=32)
    add_tasks_and_schedules(config, modulus=7, n_items=8, frequent=dict(kind="per_batch", count=8),
                            rare=dict(kind="per_batch", count=2))
    config.model.sizes = ("tiny-a", "tiny-b", "tiny-c", "tiny-d")
    config.sweep.lrs = (3e-3,)
    config.train.update(steps=1200, batch_size=32, eval_every=200, checkpoint_every=400, keep_every=400,
                        steps_per_dispatch=50, warmup_steps=100, eval_examples_per_task=128,
                        trace_every=25, trace_examples=64)
  elif preset == "paper":
    config.data.update(source="token_files", vocab_size=50_304, seq_len=2049, dtype="uint16", eos_id=50_279)
    add_tasks_and_schedules(config, modulus=97, n_items=100, frequent=dict(kind="per_batch", count=1000),
                            rare=dict(kind="every", count=1, every=10))
    config.model.update(sizes=("4M", "6M", "8M", "10M", "14M", "16M", "20M", "60M", "90M", "150M", "300M",
                               "530M", "750M", "1B", "4B"), compute_dtype="bfloat16")
    config.sweep.lrs = (4e-3,)
    config.train.update(steps=100_000, batch_size=512, eval_every=1000, checkpoint_every=5000, keep_every=10_000,
                        steps_per_dispatch=100, warmup_steps=2000, eval_examples_per_task=512,
                        trace_every=100, trace_examples=256)
  elif preset == "rare":
    config.data.update(source="synthetic", vocab_size=512, seq_len=16)
    config.token_tasks.cmp_frequent = defaults.token_task("comparison", 1, n_items=8)
    config.token_tasks.cmp_rare = defaults.token_task("comparison", 2, n_items=8)
    config.inject.cmp_frequent = dict(task=1, kind="per_batch", count=8)
    config.inject.cmp_rare = dict(task=2, kind="every", count=1, every=3)
    config.model.sizes = ("tiny-a", "tiny-b", "tiny-d")
    config.sweep.lrs = (3e-3,)
    config.sweep.seeds = (0, 1, 2)
    config.train.update(steps=1200, batch_size=32, eval_every=200, checkpoint_every=600, keep_every=600,
                        steps_per_dispatch=50, warmup_steps=100, eval_examples_per_task=128,
                        trace_every=1, trace_tasks=(2,), trace_examples=32)
  elif preset == "complexity":
    config.data.update(source="synthetic", vocab_size=512, seq_len=16)
    config.token_tasks.add = defaults.token_task("modular_addition", 1, modulus=7)
    config.token_tasks.cmp = defaults.token_task("comparison", 2, n_items=8)
    config.inject.add = dict(task=1, kind="per_batch", count=8)
    config.inject.cmp = dict(task=2, kind="per_batch", count=8)
    config.model.sizes = ("tiny-a", "tiny-c", "tiny-e")
    config.sweep.lrs = (3e-3,)
    config.sweep.seeds = (0, 1, 2)
    config.train.update(steps=1500, batch_size=32, eval_every=250, checkpoint_every=750, keep_every=750,
                        steps_per_dispatch=50, warmup_steps=100, eval_examples_per_task=128)
  else:
    raise ValueError(f"preset: unknown {preset!r}; choose demo, rare, complexity or paper")
  return config
