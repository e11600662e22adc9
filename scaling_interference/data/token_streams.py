"""Base token streams: rows of `seq_len` tokens, the language-model side of the data.

A row is L = seq_len tokens; a model trained on it predicts row[1:] from row[:-1]. Rows of
a host stream are consecutive, non-overlapping cuts of one long token stream (documents
joined by EOS), as in OLMo's fixed-length chunking.

Sources (`config.data.source`; every field of `data`, with its default, is in
`defaults.data_config()`):
  synthetic:   `SyntheticLanguage`, sampled on device as a pure function of a key.
               Fields: vocab_size, zipf_exponent, successors, bigram_weight.
  text_files:  text files (`paths`: files or glob patterns, local or URLs such as gs://;
               `documents`: "file" or "line"), built into a TFDS ArrayRecord dataset under `data_dir`
               (see tfds_text.py), byte-level tokens.
  tfds:        a prepared TFDS dataset (`name`, `split`, `feature` holding text, `data_dir`),
               in ArrayRecord format (`tfds build --file_format=array_record NAME`),
               byte-level tokens.
  token_files: OLMo-style pre-tokenised files (`paths`, local or URLs): flat uint16/uint32 arrays, `.npy`
               or raw (`dtype`), with `vocab_size` and the tokenizer's `eos_id`.
Byte-level tokens: EOS is 0 and byte b is b + 1 (vocabulary 257). The synthetic language
also keeps 0 for EOS and never emits it (one endless document).

Host streams read through grain and can save and restore their position: a resumed run
sees exactly the batches of an uninterrupted one. Documents (text) or rows (token files)
are shuffled by the seed, reshuffled each epoch, and repeat forever.

On P processes (`shard=(p, P)`) process p yields rows [p B/P, (p+1) B/P) of every global
batch of B rows, the global batch being the one a single process would see: the P parts,
stacked in process order, are the one-process batch. A token-file process reads only its own
rows (grain's batches of B/P rows, every P-th from the p-th); a text process packs the whole
document stream (packing is sequential) and keeps its rows.
"""

import dataclasses
import glob
import io
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from scaling_interference import storage
from scaling_interference.checks import is_int, is_number
from scaling_interference.errors import ConfigError

SOURCES = ("synthetic", "text_files", "tfds", "token_files")
EOS_ID = 0
BYTE_VOCAB = 257  # EOS + 256 bytes
TOKEN_DTYPES = ("uint16", "uint32")
CHECK_BLOCK = 65536  # tokens read per sample block when checking token files against vocab_size
CHECK_BLOCKS = 4


@dataclasses.dataclass(frozen=True)
class LanguageTables:
  """The device side of a SyntheticLanguage; a pytree, so it can be a jit argument."""

  successors_VxE: jax.Array  # int32 successor token ids
  unigram_cdf_V: jax.Array  # float32 cumulative pi
  stationary_cdf_V: jax.Array  # float32 cumulative nu
  bigram_weight: float


jax.tree_util.register_dataclass(
  LanguageTables, data_fields=["successors_VxE", "unigram_cdf_V", "stationary_cdf_V"], meta_fields=["bigram_weight"]
)


