"""Language-model sweep speed: tokens/s and MFU per size, and all sizes in one program vs one at a time.

  JAX_PLATFORMS=cpu python -m benchmarks.lm_speed [--steps=N] [--repeats=R] [--sizes=tiny-a,tiny-b] [--seeds=S]
      [--compute_dtype=float32|bfloat16] [--batch_size=B] [--seq_len=L] [--vocab_size=V] [--out=FILE.json]
On a GPU, e.g.:
  python -m benchmarks.lm_speed --sizes=20M,60M,150M,300M --compute_dtype=bfloat16 --batch_size=4 \
      --seq_len=2049 --vocab_size=50304 --steps=10

The sweep is configs/olmo_injection.py:demo (synthetic token stream with injected tasks, one
member per size) with the flags' overrides and traces off; injected counts are scaled down when
a smaller batch cannot hold them. A run is one dispatch of `steps` steps, each training every
member on batch x (seq_len - 1) tokens. Measured as benchmarks/sweep_speed.py: everything
compiled first, interleaved repeats, each program keeps its best. MFU = training FLOP/s over
the FLOP/s of a large matmul timed in the same rounds (CPU: float32 2048^3, or bfloat16 when
that is the compute dtype; GPU/TPU: bfloat16 8192^3), with two FLOP counts per token: 6N
(N = all parameters, embedding included) and the model's `flops_per_token` (6 x matmul
parameters, readout included, plus attention at length seq_len - 1).
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.timing import Timed, fit_injection, machine, matmul_program, publish, time_interleaved
from configs import olmo_injection
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

_STEPS = flags.DEFINE_integer("steps", 20, "Training steps per timed run (one dispatch).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timing rounds; each program keeps its best.")
_SIZES = flags.DEFINE_list("sizes", None, "Model sizes (ladder presets or D/H/L); default: the demo's.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Seeds per size: the members of a size's group, vmapped together.")
_COMPUTE_DTYPE = flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Rows per batch; default: the demo's.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", None, "Tokens per row (the model sees seq_len - 1); default: the demo's.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", None, "Vocabulary of the synthetic stream; default: the demo's.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def sweep_config():
  """The demo config with the flags' overrides, traces off, one dispatch per run."""
  config = olmo_injection.get_config("demo")
  config.model.compute_dtype = _COMPUTE_DTYPE.value
  if _SIZES.value:
    config.model.sizes = tuple(_SIZES.value)
  config.sweep.seeds = tuple(range(_SEEDS.value))
  for section, field, flag in (
    ("data", "vocab_size", _VOCAB_SIZE),
    ("data", "seq_len", _SEQ_LEN),
    ("train", "batch_size", _BATCH_SIZE),
  ):
    if flag.value is not None:
      config[section][field] = flag.value
  config.train.update(steps_per_dispatch=_STEPS.value, trace_every=0)
  fit_injection(config)
  return config


def single_configs(config) -> list:
  """One config per member (size x seed) of `config`, all else the same."""
  singles = []
  for size in config.model.sizes:
    for seed in config.sweep.seeds:
      single = config.copy_and_resolve_references()
      single.model.sizes, single.sweep.seeds = (size,), (seed,)
      singles.append(single)
  return singles


def matmul_programs(compute_dtype: str) -> list[Timed]:
  """The matmuls to time; the last one is the peak."""
  if jax.default_backend() != "cpu":
    return [matmul_program(8192, "bfloat16")]
  dtypes = ("float32", "bfloat16") if compute_dtype == "bfloat16" else ("float32",)
  return [matmul_program(2048, d) for d in dtypes]


def training_program(name: str, config) -> Timed:
  """One Engine on `config`: each run is one dispatch of steps_per_dispatch steps; compiled by a warm-up run."""
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  steps = config.train.steps_per_dispatch
  box = {"states": engine.init_states(), "step": 0}

  def run():
    box["states"] = engine.train_segment(box["states"], jnp.int32(box["step"]), steps)[0]  # [1:]: metrics
    box["step"] += steps
    jax.block_until_ready(box["states"])

  run()
  return Timed(name, run, steps, models=tuple(g.model for g in groups for _ in g.members))


