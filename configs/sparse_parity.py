"""Width sweep on multitask sparse parity (Michaud et al. 2023, the quantization model).

  python -m launch.train --config=configs/sparse_parity.py:demo --workdir=runs/parity_demo
  python -m analysis.summary --workdir=runs/parity_demo

Input: one-hot task code ++ n random bits; task k's label is the parity of its own random
k-subset; task frequencies p_k ~ k^-alpha.

demo: 20 tasks, 24 bits, k=3, alpha=1.4, ReLU MLPs of widths 16..256, 3000 steps of batch
1024. Measured: about 15 s on 2 CPU cores. What it showed in our run: tasks are learned in order
of frequency, and wider members learn more of the tail (accuracy > 0.95 on 2 tasks at width 16,
on 3, 5, 8 and 11 at widths 32, 64, 128 and 256).

paper: the paper's setting: 500 tasks, 100 bits, k=3, alpha=1.4, batch 20,000, 200k steps,
AdamW lr 1e-3, widths log-uniform from 10 to 500, 1,000 eval samples per task; for a GPU/TPU.
"""
import numpy as np

from scaling_interference import defaults


def get_config(preset: str = "demo"):
  config = defaults.base_config(defaults.sparse_parity_task())
  config.model.activation = "relu"
  config.model.depth = 1
  if preset == "demo":
    config.task.update(num_tasks=20, n_bits=24, k=3, alpha=1.4)
    config.model.widths = (16, 32, 64, 128, 256)
    config.sweep.lrs = (3e-3,)
    config.train.update(steps=3000, batch_size=1024, eval_every=250, checkpoint_every=1000,
                        steps_per_dispatch=250, eval_examples_per_task=512)
  elif preset == "paper":
    config.task.update(num_tasks=500, n_bits=100, k=3, alpha=1.4)
    config.model.widths = tuple(int(w) for w in np.unique(np.round(np.geomspace(10, 500, 12))))
    config.sweep.lrs = (1e-3,)
    config.train.update(optimizer="adamw", steps=200_000, batch_size=20_000, eval_every=2000,
                        checkpoint_every=20_000, keep_every=50_000, steps_per_dispatch=500,
                        eval_examples_per_task=1000)
  else:
    raise ValueError(f"preset: unknown {preset!r}; choose demo or paper")
  return config
