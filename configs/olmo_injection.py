"""OLMo-style language models trained in parallel on a token stream with injected novel tasks.

  python -m launch.train --config=configs/olmo_injection.py:demo --workdir=runs/olmo_demo
  python -m analysis.run --workdir=runs/olmo_demo --out=runs/olmo_demo/report

Token tasks over randomly chosen tokens (ids in name order; held-out tuples get id + 4):
  1 add_frequent / 2 add_rare:  a + b mod P over random tokens (P=7 demo, 97 paper)
  3 cmp_frequent / 4 cmp_rare:  which of two items comes later in a hidden order of n items
                                (n=8 demo, 100 paper)
spliced into rows of the base stream at random positions; frequent tasks come 8 times per
batch in the demo (250 in the paper), rare ones 2 times per batch (once every ten batches).

demo: 4 tiny sizes (tiny-a 32/4/2 .. tiny-d 96/4/3) on the embedded synthetic language
(vocabulary 512, rows of 32 tokens), 1200 steps of batch 32, seed 0: 238 s on 2 CPU cores.
What it showed (answer accuracy at step 1200 per size tiny-a/b/c/d, `make check-recipes` on 2
cores, jax 0.10.1; EXPECTED below). One seed's numbers are not robust: float-level differences
(another jax version, another CPU thread count) grow through training. On jax 0.10.2 the same
run gave the values in brackets, and pinned to one core tiny-d's cmp_rare was 0.53.
  cmp_frequent (3): 0.75 / 0.96 / 0.95 / 1.00 [0.84 / 0.95 / 1.00 / 1.00], held-out pairs (7)
  0.55 / 1.00 / 1.00 / 0.91 [0.64 / 1.00 / 1.00 / 1.00];
  cmp_rare (4; 2 of 32 rows per batch, 6%, so not rare): 0.28 / 0.40 / 0.80 / 0.69 [0.32 / 0.45 /
  0.49 / 0.77], learned by none; its held-out set is one pair (8): 0 / 0 / 0.70 / 0;
  modular addition (1, 2): at chance (0.12 .. 0.21) at every size.

rare (CPU): comparison over 6 items injected at 0.89% of rows (task 2: 8 examples every 14
batches of 64 rows of 8 tokens) beside a frequent comparison (task 1, 8 per batch), sizes 16/2/2,
24/4/2 and 48/4/2 (d_model / heads / layers; 17K, 31K, 99K parameters) at seeds 0, 1, 2, 4000
steps, dense traces of task 2 every step: 248 s on 2 cores. Step 4000, answer
accuracy per seed (jax 0.10.1): task 1 learned by every size (1.00); task 2 by 48/4/2 at every seed
(1.00 / 0.93 / 1.00, mean 0.98) and on its held-out pair (task 4: 1.00 at every seed), by none of
16/2/2's (0.45 / 0.35 / 0.35, mean 0.38; held-out 0), and 24/4/2 is in the transition (0.77 / 0.92
/ 0.75, mean 0.81, signal 0.53 / 0.84 / 0.50; held-out 0.32). Learned at every seed only by the
largest size, so the result is not one lucky seed; the middle size is where the seed decides. With
sizes tiny-a/b/d (32/4/2, 48/4/2, 96/4/3) and 2000 steps the means were 0.39 / 0.86 / 0.57: at
2000 steps the seed mattered as much as the size (README: the variants tried).
  python -m analysis.run --workdir=runs/olmo_rare --out=runs/olmo_rare/report --replay_after=3000 \
      --replay_steps=16   # replay windows mid-run, short: a replayed LM step costs many training steps
That report (766 s on 2 cores beside another run, 625 s of it the replay of 4 windows): claim 3
held (common-task gradient norm on the real batches 1.52 / 1.25 / 0.89 per size), claim 4 held (the
common tasks' updates raise the rare task's loss by 0.0133 / 0.0105 / 0.0015 per window, its own
lower it at every size), claim 6 held (probes above init: +5 / +5.3 / +6.7 features). Claim 7 held,
narrowly, on the event-triggered average of the dense loss traces (mean over the 286 injections
of the loss change since each): the rare task's loss falls 0.076 / 0.079 / 0.079 within 4 to 5
steps at every size and seed, and by the next injection the sizes keep 0.22 / 0.24 / 0.27 of that
fall (0.09 / 0.54 / 0.76 over the injections of steps 3000 to 3999, no order in the middle
quarters). One injection's accuracy change is within the noise of 32 examples; their mean is not.

complexity (CPU): modular addition mod 23 (task 1) and comparison over 8 items (task 2), each 32
per batch of 64 rows of 8 tokens (every row carries an example, so the base language is barely
learned: accuracy 0.01), weight decay 1.0, 6000 steps, tiny-a/b/d at seeds 0, 1, 2: 583 s on 2
cores. Step 6000, per seed (jax 0.10.1): comparison learned
and generalised by every size (trained and held-out pairs 1.00); addition not learned by tiny-a
(0.05 / 0.26 / 0.02, chance 0.04; held-out 0), learned by tiny-b (1.00 / 0.97 / 1.00) and
generalised at two seeds of three (held-out unordered pairs 0.98 / 0.00 / 0.95), learned and
generalised by tiny-d at every seed (1.00; held-out 0.91 / 0.95 / 1.00). Complexity and size both
matter: at the same frequency the complex task needs the larger sizes, which move from memorising
to generalising. Until this session the preset used addition mod 11 at 24 per batch for 3000
steps: tiny-d learned it at every seed but memorised it (held-out 0.13 / 0.00 / 0.22); mod 11's
121 pairs are cheap to memorise, mod 23's 529 are not (README: what it took).

rates (accelerator; never run, no expected outcome yet): both tasks at 200, 40, 10 and 1 per
batch and one every ten batches (ids 1..5 addition, 6..10 comparison), 4M..150M on the synthetic
language (vocabulary 50,304, rows of 1024 tokens), batch 512, 20,000 steps. A row holds at most one
injected example, so the study's top rungs (1,000 and 100 per batch, in batches of about 1,000
rows) are scaled to fit 512 rows (the ten schedules ask for at most 502).

paper: the OLMo ladder 4M..4B (vocabulary 50,304, 2048-token rows), comparison and modular
addition injected at 250 examples per batch (half the 512 rows; the study's 1,000 is per batch of
about 1,000 rows) and at one every ten batches, on a real
pre-tokenised corpus (set data.source=token_files and data.paths=...). Learning rates follow
the ladder (python -m launch.ladder); one group per size, so launch one size per job or a few
small sizes together, on GPU/TPU:
  python -m launch.train --config=configs/olmo_injection.py:paper --workdir=gs://BUCKET/olmo \
      --config.model.sizes="'20M','60M'" --config.data.paths=/data/olmo/*.npy
"""

