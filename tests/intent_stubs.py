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


class FixedModel:
    """Predicts the same ranked intents for every text."""

    def __init__(self, top: list[tuple[str, float]], version: str = "stub-fixed") -> None:
        self.top = top
        self.version = version

    def predict(self, texts: list[str], *, second_opinion_allowed: list[bool] | None = None) -> list[Prediction]:
        return [Prediction(self.top[0][0], self.top[0][1], list(self.top)) for _ in texts]