class SyntheticLanguage:
  """A seeded language with Zipfian unigrams and sparse bigram structure, sampled on device.

  Language tokens are 1..V-1 (0 is EOS), ranked by a seeded permutation; the unigram
  distribution is pi(rank r) ~ r^-zipf_exponent. Each token has E = `successors` successors
  drawn i.i.d. from pi. The next token is, with probability bigram_weight (lambda), one of
  the current token's E successors uniformly, else a fresh draw from pi. Each successor
  row is the empirical distribution of E draws from pi, so its expectation is pi and the
  stationary marginal nu = (1 - lambda) pi + lambda nu T stays close to pi (Zipf-like,
  noisier in the tail); `stationary_V` is nu, computed exactly by power iteration. The
  first token of a row is drawn from nu, so every position has marginal nu.
  H(next | prev) <= H(lambda) + lambda log E + (1 - lambda) H(pi): far below H(pi).
  """

  on_device = True
  eos_id = EOS_ID

  def __init__(
    self, vocab_size: int, seed: int, zipf_exponent: float = 1.0, successors: int = 16, bigram_weight: float = 0.9
  ):
    check_synthetic(vocab_size, zipf_exponent, successors, bigram_weight)
    self.vocab_size, self.seed = vocab_size, seed
    self.successors, self.bigram_weight = successors, bigram_weight
    rng = np.random.default_rng(seed)
    self.rank_tokens = 1 + rng.permutation(vocab_size - 1)  # token id of each rank
    self.unigram_V = np.zeros(vocab_size)
    self.unigram_V[self.rank_tokens] = zipf(vocab_size - 1, zipf_exponent)
    self.successors_VxE = rng.choice(vocab_size, size=(vocab_size, successors), p=self.unigram_V)
    self.stationary_V = self._stationary()
    self.tables = LanguageTables(
      jnp.asarray(self.successors_VxE, jnp.int32),
      jnp.asarray(np.cumsum(self.unigram_V), jnp.float32),
      jnp.asarray(np.cumsum(self.stationary_V), jnp.float32),
      float(bigram_weight),
    )

  def _stationary(self) -> np.ndarray:
    """nu = (1 - lambda) pi + lambda nu T, by power iteration to 1e-9."""
    lam, k = self.bigram_weight, self.successors
    steps = 1 if lam == 0 else math.ceil(math.log(1e-9) / math.log(lam))
    flat = self.successors_VxE.ravel()
    nu = self.unigram_V
    for _ in range(steps):
      moved = np.bincount(flat, weights=np.repeat(nu / k, k), minlength=self.vocab_size)
      nu = (1 - lam) * self.unigram_V + lam * moved
    return nu / nu.sum()

  def sample(self, key: jax.Array, batch: int, seq_len: int) -> jax.Array:
    """(batch, seq_len) int32 tokens; a pure function of `key`."""
    return sample_language(self.tables, key, batch, seq_len)


def sample_language(tables: LanguageTables, key: jax.Array, batch: int, seq_len: int) -> jax.Array:
  """(batch, seq_len) int32 tokens of the language with these tables."""
  k_first, k_follow, k_slot, k_fresh = jax.random.split(key, 4)
  steps = (seq_len - 1, batch)  # time-major for the scan
  first_B = _draw(k_first, tables.stationary_cdf_V, (batch,))
  follow_LxB = jax.random.bernoulli(k_follow, tables.bigram_weight, steps)
  slot_LxB = jax.random.randint(k_slot, steps, 0, tables.successors_VxE.shape[1])
  fresh_LxB = _draw(k_fresh, tables.unigram_cdf_V, steps)

  def step(prev_B, xs):
    follow_B, slot_B, fresh_B = xs
    next_B = jnp.where(follow_B, tables.successors_VxE[prev_B, slot_B], fresh_B)
    return next_B, next_B

  _, rest_LxB = jax.lax.scan(step, first_B, (follow_LxB, slot_LxB, fresh_LxB))
  return jnp.concatenate([first_B[:, None], rest_LxB.T], axis=1)


_sample_jit = jax.jit(sample_language, static_argnums=(2, 3))


def zipf(n: int, exponent: float) -> np.ndarray:
  """p(r) ~ r^-exponent for ranks r = 1..n."""
  p = np.arange(1, n + 1, dtype=np.float64) ** (-exponent)
  return p / p.sum()


def _draw(key: jax.Array, cdf_V: jax.Array, shape) -> jax.Array:
  """Token ids drawn from a distribution given by its cumulative sums (inverse CDF)."""
  u = jax.random.uniform(key, shape, jnp.float32) * cdf_V[-1]
  return jnp.minimum(jnp.searchsorted(cdf_V, u, side="right"), cdf_V.shape[0] - 1).astype(jnp.int32)


def check_synthetic(vocab_size, zipf_exponent, successors, bigram_weight) -> None:
  if not is_int(vocab_size) or vocab_size < 3:
    raise ConfigError(f"data.vocab_size: must be an integer >= 3, got {vocab_size!r}")
  if not is_number(zipf_exponent) or zipf_exponent < 0:
    raise ConfigError(f"data.zipf_exponent: must be a finite number >= 0, got {zipf_exponent!r}")
  if not is_int(successors) or successors < 1:
    raise ConfigError(f"data.successors: must be an integer >= 1, got {successors!r}")
  if not is_number(bigram_weight) or not 0 <= bigram_weight <= 0.99:
    raise ConfigError(f"data.bigram_weight: must be a number in [0, 0.99], got {bigram_weight!r}")


