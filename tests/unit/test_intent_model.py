"""The intent model on a small synthetic CSV: trains in seconds, so these run in every CI pass.

Accuracy on real data is measured by benchmarks/classifier_eval.py, not here.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json

import numpy as np
import pytest
from scipy.special import softmax

from services.classifier import intent_model
from services.classifier.intent_model import (
    IntentModel,
    IntentPrediction,
    TrainingConfig,
    cross_validate,
    expected_calibration_error,
    read_labeled_csv,
    train_from_csv,
)
from encoders.embedding import TextEncoder, load_encoder

# Label strings copied from Banking77's quirks: capitals and a trailing "?" must survive as-is.
TEMPLATES = {
    "card_arrival": [
        "where is my new card",
        "my card has not arrived yet",
        "when will my card come",
    ],
    "Refund_not_showing_up": [
        "my refund is not showing",
        "refund still missing",
        "no refund in my account",
    ],
    "reverted_card_payment?": [
        "my card payment was reverted",
        "payment got reversed",
        "why was my payment returned",
    ],
    "change_pin": ["how do I change my PIN", "I want a new PIN", "reset the pin on my card"],
}
PREFIXES = ["", "hi, ", "hello there, ", "please help: ", "urgent - "]
SUFFIXES = ["", "?", " thanks", " asap!", " (sent from my phone)"]


def synthetic_rows() -> list[tuple[str, str]]:
    rows = []
    for label, phrases in TEMPLATES.items():
        for phrase, prefix, suffix in itertools.product(phrases, PREFIXES, SUFFIXES[:3]):
            rows.append((prefix + phrase + suffix, label))
    return rows


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tickets.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["body", "intent", "ignored"])
        for text, label in synthetic_rows():
            writer.writerow([text, label, "x"])
    return path


@pytest.fixture(scope="module")
def trained(csv_path, encoder, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("model")
    cache_dir = tmp_path_factory.mktemp("cache")
    report = train_from_csv(
        csv_path, "body", "intent", out_dir, encoder=encoder, cache_dir=cache_dir
    )
    json.dumps(report)  # the CLI prints it
    assert report["out_dir"] == str(out_dir)
    return IntentModel.load(out_dir, encoder=encoder), out_dir


def test_labels_come_from_the_csv(trained):
    model, _ = trained
    assert model.labels == sorted(TEMPLATES)


def test_predicts_the_training_intents(trained):
    model, _ = trained
    predictions = model.predict(["where is my new card?", "I want a new PIN please"])
    assert [p.intent for p in predictions] == ["card_arrival", "change_pin"]
    assert all(isinstance(p, IntentPrediction) for p in predictions)


def test_probabilities_sum_to_one_and_top_k_is_sorted(trained):
    model, _ = trained
    texts = ["refund missing", "card?", "pin"]
    probabilities = model.predict_proba(texts)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    for prediction, row in zip(model.predict(texts), probabilities, strict=True):
        scores = [score for _, score in prediction.top_k]
        assert scores == sorted(scores, reverse=True)
        assert len(prediction.top_k) == model.config.top_k
        assert prediction.intent == prediction.top_k[0][0]
        assert prediction.confidence == pytest.approx(row.max())


def test_save_load_round_trip_is_identical(trained, encoder):
    model, out_dir = trained
    loaded = IntentModel.load(out_dir, encoder=encoder)
    texts = ["my payment got reversed", "", "hello"]
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.predict(texts) == model.predict(texts)
    assert loaded.labels == model.labels
    assert loaded.version == model.version
    assert loaded.confidence_cut == model.confidence_cut
    assert IntentModel.load(out_dir).encoder is encoder  # the encoder recorded at training


def test_artifact_is_json_and_npz_with_training_metadata(trained, csv_path):
    _, out_dir = trained
    assert sorted(p.name for p in out_dir.iterdir()) == ["arrays.npz", "model.json"]
    manifest = json.loads((out_dir / "model.json").read_text("utf-8"))
    metadata = manifest["metadata"]
    assert metadata["rows"] == len(synthetic_rows())
    assert metadata["encoder"] == load_encoder("minilm").name
    assert len(metadata["data_sha256"]) == 64
    assert metadata["source"]["label_column"] == "intent"
    assert metadata["created_at"].endswith("+00:00")
    assert metadata["version"].endswith(metadata["data_sha256"][:8])
    with np.load(out_dir / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["knn_vectors"].shape[0] == len(synthetic_rows())


class CountingEncoder(TextEncoder):
    """The real encoder, recording which texts it was asked to embed."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.seen: list[str] = []

    name = property(lambda self: self.inner.name)
    dim = property(lambda self: self.inner.dim)

    def encode(self, texts, batch_size=8):
        self.seen.extend(texts)
        return self.inner.encode(texts, batch_size)


