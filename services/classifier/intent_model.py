"""Intent model: TF-IDF n-grams and frozen sentence embeddings, calibrated stacking, an n-gram
fast path that skips the encoder when the n-grams alone are sure, and a second encoder consulted
only when the first stack is unsure.

Why this shape (measured by 5-fold CV on Banking77 train, see benchmarks/classifier_eval.py):
a single head on frozen MiniLM embeddings reaches ~92%, a linear SVM on word+char TF-IDF ~90%,
and they err on different tickets: the embedding knows paraphrases, the n-grams know the exact
banking words ("top-up", "PIN", "SEPA") that a small general-purpose encoder blurs. The model adds
the heads' scores with non-negative weights. The embedding is the encoder the model was trained
with: by default ("minilm+layer3", Settings.intent_encoder) MiniLM's sentence embedding next to
the mean of its third layer, which keeps more of the words (93.32% against 93.09% with the
sentence embedding alone). Complement Naive Bayes on word counts adds another view of the words:

    logits = a_svm * svm_margins(tfidf) + a_nb * complement_nb(word counts)
           + a_lr * lr_logits(embedding) + a_knn * knn_log_votes(embedding)
    probabilities = softmax(logits)

The weights are fitted by minimising log-loss on out-of-fold scores (cross-fitting on the training
data only), so they both set the mix and act as the temperature: the confidence that comes out
is calibrated without a separate step.

The encoder is most of the cost of a prediction (about 10 ms per short ticket per core here, the
rest of the classifier ~3 ms), so prediction runs as a cascade:
1. The n-gram head alone, with its own temperature fitted the same way, answers the tickets it
   puts at or above `fast_path_confidence` (68% of Banking77). The confidence a fast-path answer
   reports comes from a second temperature, fitted on the out-of-fold rows the gate lets through:
   the temperature fitted on all rows makes that sure tail claim more certainty than it has.
2. The rest are embedded and get the stack above.
3. With a second encoder (by default bge-small-en-v1.5, Settings.intent_second_encoder; twice
   MiniLM's depth and cost), the embedded tickets that stack puts below `second_opinion_below` are
   embedded by it too and get a stack of all the heads, its own LR and kNN heads included, with
   its own weights fitted the same way. That is ~5% of Banking77. The two encoders err on
   different tickets: the stack of both reached 93.8% where either alone stops at 93.3-93.6%.
4. A confidence the model cannot back is held under the routing threshold. Calibrated, the
   tickets at or above 0.7 are right about as often as their mean confidence says: ~97% on
   Banking77, where the routing policy promises 98%. Training therefore runs the cascade above on
   its out-of-fold scores and finds the cut from which its answers were right 98% of the time (the
   lower end of a one-sided 99% interval); a confidence between 0.6 and that cut is moved, in order, into
   [0.6, 0.7). Everywhere else the confidence stays calibrated, and `IntentPrediction.calibrated`
   keeps the probability before holding. See `_fit_confidence_cut`.
benchmarks/classifier_eval.py prints each step's share.

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
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from encoders.embedding import (
    EmbeddingCache,
    TextEncoder,
    encode_on_all_cores,
    load_encoder,
    registered_name,
)

ARTIFACT_FORMAT = 3
MANIFEST = "model.json"
ARRAYS = "arrays.npz"
HEADS = ("tfidf_svm", "word_nb", "embedding_lr", "embedding_knn")
# The heads on the second encoder's embeddings, stacked after HEADS for a second opinion.
SECOND_OPINION_HEADS = ("second_lr", "second_knn")
# Confidence cut-offs at which CV reports selective accuracy and coverage (to pick a routing cut).
SELECTIVE_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float
    top_k: list[tuple[str, float]]
    encoded: bool  # False when the n-gram fast path answered without the encoder
    second_opinion: bool = False  # True when the second encoder was consulted too
    # The calibrated probability of `intent`; above `confidence` when the model held it under the
    # routing threshold (see TrainingConfig.selective_accuracy_target).
    calibrated: float | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters, fixed from CV on Banking77 train (never from its withheld test split)."""

    svm_c: float = 1.0
    nb_alpha: float = 0.3  # Complement Naive Bayes smoothing, on word 1-2-gram counts
    lr_c: float = 20.0
    knn_k: int = 10
    # Neighbour votes are weighted exp(cosine / temperature): close neighbours count far more.
    knn_temperature: float = 0.05
    calibration_folds: int = 3
    top_k: int = 3
    # The classifier reads the start of a ticket (~100 tokens): capping characters bounds the
    # encoder's and TF-IDF's cost on a pasted log. 0.03% of Banking77 train is longer.
    max_chars: int = 400
    # The n-gram head alone answers when its calibrated probability reaches this; None: never.
    # Chosen by 5-fold CV on Banking77 train (benchmarks/classifier_eval.py --fast-path-confidence):
    # at 0.98, 68% of tickets take the fast path, 98.7% of them rightly; accuracy is 0.05 points
    # and selective accuracy at 0.7 0.2 points below no fast path. 0.99: 62%, 99.05%, -0.04 and
    # -0.1, but ~10% less throughput; 0.95: 75%, selective accuracy -0.3.
    fast_path_confidence: float | None = 0.98
    # With a second encoder, an embedded ticket whose first-stack confidence is below this is
    # embedded by the second encoder too and gets the stack of all heads. Chosen by 5-fold CV on
    # Banking77 train (benchmarks/classifier_eval.py --second-opinion-below) and the throughput of
    # held-out tickets: at 0.6, 4.8% of tickets and 93.76%; at 0.9, 14.8% and 93.78%, but ~160
    # tickets/s instead of ~200. The README has the figures.
    second_opinion_below: float = 0.6
    # Longer tickets skip the second opinion: MiniLM and BGE on a long one take it past ~50 ms
    # on two cores. 5% of Banking77 train is longer.
    second_opinion_max_chars: int = 150
    # What a confidence at or above the routing policy's default threshold must stand for: the
    # tickets there are right at least `selective_accuracy_target` of the time, as sure as
    # `selective_accuracy_confidence` from cross-fitting. See `_fit_confidence_cut`: calibrated
    # confidences below the cut that backs this are moved into [held_band_floor, routing_threshold),
    # keeping their order. The target is the routing policy's promise, not a tuned value; the
    # confidence (one-sided) leaves a margin for the rows a cut is estimated from.
    routing_threshold: float = 0.7
    selective_accuracy_target: float = 0.98
    selective_accuracy_confidence: float = 0.99
    held_band_floor: float = 0.6

    def __post_init__(self) -> None:
        # Above one half, a held top class keeps more than the rest together: it stays on top.
        if not 0.5 <= self.held_band_floor < self.routing_threshold <= 1.0:
            raise ValueError("need 0.5 <= held_band_floor < routing_threshold <= 1")
        if not 0.0 <= self.selective_accuracy_target < 1.0:
            raise ValueError("selective_accuracy_target is a share in [0, 1); 0 holds nothing")
        if not 0.5 <= self.selective_accuracy_confidence < 1.0:
            raise ValueError("selective_accuracy_confidence is a probability in [0.5, 1)")


