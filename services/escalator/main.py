"""Escalator: decides every ticket (respond, review, follow up, escalate), detects incidents,
builds context packets, proposes actions and carries out the ones customers confirm (through the
gateway's confirmation, or a "yes" in their reply on tickets.feedback). It runs as a faust-streaming
app (app.py; its agent and tables: agents.py), so its state is in changelog-backed tables and it
scales to any number of replicas. The investigator (gRPC) investigates tickets escalated without a
draft and, with dry run off, runs confirmed actions (`RunAction`).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from integrations.crm import crm_from_settings
from supportflow.investigation import Investigate, investigator_client, no_investigation
from supportflow.observability import Health
from supportflow.rpc import open_channel
from supportflow.service import refuse_start, start_process

from services.escalator.actions import ActionGate, ActionLedger, Executor, PendingProposals
from services.escalator.agents import INPUTS, AgentState, EscalatorTables, declare_tables, install, ready
from services.escalator.answered import AnsweredTickets
from services.escalator.app import create_app
from services.escalator.changelogs import ChangelogLost, check_changelogs
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.confirmations import ConfirmationLexicons
from services.escalator.handlers import Escalator
from services.escalator.help_center import ArticleLookup, grpc_articles, no_articles
from services.escalator.incidents import IncidentTracker
from services.escalator.investigator_client import run_action_executor
from services.escalator.lookups_ahead import LookupsAhead
from services.escalator.settings import EscalatorSettings
from services.escalator.similar_cases import SimilarCaseLookup, grpc_similar_cases, no_similar_cases

SERVICE = "escalator"

log = logging.getLogger(__name__)


def build_escalator(
    settings: EscalatorSettings,
    similar_cases: SimilarCaseLookup = no_similar_cases,
    investigate: Investigate = no_investigation,
    executor: Executor | None = None,
    articles: ArticleLookup = no_articles,
    *,
    tables: EscalatorTables | None = None,
) -> Escalator:
    """The escalator with its configuration, CRM, confirmation lexicons and action gate as the
    settings say. `executor` runs confirmed actions when dry run is off (none: they are refused).
    `tables`: the stores its state lives in (none: dicts of its own)."""
    config = EscalationConfig.load(settings.escalation_config_path)
    limits = ActionLimits.load(settings.action_limits_path)
    t = tables
    return Escalator(
        config,
        crm_from_settings(settings),
        IncidentTracker(config.incidents, t.windows if t else None, t.incident_tickets if t else None),
        ActionGate(limits, ActionLedger(t.ledger if t else None), dry_run=settings.actions_dry_run, executor=executor,
                   proposals=PendingProposals(limits.proposal_ttl_s, t.proposals, t.proposals_by_ticket) if t else None),
        similar_cases=similar_cases,
        articles=articles,
        investigate=investigate,
        lexicons=ConfirmationLexicons(settings.tenant_data_dir),
        answered=AnsweredTickets(config.answered_memory_s, store=t.answered) if t else None,
    )


def run_service(settings: EscalatorSettings, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set); returns the process exit code: 0 after a
    graceful stop, 1 when the agent failed (its event uncommitted), 3 when a table's changelog
    cannot be recovered."""
    stop, health, ops = start_process(SERVICE, settings, stop)
    channel = open_channel(SERVICE, settings.retriever_addr, settings.grpc_deadline_s)
    investigator = open_channel(SERVICE, settings.investigator_addr, settings.investigation_deadline_s)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # faust binds to the loop current when the app is made
    lookups: LookupsAhead | None = None
    try:
        app = create_app(settings, service=SERVICE)
        config = EscalationConfig.load(settings.escalation_config_path)
        tables = declare_tables(app, settings, config, ActionLimits.load(settings.action_limits_path))
        lookups = LookupsAhead(grpc_similar_cases(channel, settings.grpc_deadline_s),
                               grpc_articles(channel, settings.grpc_deadline_s),
                               investigator_client(investigator, settings.investigation_deadline_s, SERVICE),
                               settings.escalator_lookup_concurrency)
        escalator = build_escalator(
            settings, lookups.similar_cases, lookups.investigate,
            run_action_executor(investigator, settings.investigation_deadline_s), lookups.articles,
            tables=tables,
        )
        state = install(app, settings, escalator, tables, service=SERVICE, lookups=lookups)
        try:
            check_changelogs(settings, app.conf.id, [t.name_in(settings.topic_prefix) for t in INPUTS],
                             tables.changelog_topics)
        except ChangelogLost as exc:
            return refuse_start(SERVICE, health, exc)
        loop.run_until_complete(_serve(app, stop, state, health))
        if app.crashed and state.failure is None:
            state.failure = app.crash_reason or RuntimeError("the faust app crashed")
            log.error("the escalator's app crashed: %s", state.failure)
        return 1 if state.failure is not None else 0
    finally:
        if lookups is not None:
            lookups.close()
        loop.close()
        asyncio.set_event_loop(None)
        channel.close()
        investigator.close()
        ops.shutdown()


async def _serve(app, stop: threading.Event, state: AgentState, health: Health) -> None:  # type: ignore[no-untyped-def]
    await app.start()
    try:
        was_ready = False
        while not stop.is_set() and not state.stopped.is_set() and not app.should_stop:
            now_ready = ready(app)
            if now_ready != was_ready:
                health.set_ready(now_ready, "" if now_ready else "recovering tables or rebalancing")
                if now_ready:
                    log.info("ready", extra={"fields": {"partitions": len(app.consumer.assignment())}})
                was_ready = now_ready
            await asyncio.sleep(0.2)
    finally:
        health.set_ready(False, "shutting down")
        log.info("stopping")
        if state.commit is not None and state.failure is None and not app.crashed:
            try:
                await state.commit()
            except Exception:  # noqa: BLE001 - the next start handles those events again
                log.exception("final commit failed")
        await app.stop()


if __name__ == "__main__":
    from supportflow.service import main

    main("escalator", EscalatorSettings)