class SyntheticIterator:
  """Host batches of a SyntheticLanguage: batch s is sample(fold_in(key(seed), s)), rows `rows` of it."""

  on_device = False

  def __init__(self, language: SyntheticLanguage, batch_size: int, seq_len: int, seed: int, rows: slice):
    self.vocab_size, self.eos_id = language.vocab_size, language.eos_id
    self._tables, self._shape, self._rows = language.tables, (batch_size, seq_len), rows
    self._key = jax.random.key(seed)
    self._step = 0

  def next(self) -> np.ndarray:
    key = jax.random.fold_in(self._key, self._step)
    tokens_BxL = _sample_jit(self._tables, key, *self._shape)
    self._step += 1
    return np.asarray(tokens_BxL[self._rows], np.int32)

  def get_state(self) -> dict:
    return {"step": self._step}

  def set_state(self, state: dict) -> None:
    self._step = int(state["step"])


class HostIterator:
  """Batches (rows, seq_len) int32 from a grain pipeline; resumable from get_state()."""

  on_device = False

  def __init__(self, dataset, vocab_size: int, eos_id: int):
    self.vocab_size, self.eos_id = vocab_size, eos_id
    self._iterator = iter(dataset)

  def next(self) -> np.ndarray:
    return np.asarray(next(self._iterator), np.int32)

  def get_state(self) -> dict:
    """grain's state (JSON-serialisable; JSON turns its tuples into lists)."""
    return self._iterator.get_state()

  def set_state(self, state: dict) -> None:
    self._iterator.set_state(_lists_to_tuples(state))


class ShardStack:
  """One process reading every shard of a run of P processes (analysis of a cluster run): the
  P iterators' rows stacked in process order, which is the one-process batch."""

  on_device = False

  def __init__(self, iterators):
    self.iterators = list(iterators)
    self.vocab_size, self.eos_id = self.iterators[0].vocab_size, self.iterators[0].eos_id

  def next(self) -> np.ndarray:
    return np.concatenate([it.next() for it in self.iterators])

  def get_state(self) -> list:
    return [it.get_state() for it in self.iterators]

  def set_state(self, states: list) -> None:
    for it, state in zip(self.iterators, states, strict=True):
      it.set_state(state)


def _lists_to_tuples(state):
  """Undoes JSON's tuple -> list: grain's packing compares its empty slice with (-1, -1)."""
  if isinstance(state, dict):
    return {k: _lists_to_tuples(v) for k, v in state.items()}
  if isinstance(state, (list, tuple)):
    return tuple(_lists_to_tuples(v) for v in state)
  return state