_WORD_TFIDF = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "lowercase": True}
_CHAR_TFIDF = {
    "analyzer": "char_wb",
    "ngram_range": (2, 5),
    "sublinear_tf": True,
    "lowercase": True,
}
_CHAR_MIN_DF = 2


@dataclass
class _EmbeddingHeads:
    """The two heads on one encoder's embeddings: logistic regression and similarity-weighted kNN."""

    lr_weight: np.ndarray  # (dim, classes)
    lr_bias: np.ndarray
    knn_vectors: np.ndarray  # (rows, dim) training embeddings
    knn_labels: np.ndarray  # (rows,) class indices


@dataclass
class _Heads:
    """Everything fitted on one training set: vectorizers and every head's parameters."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    svm_weight: np.ndarray  # (features, classes)
    svm_bias: np.ndarray
    nb_weight: np.ndarray  # (word features, classes): Complement NB's log weights
    embedding: _EmbeddingHeads
    second: _EmbeddingHeads | None  # on the second encoder's embeddings, if the model has one
    features: _TfidfFeatures = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.features = _TfidfFeatures(self.word, self.char)


class _TfidfFeatures:
    """`_tfidf` and `_word_counts` for inference: the same matrices, without scikit-learn's
    per-call input checks.

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

    def transform(self, texts: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(TF-IDF features, word n-gram counts) of `texts`."""
        tfidf, counts = _SparseRows(), _SparseRows()
        for text in texts:
            for block, (analyze, vocabulary, idf, offset) in enumerate(self._blocks):
                tally = Counter(vocabulary[g] for g in analyze(text) if g in vocabulary)
                if not tally:
                    continue
                columns = np.fromiter(tally.keys(), dtype=np.int64, count=len(tally))
                tf = np.fromiter(tally.values(), dtype=np.float64, count=len(tally))
                if block == 0:  # the word block: its raw counts feed Complement NB
                    counts.add(columns, tf)
                weights = (1.0 + np.log(tf)) * idf[columns]  # sublinear tf, then idf
                weights /= np.linalg.norm(weights) * np.sqrt(2.0)  # as _tfidf: unit halves
                tfidf.add(columns + offset, weights)
            tfidf.end_row()
            counts.end_row()
        return tfidf.matrix(self._width), counts.matrix(len(self._blocks[0][2]))


class _SparseRows:
    """A CSR matrix built row by row."""

    def __init__(self) -> None:
        self._indptr, self._indices, self._values, self._filled = [0], [], [], 0

    def add(self, columns: np.ndarray, values: np.ndarray) -> None:
        self._indices.append(columns)
        self._values.append(values)
        self._filled += len(columns)

    def end_row(self) -> None:
        self._indptr.append(self._filled)

    def matrix(self, width: int) -> sp.csr_matrix:
        values = np.concatenate(self._values) if self._values else np.zeros(0)
        indices = np.concatenate(self._indices) if self._indices else np.zeros(0, dtype=np.int64)
        return sp.csr_matrix((values, indices, self._indptr), shape=(len(self._indptr) - 1, width))


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
    # With a second encoder: the stacking weights of HEADS + SECOND_OPINION_HEADS.
    second_encoder: TextEncoder | None = None
    second_head_weights: np.ndarray | None = None
    # The calibrated confidence from which cross-fitting backs `config.selective_accuracy_target`;
    # confidences under it are held below `config.routing_threshold`. None: nothing is held.
    confidence_cut: float | None = None

    # --- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        encoder: TextEncoder,
        second_encoder: TextEncoder | None = None,
        seed: int = 0,
        config: TrainingConfig | None = None,
        cache_dir: Path | str | None = None,
    ) -> IntentModel:
        """Fit on (text, label) pairs. `cache_dir` keeps embeddings between runs (keyed by text)."""
        config = config or TrainingConfig()
        texts, labels = _validate(texts, labels)
        started = time.perf_counter()
        embeddings = _embed(encoder, texts, config, cache_dir)
        second = _embed(second_encoder, texts, config, cache_dir) if second_encoder else None
        model = cls._fit(
            texts, embeddings, labels, encoder=encoder, seed=seed, config=config,
            second_encoder=second_encoder, second_embeddings=second,
        )
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
        second_encoder: TextEncoder | None = None,
        second_embeddings: np.ndarray | None = None,
    ) -> IntentModel:
        label_set = sorted(set(labels))
        if len(label_set) < 2:
            raise ValueError("need at least two distinct labels")
        if (second_encoder is None) != (second_embeddings is None):
            raise ValueError("a second encoder needs its embeddings, and the other way round")
        index = {label: i for i, label in enumerate(label_set)}
        y = np.array([index[label] for label in labels])
        clipped = [_clip(t, config) for t in texts]

        head_scores = _out_of_fold_scores(
            clipped, embeddings, second_embeddings, y, len(label_set), config, seed
        )
        weights = _fit_stacking_weights(head_scores[: len(HEADS)], y)
        second_weights = _fit_stacking_weights(head_scores, y) if second_encoder else None
        gate_weight = float(_fit_stacking_weights(head_scores[:1], y)[0])
        fast_weight = _fit_fast_path_weight(head_scores[0], y, gate_weight, config)
        heads = _fit_heads(clipped, embeddings, second_embeddings, y, len(label_set), config, seed)
        created = datetime.now(UTC)
        metadata = {
            "encoder": encoder.name,
            "encoder_registry_name": registered_name(encoder),
            "second_encoder": second_encoder.name if second_encoder else None,
            "second_encoder_registry_name": registered_name(second_encoder) if second_encoder else None,
            "seed": seed,
            "created_at": created.isoformat(timespec="seconds"),
            "label_counts": {label: int(np.sum(y == i)) for i, label in enumerate(label_set)},
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scikit_learn": sklearn.__version__,
            },
        }
        model = cls(
            labels=label_set, config=config, head_weights=weights, fast_path_gate_weight=gate_weight,
            fast_path_weight=fast_weight, encoder=encoder, metadata=metadata, _heads=heads,
            second_encoder=second_encoder, second_head_weights=second_weights,
        )
        # The cascade as deployed, run on the out-of-fold scores: what the model would have said
        # of each training row had it not seen it.
        first, second = head_scores[2:4], head_scores[4:]
        out_of_fold = _cascade_scores(
            model, head_scores[0], head_scores[1], np.array([len(t) for t in clipped]),
            lambda rows: [s[rows] for s in first],
            (lambda rows: [s[rows] for s in second]) if second_encoder else None,
        )
        model.confidence_cut = _fit_confidence_cut(out_of_fold.probabilities, y, config)
        return model

    @property
    def version(self) -> str:
        return self.metadata.get("version", "unversioned")

    # --- inference --------------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(labels)) calibrated probabilities; columns follow `self.labels`."""
        return self._predict(texts).probabilities

    def predict(
        self, texts: Sequence[str], *, second_opinion_allowed: Sequence[bool] | None = None
    ) -> list[IntentPrediction]:
        """The ranked intents of each text. `second_opinion_allowed` (default: all) says, per text,
        whether the second encoder may read it."""
        result = self._predict(texts, second_opinion_allowed)
        k = min(self.config.top_k, len(self.labels))
        predictions = []
        rows = zip(result.probabilities, result.encoded, result.second_opinion, result.calibrated, strict=True)
        for row, encoded, second, calibrated in rows:
            best = np.argsort(-row, kind="stable")[:k]
            top = [(self.labels[i], float(row[i])) for i in best]
            predictions.append(IntentPrediction(top[0][0], top[0][1], top, bool(encoded), bool(second), float(calibrated)))
        return predictions

    def seen_in_training(self, texts: Sequence[str]) -> np.ndarray:
        """Per text: True when it is (near enough) a text the model was trained on, by its
        embedding's cosine with the kNN head's training rows. Timings and accuracy on such texts
        say little of new tickets: they mostly take the fast path."""
        if not texts:
            return np.zeros(0, dtype=bool)
        embedded = self.encoder.encode([_clip(t, self.config) for t in texts])
        known = self._heads.embedding.knn_vectors
        cosine = _unit_rows(embedded) @ _unit_rows(known).T
        return cosine.max(axis=1) >= _SAME_TEXT_COSINE

    def _predict(self, texts: Sequence[str], second_opinion_allowed: Sequence[bool] | None = None) -> _Cascaded:
        if isinstance(texts, str):
            raise TypeError("predict takes a sequence of texts, not a single str")
        if second_opinion_allowed is not None and len(second_opinion_allowed) != len(texts):
            raise ValueError("second_opinion_allowed needs one flag per text")
        texts = [_clip(t, self.config) for t in texts]
        second = self.second_encoder
        return _cascade(
            self,
            texts,
            lambda rows: self.encoder.encode([texts[i] for i in rows]),
            (lambda rows: second.encode([texts[i] for i in rows])) if second else None,
            None if second_opinion_allowed is None else np.asarray(second_opinion_allowed, dtype=bool),
        )

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
            "second_opinion_heads": list(SECOND_OPINION_HEADS) if heads.second else [],
            "second_head_weights": self.second_head_weights.tolist() if heads.second else None,
            "fast_path_gate_weight": self.fast_path_gate_weight,
            "fast_path_weight": self.fast_path_weight,
            "confidence_cut": self.confidence_cut,
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
            "nb_weight": heads.nb_weight,
            **_embedding_arrays(heads.embedding, ""),
            **(_embedding_arrays(heads.second, "second_") if heads.second else {}),
        }
        np.savez_compressed(directory / ARRAYS, **arrays)
        (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
        return directory

    @classmethod
    def load(
        cls,
        directory: Path | str,
        *,
        encoder: TextEncoder | None = None,
        second_encoder: TextEncoder | None = None,
    ) -> IntentModel:
        """Rebuild a saved model. Without `encoder` (`second_encoder`), the one it was trained
        with is loaded from the registry; either way its name must match the one recorded at
        training."""
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
        if manifest.get("format") != ARTIFACT_FORMAT or manifest.get("heads") != list(HEADS):
            raise ValueError(
                f"{directory} is not an intent model of format {ARTIFACT_FORMAT}: "
                "train it again (supportflow classifier train)"
            )
        metadata = manifest["metadata"]
        encoder = _matching_encoder(encoder, metadata["encoder"], metadata.get("encoder_registry_name") or "minilm")
        has_second = manifest["second_opinion_heads"] == list(SECOND_OPINION_HEADS)
        if has_second:
            second_encoder = _matching_encoder(
                second_encoder, metadata["second_encoder"], metadata["second_encoder_registry_name"]
            )
        with np.load(directory / ARRAYS, allow_pickle=False) as arrays:
            heads = _Heads(
                word=_vectorizer(_WORD_TFIDF, manifest["word_vocabulary"], arrays["word_idf"]),
                char=_vectorizer(_CHAR_TFIDF, manifest["char_vocabulary"], arrays["char_idf"]),
                svm_weight=arrays["svm_weight"],
                svm_bias=arrays["svm_bias"],
                nb_weight=arrays["nb_weight"],
                embedding=_embedding_heads(arrays, ""),
                second=_embedding_heads(arrays, "second_") if has_second else None,
            )
        return cls(
            labels=manifest["labels"],
            config=TrainingConfig(**manifest["config"]),
            head_weights=np.array(manifest["head_weights"]),
            fast_path_gate_weight=float(manifest["fast_path_gate_weight"]),
            fast_path_weight=float(manifest["fast_path_weight"]),
            encoder=encoder,
            metadata=metadata,
            _heads=heads,
            second_encoder=second_encoder if has_second else None,
            second_head_weights=np.array(manifest["second_head_weights"]) if has_second else None,
            confidence_cut=manifest.get("confidence_cut"),  # absent from models trained before it
        )


def _matching_encoder(given: TextEncoder | None, trained_with: str, registry_name: str) -> TextEncoder:
    encoder = given if given is not None else load_encoder(registry_name)
    if trained_with != encoder.name:
        raise ValueError(f"model was trained with encoder {trained_with!r}, got {encoder.name!r}")
    return encoder


def _embedding_arrays(heads: _EmbeddingHeads, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}lr_weight": heads.lr_weight,
        f"{prefix}lr_bias": heads.lr_bias,
        f"{prefix}knn_vectors": heads.knn_vectors,
        f"{prefix}knn_labels": heads.knn_labels,
    }


