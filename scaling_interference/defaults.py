"""Defaults every config starts from; config files in configs/ override what they need.

Every field a user may override on the command line exists here (ml_collections only
accepts overrides of fields that exist), so each section lists all of its fields.
"""

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      name="mlp",
      widths=(8, 16, 32),
      depth=1,  # hidden layers
      activation="relu",
      use_bias=True,
      init="lecun",  # lecun: LeCun-normal kernels, zero biases; torch: PyTorch nn.Linear's, all U(+-1/sqrt(fan_in))
      init_scale=1.0,  # multiplies the init of every parameter
      compute_dtype="float32",  # or bfloat16: matmuls in bf16 (parameters and the loss stay float32)
    )
  )


def sweep_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(seeds=(0,), lrs=(1e-3,)))


def train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
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
      pack="auto",  # MLP members' first layers as one matmul: off | on | auto (sweep/packed.py)
      nonfinite="halt",  # a member's non-finite loss: halt (checkpoint, exit naming it) or drop (freeze it)
      tensorboard=True,  # event files in WORKDIR/tensorboard, one run per member (sweep/tensorboard.py)
      wandb_project="",  # also log to this W&B project, one run per member (sweep/wandb_log.py); "": off
    )
  )


def regression_task() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
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
    )
  )


def sparse_parity_task() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      family="sparse_parity",
      num_tasks=100,
      n_bits=50,
      k=3,
      alpha=1.4,
      frequencies=(),
      seed=0,
    )
  )


def base_config(task: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task
  config.model = model_config()
  config.sweep = sweep_config()
  config.train = train_config()
  config.inject = ml_collections.ConfigDict()  # name -> fields of schedule() (see data/schedules.py)
  return config


def schedule() -> ml_collections.ConfigDict:
  """Every field of an injection schedule `inject.NAME`; None: required by the kinds that read it."""
  return ml_collections.ConfigDict(
    dict(
      kind=None,  # share | per_batch | every | burst
      task=None,  # the task id it injects
      share=None,  # share: the share of all examples, in (0, 1]
      count=None,  # per_batch, every, burst: examples per injection
      every=None,  # every: batches between injections
      offset=0,  # every: the first step it injects at
      at=0,  # burst: the one step it injects at
      windows=(),  # any kind: [start, stop) step ranges it is active in (empty: always)
    )
  )


def olmo_model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      name="olmo",
      sizes=("tiny-a", "tiny-c"),  # ladder presets (python -m launch.ladder lists them)
      rope_theta=500_000.0,
      tie_embeddings=True,
      qk_norm=True,
      remat=False,
      compute_dtype="float32",  # or bfloat16 (parameters stay float32)
      mup_base_width=0,  # > 0: muP width scaling relative to this d_model (0: off)
      z_loss=1e-5,
    )
  )


def token_task(kind: str, seed: int, **fields) -> ml_collections.ConfigDict:
  """A token task `token_tasks.NAME` (tasks/token_tasks.py): every field of both kinds, then `fields`."""
  base = dict(
    kind=kind,  # modular_addition | comparison
    seed=seed,  # draws the task's tokens, held-out tuples and hidden order
    vocab_size=0,  # set by the problem to the model's vocabulary (problems/language.py)
    reserved_tokens=1,  # token ids below this are left to the base stream (EOS)
    heldout_fraction=0.1,  # share of operand tuples never shown in training
    modulus=11,  # modular_addition only: values are 0..modulus-1
    n_operands=2,  # modular_addition only (comparison always takes two items)
    n_items=10,  # comparison only: items of the hidden order
  )
  base.update(fields)
  return ml_collections.ConfigDict(base)


def data_config() -> ml_collections.ConfigDict:
  """Every field of the `data` section (a language model's base stream, data/token_streams.py)."""
  return ml_collections.ConfigDict(
    dict(
      source="synthetic",
      seq_len=256,
      vocab_size=4096,  # synthetic and token_files
      zipf_exponent=1.0,  # synthetic: unigram p(rank r) ~ r^-zipf_exponent
      successors=16,  # synthetic: successor tokens per token
      bigram_weight=0.9,  # synthetic: chance the next token is a successor of the current one
      paths=(),  # text_files, token_files: files or glob patterns
      documents="file",  # text_files: "file" or "line"
      data_dir="",  # text_files, tfds: TFDS data directory ("" = TFDS default)
      name="",  # tfds: dataset name, e.g. "lm1b"
      split="train",  # tfds
      feature="text",  # tfds: the text feature
      dtype="uint16",  # token_files: dtype of raw (non-.npy) files
      eos_id=0,  # token_files: the tokenizer's EOS
      read_threads=2,  # grain reader threads
      inject_mode="splice",  # token-task examples: "splice" into a row, or "replace" (the example starts a row)
    )
  )


def language_config() -> ml_collections.ConfigDict:
  """A language-model sweep: base stream (`data`), token tasks, OLMo members, AdamW as OLMo."""
  config = ml_collections.ConfigDict()
  config.data = data_config()
  config.token_tasks = ml_collections.ConfigDict()  # name -> token_task(...); ids 1.. in name order
  config.model = olmo_model_config()
  config.sweep = sweep_config()
  config.train = train_config()
  config.train.update(
    optimizer="adamw",
    b1=0.9,
    b2=0.95,
    weight_decay=0.1,
    grad_clip=1.0,
    decay="cosine",
    final_lr_fraction=0.01,
    warmup_steps=100,
  )
  config.inject = ml_collections.ConfigDict()  # name -> fields of schedule(); task ids 1.. (0: the base stream)
  return config
