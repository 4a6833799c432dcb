"""The learner's configuration (`learner.yaml` shipped in the package, or a file given by path)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

DEFAULT_CONFIG = "learner.yaml"

CSAT_LATENCIES = {
    "at_resolution": ev.CSAT_LATENCY_AT_RESOLUTION,
    "delayed": ev.CSAT_LATENCY_DELAYED,
    "model_scored": ev.CSAT_LATENCY_MODEL_SCORED,
}
LATENCY_NAMES = {value: name for name, value in CSAT_LATENCIES.items()}
ARCHETYPES = {
    tk.Archetype.Name(value).removeprefix("ARCHETYPE_").lower(): value for value in tk.Archetype.values()
}
ARCHETYPE_NAMES = {value: name for name, value in ARCHETYPES.items()}


class ConfigError(ValueError):
    """The learner configuration is malformed; raised at start-up."""


def archetype_name(archetype: int) -> str:
    """`ARCHETYPE_FAQ_BOUNDED` -> `faq_bounded`."""
    return ARCHETYPE_NAMES.get(archetype, "unspecified")


def parse_archetype(text: str) -> int:
    """Accepts `faq_bounded`, `FAQ_BOUNDED` or `ARCHETYPE_FAQ_BOUNDED`."""
    name = text.strip().lower().removeprefix("archetype_")
    if name not in ARCHETYPES:
        raise ValueError(f"unknown archetype {text!r}; expected one of {', '.join(ARCHETYPES)}")
    return ARCHETYPES[name]


@dataclass(frozen=True)
class CsatBaselines:
    default: Mapping[int, float]  # latency -> points
    by_archetype: Mapping[str, Mapping[int, float]]

    def baseline(self, archetype: str, latency: int) -> float | None:
        return self.by_archetype.get(archetype, {}).get(latency, self.default.get(latency))


@dataclass(frozen=True)
class KnowledgeConfig:
    proposal_min_tickets: int = 3  # unbacked resolutions of one topic that make a KB proposal


@dataclass(frozen=True)
class GuardrailConfig:
    latency: int = ev.CSAT_LATENCY_AT_RESOLUTION
    window: int = 200
    min_samples: int = 20
    alert_slip_points: float = 2.0
    alert_clear_slip_points: float = 1.0
    override_slip_points: float = 4.0


@dataclass(frozen=True)
class LearnerConfig:
    baselines: CsatBaselines
    satisfied_score: float
    guardrails: GuardrailConfig
    max_tickets: int
    max_pending_feedback: int
    knowledge: KnowledgeConfig

    @staticmethod
    def source_text(path: Path | None = None) -> str:
        """The configuration file's text: `path`, or the one shipped beside the learner."""
        if path is None:
            return resources.files(__package__).joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")
        return Path(path).read_text(encoding="utf-8")

    @classmethod
    def load(cls, path: Path | None = None) -> "LearnerConfig":
        data = yaml.safe_load(cls.source_text(path)) or {}
        baseline = data.get("csat_baseline") or {}
        guard = data.get("guardrails") or {}
        try:
            config = cls(
                baselines=CsatBaselines(
                    default=_latency_map(baseline.get("default") or {}),
                    by_archetype={
                        _archetype_key(name): _latency_map(values)
                        for name, values in (baseline.get("archetypes") or {}).items()
                    },
                ),
                satisfied_score=float(data.get("satisfied_score", 75)),
                guardrails=GuardrailConfig(
                    latency=_latency(str(guard.get("latency", "at_resolution"))),
                    window=int(guard.get("window", 200)),
                    min_samples=int(guard.get("min_samples", 20)),
                    alert_slip_points=float(guard.get("alert_slip_points", 2)),
                    alert_clear_slip_points=float(guard.get("alert_clear_slip_points", 1)),
                    override_slip_points=float(guard.get("override_slip_points", 4)),
                ),
                max_tickets=int(data.get("max_tickets", 500_000)),
                max_pending_feedback=int(data.get("max_pending_feedback", 50_000)),
                knowledge=KnowledgeConfig(
                    proposal_min_tickets=int((data.get("knowledge") or {}).get("proposal_min_tickets", 3)),
                ),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"learner config: {exc}") from exc
        g = config.guardrails
        if not g.alert_clear_slip_points <= g.alert_slip_points <= g.override_slip_points or g.alert_slip_points <= 0:
            raise ConfigError("guardrails need alert_clear_slip_points <= alert_slip_points <= override_slip_points, alert > 0")
        if config.knowledge.proposal_min_tickets < 1:
            raise ConfigError("knowledge.proposal_min_tickets must be at least 1")
        if not 0 < g.min_samples <= g.window:
            raise ConfigError("guardrails need 0 < min_samples <= window")
        if config.baselines.baseline("unspecified", g.latency) is None:
            raise ConfigError(f"no default CSAT baseline for the guardrail latency {LATENCY_NAMES[g.latency]}")
        return config


def _latency(name: str) -> int:
    if name not in CSAT_LATENCIES:
        raise ConfigError(f"unknown CSAT latency {name!r}; expected one of {', '.join(CSAT_LATENCIES)}")
    return CSAT_LATENCIES[name]


def _latency_map(values: Mapping[str, object]) -> dict[int, float]:
    return {_latency(str(name)): float(points) for name, points in values.items()}  # type: ignore[arg-type]


def _archetype_key(name: str) -> str:
    return archetype_name(parse_archetype(name))