def summarize(name: str, programs: list[Timed], config, peak: float) -> dict:
  """Tokens/s per member and MFU of programs run one after another."""
  seconds = sum(p.best_s for p in programs)
  seq_len = config.data.seq_len
  tokens_per_s = config.train.batch_size * (seq_len - 1) * programs[0].steps / seconds
  models = [m for p in programs for m in p.models]
  flops_6n = sum(6 * m.n_params for m in models) * tokens_per_s
  flops_model = sum(m.flops_per_token(seq_len - 1) for m in models) * tokens_per_s
  return dict(
    name=name,
    members=len(models),
    params=sum(m.n_params for m in models),
    tokens_per_s_per_member=tokens_per_s,
    mfu_6n=flops_6n / peak,
    mfu_model=flops_model / peak,
    cores=sum(p.cores * p.best_s for p in programs) / seconds,
  )


def measure(repeats: int) -> dict:
  """Compiles everything, times it in interleaved rounds, and returns the results."""
  config = sweep_config()
  sweep = training_program("sweep", config)
  singles = [training_program(f"{c.model.sizes[0]} seed {c.sweep.seeds[0]}", c) for c in single_configs(config)]
  matmuls = matmul_programs(config.model.compute_dtype)
  time_interleaved(matmuls + [sweep] + singles + matmuls, repeats)  # matmuls twice: more chances at the peak
  gflops = {m.name: dict(gflop_per_s=m.flops / m.best_s / 1e9, cores=m.cores) for m in matmuls}
  peak = matmuls[-1].flops / matmuls[-1].best_s
  alone = summarize("sweep: one member at a time", singles, config, peak)
  vmapped = summarize("sweep: vmapped, one program", [sweep], config, peak)
  settings = dict(
    sizes=list(config.model.sizes),
    seeds=len(config.sweep.seeds),
    batch_size=config.train.batch_size,
    seq_len=config.data.seq_len,
    vocab_size=config.data.vocab_size,
    compute_dtype=config.model.compute_dtype,
    steps=_STEPS.value,
  )
  return dict(
    machine=machine(),
    config=settings,
    matmuls=gflops,
    peak=matmuls[-1].name,
    rows=[summarize(p.name, [p], config, peak) for p in singles] + [alone, vmapped],
    speedup=vmapped["tokens_per_s_per_member"] / alone["tokens_per_s_per_member"],
  )


def report(results: dict) -> str:
  """The machine and matmuls above a markdown table, the speedup below."""
  lines = [
    " ".join(f"{k}={v}" for k, v in results["machine"].items()),
    " ".join(f"{k}={v}" for k, v in results["config"].items()),
  ]
  lines += [
    f"{name}: {m['gflop_per_s']:.1f} GFLOP/s on {m['cores']:.1f} cores"
    + (" (the peak)" if name == results["peak"] else "")
    for name, m in results["matmuls"].items()
  ]
  lines += [
    "",
    "| program | members | params | tokens/s per member | MFU (6N) | MFU (flops_per_token, attn incl.) | cores used |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  lines += [
    f"| {r['name']} | {r['members']} | {r['params']:,} | {r['tokens_per_s_per_member']:,.0f} | "
    f"{100 * r['mfu_6n']:.2f}% | {100 * r['mfu_model']:.2f}% | {r['cores']:.1f} |"
    for r in results["rows"]
  ]
  lines += [
    "",
    f"vmapped sweep is {results['speedup']:.2f}x one member at a time (tokens/s per member)",
    "tokens = batch x (seq_len - 1) per member per step; MFU = training FLOP/s / peak matmul FLOP/s, "
    "training FLOPs per token = 6N (N: all params, embedding included) or the model's flops_per_token "
    "(6 x matmul params incl. readout + attention); best of interleaved repeats",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  results = measure(_REPEATS.value)
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
