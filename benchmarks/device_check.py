"""One prepared accelerator check: whatever device JAX finds, one command, one table (under 8 minutes).

  python -m benchmarks.device_check [--out=FILE.json]          # on a GPU/TPU
  JAX_PLATFORMS=cpu python -m benchmarks.device_check --smoke  # CPU-sized, seconds (the test suite runs it)

Rows:
  matmul      the device's bfloat16 and float32 rate on an n x n matmul (2 n^3 FLOPs; n = 8192, smoke 256)
  regression  configs/regression.py:paper's first steps (widths 8..512 x 3 seeds, batch 4096), in float32
              and in bfloat16 (model.compute_dtype; first layers packed where train.pack chooses):
              steps/s and training FLOP/s (6 x batch x parameters) as a share of the same dtype's matmul
  tiny        64 tiny MLPs (widths 8, 16, .., 64 x 8 seeds) in one program against the same 64 members
              trained one at a time (one compiled program per width, members in turn): goal >= 20x
  ladder      OLMo ladder sizes 20M, 60M, 90M, 150M, 300M in bfloat16, one member each, batch 16 x 2049
              tokens: tokens/s, MFU = 6 N x tokens/s over the bfloat16 matmul (goal >= 40% from 150M up),
              and the bytes one device needs from the compiled program's memory analysis beside the
              estimate training prints (scaling_interference/models/ladder.py)
Everything is compiled first, then timed in interleaved rounds that keep each program's best
(benchmarks/timing.py). --smoke shrinks every row to CPU size so the script cannot rot.
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.timing import Timed, fit_injection, machine, matmul_program, publish, time_interleaved
from configs import olmo_injection, regression
from scaling_interference.models import ladder
from scaling_interference.sweep import memory
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

_SMOKE = flags.DEFINE_bool("smoke", False, "CPU-sized rows (seconds): for the test suite.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timing rounds; each program keeps its best.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

FULL = dict(
  matmul_n=8192,
  regression_steps=100,
  tiny_widths=tuple(range(8, 65, 8)),
  tiny_seeds=8,
  tiny_steps=100,
  ladder_sizes=("20M", "60M", "90M", "150M", "300M"),
  ladder_batch=16,
  ladder_seq_len=2049,
  ladder_steps=5,
)
SMOKE = dict(
  matmul_n=256,
  regression_steps=5,
  tiny_widths=(8, 16),
  tiny_seeds=2,
  tiny_steps=5,
  ladder_sizes=("tiny-a",),
  ladder_batch=2,
  ladder_seq_len=33,
  ladder_steps=2,
)
MFU_GOAL, TINY_GOAL = 0.40, 20.0


def engine_program(name: str, config, steps: int) -> tuple[Timed, Engine]:
  """One dispatch of `steps` steps of an Engine on `config`, compiled ahead of time and run once (warm-up)."""
  config.train.update(steps_per_dispatch=steps, trace_every=0)
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  engine.compile_segment(steps, problem.host_block_spec(steps))
  box = {"states": engine.init_states(), "step": 0}

  def run():
    host = problem.host_batches(steps)
    box["states"] = engine.train_segment(box["states"], jnp.int32(box["step"]), steps, host)[0]
    box["step"] += steps
    jax.block_until_ready(box["states"])

  run()
  models = tuple(g.model for g in groups for _ in g.members)
  return Timed(
    name, run, steps, flops=6.0 * config.train.batch_size * sum(m.n_params for m in models), models=models
  ), engine


def regression_config(compute_dtype: str):
  config = regression.get_config("paper")
  config.model.compute_dtype = compute_dtype
  if _SMOKE.value:
    config.model.widths, config.train.batch_size = (8, 16), 256
  return config


def tiny_configs(sizes: dict):
  """The 64-member sweep (widths x seeds) and, per width, one single-member config."""
  config = regression.get_config("demo")
  config.model.widths, config.sweep.seeds = sizes["tiny_widths"], tuple(range(sizes["tiny_seeds"]))
  singles = []
  for width in sizes["tiny_widths"]:
    single = config.copy_and_resolve_references()
    single.model.widths, single.sweep.seeds = (width,), (0,)
    singles.append(single)
  return config, singles


def ladder_config(size: str, sizes: dict):
  config = olmo_injection.get_config("demo")
  config.model.update(sizes=(size,), compute_dtype="bfloat16")
  config.data.update(vocab_size=512 if _SMOKE.value else 50_304, seq_len=sizes["ladder_seq_len"])
  config.train.batch_size = sizes["ladder_batch"]
  fit_injection(config)
  return config


def measure() -> dict:
  sizes = SMOKE if _SMOKE.value else FULL
  matmuls = {d: matmul_program(sizes["matmul_n"], d) for d in ("bfloat16", "float32")}
  regs = {
    d: engine_program(f"regression paper {d}", regression_config(d), sizes["regression_steps"])[0]
    for d in ("float32", "bfloat16")
  }
  tiny_config, single_configs = tiny_configs(sizes)
  tiny, _ = engine_program(
    f"{len(tiny_config.model.widths) * len(tiny_config.sweep.seeds)} tiny members", tiny_config, sizes["tiny_steps"]
  )
  singles = [engine_program(f"width {c.model.widths[0]} alone", c, sizes["tiny_steps"])[0] for c in single_configs]
  lms, lm_memory = [], {}
  for size in sizes["ladder_sizes"]:
    config = ladder_config(size, sizes)
    program, engine = engine_program(size, config, sizes["ladder_steps"])
    group = engine.groups[0]
    lm_memory[size] = dict(
      compiled_bytes=memory.program_bytes(engine.compiled_segments[sizes["ladder_steps"]]),
      estimate_bytes=ladder.memory_bytes(group.model, config.train.batch_size, group.model.max_seq_len),
    )
    lms.append((program, config))
  programs = list(matmuls.values()) + [*regs.values(), tiny, *singles] + [p for p, _ in lms] + list(matmuls.values())
  time_interleaved(programs, _REPEATS.value)
  rate = {d: m.flops / m.best_s for d, m in matmuls.items()}
  per_member = len(tiny_config.sweep.seeds)
  one_at_a_time_s = sum(p.best_s for p in singles) * per_member  # every seed of a width runs that width's program
  rows = dict(
    matmul={d: dict(tflop_per_s=r / 1e12) for d, r in rate.items()},
    regression={
      d: dict(steps_per_s=p.steps / p.best_s, matmul_fraction=_flop_rate(p) / rate[d]) for d, p in regs.items()
    },
    tiny=dict(
      members=len(tiny.models),
      program_s=tiny.best_s,
      one_at_a_time_s=one_at_a_time_s,
      speedup=one_at_a_time_s / tiny.best_s,
      goal=TINY_GOAL,
    ),
    ladder=[
      dict(
        size=p.name,
        params=p.models[0].n_params,
        tokens_per_s=c.train.batch_size * (c.data.seq_len - 1) * p.steps / p.best_s,
        mfu_6n=_flop_rate(p) * (c.data.seq_len - 1) / rate["bfloat16"],
        **lm_memory[p.name],
      )
      for p, c in lms
    ],
  )
  return dict(machine=machine(), smoke=_SMOKE.value, sizes=sizes, rows=rows, mfu_goal=MFU_GOAL)


def _flop_rate(p: Timed) -> float:
  """FLOP/s of a timed engine program: its per-step FLOPs (6 x rows x parameters) times steps per second."""
  return p.flops * p.steps / p.best_s


def _bytes(n) -> str:
  if n is None:
    return "?"
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def report(results: dict) -> str:
  r = results["rows"]
  head = " ".join(f"{k}={v}" for k, v in results["machine"].items()) + (" (smoke sizes)" if results["smoke"] else "")
  lines = [head, "", "| check | measured | goal |", "|---|---|---|"]
  lines += [f"| {d} matmul | {m['tflop_per_s']:.2f} TFLOP/s | |" for d, m in r["matmul"].items()]
  lines += [
    f"| regression paper, first steps, {d} | {g['steps_per_s']:.1f} steps/s, "
    f"{100 * g['matmul_fraction']:.1f}% of the {d} matmul | |"
    for d, g in r["regression"].items()
  ]
  t = r["tiny"]
  lines.append(
    f"| {t['members']} tiny MLPs in one program vs one at a time | {t['speedup']:.1f}x "
    f"({t['program_s']:.3f} s vs {t['one_at_a_time_s']:.3f} s) | >= {t['goal']:.0f}x |"
  )
  for row in r["ladder"]:
    lines.append(
      f"| OLMo {row['size']} ({row['params'] / 1e6:.1f}M), bfloat16 | {row['tokens_per_s']:,.0f} tokens/s, "
      f"MFU {100 * row['mfu_6n']:.1f}%; memory {_bytes(row['compiled_bytes'])} compiled vs "
      f"{_bytes(row['estimate_bytes'])} estimated | >= {100 * results['mfu_goal']:.0f}% from 150M |"
    )
  lines.append("MFU = 6 N x tokens/s / the bfloat16 matmul's rate; best of interleaved repeats")
  return "\n".join(lines)


def main(argv):
  del argv
  results = measure()
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
