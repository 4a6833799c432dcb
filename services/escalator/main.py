"""Escalator: decides every ticket (respond, review, follow up, escalate), detects incidents,
builds context packets, proposes actions and carries out the ones customers confirm (through the
gateway's confirmation, or a "yes" in their reply on tickets.feedback). One consumer loop reads its
four input topics. The investigator (gRPC) investigates tickets escalated without a draft and, with
dry run off, runs confirmed actions (`RunAction`).

Incident windows, the tickets answered automatically, the action ledger and the open proposals are
in memory (see handlers.py). Before the loop starts, the windows are rebuilt from the recent
tickets the group had already processed, the answered tickets from tickets.responded, and the
ledger and proposals from actions.recorded (replay.py). The windows hold only the tickets this
process consumed, so the escalator runs as one replica (the Helm chart refuses more).
"""

from __future__ import annotations

from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.crm import crm_from_settings
from supportflow.rpc import open_channel
from supportflow.settings import Settings
from supportflow.topics import Topic
from supportflow.investigation import Investigate, investigator_client, no_investigation

from services.escalator.actions import ActionGate, ActionLedger, Executor
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.confirmations import ConfirmationLexicons
from services.escalator.investigator_client import run_action_executor
from services.escalator.handlers import Escalator
from services.escalator.replay import replay_recent_classified, replay_recent_output
from services.escalator.incidents import IncidentTracker
from services.escalator.help_center import ArticleLookup, grpc_articles, no_articles
from services.escalator.similar_cases import SimilarCaseLookup, grpc_similar_cases, no_similar_cases

SERVICE = "escalator"


def build_escalator(
    settings: Settings,
    similar_cases: SimilarCaseLookup = no_similar_cases,
    investigate: Investigate = no_investigation,
    executor: Executor | None = None,
    articles: ArticleLookup = no_articles,
) -> Escalator:
    """The escalator with its configuration, CRM, confirmation lexicons and action gate as the
    settings say. `executor` runs confirmed actions when dry run is off (none: they are refused)."""
    config = EscalationConfig.load(settings.escalation_config_path)
    return Escalator(
        config,
        crm_from_settings(settings),
        IncidentTracker(config.incidents),
        ActionGate(ActionLimits.load(settings.action_limits_path), ActionLedger(), dry_run=settings.actions_dry_run,
                   executor=executor),
        similar_cases=similar_cases,
        articles=articles,
        investigate=investigate,
        lexicons=ConfirmationLexicons(settings.tenant_data_dir),
    )


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    channel = open_channel(SERVICE, settings.retriever_addr, settings.grpc_deadline_s)
    investigator = open_channel(SERVICE, settings.investigator_addr, settings.investigation_deadline_s)
    escalator = build_escalator(
        settings, grpc_similar_cases(channel, settings.grpc_deadline_s),
        investigator_client(investigator, settings.investigation_deadline_s, SERVICE),
        run_action_executor(investigator, settings.investigation_deadline_s),
        grpc_articles(channel, settings.grpc_deadline_s),
    )
    consumer = ConsumerLoop(
        settings,
        SERVICE,
        {Topic.TICKETS_CLASSIFIED: escalator.on_classified, Topic.TICKETS_DRAFTED: escalator.on_drafted,
         Topic.ACTIONS_CONFIRMED: escalator.on_action_confirmed, Topic.TICKETS_FEEDBACK: escalator.on_feedback},
        publisher,
        health,
    )

    def rebuild_memory() -> None:
        replay_recent_classified(
            settings, consumer.group_id, escalator.config.incidents.replay_s, escalator.replay_classified
        )
        replay_recent_output(settings, Topic.TICKETS_RESPONDED, consumer.group_id,
                             escalator.config.answered_memory_s, escalator.replay_responded)
        replay_recent_output(settings, Topic.ACTIONS_RECORDED, consumer.group_id,
                             escalator.action_memory_s, escalator.replay_action)

    return ServiceParts(consumers=[consumer], on_start=[rebuild_memory], on_stop=[channel.close, investigator.close])


if __name__ == "__main__":
    from supportflow.service import main

    main("escalator")
