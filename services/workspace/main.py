"""Workspace: the web application where agents review drafts and act on escalations (web.py), fed
by one consumer loop on the review, escalation and follow-up decision topics, tickets.delivered,
agent.actions, qa.samples (the learner's weekly QA sample), actions.recorded (the proposed actions
an agent may confirm or decline) and routing.overrides (the leads' audit view) (`QueueFeed`).
Every action an agent takes is an AgentAction on agent.actions; a confirmation is also an
ActionConfirmed on actions.confirmed, and a rollback a RoutingOverride on routing.overrides.

It calls the drafter (Drafter.Draft, SUPPORTFLOW_DRAFTER_ADDR, deadline
SUPPORTFLOW_WORKSPACE_REDRAFT_DEADLINE_S) when an agent asks for a new draft, and the learner
(Learner.GetKpis, SUPPORTFLOW_LEARNER_ADDR, deadline SUPPORTFLOW_GRPC_DEADLINE_S) for the KPI
panel. SUPPORTFLOW_WORKSPACE_ROLLBACK_OWNERS names who may roll each archetype back.

Its state is a database of its own (SUPPORTFLOW_WORKSPACE_DB_URL; default a SQLite file under the
cache dir), migrated to the newest schema at start. The consumer group is named after the
database's id (`workspace-<id>`): a new database is a new group, which reads every topic from the
beginning and so rebuilds the queue, what each channel received and, from agent.actions, what
agents already did. An existing database carries on where its group left off.

Start-up: with no user in the database, the first admin is created
(SUPPORTFLOW_WORKSPACE_ADMIN_USER, SUPPORTFLOW_WORKSPACE_ADMIN_PASSWORD; an empty password is
generated and logged once, at WARNING, so that a local user can sign in), and
SUPPORTFLOW_WORKSPACE_API_TOKEN, if set, is registered as that admin's bearer token. The pages
and the API listen on SUPPORTFLOW_WORKSPACE_HTTP_PORT.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import OperationalError

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import ConsumerLoop, Emit, EventPublisher, TransientError
from supportflow.http_server import HttpServer
from supportflow.observability import Health
from supportflow.rpc import open_channel
from supportflow.service import ServiceParts
from supportflow.topics import DECISION_TOPICS, Topic

from services.workspace.assist import DrafterClient, KpiClient
from services.workspace.auth import bootstrap_admin, session_secret
from services.workspace.handlers import (
    QUEUE_OF,
    action_record,
    delivery_row,
    override_row,
    parse_rollback_owners,
    proposal_change,
    qa_sample_row,
    queue_row,
    ticket_effect,
)
from services.workspace.settings import WorkspaceSettings
from services.workspace.store import WorkspaceStore
from services.workspace.web import create_app

log = logging.getLogger(__name__)

SERVICE = "workspace"
BATCH_SIZE = 200


def consumer_group(settings: WorkspaceSettings, workspace_id: str) -> str:
    """The consumer group of the database whose id is `workspace_id`."""
    return f"{settings.topic_prefix}{SERVICE}-{workspace_id}"


class QueueFeed:
    """The consumer's handlers: each event into the store; nothing is published."""

    def __init__(self, store: WorkspaceStore, clock=time.time) -> None:  # noqa: ANN001
        self._store = store
        self._clock = clock

    def handlers(self) -> dict[Topic, object]:
        decided = {topic: self.on_decided for decision, topic in DECISION_TOPICS.items() if decision in QUEUE_OF}
        return decided | {Topic.TICKETS_DELIVERED: self.on_delivered, Topic.AGENT_ACTIONS: self.on_agent_action,
                          Topic.QA_SAMPLES: self.on_qa_sample, Topic.ACTIONS_RECORDED: self.on_action_recorded,
                          Topic.ROUTING_OVERRIDES: self.on_routing_override}

    def on_decided(self, event: ev.TicketDecided) -> list[Emit]:
        row = queue_row(event)
        if row is not None:
            _stored(self._store.upsert_ticket, row)
        return []

    def on_delivered(self, event: ev.DeliveryRecorded) -> list[Emit]:
        _stored(self._store.add_delivery, delivery_row(event))
        return []

    def on_agent_action(self, event: ev.AgentAction) -> list[Emit]:
        """An action already taken: ours, just published (recorded already: nothing changes), or
        one read again while the queue is rebuilt."""
        record = action_record(event, self._clock())
        ticket = queue_row(event.decision) if event.HasField("decision") else None
        _stored(self._store.record_action, record, ticket_effect(event), ticket=ticket, audit=False)
        return []

    def on_qa_sample(self, event: ev.QaSampleRequested) -> list[Emit]:
        _stored(self._store.add_qa_sample, qa_sample_row(event))
        return []

    def on_action_recorded(self, event: ev.ActionRecorded) -> list[Emit]:
        change = proposal_change(event, self._clock())
        if change is not None:
            _stored(self._store.add_proposal, change)
        return []

    def on_routing_override(self, event: ev.RoutingOverride) -> list[Emit]:
        _stored(self._store.add_override, override_row(event, self._clock()))
        return []