from scaling_interference import defaults
from scaling_interference.recipes import Expect

SIZES = ("tiny-a", "tiny-b", "tiny-c", "tiny-d")
RARE_SIZES = ("16/2/2", "24/4/2", "48/4/2")
EXPECTED = {
  "demo": [
    *(Expect("accuracy", v, tol=0.05, task=3, size=z) for z, v in zip(SIZES, (0.750, 0.961, 0.953, 1.0), strict=True)),
    *(
      Expect("accuracy", v, tol=0.05, task=4, size=z) for z, v in zip(SIZES, (0.281, 0.398, 0.797, 0.688), strict=True)
    ),
    *(Expect("accuracy", v, tol=0.05, task=7, size=z) for z, v in zip(SIZES, (0.555, 1.0, 1.0, 0.914), strict=True)),
  ],
  "rare": [
    *(Expect("accuracy", 1.0, tol=0.02, task=1, size=z) for z in RARE_SIZES),
    *(Expect("accuracy", v, tol=0.05, task=2, size=z) for z, v in zip(RARE_SIZES, (0.383, 0.813, 0.977), strict=True)),
    *(Expect("accuracy", v, tol=0.05, task=4, size=z) for z, v in zip(RARE_SIZES, (0.0, 0.323, 1.0), strict=True)),
  ],
  "complexity": [
    *(
      Expect("accuracy", v, tol=0.05, task=1, size=z)
      for z, v in zip(("tiny-a", "tiny-b", "tiny-d"), (0.112, 0.990, 1.0), strict=True)
    ),
    *(
      Expect("accuracy", v, tol=0.05, task=3, size=z)
      for z, v in zip(("tiny-a", "tiny-b", "tiny-d"), (0.0, 0.643, 0.956), strict=True)
    ),
    *(Expect("accuracy", 1.0, tol=0.02, task=t, size=z) for t in (2, 4) for z in ("tiny-a", "tiny-b", "tiny-d")),
  ],
}


def add_tasks_and_schedules(config, modulus: int, n_items: int, frequent: dict, rare: dict) -> None:
  """Modular addition and comparison, each as a frequent and a rare task with its own tokens."""
  kinds = {"add": ("modular_addition", dict(modulus=modulus)), "cmp": ("comparison", dict(n_items=n_items))}
  for task_id, (name, how) in enumerate([(n, h) for n in kinds for h in ("frequent", "rare")], start=1):
    kind, fields = kinds[name]
    config.token_tasks[f"{name}_{how}"] = defaults.token_task(kind, task_id, **fields)
    config.inject[f"{name}_{how}"] = dict(task=task_id, **(frequent if how == "frequent" else rare))


PRESETS = ("demo", "rare", "complexity", "rates", "paper")


