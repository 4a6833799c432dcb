"""Escalator: decides every ticket (respond, review, follow up, escalate), detects incidents,
builds context packets and records action attempts. One consumer loop reads both input topics.

Incident windows and the action ledger are in memory (see handlers.py): they start empty after a
restart.
"""

from __future__ import annotations

from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.crm import crm_from_settings
from supportflow.settings import Settings
from supportflow.topics import Topic

from services.escalator.actions import ActionGate, ActionLedger
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.handlers import Escalator
from services.escalator.incidents import IncidentTracker

SERVICE = "escalator"


def build_escalator(settings: Settings) -> Escalator:
    """The escalator with its configuration, CRM and action gate as the settings say."""
    config = EscalationConfig.load(settings.escalation_config_path)
    return Escalator(
        config,
        crm_from_settings(settings),
        IncidentTracker(config.incidents),
        ActionGate(ActionLimits.load(settings.action_limits_path), ActionLedger(), dry_run=settings.actions_dry_run),
    )


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    escalator = build_escalator(settings)
    consumer = ConsumerLoop(
        settings,
        SERVICE,
        {Topic.TICKETS_CLASSIFIED: escalator.on_classified, Topic.TICKETS_DRAFTED: escalator.on_drafted},
        publisher,
        health,
    )
    return ServiceParts(consumers=[consumer])
