"""The injection protocol on multitask regression: a rare task, and the same kind of task as one burst.

  python -m launch.train --config=configs/injection.py:demo --workdir=runs/injection_demo
  python -m analysis.summary --workdir=runs/injection_demo

Setup: 32 common tasks (Zipf alpha=1), plus task 32 injected at 0.25% of all examples and task 33
(same spectrum, its own map) injected as a single burst; both are out of the base mixture. The
signal of both injected tasks is traced every `trace_every` steps into traces.npz.

demo: DEMO_TEXT

paper: PAPER_TEXT
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
