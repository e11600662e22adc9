"""Shared timing for the benchmarks (compile first, then interleaved rounds that keep each program's best),
and fitting a preset's injection to a smaller batch."""

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass
class Timed:
  """A compiled program: `run()` does `steps` steps and blocks on the result."""

  name: str
  run: Callable[[], None]
  steps: int
  flops: float = 0.0  # per step
  models: tuple = ()  # the model of every member it trains, where a benchmark needs them
  best_s: float = math.inf
  cores: float = 0.0  # process CPU seconds / wall seconds in the best run


def machine() -> dict:
  """The device, CPU count and JAX version."""
  device = jax.devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind, cpu_count=os.cpu_count(), jax=jax.__version__)


def matmul_program(n: int, dtype: str) -> Timed:
  """An n x n matmul (2 n^3 FLOPs), compiled."""
  a_DxD = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b_DxD = jax.random.normal(jax.random.key(1), (n, n), dtype)
  matmul = jax.jit(jnp.matmul)

  def run():
    return jax.block_until_ready(matmul(a_DxD, b_DxD))

  run()
  return Timed(f"{dtype} matmul {n}^3", run, 1, flops=2.0 * n**3)


def time_interleaved(programs: list[Timed], repeats: int) -> None:
  """Sets each program's best_s over `repeats` rounds that time every program once."""
  for _ in range(repeats):
    for p in programs:
      wall, cpu = time.perf_counter(), time.process_time()
      p.run()
      wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
      if wall < p.best_s:
        p.best_s, p.cores = wall, cpu / wall


def publish(results: dict, text: str, out: str | None) -> None:
  """Prints a benchmark's table and, when `out` is given, writes its results as JSON."""
  print(text)
  if out:
    with open(out, "w") as f:
      json.dump(results, f, indent=2)


def fit_injection(config) -> None:
  """Scales the injected counts down when a batch cannot hold them; drops the ones that reach 0."""
  asked, batch = sum(s.count for s in config.inject.values()), config.train.batch_size
  if asked <= batch:
    return
  for name in list(config.inject):
    config.inject[name].count = config.inject[name].count * batch // asked
    if not config.inject[name].count:
      del config.inject[name]
