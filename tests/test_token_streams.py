"""Base token streams: synthetic language statistics, token files, TFDS text files, resumable grain iterators."""

import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from scaling_interference import defaults
from scaling_interference.data import token_streams
from scaling_interference.data.token_streams import SyntheticLanguage, make_host_iterator, make_stream
from scaling_interference.errors import ConfigError


@pytest.fixture(scope="module")
def language():
  return SyntheticLanguage(vocab_size=1024, seed=0)


@pytest.fixture(scope="module")
def language_tokens(language):
  return np.asarray(jax.jit(lambda k: language.sample(k, 256, 512))(jax.random.key(0)))


def _entropy_bits(p):
  p = p[p > 0] / p.sum()
  return float(-(p * np.log2(p)).sum())


def test_synthetic_unigram_is_power_law(language_tokens):
  count_V = np.bincount(language_tokens.ravel(), minlength=1024)
  top_N = np.sort(count_V)[::-1][:100]
  slope = np.polyfit(np.log(np.arange(1, 101)), np.log(top_N), 1)[0]
  assert -1.3 < slope < -0.7, f"rank-frequency slope {slope:.2f}: the unigrams should be Zipf(1)-like"
  assert count_V[0] == 0, "EOS (0) is reserved and never emitted"


def test_synthetic_next_token_depends_on_previous(language_tokens):
  prev, nxt = language_tokens[:, :-1].ravel(), language_tokens[:, 1:].ravel()
  joint = np.bincount(prev * 1024 + nxt, minlength=1024 * 1024).astype(float)
  h_joint, h_prev = _entropy_bits(joint), _entropy_bits(np.bincount(prev, minlength=1024).astype(float))
  h_unigram = _entropy_bits(np.bincount(nxt, minlength=1024).astype(float))
  h_conditional = h_joint - h_prev
  assert h_conditional < 0.7 * h_unigram, (
    f"H(next|prev) = {h_conditional:.2f} bits vs H(unigram) = {h_unigram:.2f}: n-gram structure lost"
  )


def test_synthetic_marginal_matches_stationary_distribution(language, language_tokens):
  empirical_V = np.bincount(language_tokens.ravel(), minlength=1024) / language_tokens.size
  total_variation = 0.5 * np.abs(empirical_V - language.stationary_V).sum()
  assert total_variation < 0.05, f"total variation {total_variation:.3f} from stationary_V"


def test_synthetic_sampling_is_pure_and_fast(language):
  sample = jax.jit(lambda k: language.sample(k, 64, 256))
  a, b, c = (np.asarray(sample(jax.random.key(s))) for s in (1, 1, 2))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (64, 256) and a.dtype == np.int32 and not np.array_equal(a, c)
  start = time.perf_counter()
  for s in range(10):
    sample(jax.random.key(s)).block_until_ready()
  assert (time.perf_counter() - start) / 10 < 0.05, "64 x 256 tokens should take milliseconds"
  as_argument = jax.jit(token_streams.sample_language, static_argnums=(2, 3))
  np.testing.assert_array_equal(
    as_argument(language.tables, jax.random.key(1), 64, 256),
    a,
    "tables passed as a jit argument must give the same tokens",
  )
  keys = jax.random.split(jax.random.key(0), 2)
  assert jax.jit(jax.vmap(lambda k: language.sample(k, 4, 8)))(keys).shape == (2, 4, 8)


def test_synthetic_language_is_a_function_of_seed():
  a, b, c = SyntheticLanguage(256, 3), SyntheticLanguage(256, 3), SyntheticLanguage(256, 4)
  np.testing.assert_array_equal(a.successors_VxE, b.successors_VxE)
  assert not np.array_equal(a.successors_VxE, c.successors_VxE)


def _config(**data):
  config = ml_collections.ConfigDict()
  config.data = defaults.data_config()
  config.data.update(data)
  config.train = ml_collections.ConfigDict(dict(batch_size=4, data_seed=0))
  return config


