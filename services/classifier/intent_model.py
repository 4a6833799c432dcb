"""Intent model: frozen sentence embeddings + TF-IDF n-grams, three heads, calibrated stacking,
and an n-gram fast path that skips the encoder when the n-grams alone are sure.

Why this shape (measured by 5-fold CV on Banking77 train, see benchmarks/classifier_eval.py):
a single head on frozen MiniLM embeddings reaches ~92%, a linear SVM on word+char TF-IDF ~90%,
and they err on different tickets: the embedding knows paraphrases, the n-grams know the exact
banking words ("top-up", "PIN", "SEPA") that a small general-purpose encoder blurs. The model adds
the three heads' scores with non-negative weights. The embedding is the encoder the model was
trained with: by default ("minilm+layer3", Settings.intent_encoder) MiniLM's sentence embedding
next to the mean of its third layer, which keeps more of the words (93.32% against 93.09% with
the sentence embedding alone):

    logits = a_svm * svm_margins(tfidf)
           + a_lr * lr_logits(embedding)
           + a_knn * knn_log_votes(embedding)
    probabilities = softmax(logits)

The weights are fitted by minimising log-loss on out-of-fold scores (cross-fitting on the training
data only), so they both set the mix and act as the temperature: the confidence that comes out
is calibrated without a separate step.

The encoder is most of the cost of a prediction (about 10 ms per short ticket per core here, the
rest of the classifier ~3 ms), so prediction runs as a cascade. The n-gram head alone, with its own temperature fitted the same way,
answers the tickets it puts at or above `fast_path_confidence`; only the rest are embedded and get
the full stack. The confidence a fast-path answer reports comes from a second temperature, fitted
on the out-of-fold rows the gate lets through: the temperature fitted on all rows makes that sure
tail claim more certainty than it has. benchmarks/classifier_eval.py prints the fast path's share
and accuracy.

Artifacts hold no pickle: vocabularies and settings are JSON, every array is in one .npz, and
`load` rebuilds the scikit-learn vectorizers from them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from supportflow.embedding import EmbeddingCache, TextEncoder, load_encoder, registered_name

ARTIFACT_FORMAT = 2
MANIFEST = "model.json"
ARRAYS = "arrays.npz"
HEADS = ("tfidf_svm", "embedding_lr", "embedding_knn")
# Confidence cut-offs at which CV reports selective accuracy and coverage (to pick a routing cut).
SELECTIVE_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float
    top_k: list[tuple[str, float]]
    encoded: bool  # False when the n-gram fast path answered without the encoder


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters, fixed from CV on Banking77 train (never from its withheld test split)."""

    svm_c: float = 1.0
    lr_c: float = 20.0
    knn_k: int = 10
    # Neighbour votes are weighted exp(cosine / temperature): close neighbours count far more.
    knn_temperature: float = 0.05
    calibration_folds: int = 3
    top_k: int = 3
    # The classifier reads the start of a ticket; the encoder stops at 128 tokens anyway, and
    # capping characters bounds TF-IDF cost on a pasted log.
    max_chars: int = 1000
    # The n-gram head alone answers when its calibrated probability reaches this; None: never.
    # Chosen by 5-fold CV on Banking77 train (benchmarks/classifier_eval.py --fast-path-confidence):
    # at 0.98, 68% of tickets take the fast path, 98.7% of them rightly; accuracy is 0.05 points
    # and selective accuracy at 0.7 0.2 points below no fast path. 0.99: 62%, 99.05%, -0.04 and
    # -0.1, but ~10% less throughput; 0.95: 75%, selective accuracy -0.3.
    fast_path_confidence: float | None = 0.98


_WORD_TFIDF = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "lowercase": True}
_CHAR_TFIDF = {
    "analyzer": "char_wb",
    "ngram_range": (2, 5),
    "sublinear_tf": True,
    "lowercase": True,
}
_CHAR_MIN_DF = 2