def test_fast_path_answers_sure_tickets_without_the_encoder(trained, encoder):
    model, _ = trained
    counting = CountingEncoder(encoder)
    cascade = dataclasses.replace(model, encoder=counting)
    full = dataclasses.replace(
        model, config=dataclasses.replace(model.config, fast_path_confidence=None)
    )
    texts = ["where is my new card?", "my refund is not showing thanks", "card?", "pin", "hello"]
    predictions = cascade.predict(texts)
    threshold = model.config.fast_path_confidence
    assert counting.seen == [t for t, p in zip(texts, predictions) if p.encoded]
    # The sample has both kinds: sure n-gram matches and vague texts.
    assert {p.encoded for p in predictions} == {True, False}
    full_probabilities = full.predict_proba(texts)
    ngram_scores, _ = intent_model._ngram_scores(model._heads, texts)
    for prediction, full_row, ngram_row in zip(predictions, full_probabilities, ngram_scores, strict=True):
        if prediction.encoded:  # the full stack's answer, unchanged
            assert prediction.confidence == pytest.approx(full_row.max())
        else:  # the n-gram head's answer, which its gate probability let through
            assert prediction.intent == model.labels[int(np.argmax(ngram_row))]
            assert softmax(model.fast_path_gate_weight * ngram_row).max() >= threshold
            assert 0.0 < prediction.confidence <= 1.0
    assert all(p.encoded for p in full.predict(texts))


def test_load_refuses_another_encoder(trained):
    _, out_dir = trained

    class OtherEncoder(TextEncoder):
        name = "other"
        dim = 384

        def encode(self, texts, batch_size=64):
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="encoder"):
        IntentModel.load(out_dir, encoder=OtherEncoder())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "card " * 20_000,
        "我的卡还没到，请问什么时候能收到？",
        "Моя карта не пришла",
        "بطاقتي لم تصل",
        "🙂🙂🙂",
        "\x00\x01 control \ufffd chars",
    ],
)
def test_odd_input_does_not_crash(trained, text):
    model, _ = trained
    (prediction,) = model.predict([text])
    assert prediction.intent in model.labels
    assert 0.0 < prediction.confidence <= 1.0


def test_empty_batch_and_wrong_types(trained):
    model, _ = trained
    assert model.predict([]) == []
    with pytest.raises(TypeError):
        model.predict("a single string")


def test_training_input_is_validated(encoder):
    with pytest.raises(ValueError, match="labels"):
        IntentModel.train(["a", "b"], ["x"], encoder=encoder)
    with pytest.raises(ValueError, match="two distinct labels"):
        IntentModel.train(["a", "b"], ["x", "x"], encoder=encoder)


def test_two_labels_and_a_rare_label_train(encoder):
    rows = synthetic_rows()
    texts = [t for t, label in rows if label in ("change_pin", "card_arrival")] + ["lost my phone"]
    labels = [label for t, label in rows if label in ("change_pin", "card_arrival")] + [
        "lost_phone"
    ]
    model = IntentModel.train(texts, labels, encoder=encoder, config=TrainingConfig(top_k=5))
    (prediction,) = model.predict(["change my pin"])
    assert prediction.intent == "change_pin"
    assert len(prediction.top_k) == 3  # capped by the number of labels
    two = IntentModel.train(texts[:-1], labels[:-1], encoder=encoder)
    assert two.predict(["where is my new card"])[0].intent == "card_arrival"


def test_cross_validation_reports_sane_metrics(csv_path, encoder):
    texts, labels = read_labeled_csv(csv_path, "body", "intent")
    summary = cross_validate(texts, labels, encoder=encoder, folds=3).summary()
    assert summary["rows"] == len(texts)
    assert summary["accuracy"] > 0.8
    for key in ("macro_f1", "ece", "coverage", "fast_path_share"):
        assert 0.0 <= summary[key] <= 1.0


def test_expected_calibration_error():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False])
    # bin of 0.95: accuracy 1.0 -> gap 0.05; bin of 0.55: accuracy 0.5 -> gap 0.05
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.05)