def test_make_stream_picks_the_source():
  stream = make_stream(_config(vocab_size=512))
  assert isinstance(stream, SyntheticLanguage) and stream.on_device and stream.vocab_size == 512
  with pytest.raises(
    ConfigError, match=r"data\.source: must be one of \['synthetic', 'text_files', 'tfds', 'token_files'\]"
  ):
    make_stream(_config(source="web"))
  with pytest.raises(ConfigError, match=r"data\.bigram_weight"):
    make_stream(_config(bigram_weight=1.5))


def _take(iterator, n):
  return [iterator.next() for _ in range(n)]


def _assert_resumes(make):
  """5 batches, save, 5 more; a fresh iterator restored from the (JSON) state gives the same 5."""
  first = make()
  _take(first, 5)
  state = json.loads(json.dumps(first.get_state()))
  expected = _take(first, 5)
  second = make()
  second.set_state(state)
  for want, got in zip(expected, _take(second, 5), strict=True):
    np.testing.assert_array_equal(got, want, "a restored iterator must see the same batches")


def test_synthetic_host_iterator_resumes():
  def make():
    return make_host_iterator(_config(vocab_size=256).data, 3, 16, seed=0)

  assert make().next().shape == (3, 16)
  _assert_resumes(make)


def _write_tokens(path, array):
  if path.endswith(".npy"):
    np.save(path, array)
  else:
    array.tofile(path)


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_token_files_yield_every_window_once_per_epoch(tmp_path, dtype):
  pytest.importorskip("grain")
  big = 70_000 if dtype == "uint32" else 60_000  # beyond uint16 for uint32 files
  files = {str(tmp_path / "a.bin"): np.arange(1000) % big, str(tmp_path / "b.npy"): np.arange(530) + big - 530}
  for path, tokens in files.items():
    _write_tokens(path, tokens.astype(dtype))
  config = _config(source="token_files", paths=(str(tmp_path / "*"),), dtype=dtype, vocab_size=big)
  iterator = make_host_iterator(config.data, 9, 10, seed=1)
  rows = np.concatenate(_take(iterator, 17))  # 100 + 53 windows of 10 tokens = 17 batches of 9
  assert rows.dtype == np.int32 and rows.shape == (153, 10)
  windows = [tokens[i : i + 10] for tokens in files.values() for i in range(0, len(tokens) - 9, 10)]
  assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, np.array(windows).tolist()))
  assert not np.array_equal(rows[:, 0], np.sort(rows[:, 0])), "rows should be shuffled"


def test_token_files_resume_and_check_vocab(tmp_path):
  pytest.importorskip("grain")
  _write_tokens(str(tmp_path / "a.npy"), np.arange(5000, dtype=np.uint16) % 300)
  config = _config(source="token_files", paths=(str(tmp_path / "a.npy"),), vocab_size=300, eos_id=7)
  _assert_resumes(lambda: make_host_iterator(config.data, 4, 16, seed=3))
  assert make_host_iterator(config.data, 4, 16, seed=3).eos_id == 7
  config.data.vocab_size = 299
  with pytest.raises(ConfigError, match=r"data\.vocab_size: .*a\.npy holds token 299"):
    make_host_iterator(config.data, 4, 16, seed=3)
  np.save(str(tmp_path / "f.npy"), np.zeros(100, np.float32))
  config.data.update(paths=(str(tmp_path / "f.npy"),), vocab_size=300)
  with pytest.raises(ConfigError, match=r"data\.paths: .*f\.npy holds a float32"):
    make_host_iterator(config.data, 4, 16, seed=3)
  config.data.paths = (str(tmp_path / "missing*"),)
  with pytest.raises(ConfigError, match=r"data\.paths: no file matches"):
    make_host_iterator(config.data, 4, 16, seed=3)


