"""Both MiniLM backends must reproduce sentence-transformers, whose reference vectors are a fixture.

The fixture (tests/unit/fixtures/minilm_reference.json) was made once with torch and
sentence-transformers in a throwaway venv (versions are recorded in the file); neither is a
dependency of the project.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from encoders import embedding
from encoders.embedding import (
    EmbeddingCache,
    MiniLMEncoder,
    OnnxMiniLMEncoder,
    TextEncoder,
    available_encoders,
    encode_on_all_cores,
    load_encoder,
    minilm_encoder,
    register_encoder,
)

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
# Texts of every length class, deliberately not sorted by length: a one-word-piece text, an empty
# one ([CLS] [SEP] only), a long sentence, and two longer than the 128-token limit.
MIXED_TEXTS = [
    "my card payment was declined twice at the supermarket and I was charged anyway",
    "hi",
    "refund " * 300,
    "",
    "where is my new card?",
    "Überweisung nach Deutschland dauert zu lange 😕",
    "top up " * 200,
]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def numpy_encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module", params=["onnx", "numpy"])
def backend(request, encoder, numpy_encoder) -> TextEncoder:
    """Each MiniLM backend: the registry's (ONNX Runtime) and the numpy one."""
    return encoder if request.param == "onnx" else numpy_encoder


def test_registry_uses_onnx_runtime_when_installed(encoder):
    assert isinstance(encoder, OnnxMiniLMEncoder)


def test_registry_falls_back_to_numpy_without_onnx_runtime(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with caplog.at_level(logging.INFO, logger="encoders.embedding"):
        fallback = minilm_encoder()
    assert type(fallback) is MiniLMEncoder
    assert "numpy backend" in caplog.text


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_matches_sentence_transformers(backend, reference, batch_size):
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["embedding"] for item in reference["items"]], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    got = backend.encode(texts, batch_size=batch_size)

    cosines = np.sum(got * expected, axis=1)
    assert cosines.min() > 0.99999, cosines


def test_backends_agree_and_share_a_name(encoder, numpy_encoder):
    onnx_vectors = encoder.encode(MIXED_TEXTS, batch_size=3)
    numpy_vectors = numpy_encoder.encode(MIXED_TEXTS, batch_size=3)

    cosines = np.sum(onnx_vectors * numpy_vectors, axis=1)
    assert cosines.min() > 0.99999, cosines
    # Same vectors, so one name: caches and trained models carry over between backends.
    assert encoder.name == numpy_encoder.name
    assert encoder.dim == numpy_encoder.dim


def test_onnx_model_is_built_once_then_reused(tmp_path, monkeypatch):
    first = OnnxMiniLMEncoder(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [first.onnx_path]  # no temp file left behind
    built_at = first.onnx_path.stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("the cached ONNX model should have been reused")

    monkeypatch.setattr(embedding, "_minilm_onnx_model", must_not_build)
    second = OnnxMiniLMEncoder(cache_dir=tmp_path, max_tokens=32)

    assert second.onnx_path == first.onnx_path  # the graph does not depend on max_tokens
    assert first.onnx_path.stat().st_mtime_ns == built_at
    assert list(tmp_path.iterdir()) == [first.onnx_path]
    np.testing.assert_allclose(second.encode(["hello"]), first.encode(["hello"]), atol=1e-6)


def test_concurrent_encodes_match_sequential_ones(encoder):
    sequential = [encoder.encode([text]) for text in MIXED_TEXTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda text: encoder.encode([text]), MIXED_TEXTS * 3))
    for i, vectors in enumerate(concurrent):
        np.testing.assert_allclose(vectors, sequential[i % len(MIXED_TEXTS)], atol=1e-6)


def test_fixture_covers_truncation_and_edge_cases(reference):
    texts = [item["text"] for item in reference["items"]]
    assert "" in texts
    assert any(len(t.split()) > 128 for t in texts)  # exercises truncation at 128 tokens
    assert any(not t.isascii() for t in texts)