@dataclass
class _Heads:
    """Everything fitted on one training set: vectorizers and the three heads' parameters."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    svm_weight: np.ndarray  # (features, classes)
    svm_bias: np.ndarray
    lr_weight: np.ndarray  # (dim, classes)
    lr_bias: np.ndarray
    knn_vectors: np.ndarray  # (rows, dim) training embeddings
    knn_labels: np.ndarray  # (rows,) class indices
    features: _TfidfFeatures = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.features = _TfidfFeatures(self.word, self.char)


class _TfidfFeatures:
    """`_tfidf` for inference: the same matrix, without scikit-learn's per-call input checks.

    Those checks cost about 3 ms per call whatever the batch, more than the n-gram work for one
    ticket, and every ticket now takes this path (tests/unit/test_intent_model.py compares the two).
    """

    def __init__(self, word: TfidfVectorizer, char: TfidfVectorizer) -> None:
        self._blocks = []
        offset = 0
        for vectorizer in (word, char):
            idf = np.asarray(vectorizer.idf_, dtype=np.float64)
            self._blocks.append((vectorizer.build_analyzer(), vectorizer.vocabulary_, idf, offset))
            offset += len(idf)
        self._width = offset

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        indptr, indices, values, filled = [0], [], [], 0
        for text in texts:
            for analyze, vocabulary, idf, offset in self._blocks:
                counts = Counter(vocabulary[g] for g in analyze(text) if g in vocabulary)
                if not counts:
                    continue
                columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                weights = (1.0 + np.log(tf)) * idf[columns]  # sublinear tf, then idf
                weights /= np.linalg.norm(weights) * np.sqrt(2.0)  # as _tfidf: unit halves
                indices.append(columns + offset)
                values.append(weights)
                filled += len(columns)
            indptr.append(filled)
        return sp.csr_matrix(
            (
                np.concatenate(values) if values else np.zeros(0),
                np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
                indptr,
            ),
            shape=(len(texts), self._width),
        )


@dataclass(eq=False)
class IntentModel:
    """A trained intent classifier; build it with `train`, `train_from_csv` or `load`."""

    labels: list[str]
    config: TrainingConfig
    head_weights: np.ndarray  # (len(HEADS),) the stacking weights, non-negative
    fast_path_gate_weight: float  # the n-gram head's own temperature, deciding the fast path
    fast_path_weight: float  # the temperature of the confidences the fast path reports
    encoder: TextEncoder
    metadata: dict = field(default_factory=dict)
    _heads: _Heads | None = field(default=None, repr=False)

    # --- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        encoder: TextEncoder,
        seed: int = 0,
        config: TrainingConfig | None = None,
        cache_dir: Path | str | None = None,
    ) -> IntentModel:
        """Fit on (text, label) pairs. `cache_dir` keeps embeddings between runs (keyed by text)."""
        config = config or TrainingConfig()
        texts, labels = _validate(texts, labels)
        started = time.perf_counter()
        embeddings = _embed(encoder, texts, config, cache_dir)
        model = cls._fit(texts, embeddings, labels, encoder=encoder, seed=seed, config=config)
        data_sha256 = _pairs_sha256(texts, labels)
        created = datetime.fromisoformat(model.metadata["created_at"])
        model.metadata.update(
            # Readable and unique enough to tell deployed models apart in logs and events.
            version=f"{created:%Y%m%dT%H%M%SZ}-{data_sha256[:8]}",
            data_sha256=data_sha256,
            rows=len(texts),
            training_seconds=round(time.perf_counter() - started, 2),
        )
        return model

    @classmethod
    def _fit(
        cls,
        texts: list[str],
        embeddings: np.ndarray,
        labels: list[str],
        *,
        encoder: TextEncoder,
        seed: int,
        config: TrainingConfig,
    ) -> IntentModel:
        label_set = sorted(set(labels))
        if len(label_set) < 2:
            raise ValueError("need at least two distinct labels")
        index = {label: i for i, label in enumerate(label_set)}
        y = np.array([index[label] for label in labels])
        clipped = [_clip(t, config) for t in texts]

        head_scores = _out_of_fold_scores(clipped, embeddings, y, len(label_set), config, seed)
        weights = _fit_stacking_weights(head_scores, y)
        gate_weight = float(_fit_stacking_weights(head_scores[:1], y)[0])
        fast_weight = _fit_fast_path_weight(head_scores[0], y, gate_weight, config)
        heads = _fit_heads(clipped, embeddings, y, len(label_set), config, seed)
        created = datetime.now(UTC)
        metadata = {
            "encoder": encoder.name,
            "encoder_registry_name": registered_name(encoder),
            "seed": seed,
            "created_at": created.isoformat(timespec="seconds"),
            "label_counts": {label: int(np.sum(y == i)) for i, label in enumerate(label_set)},
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scikit_learn": sklearn.__version__,
            },
        }
        return cls(label_set, config, weights, gate_weight, fast_weight, encoder, metadata, heads)

    @property
    def version(self) -> str:
        return self.metadata.get("version", "unversioned")

    # --- inference --------------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(labels)) calibrated probabilities; columns follow `self.labels`."""
        return self._predict(texts)[0]

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        probabilities, encoded = self._predict(texts)
        k = min(self.config.top_k, len(self.labels))
        predictions = []
        for row, row_encoded in zip(probabilities, encoded):
            best = np.argsort(-row, kind="stable")[:k]
            top = [(self.labels[i], float(row[i])) for i in best]
            predictions.append(IntentPrediction(top[0][0], top[0][1], top, bool(row_encoded)))
        return predictions

    def _predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(texts, str):
            raise TypeError("predict takes a sequence of texts, not a single str")
        texts = [_clip(t, self.config) for t in texts]
        if not texts:
            return np.empty((0, len(self.labels))), np.zeros(0, dtype=bool)
        return _cascade(self, texts, lambda rows: self.encoder.encode([texts[i] for i in rows]))

    # --- persistence ------------------------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        """Write model.json (labels, config, metadata, vocabularies) and arrays.npz."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        heads = self._heads
        manifest = {
            "format": ARTIFACT_FORMAT,
            "kind": "supportflow.intent_model",
            "labels": self.labels,
            "heads": list(HEADS),
            "head_weights": self.head_weights.tolist(),
            "fast_path_gate_weight": self.fast_path_gate_weight,
            "fast_path_weight": self.fast_path_weight,
            "config": asdict(self.config),
            "metadata": self.metadata,
            "word_vocabulary": _vocabulary(heads.word),
            "char_vocabulary": _vocabulary(heads.char),
        }
        arrays = {
            "word_idf": heads.word.idf_,
            "char_idf": heads.char.idf_,
            "svm_weight": heads.svm_weight,
            "svm_bias": heads.svm_bias,
            "lr_weight": heads.lr_weight,
            "lr_bias": heads.lr_bias,
            "knn_vectors": heads.knn_vectors,
            "knn_labels": heads.knn_labels,
        }
        np.savez_compressed(directory / ARRAYS, **arrays)
        (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, encoder: TextEncoder | None = None) -> IntentModel:
        """Rebuild a saved model. Without `encoder`, the one it was trained with is loaded from
        the registry; either way its name must match the one recorded at training."""
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
        if manifest.get("format") != ARTIFACT_FORMAT or manifest.get("heads") != list(HEADS):
            raise ValueError(f"{directory} is not an intent model of format {ARTIFACT_FORMAT}")
        if encoder is None:
            encoder = load_encoder(manifest["metadata"].get("encoder_registry_name") or "minilm")
        trained_with = manifest["metadata"]["encoder"]
        if trained_with != encoder.name:
            raise ValueError(
                f"model was trained with encoder {trained_with!r}, got {encoder.name!r}"
            )
        with np.load(directory / ARRAYS, allow_pickle=False) as arrays:
            heads = _Heads(
                word=_vectorizer(_WORD_TFIDF, manifest["word_vocabulary"], arrays["word_idf"]),
                char=_vectorizer(_CHAR_TFIDF, manifest["char_vocabulary"], arrays["char_idf"]),
                svm_weight=arrays["svm_weight"],
                svm_bias=arrays["svm_bias"],
                lr_weight=arrays["lr_weight"],
                lr_bias=arrays["lr_bias"],
                knn_vectors=arrays["knn_vectors"],
                knn_labels=arrays["knn_labels"],
            )
        return cls(
            labels=manifest["labels"],
            config=TrainingConfig(**manifest["config"]),
            head_weights=np.array(manifest["head_weights"]),
            fast_path_gate_weight=float(manifest["fast_path_gate_weight"]),
            fast_path_weight=float(manifest["fast_path_weight"]),
            encoder=encoder,
            metadata=manifest["metadata"],
            _heads=heads,
        )


