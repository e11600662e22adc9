"""Sweep engine speed: grouped vs one-member-at-a-time training, and FLOP/s vs a matmul.

  JAX_PLATFORMS=cpu python -m benchmarks.sweep_speed [--steps=N] [--repeats=R] [--out=FILE.json]

Everything runs in one process. Training FLOPs are counted as 6 x batch x sum of member
parameters per step (forward + backward matmuls) and compared with the FLOP/s of one large
float32 matmul measured here, so the fraction is relative to what this machine can do.
"""
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import regression
from scaling_interference.config import validate
from scaling_interference.sweep.engine import Engine
from scaling_interference.sweep.members import expand

_STEPS = flags.DEFINE_integer("steps", 400, "Timed training steps of the demo sweep.")
_WIDE_STEPS = flags.DEFINE_integer("wide_steps", 20, "Timed training steps of the wide sweep.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per measurement; the best is kept.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

MATMUL_N = 2048


@dataclasses.dataclass
class Row:
  """One timed configuration."""
  name: str
  members: int
  steps_per_s: float
  gflop_per_s: float
  matmul_fraction: float


def machine() -> dict:
  """Platform, device kind, CPU count and jax version."""
  device = jax.devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              cpu_count=os.cpu_count(), jax=jax.__version__)


def best_time(fn, repeats: int) -> float:
  """Best wall time of `fn()` over `repeats` calls; fn must block on its results."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_flops(repeats: int, n: int = MATMUL_N) -> float:
  """FLOP/s of an n x n float32 matmul (2 n^3 FLOPs), best of `repeats` after a warm-up."""
  a_NxN = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b_NxN = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a_NxN, b_NxN))
  return 2 * n ** 3 / best_time(lambda: jax.block_until_ready(matmul(a_NxN, b_NxN)), repeats)


def demo_config():
  return regression.get_config("demo")


def wide_config():
  """Members of widths 512 and 1024 on 512 inputs and outputs: layers are decent matmuls."""
  config = regression.get_config("demo")
  config.task.update(num_tasks=16, input_dim=32, output_dim=32)
  config.model.widths = (512, 1024)
  config.train.update(batch_size=1024, steps_per_dispatch=10)
  return config


def single_member_configs(config) -> list:
  """One config per member (width x seed x lr) of `config`, same everything else."""
  singles = []
  for width in config.model.widths:
    for seed in config.sweep.seeds:
      for lr in config.sweep.lrs:
        single = config.copy_and_resolve_references()
        single.model.widths, single.sweep.seeds, single.sweep.lrs = (width,), (seed,), (lr,)
        singles.append(single)
  return singles


def with_dispatch(config, steps: int):
  """config with steps_per_dispatch dividing `steps` (at most the config's own)."""
  config = config.copy_and_resolve_references()
  spd = min(config.train.steps_per_dispatch, steps)
  if steps % spd:
    raise ValueError(f"steps: must be a multiple of steps_per_dispatch={spd}, got {steps}")
  config.train.steps_per_dispatch = spd
  return config


def time_training(config, steps: int, repeats: int) -> tuple[float, int]:
  """(best seconds for `steps` steps, sum of member params) of one Engine on `config`."""
  family = validate(config)
  groups = expand(config, family)
  engine = Engine(config, family, groups)
  spd = config.train.steps_per_dispatch
  box = {"states": engine.init_states()}

  def run(start: int, n: int):
    for s in range(start, start + n, spd):
      box["states"], _ = engine.train_segment(box["states"], jnp.int32(s), spd)
    jax.block_until_ready(box["states"])

  run(0, spd)  # compiles
  seconds = best_time(lambda: run(spd, steps), repeats)
  return seconds, sum(m.n_params for g in groups for m in g.members)


def row(name: str, config, members: int, n_params: int, seconds: float, steps: int,
        peak: float) -> Row:
  flops = 6 * config.train.batch_size * n_params * steps / seconds
  return Row(name, members, steps / seconds, flops / 1e9, flops / peak)


def measure(name: str, config, steps: int, repeats: int, peak: float) -> list[Row]:
  """Rows for the whole sweep in one engine and for its members one engine at a time."""
  config = with_dispatch(config, steps)
  seconds, n_params = time_training(config, steps, repeats)
  singles = [time_training(c, steps, repeats) for c in single_member_configs(config)]
  single_seconds = sum(s for s, _ in singles)
  members = len(singles)
  return [row(f"{name}: engine (all groups)", config, members, n_params, seconds, steps, peak),
          row(f"{name}: one member at a time", config, members, n_params, single_seconds, steps, peak)]


def table(rows: list[Row]) -> str:
  lines = ["| sweep | members | steps/s | GFLOP/s | % of matmul |", "|---|---:|---:|---:|---:|"]
  lines += [f"| {r.name} | {r.members} | {r.steps_per_s:.1f} | {r.gflop_per_s:.2f} | "
            f"{100 * r.matmul_fraction:.1f}% |" for r in rows]
  return "\n".join(lines)


def main(argv):
  del argv
  info = machine()
  print(" ".join(f"{k}={v}" for k, v in info.items()))
  peak = matmul_flops(max(_REPEATS.value, 5))
  print(f"float32 matmul {MATMUL_N}^3: {peak / 1e9:.1f} GFLOP/s\n")
  rows = (measure("demo", demo_config(), _STEPS.value, _REPEATS.value, peak)
          + measure("wide 512/1024", wide_config(), _WIDE_STEPS.value, _REPEATS.value, peak))
  print(table(rows))
  for a, b in zip(rows[::2], rows[1::2]):
    print(f"{a.name.split(':')[0]} speedup, engine vs one at a time: {a.steps_per_s / b.steps_per_s:.2f}x")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(dict(machine=info, matmul_gflop_per_s=peak / 1e9, rows=[dataclasses.asdict(r) for r in rows]),
                f, indent=2)


if __name__ == "__main__":
  app.run(main)