class TokenWindows:
  """Random access to rows of seq_len tokens cut from token files (remainders dropped)."""

  def __init__(self, arrays, seq_len: int):
    self.arrays, self.seq_len = tuple(arrays), seq_len
    self._ends = np.cumsum([a.shape[0] // seq_len for a in self.arrays], dtype=np.int64)

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __getitem__(self, index: int) -> np.ndarray:
    f = int(np.searchsorted(self._ends, index, side="right"))
    row = index - (int(self._ends[f - 1]) if f else 0)
    return np.asarray(self.arrays[f][row * self.seq_len : (row + 1) * self.seq_len], np.int32)


def make_host_iterator(source_config, batch_size: int, seq_len: int, seed: int, shard: tuple[int, int] = (0, 1)):
  """A resumable iterator of `source_config.source`'s batches of batch_size rows of seq_len int32 tokens.

  shard = (p, P): this iterator is process p of P and yields only its rows [p B/P, (p+1) B/P) of each batch.
  """
  source = _check_source(source_config)
  if not is_int(batch_size) or batch_size < 1:
    raise ConfigError(f"train.batch_size: must be an integer >= 1, got {batch_size!r}")
  if not is_int(seq_len) or seq_len < 2:
    raise ConfigError(f"data.seq_len: must be an integer >= 2, got {seq_len!r}")
  count = shard[1]
  if batch_size % count:
    raise ConfigError(
      f"train.batch_size: a host stream on {count} processes needs a multiple of {count}, got {batch_size}"
    )
  if source == "synthetic":
    return SyntheticIterator(
      synthetic_language(source_config, seed), batch_size, seq_len, seed, shard_rows(batch_size, shard)
    )
  if source == "token_files":
    return _token_file_iterator(source_config, batch_size, seq_len, seed, shard)
  return _text_iterator(source_config, batch_size, seq_len, seed, shard)


def shard_rows(batch_size: int, shard: tuple[int, int]) -> slice:
  """Process p of P's rows of a batch: [p B/P, (p+1) B/P)."""
  index, count = shard
  rows = batch_size // count
  return slice(index * rows, (index + 1) * rows)


def make_stream(config, shards: int | None = None):
  """The base stream of `config.data`: a SyntheticLanguage (on device) or a host iterator.

  Host iterators take batch_size from config.train.batch_size, their seed from
  config.train.data_seed and yield this process's rows of each batch; with `shards` (one
  process only) a ShardStack reads all the shards of a run of that many processes. Every
  stream has `vocab_size`, `eos_id` and `on_device`.
  """
  data, train = config.data, config.train
  if _check_source(data) == "synthetic":
    return synthetic_language(data, train.data_seed)
  if shards is not None:
    return ShardStack(
      make_host_iterator(data, train.batch_size, data.seq_len, train.data_seed, (i, shards)) for i in range(shards)
    )
  shard = (jax.process_index(), jax.process_count())
  return make_host_iterator(data, train.batch_size, data.seq_len, train.data_seed, shard)


def synthetic_language(source_config, seed: int) -> SyntheticLanguage:
  return SyntheticLanguage(
    source_config.vocab_size, seed, source_config.zipf_exponent, source_config.successors, source_config.bigram_weight
  )


def _check_source(source_config) -> str:
  source = source_config.source
  if source not in SOURCES:
    raise ConfigError(f"data.source: must be one of {list(SOURCES)}, got {source!r}")
  return source


def _grain():
  try:
    import grain  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError(
      "data.source: host sources need grain and tensorflow-datasets: pip install 'scaling_interference[tfds]'"
    ) from e
  return grain


def _read_options(source_config):
  return _grain().ReadOptions(num_threads=source_config.read_threads, prefetch_buffer_size=8)


def _token_file_iterator(source_config, batch_size: int, seq_len: int, seed: int, shard) -> HostIterator:
  """Windows shuffled by seed; process p of P takes batches of B/P windows, every P-th from the p-th."""
  vocab_size = source_config.vocab_size
  if not is_int(vocab_size) or vocab_size < 2:
    raise ConfigError(f"data.vocab_size: must be an integer >= 2, got {vocab_size!r}")
  eos_id = source_config.eos_id
  if not is_int(eos_id) or not 0 <= eos_id < vocab_size:
    raise ConfigError(f"data.eos_id: must be an integer in [0, vocab_size={vocab_size}), got {eos_id!r}")
  paths = _paths(source_config)
  arrays = [open_token_file(p, source_config.dtype) for p in paths]
  for path, array in zip(paths, arrays, strict=True):
    check_tokens(path, array, vocab_size)
  windows = TokenWindows(arrays, seq_len)
  if len(windows) == 0:
    raise ConfigError(f"data.paths: the files hold no full row of seq_len={seq_len} tokens")
  index, count = shard
  windows_ds = _grain().MapDataset.source(windows).shuffle(seed=seed).repeat(None)
  parts = windows_ds.batch(batch_size // count, drop_remainder=True)[index::count]
  return HostIterator(parts.to_iter_dataset(_read_options(source_config)), vocab_size, eos_id)


def open_token_file(path: str, dtype: str) -> np.ndarray:
  """A flat token array: `.npy` with its own dtype, else raw `dtype`.

  Local files are memory-mapped; remote ones (gs://, ...) are read whole into memory.
  """
  if dtype not in TOKEN_DTYPES and not path.endswith(".npy"):
    raise ConfigError(f"data.dtype: must be one of {list(TOKEN_DTYPES)}, got {dtype!r}")
  if storage.is_remote(path):
    data = storage.as_path(path, "data.paths").read_bytes()
    array = np.load(io.BytesIO(data)) if path.endswith(".npy") else np.frombuffer(data, dtype)
  elif path.endswith(".npy"):
    array = np.load(path, mmap_mode="r")
  else:
    array = np.memmap(path, dtype=dtype, mode="r")
  if array.ndim != 1 or array.dtype.name not in TOKEN_DTYPES:
    raise ConfigError(
      f"data.paths: {path} holds a {array.dtype.name} array of shape {array.shape}; "
      f"token files must be flat {' or '.join(TOKEN_DTYPES)}"
    )
  return array


def check_tokens(path: str, array: np.ndarray, vocab_size: int) -> None:
  """Checks evenly spaced blocks of a token file against vocab_size."""
  starts = np.linspace(0, max(array.shape[0] - CHECK_BLOCK, 0), CHECK_BLOCKS).astype(np.int64)
  largest = max((int(array[s : s + CHECK_BLOCK].max(initial=0)) for s in starts), default=0)
  if largest >= vocab_size:
    raise ConfigError(f"data.vocab_size: {path} holds token {largest}; vocab_size must exceed it, got {vocab_size}")


def _paths(source_config) -> list[str]:
  patterns = source_config.paths
  patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
  paths = [p for pattern in patterns for p in match(pattern)]
  if not paths:
    raise ConfigError(f"data.paths: no file matches {list(patterns)}")
  return paths


def match(pattern: str) -> list[str]:
  """The files a glob pattern matches, sorted: a local glob, or epath's below a URL's fixed prefix."""
  path = storage.as_path(pattern, "data.paths")
  if not storage.is_remote(pattern):
    return sorted(glob.glob(os.fspath(path)))
  root, rest = split_glob(os.fspath(path))
  if not rest:
    return [root] if path.exists() else []
  return sorted(os.fspath(p) for p in storage.as_path(root, "data.paths").glob(rest))


def split_glob(pattern: str) -> tuple[str, str]:
  """(the leading folders without a wildcard, the rest): "gs://b/d/*/x*" -> ("gs://b/d", "*/x*")."""
  parts = pattern.split("/")
  fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
  return "/".join(parts[:fixed]), "/".join(parts[fixed:])


def _text_iterator(source_config, batch_size: int, seq_len: int, seed: int, shard) -> HostIterator:
  """Documents shuffled by seed, byte tokens + EOS, packed by grain's concat-then-split.

  Packing is sequential, so every process packs the whole stream and keeps its rows of each batch.
  """
  grain = _grain()
  feature, documents = _text_documents(source_config)

  def tokens(record):
    return {"tokens": byte_tokens(record[feature])}

  docs = (
    grain.MapDataset.source(documents)
    .shuffle(seed=seed)
    .repeat(None)
    .map(tokens)
    .to_iter_dataset(_read_options(source_config))
  )
  packed = grain.experimental.ConcatThenSplitIterDataset(docs, length_struct={"tokens": seq_len})
  rows = shard_rows(batch_size, shard)
  batches = packed.map(lambda row: row["tokens"]).batch(batch_size).map(lambda tokens_BxL: tokens_BxL[rows])
  return HostIterator(batches, BYTE_VOCAB, EOS_ID)


def _text_documents(source_config):
  """(feature name, random-access source of document records)."""
  data_dir = source_config.data_dir or None
  if source_config.source == "text_files":
    from scaling_interference.data import tfds_text  # pylint: disable=g-import-not-at-top

    documents = source_config.documents
    if documents not in tfds_text.DOCUMENTS:
      raise ConfigError(f"data.documents: must be one of {list(tfds_text.DOCUMENTS)}, got {documents!r}")
    return "text", tfds_text.text_files_source(_paths(source_config), data_dir, documents)
  name = source_config.name
  if not name:
    raise ConfigError("data.name: must name a prepared TFDS dataset for source 'tfds', got ''")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  source = tfds.data_source(name, split=source_config.split, data_dir=data_dir, download=False)
  return source_config.feature, source


def byte_tokens(text) -> np.ndarray:
  """UTF-8 bytes b -> tokens b + 1, then EOS (0)."""
  data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  return np.append(np.frombuffer(data, np.uint8).astype(np.int32) + 1, EOS_ID).astype(np.int32)
