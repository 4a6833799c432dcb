"""The numpy MiniLM must reproduce sentence-transformers, whose reference vectors are a fixture.

The fixture (tests/unit/fixtures/minilm_reference.json) was made once with torch and
sentence-transformers in a throwaway venv (versions are recorded in the file); neither is a
dependency of the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from supportflow.embedding import (
    EmbeddingCache,
    MiniLMEncoder,
    TextEncoder,
    available_encoders,
    load_encoder,
    register_encoder,
)

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_encoder("minilm")


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_matches_sentence_transformers(encoder, reference, batch_size):
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["embedding"] for item in reference["items"]], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    got = encoder.encode(texts, batch_size=batch_size)

    cosines = np.sum(got * expected, axis=1)
    assert cosines.min() > 0.999, cosines


def test_fixture_covers_truncation_and_edge_cases(reference):
    texts = [item["text"] for item in reference["items"]]
    assert "" in texts
    assert any(len(t.split()) > 128 for t in texts)  # exercises truncation at 128 tokens
    assert any(not t.isascii() for t in texts)


def test_output_shape_dtype_and_norm(encoder):
    got = encoder.encode(["hello", "my card was swallowed by the ATM", "x " * 2000])
    assert got.shape == (3, encoder.dim) == (3, 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batching_keeps_input_order(encoder):
    texts = ["a much longer sentence about a pending top up from yesterday", "short", "medium one"]
    one_by_one = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(encoder.encode(texts, batch_size=2), one_by_one, atol=1e-5)


def test_empty_input_and_bad_arguments(encoder):
    assert encoder.encode([]).shape == (0, encoder.dim)
    with pytest.raises(TypeError):
        encoder.encode("a single string is a common mistake")
    with pytest.raises(ValueError):
        encoder.encode(["x"], batch_size=0)


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
