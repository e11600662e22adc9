"""Data-pipeline speed: batches/s of each token stream, with injection, against the train step's consumption.

  JAX_PLATFORMS=cpu python -m benchmarks.pipeline_speed [--batches=N] [--shapes=demo,paper] [--out=FILE.json]
      [--repeats=R] [--train_steps=S] [--train_repeats=R] [--train_rows=N]

Everything runs in one process. The streams are the three sources of configs/olmo_injection.py
(defaults.language_config()), each built by `build(config)` exactly as training builds it:
  synthetic    the on-device synthetic language; training samples its rows inside the jitted
               train program, so its batch is the problem's `batch(step)`, jitted (rows and injection).
  text_files   a generated text corpus (one document per line, about 3 kB each, enough text for every
               batch timed) built into a TFDS ArrayRecord dataset in a temporary directory, read by
               grain (shuffle, byte tokens, concat-then-split packing); byte-level vocabulary of 257.
  token_files  generated flat uint16 `.npy` token files, windows shuffled and batched by grain.
A host stream's time per batch is the sum of its two parts, each timed alone: host rows
(`problem.host_batches(n)` / n, NumPy batches of B x L tokens) and their on-device assembly with
injection (`problem.batch(step, host_BxL)`, jitted, one call per batch, host-to-device copy
included). The synthetic stream has only the second part. grain's reader threads are off
(data.read_threads=0; training has 2): with them a short timed run would take batches read ahead,
in the background, while other programs were timed, and that reading would slow those programs.
Without them every batch is read when asked, on one thread: host time is a batch's whole cost.

Shapes: demo = configs/olmo_injection.py:demo (batch 32, seq_len 32, vocabulary 512; its injection:
8 + 2 examples per batch of addition and comparison each); paper = the paper preset's data (batch
512, seq_len 2049, vocabulary 50,304; the text stream keeps its 257; its injection: 250 + 250
examples per batch of addition and comparison and one every ten batches of each). The paper's
tasks (addition mod 97, comparison over 100 items) need 402 token ids, more than bytes leave, so
the text stream injects the demo's tasks (mod 7, 8 items); every example is 5 tokens either way,
so the injection does the same work.

Consumption: batches/s of one compiled dispatch of `Engine.train_segment` (`train_steps` steps, host
block prepared before and copied in by the call) of the preset's smallest size (demo: tiny-a;
paper: 4M; float32 on CPU, the preset's dtype elsewhere), one member, on the same stream. The
smallest size trains fastest, so it is the most demanding consumer of the preset. At the paper shape
a whole batch does not fit a CPU (its logits alone are 512 x 2048 x 50,304 floats, 211 GB), so the
step is timed on `train_rows` rows (injection fitted to them) and its batches/s scaled by
train_rows / 512: a step's work is linear in its rows, plus the optimizer's update and the
dispatch, which this counts 512 / train_rows times, so the paper consumption is a lower bound and its
headroom an upper bound when those parts matter.

headroom = stream batches/s / train-step batches/s (goal: >= 10). The training loop reads its next
host block while the device waits, so with headroom h the data takes about 1 / h of training's time.

Timing as benchmarks/timing.py: every stream program is warmed up by one run, every train program
compiled ahead of time (`.lower().compile()`, sparing a run: a one-row step at the paper shape takes
seconds on a CPU core), then interleaved rounds in which each program keeps its best.
"""

import dataclasses
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.timing import Timed, fit_injection, machine, publish, time_interleaved
from configs import olmo_injection
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine

STREAMS = ("synthetic", "text_files", "token_files")
GOAL = 10.0
DOC_WORDS = (100, 900)  # words per generated text document (uniform), about 3 kB on average


@dataclasses.dataclass(frozen=True)
class Shape:
  """A preset's data shape and its default timing settings."""

  batches: int  # stream batches per timed run
  repeats: int  # rounds of the stream programs
  train_steps: int  # steps of the timed train dispatch
  train_repeats: int  # rounds of the train programs
  train_rows: int = 0  # rows the train step is timed on (0: the whole batch)


SHAPES = {
  "demo": Shape(batches=100, repeats=5, train_steps=20, train_repeats=3),
  "paper": Shape(batches=4, repeats=3, train_steps=1, train_repeats=1, train_rows=1),
}

