"""Sweep engine speed: all members in one program (plain and packed) vs one at a time, FLOP/s vs a matmul.

  JAX_PLATFORMS=cpu python -m benchmarks.sweep_speed [--steps=N] [--wide_steps=N] [--parity_steps=N]
      [--repeats=R] [--compute_dtype=bfloat16] [--out=FILE.json]

Everything runs in one process. Every timed program is compiled first, then the repeats are
interleaved (one round times each program once) and each keeps its best time, so a noisy
machine slows all of them alike. Training FLOPs are counted as 6 x batch x sum of member
parameters per step and compared with a large float32 matmul timed in the same rounds. Three
sweeps: the regression demo, wide members (512, 1024), and the sparse parity sweep the reference
script is compared on (widths 32..512, batch 2000); each by the engine with plain vmapped groups,
by the engine with the MLP members' first layers packed into one matmul (train.pack="on",
sweep/packed.py), and one member at a time. --compute_dtype=bfloat16 (for accelerators) runs the
members' matmuls and the reference matmul in bf16.
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.timing import Timed, machine, matmul_program, publish, time_interleaved
from configs import regression, sparse_parity
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

_STEPS = flags.DEFINE_integer("steps", 400, "Timed steps of the demo sweep (a multiple of 200).")
_WIDE_STEPS = flags.DEFINE_integer("wide_steps", 20, "Timed steps of the wide sweep (a multiple of 10).")
_PARITY_STEPS = flags.DEFINE_integer("parity_steps", 20, "Timed steps of the sparse parity sweep (a multiple of 10).")
_REPEATS = flags.DEFINE_integer("repeats", 8, "Timing rounds; each program keeps its best.")
_DTYPE = flags.DEFINE_enum(
  "compute_dtype",
  "float32",
  ["float32", "bfloat16"],
  "The members' matmul dtype (model.compute_dtype) and the reference matmul's.",
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

MATMUL_N = 2048


def demo_config():
  return regression.get_config("demo")


def wide_config():
  """Members of widths 512 and 1024 on 16 x 32 = 512 inputs and outputs: decent matmuls."""
  config = regression.get_config("demo")
  config.task.update(num_tasks=16, input_dim=32, output_dim=32)
  config.model.widths = (512, 1024)
  config.train.update(batch_size=1024, steps_per_dispatch=10)
  return config


def parity_config():
  """The sweep compared with the reference script: widths 32..512, 100 tasks, n=50, batch 2000."""
  config = sparse_parity.get_config("reference")
  config.train.update(batch_size=2000, steps_per_dispatch=10)
  return config


def single_member_configs(config) -> list:
  """One config per member (width x seed x lr) of `config`, all else the same."""
  singles = []
  for width in config.model.widths:
    for seed in config.sweep.seeds:
      for lr in config.sweep.lrs:
        single = config.copy_and_resolve_references()
        single.model.widths, single.sweep.seeds, single.sweep.lrs = (width,), (seed,), (lr,)
        singles.append(single)
  return singles


def training_program(name: str, config, steps: int) -> Timed:
  """`steps` training steps of one Engine on `config`, compiled by a warm-up dispatch."""
  spd = config.train.steps_per_dispatch
  if steps <= 0 or steps % spd:
    raise ValueError(f"steps: must be a positive multiple of steps_per_dispatch={spd}, got {steps}")
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  box = {"states": engine.init_states(), "step": 0}

  def run(n: int = steps):
    for _ in range(n // spd):
      box["states"] = engine.train_segment(box["states"], jnp.int32(box["step"]), spd)[0]  # [1:]: metrics
      box["step"] += spd
    jax.block_until_ready(box["states"])

  run(spd)
  n_params = sum(m.n_params for g in groups for m in g.members)
  return Timed(name, run, steps, 6.0 * config.train.batch_size * n_params)


def sweep_programs(config, steps: int) -> dict:
  """The whole sweep in one engine (plain groups, then packed first layers), and each member alone."""
  packed = config.copy_and_resolve_references()
  packed.train.pack = "on"
  return {
    "engine": [training_program("engine", config, steps)],
    "packed": [training_program("engine packed", packed, steps)],
    "one_at_a_time": [training_program(f"member {i}", c, steps) for i, c in enumerate(single_member_configs(config))],
  }


def summarize(name: str, programs: list[Timed], peak_flops: float) -> dict:
  """steps/s, FLOP/s and cores used by programs run one after another (members in turn)."""
  seconds = sum(p.best_s for p in programs)
  flops = sum(p.flops for p in programs) * programs[0].steps / seconds
  return dict(
    name=name,
    steps_per_s=programs[0].steps / seconds,
    gflop_per_s=flops / 1e9,
    matmul_fraction=flops / peak_flops,
    cores=sum(p.cores * p.best_s for p in programs) / seconds,
  )


def with_dtype(config, compute_dtype: str):
  config.model.compute_dtype = compute_dtype
  return config


def measure(repeats: int, steps: int, wide_steps: int, parity_steps: int, compute_dtype: str = "float32") -> dict:
  """Compiles everything, times it in interleaved rounds, and returns the results."""
  sweeps = {
    "demo": sweep_programs(with_dtype(demo_config(), compute_dtype), steps),
    "wide 512/1024": sweep_programs(with_dtype(wide_config(), compute_dtype), wide_steps),
    "parity 32..512": sweep_programs(with_dtype(parity_config(), compute_dtype), parity_steps),
  }
  matmul = matmul_program(MATMUL_N, compute_dtype)
  programs = [matmul]  # timed before each sweep too, for more chances at an uncontended peak
  for s in sweeps.values():
    programs += [p for ps in s.values() for p in ps] + [matmul]
  time_interleaved(programs, repeats)
  peak = matmul.flops / matmul.best_s
  rows, speedup, packing = [], {}, {}
  for name, s in sweeps.items():
    label = f"{name} ({len(s['one_at_a_time'])} members)"
    engine, packed, single = (
      summarize(f"{label}: {how}", s[key], peak)
      for how, key in (
        ("engine", "engine"),
        ("engine, first layers packed", "packed"),
        ("one at a time", "one_at_a_time"),
      )
    )
    rows += [engine, packed, single]
    speedup[name] = engine["steps_per_s"] / single["steps_per_s"]
    packing[name] = packed["steps_per_s"] / engine["steps_per_s"]
  return dict(
    machine=machine(),
    compute_dtype=compute_dtype,
    matmul_gflop_per_s=peak / 1e9,
    matmul_cores=matmul.cores,
    rows=rows,
    speedup=speedup,
    packing=packing,
  )


def report(results: dict) -> str:
  """A markdown table, with the machine above and the speedups below."""
  head = " ".join(f"{k}={v}" for k, v in results["machine"].items())
  lines = [
    head,
    f"{results['compute_dtype']} matmul {MATMUL_N}x{MATMUL_N} @ {MATMUL_N}x{MATMUL_N}: "
    f"{results['matmul_gflop_per_s']:.1f} GFLOP/s on {results['matmul_cores']:.1f} cores",
    "",
    "| sweep | steps/s | train GFLOP/s | % of matmul | cores used |",
    "|---|---:|---:|---:|---:|",
  ]
  lines += [
    f"| {r['name']} | {r['steps_per_s']:.1f} | {r['gflop_per_s']:.2f} | "
    f"{100 * r['matmul_fraction']:.1f}% | {r['cores']:.1f} |"
    for r in results["rows"]
  ]
  lines += [""] + [
    f"{sweep}: engine is {x:.2f}x one member at a time; packed first layers "
    f"{results['packing'][sweep]:.2f}x the plain engine"
    for sweep, x in results["speedup"].items()
  ]
  lines.append("train FLOPs = 6 x batch x sum of member params per step; best of interleaved repeats")
  return "\n".join(lines)


def main(argv):
  del argv
  results = measure(_REPEATS.value, _STEPS.value, _WIDE_STEPS.value, _PARITY_STEPS.value, _DTYPE.value)
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
