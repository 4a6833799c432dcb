"""Escalator: decides every ticket (respond, review, follow up, escalate), detects incidents,
builds context packets and records action attempts. One consumer loop reads both input topics.

Incident windows and the action ledger are in memory (see handlers.py): they start empty after a
restart.
"""

from __future__ import annotations

from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings
from supportflow.topics import Topic

from services.escalator.actions import ActionGate, ActionLedger
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.crm import CrmDirectory
from services.escalator.handlers import Escalator
from services.escalator.incidents import IncidentTracker

SERVICE = "escalator"


def build_escalator() -> Escalator:
    """The escalator with the shipped configuration, sample CRM and dry-run actions."""
    config = EscalationConfig.load()
    return Escalator(
        config,
        CrmDirectory.from_json(),
        IncidentTracker(config.incidents),
        ActionGate(ActionLimits.load(), ActionLedger(), dry_run=True),
    )


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    escalator = build_escalator()
    consumer = ConsumerLoop(
        settings,
        SERVICE,
        {Topic.TICKETS_CLASSIFIED: escalator.on_classified, Topic.TICKETS_DRAFTED: escalator.on_drafted},
        publisher,
        health,
    )
    return ServiceParts(consumers=[consumer])