_SHAPES = flags.DEFINE_list("shapes", list(SHAPES), f"Shapes to measure, of {list(SHAPES)}.")
_BATCHES = flags.DEFINE_integer("batches", None, "Stream batches per timed run; default: the shape's.")
_REPEATS = flags.DEFINE_integer("repeats", None, "Rounds of the stream programs; default: the shape's.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", None, "Steps of the timed train dispatch; default: the shape's.")
_TRAIN_REPEATS = flags.DEFINE_integer("train_repeats", None, "Rounds of the train programs; default: the shape's.")
_TRAIN_ROWS = flags.DEFINE_integer("train_rows", None, "Rows the paper-shape train step is timed on (scaled up).")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def shape_settings(name: str) -> Shape:
  """The shape's defaults with the flags' overrides (train_rows only where the shape times part of a batch)."""
  shape = SHAPES[name]
  fields = dict(batches=_BATCHES, repeats=_REPEATS, train_steps=_TRAIN_STEPS, train_repeats=_TRAIN_REPEATS)
  if shape.train_rows:
    fields["train_rows"] = _TRAIN_ROWS
  return dataclasses.replace(shape, **{k: f.value for k, f in fields.items() if f.value is not None})


# ---- configs and generated files ---------------------------------------------------------
def stream_config(shape: str, stream: str, files: dict, train_steps: int, rows: int = 0):
  """The preset on `stream`: its smallest size, one member, traces off, float32 on CPU, injection fitted to the rows."""
  config = olmo_injection.get_config(shape)
  if stream == "text_files":
    config.data.update(source="text_files", paths=(files["text"],), documents="line", data_dir=files["tfds"])
    config.token_tasks = olmo_injection.get_config("demo").token_tasks  # fit the byte vocabulary (docstring)
  elif stream == "token_files":
    config.data.update(source="token_files", paths=(files["tokens"],), dtype="uint16")
  else:
    config.data.update(source="synthetic")
  config.model.sizes = config.model.sizes[:1]
  if jax.default_backend() == "cpu":
    config.model.compute_dtype = "float32"
  config.sweep.update(seeds=config.sweep.seeds[:1], lrs=config.sweep.lrs[:1])
  config.data.read_threads = 0  # grain reads each batch when asked (docstring)
  config.train.update(trace_every=0, steps_per_dispatch=train_steps, eval_examples_per_task=8)  # eval: not timed
  if rows:
    config.train.batch_size = rows
  fit_injection(config)
  return config


