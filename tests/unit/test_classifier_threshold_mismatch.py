"""The classifier warns at start when its routing policy and its intent model disagree on the
threshold the model holds unbacked confidences under."""

from __future__ import annotations

from types import SimpleNamespace

from services.classifier.intent_model import TrainingConfig
from services.classifier.main import threshold_mismatch


def model(cut: float | None, routing_threshold: float = 0.7) -> SimpleNamespace:
    return SimpleNamespace(confidence_cut=cut, config=TrainingConfig(routing_threshold=routing_threshold))


def test_a_policy_at_the_models_threshold_is_fine() -> None:
    assert threshold_mismatch(model(0.91), 0.7) is None
    assert threshold_mismatch(model(None), 0.8) is None  # a model that holds nothing promises nothing


def test_another_threshold_is_named_with_the_fix() -> None:
    warning = threshold_mismatch(model(0.91), 0.8)
    assert warning is not None
    assert "0.80" in warning and "under 0.70" in warning and "98%" in warning
    assert "TrainingConfig.routing_threshold=0.80" in warning