def test_inference_features_match_scikit_learn(trained):
    model, _ = trained
    heads = model._heads
    texts = ["where is my new card?", "", "Card card CARD!!", "ünïcödé pin", "x" * 3000, "🙂 refund"]
    tfidf, counts = heads.features.transform(texts)
    expected = intent_model._tfidf(heads.word, heads.char, texts).toarray()
    np.testing.assert_allclose(tfidf.toarray(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(counts.toarray(), intent_model._word_counts(heads.word, texts).toarray())


# --- the second opinion ------------------------------------------------------------------------


class MarkedEncoder(CountingEncoder):
    """A second encoder: the real one under another name, recording what it embeds."""

    name = property(lambda self: "second:" + self.inner.name)


@pytest.fixture(scope="module")
def with_second(encoder, tmp_path_factory):
    rows = synthetic_rows()
    second = MarkedEncoder(encoder)
    model = IntentModel.train([t for t, _ in rows], [label for _, label in rows], encoder=encoder,
                              second_encoder=second)
    return model, second


def test_second_opinion_reads_only_unsure_short_embedded_tickets(with_second, encoder):
    model, second = with_second
    assert model.second_head_weights is not None and len(model.second_head_weights) == 6
    sure_of_all = dataclasses.replace(model, config=dataclasses.replace(model.config, second_opinion_below=1.01))
    texts = ["where is my new card?", "card?", "pin", "hello", "my thing is broken", "card? " * 60]
    first_only = dataclasses.replace(model, second_encoder=None).predict(texts)
    second.seen.clear()
    predictions = sure_of_all.predict(texts)
    expected = [t for t, p in zip(texts, first_only) if p.encoded and len(t) <= model.config.second_opinion_max_chars]
    assert expected and len(expected) < len(texts)  # the sample has fast-path and long tickets
    assert second.seen == expected
    assert [p.second_opinion for p in predictions] == [t in expected for t in texts]
    for before, after in zip(first_only, predictions, strict=True):
        if not after.second_opinion:  # untouched by the second stage
            assert after == before
    assert all(0.0 < p.confidence <= 1.0 for p in predictions)

    # At the default threshold only the rows the first stack is unsure of go, by its calibrated
    # confidence (before any is held under the routing threshold).
    calibrated = dataclasses.replace(model, second_encoder=None, confidence_cut=None).predict(texts)
    second.seen.clear()
    default = model.predict(texts)
    assert second.seen == [t for t, p in zip(texts, calibrated)
                           if t in expected and p.confidence < model.config.second_opinion_below]
    assert [p.second_opinion for p in default] == [t in second.seen for t in texts]


def test_second_opinion_reads_only_the_texts_allowed(with_second):
    model, second = with_second
    sure_of_all = dataclasses.replace(model, config=dataclasses.replace(model.config, second_opinion_below=1.01))
    texts = ["where is my new card?", "card?", "pin", "hello", "my thing is broken", "my card was declined"]
    second.seen.clear()
    everyone = sure_of_all.predict(texts)
    asked = list(second.seen)
    assert len(asked) >= 2
    second.seen.clear()
    allowed = [t != asked[0] for t in texts]
    predictions = sure_of_all.predict(texts, second_opinion_allowed=allowed)
    assert second.seen == asked[1:]
    denied = texts.index(asked[0])
    assert not predictions[denied].second_opinion
    assert predictions[denied] == dataclasses.replace(model, second_encoder=None).predict(texts)[denied]
    assert [p for i, p in enumerate(predictions) if i != denied] == [p for i, p in enumerate(everyone) if i != denied]
    with pytest.raises(ValueError, match="one flag per text"):
        model.predict(texts, second_opinion_allowed=[True])


def test_second_opinion_round_trips_and_refuses_another_second_encoder(with_second, encoder, tmp_path):
    model, second = with_second
    model.save(tmp_path)
    manifest = json.loads((tmp_path / "model.json").read_text("utf-8"))
    assert manifest["metadata"]["second_encoder"] == second.name
    assert manifest["second_opinion_heads"] == ["second_lr", "second_knn"]
    loaded = IntentModel.load(tmp_path, encoder=encoder, second_encoder=second)
    texts = ["card?", "pin", "my refund", "hello"]
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    with pytest.raises(ValueError, match="encoder"):
        IntentModel.load(tmp_path, encoder=encoder, second_encoder=encoder)


def test_cross_validation_counts_the_second_opinions(csv_path, encoder):
    texts, labels = read_labeled_csv(csv_path, "body", "intent")
    config = TrainingConfig(second_opinion_below=1.01)  # every embedded short ticket
    result = cross_validate(texts, labels, encoder=encoder, second_encoder=MarkedEncoder(encoder), folds=3,
                            config=config)
    summary = result.summary()
    assert np.array_equal(result.second_opinion, result.encoded)  # all synthetic rows are short
    assert summary["second_opinion_share"] == pytest.approx(1.0 - summary["fast_path_share"])
    assert summary["accuracy"] > 0.8


# --- confidences the model cannot back are held under the routing threshold ----------------------


def ranked_rows(right_then_wrong: list[tuple[float, bool]], n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Probability rows with the given top confidence (class 0 on top), and labels that make the
    top class right or wrong."""
    probabilities = np.array([[c] + [(1 - c) / (n_classes - 1)] * (n_classes - 1) for c, _ in right_then_wrong])
    y = np.array([0 if right else 1 for _, right in right_then_wrong])
    return probabilities, y


def test_the_cut_is_where_the_lower_bound_of_selective_accuracy_meets_the_target():
    config = TrainingConfig()
    # 600 rows at 0.99, all right; then 300 at 0.8, one in five wrong.
    rows = [(0.99, True)] * 600 + [(0.8, i % 5 != 0) for i in range(300)]
    probabilities, y = ranked_rows(rows)
    assert intent_model._fit_confidence_cut(probabilities, y, config) == pytest.approx(0.99)
    # The same shares from 30 rows cannot back 98% with 95% confidence: nothing can pass.
    small, y_small = ranked_rows([(0.99, True)] * 30 + [(0.8, i % 5 != 0) for i in range(15)])
    assert intent_model._fit_confidence_cut(small, y_small, config) > 1.0
    # When the tickets at the threshold already back the target, nothing is held.
    sure, y_sure = ranked_rows([(0.99, True)] * 2000 + [(0.75, True)] * 200 + [(0.5, False)] * 50)
    assert intent_model._fit_confidence_cut(sure, y_sure, config) is None
    # Ties are kept together: a cut never splits the rows of one confidence.
    tied, y_tied = ranked_rows([(0.99, True)] * 600 + [(0.95, i % 2 == 0) for i in range(40)])
    assert intent_model._fit_confidence_cut(tied, y_tied, config) == pytest.approx(0.99)
    assert intent_model._fit_confidence_cut(
        probabilities, y, dataclasses.replace(config, selective_accuracy_target=0.0)
    ) is None


def test_held_confidences_move_under_the_threshold_in_order_and_rows_still_sum_to_one():
    config = TrainingConfig()
    rows = np.array([
        [0.99, 0.005, 0.005],  # at or above the cut: untouched
        [0.80, 0.15, 0.05],
        [0.72, 0.20, 0.08],
        [0.65, 0.30, 0.05],
        [0.55, 0.40, 0.05],  # under the band: untouched
    ])
    held = rows.copy()
    intent_model._hold_unbacked(held, 0.92, config)
    np.testing.assert_allclose(held.sum(axis=1), 1.0)
    np.testing.assert_array_equal(held[[0, 4]], rows[[0, 4]])
    top = held.max(axis=1)
    assert np.all(held.argmax(axis=1) == rows.argmax(axis=1))
    assert config.held_band_floor <= top[3] < top[2] < top[1] < config.routing_threshold
    np.testing.assert_allclose(held[1, 1] / held[1, 2], 3.0)  # the others keep their ratios
    unheld = rows.copy()
    intent_model._hold_unbacked(unheld, None, config)
    np.testing.assert_array_equal(unheld, rows)
    # A model that backs nothing (cut above 1) holds even a saturated row, sharing what it frees.
    saturated = np.array([[0.0, 1.0, 0.0]])
    intent_model._hold_unbacked(saturated, float(np.nextafter(1.0, 2.0)), config)
    assert saturated[0, 1] < config.routing_threshold and saturated[0, 0] == saturated[0, 2] > 0
    np.testing.assert_allclose(saturated.sum(), 1.0)


def test_a_trained_model_holds_what_cross_fitting_cannot_back(trained, encoder):
    model, _ = trained
    texts = ["where is my new card?", "my thing is broken", "hello", "refund card pin reverted", "pin"]
    calibrated = dataclasses.replace(model, confidence_cut=None).predict(texts)
    strict = dataclasses.replace(model, confidence_cut=0.999)
    for before, after in zip(calibrated, strict.predict(texts), strict=True):
        assert after.intent == before.intent
        if model.config.held_band_floor <= before.confidence < 0.999:
            assert after.confidence < model.config.routing_threshold
        else:
            assert after.confidence == pytest.approx(before.confidence)
    assert any(p.confidence >= 0.999 for p in calibrated) or any(
        model.config.held_band_floor <= p.confidence < 0.999 for p in calibrated
    )


def test_texts_seen_in_training_are_recognised(trained):
    model, _ = trained
    seen_text = synthetic_rows()[7][0]
    seen = model.seen_in_training([seen_text, seen_text.upper(), "could you tell me where my new card has got to", ""])
    assert seen.tolist()[:3] == [True, True, False]
    assert model.seen_in_training([]).shape == (0,)


@pytest.mark.parametrize(
    "changes",
    [{"held_band_floor": 0.4}, {"held_band_floor": 0.7}, {"routing_threshold": 1.2}, {"selective_accuracy_target": 1.0},
     {"selective_accuracy_confidence": 1.0}],
)
def test_inconsistent_holding_settings_are_refused(changes):
    with pytest.raises(ValueError):
        TrainingConfig(**changes)
