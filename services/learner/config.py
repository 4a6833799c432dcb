"""The learner's configuration (`learner.yaml` shipped in the package, or a file given by path)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
class KnowledgeConfig:
    proposal_min_tickets: int = 3  # unbacked resolutions of one topic that make a KB proposal


QA_CLASSES = ("refund_pricing", "warranty_service_level", "process_contact", "capability_overreach")
QA_NONE = "none"  # a QA verdict that found no hallucinated policy


@dataclass(frozen=True)
class GuardrailConfig:
    latencies: tuple[int, ...] = (ev.CSAT_LATENCY_AT_RESOLUTION, ev.CSAT_LATENCY_DELAYED)
    window: int = 200
    min_samples: int = 20
    rolling_days: float = 28.0
    alert_slip_points: float = 2.0
    alert_clear_slip_points: float = 1.0
    override_slip_points: float = 4.0
    p0_classes: tuple[str, ...] = ("refund_pricing", "warranty_service_level")
    context_loss_max_rate: float = 0.05
    context_loss_window: int = 200
    context_loss_min_handoffs: int = 20


@dataclass(frozen=True)
class PanelConfig:
    rolling_days: float = 28.0  # the CSAT figures and the deflection gate: the latest 4 weeks
    flat_tolerance_points: float = 1.0  # CSAT this far under the baseline still counts as flat


@dataclass(frozen=True)
class QaSamplingConfig:
    rate: float = 0.02
    seed: str = "supportflow-qa"


@dataclass(frozen=True)
class LearnerConfig:
    guardrails: GuardrailConfig
    panel: PanelConfig
    qa_sampling: QaSamplingConfig
    max_tickets: int
    max_pending_feedback: int
    max_customers: int
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
        guard = data.get("guardrails") or {}
        panel = data.get("panel") or {}
        qa = data.get("qa_sampling") or {}
        try:
            config = cls(
                guardrails=GuardrailConfig(
                    latencies=tuple(_latency(str(name)) for name in guard.get("latencies", ["at_resolution", "delayed"])),
                    window=int(guard.get("window", 200)),
                    min_samples=int(guard.get("min_samples", 20)),
                    rolling_days=float(guard.get("rolling_days", 28)),
                    alert_slip_points=float(guard.get("alert_slip_points", 2)),
                    alert_clear_slip_points=float(guard.get("alert_clear_slip_points", 1)),
                    override_slip_points=float(guard.get("override_slip_points", 4)),
                    p0_classes=tuple(str(c) for c in guard.get("p0_classes", ["refund_pricing", "warranty_service_level"])),
                    context_loss_max_rate=float(guard.get("context_loss_max_rate", 0.05)),
                    context_loss_window=int(guard.get("context_loss_window", 200)),
                    context_loss_min_handoffs=int(guard.get("context_loss_min_handoffs", 20)),
                ),
                panel=PanelConfig(
                    rolling_days=float(panel.get("rolling_days", 28)),
                    flat_tolerance_points=float(panel.get("flat_tolerance_points", 1)),
                ),
                qa_sampling=QaSamplingConfig(rate=float(qa.get("rate", 0.02)), seed=str(qa.get("seed", "supportflow-qa"))),
                max_tickets=int(data.get("max_tickets", 500_000)),
                max_pending_feedback=int(data.get("max_pending_feedback", 50_000)),
                max_customers=int(data.get("max_customers", 500_000)),
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
        if not 0 < g.min_samples <= g.window or not 0 < g.context_loss_min_handoffs <= g.context_loss_window:
            raise ConfigError("guardrails need 0 < min_samples <= window and 0 < context_loss_min_handoffs <= context_loss_window")
        if not 0 < g.context_loss_max_rate < 1:
            raise ConfigError("guardrails.context_loss_max_rate must be between 0 and 1")
        if set(g.p0_classes) - set(QA_CLASSES):
            raise ConfigError(f"guardrails.p0_classes: unknown {sorted(set(g.p0_classes) - set(QA_CLASSES))}; "
                              f"expected some of {', '.join(QA_CLASSES)}")
        if not 0 < config.qa_sampling.rate <= 1:
            raise ConfigError("qa_sampling.rate must be in (0, 1]: the share of a week's conversations sampled")
        if config.panel.rolling_days <= 0 or g.rolling_days <= 0 or config.panel.flat_tolerance_points < 0:
            raise ConfigError("rolling_days must be positive and panel.flat_tolerance_points not negative")
        return config


def _latency(name: str) -> int:
    if name not in CSAT_LATENCIES:
        raise ConfigError(f"unknown CSAT latency {name!r}; expected one of {', '.join(CSAT_LATENCIES)}")
    return CSAT_LATENCIES[name]