def _assert_shards_make_the_batch(make, processes: int, steps: int):
  """Each of `processes` simulated processes' rows, stacked in process order, are the one-process batch, and resume."""
  whole, parts = make((0, 1)), [make((p, processes)) for p in range(processes)]
  for step in range(steps):
    stacked = np.concatenate([part.next() for part in parts])
    np.testing.assert_array_equal(
      stacked, whole.next(), f"step {step}: the processes' rows must be the one-process batch, in process order"
    )
  _assert_resumes(lambda: make((processes - 1, processes)))


def test_token_file_shards_are_rows_of_the_one_process_batch(tmp_path):
  pytest.importorskip("grain")
  _write_tokens(str(tmp_path / "a.npy"), np.arange(3000, dtype=np.uint16) % 300)
  _write_tokens(str(tmp_path / "b.bin"), np.arange(1000, dtype=np.uint16))
  config = _config(source="token_files", paths=(str(tmp_path / "*"),), vocab_size=1000)

  def make(shard):
    return make_host_iterator(config.data, 12, 16, 5, shard)

  _assert_shards_make_the_batch(make, 4, steps=25)  # 300 rows of 249 windows: into the second epoch
  with pytest.raises(ConfigError, match=r"train\.batch_size: a host stream on 5 processes needs a multiple of 5"):
    make_host_iterator(config.data, 12, 16, 5, (0, 5))


def test_remote_patterns_glob_below_their_fixed_folders():
  assert token_streams.split_glob("gs://b/d/*/x?.npy") == ("gs://b/d", "*/x?.npy")
  assert token_streams.split_glob("gs://b/d/x.npy") == ("gs://b/d/x.npy", "")


def _write_texts(tmp_path):
  texts = {f"doc{i}.txt": f"document {i}: " + "héllo wörld " * (3 * i + 1) for i in range(6)}
  for name, text in texts.items():
    (tmp_path / name).write_text(text, encoding="utf-8")
  return texts


def test_tfds_array_record_builder_round_trip_without_tensorflow(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from scaling_interference.data import tfds_text

  texts = _write_texts(tmp_path)
  paths = sorted(str(tmp_path / name) for name in texts)
  source = tfds_text.text_files_source(paths, str(tmp_path / "tfds"))
  assert sorted(source[i]["text"] for i in range(len(source))) == sorted(t.encode() for t in texts.values())
  built = [f for _, _, files in os.walk(tmp_path / "tfds") for f in files]
  assert any(".array_record" in f for f in built), f"no ArrayRecord file among {built}"
  lines = tfds_text.text_files_source(paths[:1], str(tmp_path / "tfds"), documents="line")
  assert len(lines) == 1 and len(source) == 6
  assert "tensorflow" not in sys.modules, "building and reading must not import TensorFlow"


def test_text_files_pack_documents_with_eos(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  texts = _write_texts(tmp_path)
  config = _config(source="text_files", paths=(str(tmp_path / "*.txt"),), data_dir=str(tmp_path / "tfds"))
  iterator = make_host_iterator(config.data, 2, 32, seed=0)
  assert iterator.vocab_size == 257 and iterator.eos_id == 0
  rows = np.concatenate(_take(iterator, 16))  # 1024 tokens: more than the ~800 of one epoch
  assert rows.shape == (32, 32) and rows.dtype == np.int32
  stream = bytes((rows.ravel() - 1).clip(0).astype(np.uint8)).split(b"\0")
  encoded = sorted(t.encode() for t in texts.values())
  assert sorted(stream[:6]) == encoded, "the first epoch must be every document once, each ended by EOS"
  assert stream[:6] != [t.encode() for t in texts.values()], "documents should be shuffled"
  _assert_resumes(lambda: make_host_iterator(config.data, 2, 32, seed=0))
  _assert_shards_make_the_batch(lambda shard: make_host_iterator(config.data, 4, 32, 0, shard), 2, steps=10)
  assert "tensorflow" not in sys.modules


def test_byte_tokens():
  np.testing.assert_array_equal(token_streams.byte_tokens("aé"), [98, 196, 170, 0])