def get_config(preset: str = "demo"):
  if preset not in PRESETS:
    raise ValueError(f"preset: unknown {preset!r}; choose one of {', '.join(PRESETS)}")
  config = defaults.language_config()
  if preset == "demo":
    config.data.update(source="synthetic", vocab_size=512, seq_len=32)
    add_tasks_and_schedules(
      config, modulus=7, n_items=8, frequent=dict(kind="per_batch", count=8), rare=dict(kind="per_batch", count=2)
    )
    config.model.sizes = ("tiny-a", "tiny-b", "tiny-c", "tiny-d")
    config.sweep.lrs = (3e-3,)
    config.train.update(
      steps=1200,
      batch_size=32,
      eval_every=200,
      checkpoint_every=400,
      keep_every=400,
      steps_per_dispatch=50,
      warmup_steps=100,
      eval_examples_per_task=128,
      trace_every=25,
      trace_examples=64,
    )
  elif preset == "paper":
    config.data.update(source="token_files", vocab_size=50_304, seq_len=2049, dtype="uint16", eos_id=50_279)
    add_tasks_and_schedules(
      config,
      modulus=97,
      n_items=100,
      frequent=dict(kind="per_batch", count=250),
      rare=dict(kind="every", count=1, every=10),
    )
    config.model.update(
      sizes=("4M", "6M", "8M", "10M", "14M", "16M", "20M", "60M", "90M", "150M", "300M", "530M", "750M", "1B", "4B"),
      compute_dtype="bfloat16",
    )
    config.sweep.lrs = (4e-3,)
    config.train.update(
      steps=100_000,
      batch_size=512,
      eval_every=1000,
      checkpoint_every=5000,
      keep_every=10_000,
      steps_per_dispatch=100,
      warmup_steps=2000,
      eval_examples_per_task=512,
      trace_every=100,
      trace_examples=256,
    )
  elif preset == "rare":
    config.data.update(source="synthetic", vocab_size=512, seq_len=8)
    config.token_tasks.cmp_frequent = defaults.token_task("comparison", 1, n_items=8)
    config.token_tasks.cmp_rare = defaults.token_task("comparison", 2, n_items=6)
    config.inject.cmp_frequent = dict(task=1, kind="per_batch", count=8)
    config.inject.cmp_rare = dict(task=2, kind="every", count=8, every=14)  # 8 / (14 x 64) = 0.89% of rows
    config.model.sizes = RARE_SIZES
    config.sweep.lrs = (3e-3,)
    config.sweep.seeds = (0, 1, 2)
    config.train.update(
      steps=4000,
      batch_size=64,
      eval_every=250,
      checkpoint_every=2000,
      keep_every=2000,
      steps_per_dispatch=50,
      warmup_steps=100,
      eval_examples_per_task=128,
      trace_every=1,
      trace_tasks=(2,),
      trace_examples=32,
    )
  elif preset == "complexity":
    config.data.update(source="synthetic", vocab_size=512, seq_len=8)
    config.token_tasks.add = defaults.token_task("modular_addition", 1, modulus=23)
    config.token_tasks.cmp = defaults.token_task("comparison", 2, n_items=8)
    config.inject.add = dict(task=1, kind="per_batch", count=32)
    config.inject.cmp = dict(task=2, kind="per_batch", count=32)
    config.model.sizes = ("tiny-a", "tiny-b", "tiny-d")
    config.sweep.lrs = (3e-3,)
    config.sweep.seeds = (0, 1, 2)
    config.train.update(
      steps=6000,
      batch_size=64,
      eval_every=500,
      checkpoint_every=3000,
      keep_every=3000,
      steps_per_dispatch=50,
      warmup_steps=100,
      eval_examples_per_task=128,
      weight_decay=1.0,
    )
  elif preset == "rates":
    config.data.update(source="synthetic", vocab_size=50_304, seq_len=1024)
    rates = [
      ("0_200pb", dict(kind="per_batch", count=200)),
      ("1_40pb", dict(kind="per_batch", count=40)),
      ("2_10pb", dict(kind="per_batch", count=10)),
      ("3_1pb", dict(kind="per_batch", count=1)),
      ("4_every10", dict(kind="every", count=1, every=10)),
    ]
    kinds = [("add", "modular_addition", dict(modulus=97)), ("cmp", "comparison", dict(n_items=100))]
    task_id = 0
    for short, kind, fields in kinds:  # ids in name order: add_0.. add_4, cmp_0.. cmp_4
      for label, how in rates:
        task_id += 1
        config.token_tasks[f"{short}_{label}"] = defaults.token_task(kind, task_id, **fields)
        config.inject[f"{short}_{label}"] = dict(task=task_id, **how)
    config.model.update(sizes=("4M", "8M", "20M", "60M", "150M"), compute_dtype="bfloat16")
    config.sweep.lrs = (3e-3,)
    config.train.update(
      steps=20_000,
      batch_size=512,
      eval_every=500,
      checkpoint_every=5000,
      keep_every=5000,
      steps_per_dispatch=100,
      warmup_steps=1000,
      eval_examples_per_task=512,
      trace_every=10,
      trace_tasks=(4, 5, 9, 10),
      trace_examples=256,
    )
  return config