def test_output_shape_dtype_and_norm(backend):
    got = backend.encode(["hello", "my card was swallowed by the ATM", "x " * 2000])
    assert got.shape == (3, backend.dim) == (3, 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batching_keeps_input_order(backend):
    one_by_one = np.vstack([backend.encode([t]) for t in MIXED_TEXTS])
    np.testing.assert_allclose(backend.encode(MIXED_TEXTS, batch_size=2), one_by_one, atol=1e-5)


def test_length_buckets_pad_little_and_cover_every_text_once():
    lengths = [12, 90, 13, 14, 128, 11, 15, 16, 40, 12, 12, 12, 12, 12, 12, 12]
    buckets = embedding._length_buckets(lengths, batch_size=8)
    assert sorted(i for bucket in buckets for i in bucket) == list(range(len(lengths)))
    assert all(1 <= len(bucket) <= 8 for bucket in buckets)
    for bucket in buckets:  # a long text never pads a bucket of short ones
        shortest, longest = min(lengths[i] for i in bucket), max(lengths[i] for i in bucket)
        assert longest <= 1.25 * shortest + 2
    assert [lengths[i] for i in buckets[-1]] == [128]
    assert embedding._length_buckets([], 8) == []


def test_mixed_lengths_in_one_call_match_one_by_one(backend):
    texts = ["hi", "my card was swallowed by the ATM and now I cannot pay rent " * 3, "pin?", "where is my card"] * 3
    one_by_one = np.vstack([backend.encode([t]) for t in texts])
    np.testing.assert_allclose(backend.encode(texts), one_by_one, atol=1e-5)


def test_empty_input_and_bad_arguments(backend):
    assert backend.encode([]).shape == (0, backend.dim)
    with pytest.raises(TypeError):
        backend.encode("a single string is a common mistake")
    with pytest.raises(ValueError):
        backend.encode(["x"], batch_size=0)


def test_registry_caches_instances_and_accepts_plugins(encoder):
    assert load_encoder("minilm") is encoder
    assert "minilm" in available_encoders()
    with pytest.raises(KeyError):
        load_encoder("no-such-model")

    class ConstantEncoder(TextEncoder):
        name = "constant"
        dim = 2

        def encode(self, texts, batch_size=64):
            return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))

    register_encoder("test-constant", ConstantEncoder)
    assert load_encoder("test-constant").encode(["a"]).tolist() == [[1.0, 0.0]]


def test_a_middle_layer_can_be_pooled_too(encoder, numpy_encoder):
    both = load_encoder("minilm+layer3")
    vectors = both.encode(MIXED_TEXTS, batch_size=3)
    assert both.dim == 2 * encoder.dim == vectors.shape[1] and both.name != encoder.name
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The first half is the sentence embedding; the second half is a different view of the text.
    sentence = encoder.encode(MIXED_TEXTS, batch_size=3)
    assert np.allclose(vectors[:, : encoder.dim] * np.sqrt(2), sentence, atol=1e-5)
    middle = vectors[:, encoder.dim :] * np.sqrt(2)
    assert np.allclose(np.linalg.norm(middle, axis=1), 1.0, atol=1e-5)
    assert np.sum(middle * sentence, axis=1).max() < 0.99
    # The numpy backend computes the same pair and so shares the name.
    numpy_both = MiniLMEncoder(also_pool_layer=3)
    assert numpy_both.name == both.name
    assert np.sum(numpy_both.encode(MIXED_TEXTS, batch_size=3) * vectors, axis=1).min() > 0.99999
    with pytest.raises(ValueError, match="also_pool_layer"):
        MiniLMEncoder(also_pool_layer=6)


def test_max_tokens_is_part_of_the_name():
    assert MiniLMEncoder(max_tokens=32).name != load_encoder("minilm").name


def test_embedding_cache_computes_each_text_once(tmp_path):
    calls: list[list[str]] = []

    class CountingEncoder(TextEncoder):
        name = "counting/v1"
        dim = 3

        def encode(self, texts, batch_size=64):
            calls.append(list(texts))
            return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    cache = EmbeddingCache(tmp_path, CountingEncoder())
    first = cache.encode(["ab", "c", "ab"])
    second = EmbeddingCache(tmp_path, CountingEncoder()).encode(["c", "ab", "new"])

    assert calls == [["ab", "c"], ["new"]]
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(second[1], first[0])
    assert cache.path.parent == tmp_path


def test_bulk_encoding_spreads_over_threads_and_keeps_the_order():
    threads: set[int] = set()
    lock = threading.Lock()

    class SlowEncoder(TextEncoder):
        name = "slow/v1"
        dim = 2

        def encode(self, texts, batch_size=8):
            with lock:
                threads.add(threading.get_ident())
            time.sleep(0.05)  # long enough for the other worker to start
            return np.array([[len(t), len(t)] for t in texts], dtype=np.float32)

    texts = [f"text number {i}" + "x" * (i % 7) for i in range(50)]
    vectors = encode_on_all_cores(SlowEncoder(), texts, batch_size=4, workers=3)
    np.testing.assert_array_equal(vectors[:, 0], [len(t) for t in texts])
    assert len(threads) == 3
    assert encode_on_all_cores(SlowEncoder(), texts[:3], batch_size=4, workers=3).shape == (3, 2)  # few: one call
