"""Width sweep on multitask sparse parity (Michaud et al. 2023, the quantization model).

  python -m launch.train --config=configs/sparse_parity.py:demo --workdir=runs/parity_demo
  python -m analysis.summary --workdir=runs/parity_demo

Input: one-hot task code ++ n random bits; task k's label is the parity of its own random
k-subset; task frequencies p_k ~ k^-alpha.

demo: 20 tasks, 24 bits, k=3, alpha=1.4, ReLU MLPs of widths 16..256, 3000 steps of batch
1024. Measured: about 15 s on 2 CPU cores. What it showed in our run (step 3000, seed 0; one
member per width): tasks are learned in order of frequency, and wider members learn more of the tail
(accuracy > 0.95 on 2 tasks at width 16, on 3, 6, 7 and 10 at widths 32, 64, 128 and 256; task
0's accuracy 1.00 at every width, task 10's 0.48 / 0.48 / 0.50 / 0.66 / 0.94; on 2 cores: the
widest members' numbers move with the CPU thread count, 11 tasks and 0.98 on one core). EXPECTED below
states these; `python -m launch.check_recipes --recipes=sparse_parity:demo` measures them again.

paper: the paper's setting: 500 tasks, 100 bits, k=3, alpha=1.4, batch 20,000, 200k steps,
AdamW lr 1e-3, widths log-uniform from 10 to 500, 1,000 eval samples per task; for a GPU/TPU.

reference: for comparing curves with Michaud et al.'s PyTorch script (scripts/sparse-parity-v4.py
in ejmichaud/quantization-model, run once per width):

  python -m launch.train --config=configs/sparse_parity.py:reference --workdir=runs/parity_reference

100 tasks, 50 bits, k=3, alpha=1.4, widths 32..512, 2000 steps of batch 500, AdamW lr 1e-3 with
no weight decay, eval every 100 steps on 1,000 samples per task, and model.init="torch" (PyTorch
nn.Linear's default: weights and biases uniform in +-1/sqrt(fan_in); ours is LeCun-normal with
zero biases). The init is what matters. Measured against our own PyTorch rerun of the script's
settings (widths 64 and 256, 3 seeds each): the frequency-weighted loss at step 2000 was 3-10%
above it with "lecun" (7-18% after 500 steps of batch 2000) and within 3%, seed noise, with
"torch". About 25 s on 2 CPU cores. Our run (step 2000, seed 0; EXPECTED below):
accuracy > 0.95 on 1 / 1 / 1 / 2 / 3 tasks at widths 32 / 64 / 128 / 256 / 512; task 1's signal
0.39 / 0.38 / 0.72 / 0.95 / 1.00 (jax 0.10.1, first layers packed: train.pack="auto"; with plain
groups, train.pack="off", 0.27 / 0.25 / 0.72 / 0.99 / 0.99, and on jax 0.10.2 0.29 / 0.37 / 0.75 /
0.99 / 1.00: task 1 is mid-transition at widths 32 and 64, where float-level differences move it).
Where the two otherwise differ, without effect here:
- The script's `depth=2` counts Linear layers; it is our model.depth=1 (one hidden layer).
- Its defaults (alpha 1.5, width 100, 25,000 steps of batch 10,000) are not these: run it
  `with alpha=1.4 steps=2000 batch_size=500 width=W seed=S`.
- Its per-step task counts are multinomial with p_k; ours are i.i.d. per example (the same law).
  Each of its runs has its own subsets and data stream; our members share both.
- Its AdamW decays biases too when weight_decay > 0; ours never does (optim.decay_mask). Betas
  (0.9, 0.999) and eps 1e-8 agree.
- Its logged loss is the mean over a 30,000-example test batch of floor(p_k * 30,000) per task,
  taken before the update of every steps/1000-th step; ours weights each task's eval loss by
  the exact p_k, after the update. The two weightings differed by < 0.002 here.
"""

import numpy as np

from scaling_interference import defaults
from scaling_interference.recipes import Expect

EXPECTED = {
  "demo": [
    *(
      Expect("accuracy", n, tol=1, width=w, count_above=0.95)
      for w, n in zip((16, 32, 64, 128, 256), (2, 3, 6, 7, 10), strict=True)
    ),
    Expect("accuracy", 1.0, tol=0.01, task=0, width=16),
    Expect("accuracy", 0.94, tol=0.03, task=10, width=256),
    Expect("accuracy", 0.48, tol=0.05, task=10, width=16),
  ],
  "reference": [
    *(
      Expect("accuracy", n, tol=1, width=w, count_above=0.95)
      for w, n in zip((32, 64, 128, 256, 512), (1, 1, 1, 2, 3), strict=True)
    ),
    *(
      Expect("signal", v, tol=0.05, task=1, width=w)
      for w, v in zip((32, 64, 128, 256, 512), (0.39, 0.38, 0.72, 0.95, 1.0), strict=True)
    ),
  ],
}


PRESETS = ("demo", "paper", "reference")


def get_config(preset: str = "demo"):
  if preset not in PRESETS:
    raise ValueError(f"preset: unknown {preset!r}; choose one of {', '.join(PRESETS)}")
  config = defaults.base_config(defaults.sparse_parity_task())
  config.model.activation = "relu"
  config.model.depth = 1
  if preset == "demo":
    config.task.update(num_tasks=20, n_bits=24, k=3, alpha=1.4)
    config.model.widths = (16, 32, 64, 128, 256)
    config.sweep.lrs = (3e-3,)
    config.train.update(
      steps=3000,
      batch_size=1024,
      eval_every=250,
      checkpoint_every=1000,
      steps_per_dispatch=250,
      eval_examples_per_task=512,
    )
  elif preset == "paper":
    config.task.update(num_tasks=500, n_bits=100, k=3, alpha=1.4)
    config.model.widths = tuple(int(w) for w in np.unique(np.round(np.geomspace(10, 500, 12))))
    config.sweep.lrs = (1e-3,)
    config.train.update(
      optimizer="adamw",
      steps=200_000,
      batch_size=20_000,
      eval_every=2000,
      checkpoint_every=20_000,
      keep_every=50_000,
      steps_per_dispatch=500,
      eval_examples_per_task=1000,
    )
  elif preset == "reference":
    config.task.update(num_tasks=100, n_bits=50, k=3, alpha=1.4)
    config.model.update(widths=(32, 64, 128, 256, 512), init="torch")
    config.sweep.lrs = (1e-3,)
    config.train.update(
      optimizer="adamw",
      weight_decay=0.0,
      steps=2000,
      batch_size=500,
      eval_every=100,
      checkpoint_every=1000,
      steps_per_dispatch=100,
      eval_examples_per_task=1000,
    )
  return config
