"""The injection protocol on multitask regression: a rare task, and the same kind of task as one burst.

  python -m launch.train --config=configs/injection.py:demo --workdir=runs/injection_demo
  python -m analysis.summary --workdir=runs/injection_demo

Setup: 32 common tasks (Zipf alpha=1), plus task 32 injected at 0.25% of all examples and task 33
(same spectrum, its own map) injected as a single burst; both are out of the base mixture. The
signal of both injected tasks is traced every `trace_every` steps into traces.npz.

demo: d=m=4 (136 directions), two-layer linear members of widths 16..128 from a small init
(init_scale 0.1, so an untrained member's signal is ~0), 6000 steps of batch 1024, signal traced
every 10 steps. Measured: about 1 minute on 2 CPU cores. What it showed in our run: the task at
0.25% spiked at widths 16, 32 and 64 (peak signal 0.01, 0.04, 0.18 around step 50) and decayed to
0 within a few hundred steps ("update and forget"), while width 128 learned it and kept it
(signal 0.94 at the end). The burst of 512 examples raised the burst task's signal at every width
(0.01, 0.03, 0.07, 0.12 right after it) and every width forgot it (0 by 500 steps later): a
single burst is not retained, even where capacity is free.

paper: the same protocol with 3 seeds, 2 learning rates, widths 32..512, d=m=8, 100k steps of
batch 4096, checkpoints every 5000 steps kept for the interference analysis; for a GPU/TPU:
  python -m launch.train --config=configs/injection.py:paper --workdir=DIR
"""
from scaling_interference import defaults


def get_config(preset: str = "demo"):
  config = defaults.base_config(defaults.regression_task())
  config.model.update(activation="linear", use_bias=False, depth=1, init_scale=0.1)
  config.train.update(optimizer="adam", decay="constant")
  num_common = 32
  config.task.update(num_tasks=num_common + 2, alpha=1.0, beta=1.0)
  config.inject.rare = dict(task=num_common, kind="share", share=0.0025)
  config.inject.burst = dict(task=num_common + 1, kind="burst", count=512, at=900)  # a checkpoint follows at 1000
  if preset == "demo":
    config.task.update(input_dim=4, output_dim=4)
    config.model.widths = (16, 32, 64, 128)
    config.sweep.lrs = (3e-3,)
    config.train.update(steps=6000, batch_size=1024, eval_every=250, checkpoint_every=1000, keep_every=1000,
                        steps_per_dispatch=250, eval_examples_per_task=256, trace_every=10, trace_examples=16)
  elif preset == "paper":
    config.task.update(input_dim=8, output_dim=8)
    config.model.widths = (32, 64, 128, 256, 512)
    config.sweep.seeds = (0, 1, 2)
    config.sweep.lrs = (1e-3, 3e-3)
    config.inject.burst.at = 5000
    config.train.update(steps=100_000, batch_size=4096, eval_every=1000, checkpoint_every=5000, keep_every=5000,
                        steps_per_dispatch=500, eval_examples_per_task=2048, trace_every=10, trace_examples=16)
  else:
    raise ValueError(f"preset: unknown {preset!r}; choose demo or paper")
  return config