def _embedding_heads(arrays: np.lib.npyio.NpzFile, prefix: str) -> _EmbeddingHeads:
    return _EmbeddingHeads(
        lr_weight=arrays[f"{prefix}lr_weight"],
        lr_bias=arrays[f"{prefix}lr_bias"],
        knn_vectors=arrays[f"{prefix}knn_vectors"],
        knn_labels=arrays[f"{prefix}knn_labels"],
    )


# --- training from a CSV, and cross-validation ---------------------------------------------------


SPLIT_COLUMN = "split"  # in a CSV with held-out rows: which split each row belongs to


def read_labeled_csv(
    path: Path | str, text_column: str, label_column: str, *, split: str | None = None
) -> tuple[list, list]:
    """Texts and labels from a UTF-8 CSV with a header; rows with an empty label are skipped, and
    with `split`, rows whose `split` column holds another value (a tenant's held-out examples)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {text_column, label_column, *([SPLIT_COLUMN] if split else [])} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)}; has {reader.fieldnames}")
        rows = [
            (row[text_column] or "", row[label_column])
            for row in reader
            if row[label_column] and (split is None or row[SPLIT_COLUMN] == split)
        ]
    if split and not rows:
        raise ValueError(f"{path}: no labelled rows in split {split!r}")
    return [text for text, _ in rows], [label for _, label in rows]


def train_from_csv(
    path: Path | str,
    text_column: str,
    label_column: str,
    out_dir: Path | str,
    *,
    encoder: TextEncoder,
    second_encoder: TextEncoder | None = None,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    cv_folds: int = 0,
    split: str | None = None,
) -> dict:
    """Train on a CSV (with `split`, on its rows of that split only), optionally run `cv_folds`-fold
    CV first, and save the model to `out_dir`.

    Returns the training report (JSON-ready: the artifact's metadata plus where it is);
    `IntentModel.load(out_dir)` gives the model (with the same encoder from the registry).
    """
    texts, labels = read_labeled_csv(path, text_column, label_column, split=split)
    cv = None
    if cv_folds:
        cv = cross_validate(
            texts, labels, encoder=encoder, second_encoder=second_encoder, folds=cv_folds,
            seed=seed, cache_dir=cache_dir,
        )
    model = IntentModel.train(
        texts, labels, encoder=encoder, second_encoder=second_encoder, seed=seed, cache_dir=cache_dir
    )
    model.metadata["source"] = {
        "path": str(path),
        "file_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "text_column": text_column,
        "label_column": label_column,
        "split": split,
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
    second_opinion: np.ndarray  # per row: True when the second encoder was consulted too
    calibrated: np.ndarray  # per row: the top probability before it was held under the threshold
    confidence_cuts: list[float | None]  # each fold's model's cut
    folds: int
    seconds: float

    def summary(self, threshold: float = 0.7, bins: int = 15) -> dict:
        predicted = self.probabilities.argmax(axis=1)
        confidence = self.probabilities.max(axis=1)
        correct = predicted == self.y_true
        kept = confidence >= threshold
        return {
            "confidence_cuts": [None if c is None else round(c, 4) for c in self.confidence_cuts],
            "held_share": float(np.mean(self.calibrated > confidence + 1e-9)),
            "held_from_threshold_share": float(np.mean((self.calibrated >= threshold) & ~kept)),
            "ece_before_holding": expected_calibration_error(self.calibrated, correct, bins),
            "selective_accuracy_before_holding": float(correct[self.calibrated >= threshold].mean())
            if (self.calibrated >= threshold).any()
            else float("nan"),
            "coverage_before_holding": float((self.calibrated >= threshold).mean()),
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
            "second_opinion_share": float(self.second_opinion.mean()),
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
    second_encoder: TextEncoder | None = None,
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
    second = _embed(second_encoder, texts, config, cache_dir) if second_encoder else None
    label_set = sorted(set(labels))
    index = {label: i for i, label in enumerate(label_set)}
    y = np.array([index[label] for label in labels])
    probabilities = np.zeros((len(texts), len(label_set)))
    encoded = np.zeros(len(texts), dtype=bool)
    second_opinion = np.zeros(len(texts), dtype=bool)
    calibrated = np.zeros(len(texts))
    cuts = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_rows, test_rows in splitter.split(np.zeros(len(y)), y):
        model = IntentModel._fit(
            [texts[i] for i in train_rows],
            embeddings[train_rows],
            [labels[i] for i in train_rows],
            encoder=encoder,
            seed=seed,
            config=config,
            second_encoder=second_encoder,
            second_embeddings=second[train_rows] if second is not None else None,
        )
        fold_texts = [_clip(texts[i], config) for i in test_rows]
        fold = _cascade(
            model,
            fold_texts,
            lambda rows: embeddings[test_rows[rows]],
            (lambda rows: second[test_rows[rows]]) if second is not None else None,
        )
        columns = [index[label] for label in model.labels]
        probabilities[np.ix_(test_rows, columns)] = fold.probabilities
        encoded[test_rows] = fold.encoded
        second_opinion[test_rows] = fold.second_opinion
        calibrated[test_rows] = fold.calibrated
        cuts.append(model.confidence_cut)
    return CrossValidation(
        label_set, y, probabilities, encoded, second_opinion, calibrated, cuts, folds,
        time.perf_counter() - started,
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

# Embeddings this close are the same text up to case or spacing (a paraphrase stays under 0.99).
_SAME_TEXT_COSINE = 0.9995


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


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
        return encode_on_all_cores(encoder, clipped)
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


def _word_counts(word: TfidfVectorizer, texts: list[str]) -> sp.csr_matrix:
    """Raw counts of the word vectorizer's n-grams (the same analyzer and columns)."""
    counter = CountVectorizer(
        ngram_range=_WORD_TFIDF["ngram_range"], lowercase=True, vocabulary=word.vocabulary_
    )
    return counter.transform(texts)


def _fit_heads(
    texts: list[str],
    embeddings: np.ndarray,
    second_embeddings: np.ndarray | None,
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
    svm_weight, svm_bias = _full_width(svm.coef_, svm.intercept_, present, n_classes)
    nb = ComplementNB(alpha=config.nb_alpha).fit(_word_counts(word, texts), y)
    # Complement NB scores a row as counts @ feature_log_prob_.T: a linear head without bias.
    nb_weight = np.zeros((nb.feature_log_prob_.shape[1], n_classes), dtype=np.float32)
    nb_weight[:, nb.classes_] = nb.feature_log_prob_.T
    return _Heads(
        word=word,
        char=char,
        svm_weight=svm_weight,
        svm_bias=svm_bias,
        nb_weight=nb_weight,
        embedding=_fit_embedding_heads(embeddings, y, present, n_classes, config, seed),
        second=_fit_embedding_heads(second_embeddings, y, present, n_classes, config, seed)
        if second_embeddings is not None
        else None,
    )


def _fit_embedding_heads(
    embeddings: np.ndarray, y: np.ndarray, present: np.ndarray, n_classes: int, config: TrainingConfig, seed: int
) -> _EmbeddingHeads:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(C=config.lr_c, max_iter=1000, random_state=seed).fit(embeddings, y)
    lr_weight, lr_bias = _full_width(lr.coef_, lr.intercept_, present, n_classes)
    return _EmbeddingHeads(
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
    heads: _Heads,
    texts: list[str],
    embeddings: np.ndarray,
    second_embeddings: np.ndarray | None,
    n_classes: int,
    config: TrainingConfig,
) -> list[np.ndarray]:
    """Each head's (rows, n_classes) scores, in the order of HEADS (+ SECOND_OPINION_HEADS)."""
    scores = [*_ngram_scores(heads, texts), *_embedding_scores(heads.embedding, embeddings, n_classes, config)]
    if second_embeddings is not None:
        scores += _embedding_scores(heads.second, second_embeddings, n_classes, config)
    return scores


def _ngram_scores(heads: _Heads, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The SVM's margins on TF-IDF and Complement NB's scores on word counts."""
    tfidf, counts = heads.features.transform(texts)
    # float32 features: a float64 matrix would make scipy copy the whole weight matrix per call.
    svm = np.asarray(tfidf.astype(np.float32) @ heads.svm_weight) + heads.svm_bias
    nb = np.asarray(counts.astype(np.float32) @ heads.nb_weight)
    return svm, nb


def _embedding_scores(
    heads: _EmbeddingHeads, embeddings: np.ndarray, n_classes: int, config: TrainingConfig
) -> list[np.ndarray]:
    lr = embeddings @ heads.lr_weight + heads.lr_bias
    return [lr, _knn_log_votes(heads, embeddings, n_classes, config)]


@dataclass(frozen=True)
class _Cascaded:
    probabilities: np.ndarray  # (rows, classes)
    encoded: np.ndarray  # per row: embedded by the first encoder (not answered by the fast path)
    second_opinion: np.ndarray  # per row: embedded by the second encoder too
    calibrated: np.ndarray  # per row: the top probability before `_hold_unbacked`


def _cascade(
    model: IntentModel,
    texts: list[str],
    embed: Callable[[np.ndarray], np.ndarray],
    embed_second: Callable[[np.ndarray], np.ndarray] | None,
    second_opinion_allowed: np.ndarray | None = None,
) -> _Cascaded:
    """Probabilities for `texts`, and which rows needed which encoder (see `_cascade_scores`);
    `embed(row_indices)` and `embed_second(row_indices)` embed the rows that need it. Confidences
    below the model's cut are then held under the routing threshold (`_hold_unbacked`)."""
    heads, config, n_classes = model._heads, model.config, len(model.labels)
    if not texts:
        none = np.zeros(0, dtype=bool)
        return _Cascaded(np.empty((0, n_classes)), none, none, np.zeros(0))
    svm, nb = _ngram_scores(heads, texts)
    result = _cascade_scores(
        model,
        svm,
        nb,
        np.array([len(t) for t in texts]),
        lambda rows: _embedding_scores(heads.embedding, embed(rows), n_classes, config),
        (lambda rows: _embedding_scores(heads.second, embed_second(rows), n_classes, config))
        if embed_second is not None and heads.second is not None
        else None,
        second_opinion_allowed,
    )
    _hold_unbacked(result.probabilities, model.confidence_cut, config)
    return result


def _cascade_scores(
    model: IntentModel,
    svm: np.ndarray,
    nb: np.ndarray,
    lengths: np.ndarray,
    first_scores: Callable[[np.ndarray], list[np.ndarray]],
    second_scores: Callable[[np.ndarray], list[np.ndarray]] | None,
    second_opinion_allowed: np.ndarray | None = None,
) -> _Cascaded:
    """The cascade on the n-gram heads' scores of every row.

    Every row first gets the n-gram head's own calibrated probabilities; rows below the fast-path
    confidence get the stack of HEADS instead (`first_scores(row_indices)`: the embedding heads'
    scores). With a second stage, the embedded rows that stack leaves below `second_opinion_below`
    (and no longer than `second_opinion_max_chars`, and allowed by `second_opinion_allowed` when
    given) get the stack of all heads (`second_scores(row_indices)`).
    """
    config = model.config
    probabilities = softmax(model.fast_path_weight * svm, axis=1)
    encoded = ~_fast_path_taken(svm, model.fast_path_gate_weight, config)
    second_opinion = np.zeros(len(svm), dtype=bool)
    rows = np.flatnonzero(encoded)
    if rows.size:
        scores = [svm[rows], nb[rows], *first_scores(rows)]
        probabilities[rows] = softmax(_combine(scores, model.head_weights), axis=1)
        if second_scores is not None and model.second_head_weights is not None:
            eligible = lengths[rows] <= config.second_opinion_max_chars
            if second_opinion_allowed is not None:
                eligible &= second_opinion_allowed[rows]
            unsure = (probabilities[rows].max(axis=1) < config.second_opinion_below) & eligible
            if unsure.any():
                scores = [s[unsure] for s in scores] + second_scores(rows[unsure])
                probabilities[rows[unsure]] = softmax(_combine(scores, model.second_head_weights), axis=1)
                second_opinion[rows[unsure]] = True
    return _Cascaded(probabilities, encoded, second_opinion, probabilities.max(axis=1))


# A held confidence stays this far under the routing threshold, so no rounding lifts it to it.
_HELD_MARGIN = 1e-3


def _fit_confidence_cut(probabilities: np.ndarray, y: np.ndarray, config: TrainingConfig) -> float | None:
    """The lowest calibrated confidence from which the out-of-fold predictions at or above it were
    right at least `selective_accuracy_target` of the time, by the lower end of a one-sided Wilson
    interval at `selective_accuracy_confidence` (so a small training set cannot back the target by
    luck, and a large one keeps a margin for what its out-of-fold rows did not see).

    Calibrated confidence alone cannot meet such a target at the routing threshold: the tickets
    at or above 0.7 are right about as often as their mean confidence says, and on Banking77 that
    is ~97%. The cut (~0.9 there) is where the target is met, and `_hold_unbacked` moves the
    confidences between the threshold and the cut under the threshold. None when the threshold
    already backs the target; a cut above 1 when no coverage does.
    """
    if config.selective_accuracy_target <= 0:
        return None
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    kept = np.arange(1, len(ranked) + 1)
    right = np.cumsum(correct[order])
    # A cut keeps every row at its confidence: only the last row of a run of ties is a coverage.
    whole = np.r_[ranked[1:] < ranked[:-1], True]
    z = float(norm.ppf(config.selective_accuracy_confidence))
    meets = _wilson_lower(right, kept, z) >= config.selective_accuracy_target
    at_threshold = int(np.sum(ranked >= config.routing_threshold))
    if at_threshold and meets[at_threshold - 1]:
        return None
    backed = np.flatnonzero(whole & meets)
    if not backed.size:
        return float(np.nextafter(1.0, 2.0))
    cut = float(ranked[backed.max()])
    return cut if cut > config.routing_threshold else None


def _wilson_lower(successes: np.ndarray, trials: np.ndarray, z: float) -> np.ndarray:
    share = successes / trials
    centre = share + z * z / (2 * trials)
    spread = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


def _hold_unbacked(probabilities: np.ndarray, cut: float | None, config: TrainingConfig) -> None:
    """In place: a row whose top probability lies in [held_band_floor, cut) gets it moved, in
    order, into [held_band_floor, routing_threshold), and its other classes scaled to keep the
    sum 1 (the top class stays on top: it keeps more than half). Rows at or above the cut, and
    below the band, keep their calibrated probabilities."""
    if cut is None:
        return
    floor, ceiling = config.held_band_floor, config.routing_threshold - _HELD_MARGIN
    top = probabilities.max(axis=1)
    held = np.flatnonzero((top >= floor) & (top < cut))
    if not held.size:
        return
    rows = np.arange(held.size)
    best = probabilities[held].argmax(axis=1)
    new = floor + (top[held] - floor) * (ceiling - floor) / (cut - floor)
    others = probabilities[held]
    others[rows, best] = 0.0
    mass = others.sum(axis=1)
    none = mass <= 0.0  # a saturated softmax: share what is freed evenly
    others[none] = 1.0
    others[none, best[none]] = 0.0
    mass[none] = others.shape[1] - 1
    others *= ((1.0 - new) / mass)[:, None]
    others[rows, best] = new
    probabilities[held] = others


def _knn_log_votes(
    heads: _EmbeddingHeads, embeddings: np.ndarray, n_classes: int, config: TrainingConfig
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
    second_embeddings: np.ndarray | None,
    y: np.ndarray,
    n_classes: int,
    config: TrainingConfig,
    seed: int,
) -> list[np.ndarray]:
    """Every head's scores on every training row, each from heads fitted without that row."""
    n_heads = len(HEADS) + (len(SECOND_OPINION_HEADS) if second_embeddings is not None else 0)
    scores = [np.zeros((len(y), n_classes)) for _ in range(n_heads)]
    folds = min(config.calibration_folds, int(np.bincount(y).max()))
    if folds < 2:
        raise ValueError("need at least two examples of some label to calibrate")
    with warnings.catch_warnings():
        # Labels rarer than the fold count are fine: _full_width handles absent classes.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y))
    second = second_embeddings
    for fit_rows, held_rows in splits:
        heads = _fit_heads(
            [texts[i] for i in fit_rows], embeddings[fit_rows],
            second[fit_rows] if second is not None else None, y[fit_rows], n_classes, config, seed,
        )
        held_texts = [texts[i] for i in held_rows]
        held = _head_scores(
            heads, held_texts, embeddings[held_rows], second[held_rows] if second is not None else None,
            n_classes, config,
        )
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
