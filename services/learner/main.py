"""Learner: the KPI panel (GetKpis and Prometheus), guardrails that pull an archetype back to
draft-for-review, from decisions, feedback and KB gaps.

Two consumer loops: the main one (a consumer group) for decisions, feedback and gaps, and a
broadcast one that reads `routing.overrides` from the beginning at every start so the guardrail
latches survive restarts. Everything else is in memory (see handlers.py); run one replica.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings
from supportflow.topics import DECISION_TOPICS, Topic

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.metrics import LearnerCollector
from services.learner.servicer import LearnerServicer

SERVICE = "learner"


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    learner = Learner(LearnerConfig.load(settings.learner_config_path))
    handlers = {topic: learner.on_decided for topic in DECISION_TOPICS.values()}
    handlers |= {Topic.TICKETS_FEEDBACK: learner.on_feedback, Topic.KB_GAPS: learner.on_kb_gap}
    outcomes = ConsumerLoop(settings, SERVICE, handlers, publisher, health)
    overrides = ConsumerLoop(
        settings, SERVICE, {Topic.ROUTING_OVERRIDES: learner.on_override}, publisher, health,
        group=f"{settings.topic_prefix}{SERVICE}-overrides", broadcast=True,
    )
    collector = LearnerCollector(learner)
    REGISTRY.register(collector)
    return ServiceParts(
        consumers=[outcomes, overrides],
        grpc=[(services_pb2_grpc.add_LearnerServicer_to_server, LearnerServicer(learner, settings.default_tenant),
               "supportflow.contracts.v1.Learner")],
        on_stop=[lambda: REGISTRY.unregister(collector)],
    )