def _stored(write, *args: object, **kwargs: object) -> None:  # noqa: ANN001
    try:
        write(*args, **kwargs)
    except OperationalError as exc:  # the database is busy or away: retried by the loop, then it stops
        raise TransientError(f"workspace database: {exc}") from exc


def open_store(settings: WorkspaceSettings) -> WorkspaceStore:
    """The database, migrated, with its first admin and API token."""
    store = WorkspaceStore(settings.workspace_database_url)
    generated = bootstrap_admin(store, settings.workspace_admin_user, settings.workspace_admin_password,
                                settings.workspace_api_token)
    if generated is not None:
        # Shown this once, so that someone running it locally can sign in; set
        # SUPPORTFLOW_WORKSPACE_ADMIN_PASSWORD (before the first start) to choose it instead.
        log.warning("no SUPPORTFLOW_WORKSPACE_ADMIN_PASSWORD: generated the first admin's password",
                    extra={"fields": {"user": settings.workspace_admin_user, "password": generated}})
    return store


def build(settings: WorkspaceSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    store = open_store(settings)
    feed = QueueFeed(store)
    consumer = ConsumerLoop(settings, SERVICE, feed.handlers(), publisher, health,
                            group=consumer_group(settings, store.workspace_id), batch_size=BATCH_SIZE)
    log.info("workspace database", extra={"fields": {"workspace_id": store.workspace_id, "group": consumer.group_id}})
    secret = session_secret(settings.workspace_session_secret)
    if not settings.workspace_session_secret:
        log.warning("no SUPPORTFLOW_WORKSPACE_SESSION_SECRET: sessions end when the workspace restarts")
    owners = parse_rollback_owners(settings.workspace_rollback_owners)  # a typo stops the start, loudly
    drafter_channel = open_channel(SERVICE, settings.drafter_addr, settings.workspace_redraft_deadline_s)
    learner_channel = open_channel(SERVICE, settings.learner_addr, settings.grpc_deadline_s)
    app = create_app(store, publisher, session_secret=secret,
                     drafter=DrafterClient(drafter_channel, settings.workspace_redraft_deadline_s),
                     kpis=KpiClient(learner_channel, settings.grpc_deadline_s), rollback_owners=owners)
    servers: list[HttpServer] = []

    def start() -> None:
        servers.append(HttpServer(app, "0.0.0.0", settings.workspace_http_port, name="workspace").start())

    def stop() -> None:
        while servers:
            servers.pop().shutdown()
        drafter_channel.close()
        learner_channel.close()
        store.close()

    return ServiceParts(consumers=[consumer], on_start=[start], on_stop=[stop])



if __name__ == "__main__":
    from supportflow.service import main

    main("workspace", WorkspaceSettings)
