"""Stand-ins for the intent model, for tests where its accuracy is not what is tested."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    top_k: list[tuple[str, float]]
    encoded: bool = True
    second_opinion: bool = False
    calibrated: float | None = None


class FixedModel:
    """Predicts the same ranked intents for every text."""

    def __init__(self, top: list[tuple[str, float]], version: str = "stub-fixed", calibrated: float | None = None) -> None:
        self.top = top
        self.version = version
        self.calibrated = calibrated  # set: the top confidence was held down from this

    def predict(self, texts: list[str], *, second_opinion_allowed: list[bool] | None = None) -> list[Prediction]:
        return [Prediction(self.top[0][0], self.top[0][1], list(self.top), calibrated=self.calibrated) for _ in texts]