def write_files(folder: str, shape: str, tokens: int) -> dict:
  """A text corpus and token files of at least `tokens` tokens each for the preset `shape`; returns their paths."""
  data = olmo_injection.get_config(shape).data
  rng = np.random.default_rng(0)
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  words_N = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(4096)])
  with open(os.path.join(folder, "corpus.txt"), "w") as f:
    written = 0
    while written < tokens:
      line = " ".join(words_N[rng.integers(0, len(words_N), rng.integers(*DOC_WORDS))]) + "\n"
      written += f.write(line)  # one byte token per character, the newline's place taken by EOS
  for i, size in enumerate((tokens // 2, tokens - tokens // 2)):
    np.save(os.path.join(folder, f"tokens_{i}.npy"), rng.integers(0, data.vocab_size, size, np.uint16))
  return dict(
    text=os.path.join(folder, "corpus.txt"),
    tokens=os.path.join(folder, "tokens_*.npy"),
    tfds=os.path.join(folder, "tfds"),
  )


# ---- timed programs ----------------------------------------------------------------------
def stream_programs(stream: str, config, batches: int) -> tuple[list[Timed], dict]:
  """The host-rows program (host streams only) and the device assembly with injection, each warmed up."""
  t0 = time.perf_counter()
  problem, _ = build(config)  # text: builds the ArrayRecord dataset the first time
  build_s = time.perf_counter() - t0
  assemble = jax.jit(problem.batch)
  host_SxBxL = [None] * batches if problem.on_device else problem.host_batches(batches)
  box = {"step": 0}

  def run_assembly():
    step = box["step"]
    jax.block_until_ready([assemble(jnp.int32(step + i), host_BxL) for i, host_BxL in enumerate(host_SxBxL)])
    box["step"] += batches

  programs = [Timed(f"{stream} assembly", run_assembly, batches)]
  if not problem.on_device:
    programs.insert(0, Timed(f"{stream} host", lambda: problem.host_batches(batches), batches))
  for p in programs:
    p.run()
  info = dict(
    vocab_size=problem.vocab_size, injected_per_batch=sum(s.max_count for s in problem.schedules), build_s=build_s
  )
  return programs, info


def train_program(stream: str, config, initial: dict) -> Timed:
  """One member's compiled train_segment of steps_per_dispatch steps on a host block prepared once.

  `initial` maps groups to their initial states, shared by the programs of the same model (an
  init compiles for seconds at the paper shape); each program trains its own copy.
  """
  problem, groups = build(config)
  engine = Engine(config, problem, groups)
  steps = config.train.steps_per_dispatch
  host_SxBxL = problem.host_batches(steps)
  key = tuple(groups)
  if key not in initial:
    initial[key] = engine.init_states()
  box = {"states": jax.tree.map(jnp.copy, initial[key])}
  segment = engine.train_segment_on_device.lower(box["states"], jnp.int32(0), steps, host_SxBxL).compile()

  def run():
    box["states"] = segment(box["states"], jnp.int32(0), host_SxBxL)[0]  # [1:]: losses, traces
    jax.block_until_ready(box["states"])

  return Timed(f"{stream} train", run, steps, models=tuple(g.model for g in groups))


# ---- measurement -------------------------------------------------------------------------
def measure_shape(shape: str, settings: Shape, folder: str) -> dict:
  """Builds every stream and train program of one shape, times them, and returns the shape's results."""
  preset = olmo_injection.get_config(shape)
  batch, seq_len = preset.train.batch_size, preset.data.seq_len
  tokens = int(1.1 * batch * seq_len * settings.batches * (settings.repeats + 2))  # prefetch, warm-up, rounds
  t0 = time.perf_counter()
  files = write_files(folder, shape, tokens)
  write_s = time.perf_counter() - t0
  streams, infos, trains, initial = {}, {}, {}, {}
  for stream in STREAMS:
    config = stream_config(shape, stream, files, settings.train_steps)
    streams[stream], infos[stream] = stream_programs(stream, config, settings.batches)
    rows = settings.train_rows or batch
    trains[stream] = train_program(stream, stream_config(shape, stream, files, settings.train_steps, rows), initial)
    infos[stream]["train_rows"] = rows
  time_interleaved([p for ps in streams.values() for p in ps], settings.repeats)
  time_interleaved(list(trains.values()), settings.train_repeats)
  results = []
  for stream in STREAMS:
    parts = {p.name.split()[-1]: p for p in streams[stream]}
    host_s = parts["host"].best_s / parts["host"].steps if "host" in parts else 0.0
    assembly_s = parts["assembly"].best_s / parts["assembly"].steps
    train = trains[stream]
    train_per_s = train.steps / train.best_s * infos[stream]["train_rows"] / batch
    stream_per_s = 1.0 / (host_s + assembly_s)
    results.append(
      dict(
        stream=stream,
        **infos[stream],
        host_ms=1e3 * host_s,
        assembly_ms=1e3 * assembly_s,
        host_cores=parts["host"].cores if "host" in parts else None,
        stream_batches_per_s=stream_per_s,
        stream_tokens_per_s=stream_per_s * batch * seq_len,
        train_batches_per_s=train_per_s,
        train_size=preset.model.sizes[0],
        train_params=train.models[0].n_params,
        headroom=stream_per_s / train_per_s,
      )
    )
  return dict(
    shape=shape,
    batch_size=batch,
    seq_len=seq_len,
    settings=dataclasses.asdict(settings),
    files_tokens=tokens,
    write_files_s=write_s,
    streams=results,
  )


def report(results: dict) -> str:
  """The machine, then one markdown table of every shape's streams."""
  lines = [
    " ".join(f"{k}={v}" for k, v in results["machine"].items()),
    "",
    "| shape | stream | vocab | injected/batch | host ms/batch | assembly ms/batch | stream batches/s "
    "| train batches/s (size, rows timed) | headroom |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for s in results["shapes"]:
    for r in s["streams"]:
      lines.append(
        f"| {s['shape']} {s['batch_size']}x{s['seq_len']} | {r['stream']} | {r['vocab_size']:,} | "
        f"{r['injected_per_batch']} | {r['host_ms']:.2f} | {r['assembly_ms']:.2f} | "
        f"{r['stream_batches_per_s']:,.2f} | {r['train_batches_per_s']:.3g} "
        f"({r['train_size']}, {r['train_rows']}) | {r['headroom']:,.1f}x |"
      )
  lines += [
    "",
    f"headroom = stream batches/s / train-step batches/s of the smallest size (goal >= {GOAL:g}x); "
    "stream = host rows + jitted on-device assembly with injection; best of interleaved rounds; "
    "train batches/s timed on the rows shown, scaled to the whole batch",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  unknown = sorted(set(_SHAPES.value) - set(SHAPES))
  if unknown:
    raise app.UsageError(f"--shapes: unknown {unknown}; choose from {list(SHAPES)}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds.disable_progress_bar()
  with tempfile.TemporaryDirectory() as root:
    shapes = []
    for shape in _SHAPES.value:
      folder = os.path.join(root, shape)
      os.makedirs(folder)
      shapes.append(measure_shape(shape, shape_settings(shape), folder))
  results = dict(machine=machine(), goal_headroom=GOAL, shapes=shapes)
  publish(results, report(results), _OUT.value)


if __name__ == "__main__":
  app.run(main)