# --- training from a CSV, and cross-validation ---------------------------------------------------


def read_labeled_csv(path: Path | str, text_column: str, label_column: str) -> tuple[list, list]:
    """Texts and labels from a UTF-8 CSV with a header; rows with an empty label are skipped."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {text_column, label_column} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)}; has {reader.fieldnames}")
        rows = [(row[text_column] or "", row[label_column]) for row in reader if row[label_column]]
    return [text for text, _ in rows], [label for _, label in rows]


def train_from_csv(
    path: Path | str,
    text_column: str,
    label_column: str,
    out_dir: Path | str,
    *,
    encoder: TextEncoder,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    cv_folds: int = 0,
) -> dict:
    """Train on a CSV, optionally run `cv_folds`-fold CV first, and save the model to `out_dir`.

    Returns the training report (JSON-ready: the artifact's metadata plus where it is);
    `IntentModel.load(out_dir)` gives the model (with the same encoder from the registry).
    """
    texts, labels = read_labeled_csv(path, text_column, label_column)
    cv = None
    if cv_folds:
        cv = cross_validate(
            texts, labels, encoder=encoder, folds=cv_folds, seed=seed, cache_dir=cache_dir
        )
    model = IntentModel.train(texts, labels, encoder=encoder, seed=seed, cache_dir=cache_dir)
    model.metadata["source"] = {
        "path": str(path),
        "file_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "text_column": text_column,
        "label_column": label_column,
    }
    if cv is not None:
        model.metadata["cv"] = cv.summary()
    model.save(out_dir)
    return {"out_dir": str(out_dir), "labels": model.labels, **model.metadata}


@dataclass
class CrossValidation:
    """Out-of-fold predictions of a stratified k-fold run, and the metrics the project tracks."""

    labels: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray
    encoded: np.ndarray  # per row: True when the prediction needed the encoder (no fast path)
    folds: int
    seconds: float

    def summary(self, threshold: float = 0.7, bins: int = 15) -> dict:
        predicted = self.probabilities.argmax(axis=1)
        confidence = self.probabilities.max(axis=1)
        correct = predicted == self.y_true
        kept = confidence >= threshold
        return {
            "folds": self.folds,
            "rows": int(len(self.y_true)),
            "accuracy": float(correct.mean()),
            "macro_f1": _macro_f1(self.y_true, predicted, len(self.labels)),
            "ece": expected_calibration_error(confidence, correct, bins),
            "ece_bins": bins,
            "selective_threshold": threshold,
            "selective_accuracy": float(correct[kept].mean()) if kept.any() else float("nan"),
            "coverage": float(kept.mean()),
            "fast_path_share": float(1.0 - self.encoded.mean()),
            "fast_path_accuracy": float(correct[~self.encoded].mean())
            if (~self.encoded).any()
            else None,
            "selective_by_threshold": {
                f"{t:.2f}": {
                    "accuracy": float(correct[confidence >= t].mean())
                    if (confidence >= t).any()
                    else None,
                    "coverage": float((confidence >= t).mean()),
                }
                for t in SELECTIVE_THRESHOLDS
            },
            "seconds": round(self.seconds, 1),
        }


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    encoder: TextEncoder,
    folds: int = 5,
    seed: int = 0,
    config: TrainingConfig | None = None,
    cache_dir: Path | str | None = None,
) -> CrossValidation:
    """Stratified k-fold: each fold trains the full recipe (inner cross-fitting included) on the
    other folds, so the reported calibration is what a deployed model would show."""
    config = config or TrainingConfig()
    texts, labels = _validate(texts, labels)
    started = time.perf_counter()
    embeddings = _embed(encoder, texts, config, cache_dir)
    label_set = sorted(set(labels))
    index = {label: i for i, label in enumerate(label_set)}
    y = np.array([index[label] for label in labels])
    probabilities = np.zeros((len(texts), len(label_set)))
    encoded = np.zeros(len(texts), dtype=bool)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_rows, test_rows in splitter.split(np.zeros(len(y)), y):
        model = IntentModel._fit(
            [texts[i] for i in train_rows],
            embeddings[train_rows],
            [labels[i] for i in train_rows],
            encoder=encoder,
            seed=seed,
            config=config,
        )
        fold_texts = [_clip(texts[i], config) for i in test_rows]
        fold_embeddings = embeddings[test_rows]
        fold_probabilities, fold_encoded = _cascade(model, fold_texts, lambda rows: fold_embeddings[rows])
        columns = [index[label] for label in model.labels]
        probabilities[np.ix_(test_rows, columns)] = fold_probabilities
        encoded[test_rows] = fold_encoded
    return CrossValidation(
        label_set, y, probabilities, encoded, folds, time.perf_counter() - started
    )


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> float:
    """ECE with equal-width confidence bins: sum over bins of share * |accuracy - confidence|."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


# --- internals ---------------------------------------------------------------------------------


def _validate(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(texts, str) or isinstance(labels, str):
        raise TypeError("texts and labels must be sequences, not a single str")
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not all(isinstance(t, str) for t in texts) or not all(isinstance(x, str) for x in labels):
        raise TypeError("texts and labels must be str")
    return texts, labels


def _clip(text: str, config: TrainingConfig) -> str:
    return text[: config.max_chars]


def _embed(
    encoder: TextEncoder, texts: list[str], config: TrainingConfig, cache_dir: Path | str | None
) -> np.ndarray:
    clipped = [_clip(t, config) for t in texts]
    if cache_dir is None:
        return encoder.encode(clipped)
    return EmbeddingCache(cache_dir, encoder).encode(clipped)


def _pairs_sha256(texts: list[str], labels: list[str]) -> str:
    """Training-data identity, whatever the file layout: sha256 of the JSON [text, label] pairs."""
    pairs = json.dumps(list(zip(texts, labels, strict=True)), ensure_ascii=False)
    payload = pairs.encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


def _new_vectorizers() -> tuple[TfidfVectorizer, TfidfVectorizer]:
    return TfidfVectorizer(**_WORD_TFIDF), TfidfVectorizer(**_CHAR_TFIDF, min_df=_CHAR_MIN_DF)


def _tfidf(word: TfidfVectorizer, char: TfidfVectorizer, texts: list[str]) -> sp.csr_matrix:
    # Each block is L2-normalised; dividing by sqrt(2) makes the concatenation unit length too.
    return (sp.hstack([word.transform(texts), char.transform(texts)]) / np.sqrt(2.0)).tocsr()


def _fit_heads(
    texts: list[str],
    embeddings: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainingConfig,
    seed: int,
) -> _Heads:
    word, char = _new_vectorizers()
    word.fit(texts)
    try:
        char.fit(texts)
    except ValueError:  # tiny corpora: no character n-gram occurs twice
        char = TfidfVectorizer(**_CHAR_TFIDF).fit(texts)
    present = np.unique(y)
    svm = LinearSVC(C=config.svm_c, random_state=seed).fit(_tfidf(word, char, texts), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(C=config.lr_c, max_iter=1000, random_state=seed).fit(embeddings, y)
    svm_weight, svm_bias = _full_width(svm.coef_, svm.intercept_, present, n_classes)
    lr_weight, lr_bias = _full_width(lr.coef_, lr.intercept_, present, n_classes)
    return _Heads(
        word=word,
        char=char,
        svm_weight=svm_weight,
        svm_bias=svm_bias,
        lr_weight=lr_weight,
        lr_bias=lr_bias,
        knn_vectors=np.ascontiguousarray(embeddings, dtype=np.float32),
        knn_labels=y.astype(np.int32),
    )


# A class absent from a training subset (possible in cross-fitting with rare labels) gets this
# score from a linear head: far below any real one, so it is never predicted from that head.
_ABSENT_CLASS_SCORE = -30.0


def _full_width(
    coef: np.ndarray, intercept: np.ndarray, present: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linear-head parameters as (features, n_classes), whatever classes the fit saw.

    scikit-learn stores one row per class seen, except for two classes where it keeps a single
    row for the positive class; the equivalent two-column form is [0, score].
    """
    if len(present) == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = np.zeros((coef.shape[1], n_classes), dtype=np.float32)
    bias = np.full(n_classes, _ABSENT_CLASS_SCORE, dtype=np.float32)
    weight[:, present] = coef.T
    bias[present] = intercept
    return weight, bias


def _head_scores(
    heads: _Heads, texts: list[str], embeddings: np.ndarray, n_classes: int, config: TrainingConfig
) -> list[np.ndarray]:
    """Each head's (rows, n_classes) scores, in the order of HEADS."""
    return [_svm_scores(heads, texts), *_embedding_scores(heads, embeddings, n_classes, config)]


def _svm_scores(heads: _Heads, texts: list[str]) -> np.ndarray:
    # float32 features: a float64 matrix would make scipy copy the whole weight matrix per call.
    features = heads.features.transform(texts).astype(np.float32)
    return np.asarray(features @ heads.svm_weight) + heads.svm_bias


def _embedding_scores(
    heads: _Heads, embeddings: np.ndarray, n_classes: int, config: TrainingConfig
) -> list[np.ndarray]:
    lr = embeddings @ heads.lr_weight + heads.lr_bias
    return [lr, _knn_log_votes(heads, embeddings, n_classes, config)]


def _cascade(
    model: IntentModel, texts: list[str], embed: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for `texts` and which rows needed the encoder.

    Every row first gets the n-gram head's own calibrated probabilities; rows below the fast-path
    confidence are embedded (`embed(row_indices)`) and get the full stack instead.
    """
    heads, config = model._heads, model.config
    svm = _svm_scores(heads, texts)
    probabilities = softmax(model.fast_path_weight * svm, axis=1)
    encoded = ~_fast_path_taken(svm, model.fast_path_gate_weight, config)
    rows = np.flatnonzero(encoded)
    if rows.size:
        scores = [svm[rows], *_embedding_scores(heads, embed(rows), len(model.labels), config)]
        probabilities[rows] = softmax(_combine(scores, model.head_weights), axis=1)
    return probabilities, encoded


def _knn_log_votes(
    heads: _Heads, embeddings: np.ndarray, n_classes: int, config: TrainingConfig
) -> np.ndarray:
    """log of the share of similarity-weighted votes from the k most similar training texts."""
    k = min(config.knn_k, len(heads.knn_labels))
    similarity = embeddings @ heads.knn_vectors.T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    near_similarity = np.take_along_axis(similarity, nearest, axis=1)
    # Subtracting each row's best similarity keeps exp() in range and does not change the shares.
    votes = np.exp(
        (near_similarity - near_similarity.max(axis=1, keepdims=True)) / config.knn_temperature
    )
    rows = len(embeddings)
    cells = (np.arange(rows)[:, None] * n_classes + heads.knn_labels[nearest]).ravel()
    tally = np.bincount(cells, weights=votes.ravel(), minlength=rows * n_classes)
    tally = tally.reshape(rows, n_classes)
    tally /= tally.sum(axis=1, keepdims=True)
    return np.log(tally + 1e-6)


def _out_of_fold_scores(
    texts: list[str],
    embeddings: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainingConfig,
    seed: int,
) -> list[np.ndarray]:
    """Every head's scores on every training row, each from heads fitted without that row."""
    scores = [np.zeros((len(y), n_classes)) for _ in HEADS]
    folds = min(config.calibration_folds, int(np.bincount(y).max()))
    if folds < 2:
        raise ValueError("need at least two examples of some label to calibrate")
    with warnings.catch_warnings():
        # Labels rarer than the fold count are fine: _full_width handles absent classes.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y))
    for fit_rows, held_rows in splits:
        heads = _fit_heads(
            [texts[i] for i in fit_rows], embeddings[fit_rows], y[fit_rows], n_classes, config, seed
        )
        held_texts = [texts[i] for i in held_rows]
        held = _head_scores(heads, held_texts, embeddings[held_rows], n_classes, config)
        for total, part in zip(scores, held, strict=True):
            total[held_rows] = part
    return scores


def _fast_path_taken(svm: np.ndarray, gate_weight: float, config: TrainingConfig) -> np.ndarray:
    """Rows the n-gram head alone is sure enough of to answer without the encoder."""
    if config.fast_path_confidence is None:
        return np.zeros(len(svm), dtype=bool)
    return softmax(gate_weight * svm, axis=1).max(axis=1) >= config.fast_path_confidence


# Fewer out-of-fold rows through the gate than this, and the gate's temperature is kept as is.
_MIN_FAST_PATH_ROWS = 50


def _fit_fast_path_weight(
    svm: np.ndarray, y: np.ndarray, gate_weight: float, config: TrainingConfig
) -> float:
    """Temperature of the fast path's reported confidence, fitted on the out-of-fold rows the
    gate lets through (those rows alone: the gate's own temperature is overconfident there)."""
    taken = _fast_path_taken(svm, gate_weight, config)
    if taken.sum() < _MIN_FAST_PATH_ROWS:
        return gate_weight
    return float(_fit_stacking_weights([svm[taken]], y[taken])[0])


def _combine(scores: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(w * s for w, s in zip(weights, scores, strict=True))


def _fit_stacking_weights(scores: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Non-negative head weights minimising the log-loss of softmax(sum_k w_k * scores_k)."""
    rows = np.arange(len(y))

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        log_p = log_softmax(_combine(scores, w), axis=1)
        residual = np.exp(log_p)
        residual[rows, y] -= 1.0  # d(loss)/d(logits) = p - onehot
        grad = np.array([np.sum(residual * s) for s in scores]) / len(y)
        return float(-log_p[rows, y].mean()), grad

    result = minimize(
        loss_and_grad,
        np.ones(len(scores)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * len(scores),
    )
    return result.x


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        predicted, actual = np.sum(y_pred == c), np.sum(y_true == c)
        if actual == 0 and predicted == 0:
            continue
        f1s.append(2 * tp / (predicted + actual))
    return float(np.mean(f1s))


def _vocabulary(vectorizer: TfidfVectorizer) -> list[str]:
    """Terms in column order (JSON keeps the order; a dict would spend space on indices)."""
    terms = [""] * len(vectorizer.vocabulary_)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    return terms


def _vectorizer(params: dict, terms: list[str], idf: np.ndarray) -> TfidfVectorizer:
    vectorizer = TfidfVectorizer(**params, vocabulary={t: i for i, t in enumerate(terms)})
    vectorizer.idf_ = idf
    return vectorizer
