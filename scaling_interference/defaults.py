"""Defaults every config starts from; config files in configs/ override what they need.

Every field a user may override on the command line exists here (ml_collections only
accepts overrides of fields that exist), so each section lists all of its fields.
"""
import ml_collections


def model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="mlp",
      widths=(8, 16, 32),
      depth=1,  # hidden layers
      activation="relu",
      use_bias=True,
      init_scale=1.0,  # multiplies the default (LeCun-normal) init of every parameter
  ))


def sweep_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(seeds=(0,), lrs=(1e-3,)))


def train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      steps=1000,
      batch_size=256,
      eval_every=100,
      checkpoint_every=500,
      steps_per_dispatch=100,  # steps per jitted dispatch; dispatches also end at eval/checkpoint steps
      max_to_keep=3,
      keep_every=0,  # also keep every checkpoint whose step is a multiple of this (0: none)
      eval_examples_per_task=256,  # the same for every task, so rare tasks are measured as precisely
      eval_chunk_examples=32768,  # eval examples generated at once (memory bound)
      optimizer="adam",  # adam | adamw | sgd
      b1=0.9,
      b2=0.999,
      momentum=0.0,  # sgd only
      weight_decay=0.0,  # adamw only
      warmup_steps=0,
      decay="constant",  # constant | cosine | linear
      final_lr_fraction=1.0,  # decay ends at this fraction of each member's peak lr
      grad_clip=0.0,  # global-norm clipping (0: off)
      data_seed=0,
      trace_every=0,  # record the signal of traced tasks every this many steps (0: off)
      trace_tasks=(),  # task ids to trace (empty: the injected tasks)
      trace_examples=256,  # examples per traced task when the signal needs a loss
      mesh=(),  # (members, data) device mesh; empty: every device on the members axis
      fsdp=False,  # also shard parameter and optimizer-state matrices over the data axis
      nonfinite="halt",  # a member's non-finite loss: halt (checkpoint, exit naming it) or drop (freeze it)
  ))


def regression_task() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      family="regression",
      num_tasks=16,
      input_dim=8,  # d: input block per task
      output_dim=8,  # m: output block per task
      alpha=1.0,  # p_k ~ k^-alpha unless `frequencies` is given
      beta=1.0,  # s_{k,i} = c_k i^-beta: a float, or one per task
      scales=(),  # c_k per task (empty: all 1)
      noise=0.0,  # label-noise std
      frequencies=(),  # explicit base frequencies (empty: Zipf with alpha)
      seed=0,
  ))


def sparse_parity_task() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      family="sparse_parity",
      num_tasks=100,
      n_bits=50,
      k=3,
      alpha=1.4,
      frequencies=(),
      seed=0,
  ))


def base_config(task: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task
  config.model = model_config()
  config.sweep = sweep_config()
  config.train = train_config()
  config.inject = ml_collections.ConfigDict()  # name -> schedule fields (see data/schedules.py)
  return config


def olmo_model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="olmo",
      sizes=("tiny-a", "tiny-c"),  # ladder presets (python -m launch.ladder lists them)
      rope_theta=500_000.0,
      tie_embeddings=True,
      qk_norm=True,
      remat=False,
      compute_dtype="float32",  # or bfloat16 (parameters stay float32)
      mup_base_width=0,  # > 0: muP width scaling relative to this d_model (0: off)
      z_loss=1e-5,
  ))


def token_task(kind: str, seed: int, **fields) -> ml_collections.ConfigDict:
  """A token task's fields: kind, seed, modulus / n_items, n_operands, heldout_fraction."""
  base = dict(kind=kind, seed=seed, heldout_fraction=0.1, reserved_tokens=1)
  base.update(dict(modulus=11, n_operands=2) if kind == "modular_addition" else dict(n_items=10))
  base.update(fields)
  return ml_collections.ConfigDict(base)


def language_config() -> ml_collections.ConfigDict:
  """A language-model sweep: base stream (`data`), token tasks, OLMo members, AdamW as OLMo."""
  from scaling_interference.data import token_streams
  config = ml_collections.ConfigDict()
  config.data = token_streams.data_config()
  config.data.inject_mode = "splice"  # or "replace" (the example starts a row)
  config.token_tasks = ml_collections.ConfigDict()  # name -> token_task(...); ids 1.. in name order
  config.model = olmo_model_config()
  config.sweep = sweep_config()
  config.train = train_config()
  config.train.update(optimizer="adamw", b1=0.9, b2=0.95, weight_decay=0.1, grad_clip=1.0,
                      decay="cosine", final_lr_fraction=0.01, warmup_steps=100)
  config.inject = ml_collections.ConfigDict()
  return config
