"""The workspace service against the real Kafka: a decision for review and its delivery read from
their topics into the queue, an approval through the API published on agent.actions with the draft
and the decision, and a restart on a new database that rebuilds the queue (and what was done) from
the topics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, ensure_topics, new_meta
from supportflow.topics import Topic
from tooling.settings import FleetSettings

from services.workspace.main import consumer_group
from tests.kafka_helpers import read_all
from tests.service_helpers import workspace_running
from tooling.fleet import free_port

pytestmark = pytest.mark.infra

TENANT = "rho-bank"
TOKEN = "workspace-test-token"
DRAFT = "Hello,\n\nYour new card arrives within 5 working days [1].\n\nKind regards,\nRho-Bank Support"


def review_decision(ticket_id: str) -> ev.TicketDecided:
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=TENANT, channel=tk.CHANNEL_EMAIL, subject="Where is my card?",
                       body="It has not arrived", origin=tk.ChannelOrigin(provider="zendesk", external_id="1001"))
    ticket.received_at.GetCurrentTime()
    decided = ev.TicketDecided(
        meta=new_meta(TENANT, "escalator"), ticket=ticket, decision=ev.DECISION_REVIEW, reason="confidence 0.62",
        classification=tk.Classification(intent="card_arrival", confidence=0.62, urgency=tk.URGENCY_HIGH,
                                          route=tk.ROUTE_DRAFT_FOR_REVIEW, route_reason="low confidence"),
        draft=tk.Draft(text=DRAFT, status=tk.DRAFT_STATUS_READY,
                       citations=[tk.Citation(article_id="card-delivery", title="Card delivery",
                                              passage="A new card arrives within 5 working days.")]),
    )
    decided.timeline.decided_at.GetCurrentTime()
    return decided


def delivery_of(decided: ev.TicketDecided) -> ev.DeliveryRecorded:
    recorded = ev.DeliveryRecorded(
        meta=new_meta(TENANT, "delivery"), ticket_id=decided.ticket.ticket_id, decision_event_id=decided.meta.event_id,
        decision=decided.decision, kind=ev.DELIVERY_KIND_NOTE, provider="zendesk", external_ticket_id="1001",
        external_id="note-1", status=ev.DELIVERY_STATUS_DELIVERED, attempts=1, text="Draft for review: " + DRAFT,
    )
    recorded.delivered_at.GetCurrentTime()
    return recorded


def eventually(probe: Callable[[], object], timeout_s: float = 30.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s")
        time.sleep(0.25)


def workspace_settings(settings: FleetSettings, database: Path) -> FleetSettings:
    return settings.replace(workspace_db_url=f"sqlite:///{database}", workspace_http_port=free_port(),
                            workspace_api_token=TOKEN, workspace_admin_password="admin-password",
                            workspace_session_secret="component-test-secret")


def test_the_queue_fills_from_kafka_actions_go_out_and_a_new_database_rebuilds_it(settings: FleetSettings, tmp_path: Path) -> None:
    ensure_topics(settings)
    decided = review_decision("zd-2001")
    answered = review_decision("zd-2002")
    answered.decision = ev.DECISION_RESPOND  # sent without a person: never in the queue
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_REVIEW, "zd-2001", decided)
    publisher.publish(Topic.TICKETS_RESPONDED, "zd-2002", answered)
    publisher.publish(Topic.TICKETS_DELIVERED, "zd-2001", delivery_of(decided))
    publisher.flush()
    auth = {"Authorization": f"Bearer {TOKEN}"}

    first = workspace_settings(settings, tmp_path / "first.sqlite")
    with workspace_running(first) as (url, group), httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/v1/queue").status_code == 401
        items = eventually(lambda: http.get("/api/v1/queue", headers=auth).json()["items"])
        assert [(i["ticket_id"], i["queue"], i["status"], i["tenant"]) for i in items] == [
            ("zd-2001", "review", "open", TENANT)]
        view = eventually(lambda: (v := http.get("/api/v1/tickets/zd-2001", headers=auth).json())["delivered"] and v)
        assert view["delivered"][0]["kind"] == "note" and view["delivered"][0]["external_id"] == "note-1"
        assert view["draft"]["text"] == DRAFT

        approved = http.post("/api/v1/tickets/zd-2001/approve", headers=auth)
        assert approved.status_code == 200 and approved.json()["status"] == "sent"
        assert http.post("/api/v1/tickets/zd-2001/approve", headers=auth).status_code == 409
        first_group = group

    (record,) = read_all(settings, Topic.AGENT_ACTIONS.name_in(settings.topic_prefix), expected=1)
    action = ev.AgentAction.FromString(record.value())
    assert record.key() == b"zd-2001"
    assert action.kind == ev.AGENT_ACTION_KIND_APPROVE and action.text == DRAFT
    assert action.agent == "agent:admin" and action.action_id == approved.json()["action_id"]
    assert action.decision == decided

    # A new database: a new consumer group, which reads the topics from the beginning.
    second = workspace_settings(settings, tmp_path / "second.sqlite")
    with workspace_running(second) as (url, group), httpx.Client(base_url=url, timeout=10) as http:
        assert group != first_group and group.startswith(f"{settings.topic_prefix}workspace-")
        view = eventually(lambda: (v := http.get("/api/v1/tickets/zd-2001", headers=auth)).status_code == 200
                          and v.json()["delivered"] and v.json()["actions"] and v.json())
        assert view["status"] == "sent" and view["actions"][0]["action_id"] == action.action_id
        assert view["delivered"][0]["external_id"] == "note-1"
        items = http.get("/api/v1/queue", headers=auth, params={"status": "all"}).json()["items"]
        assert [i["ticket_id"] for i in items] == ["zd-2001"]
        assert http.post("/api/v1/tickets/zd-2001/approve", headers=auth).status_code == 409


def test_the_consumer_group_is_named_after_the_database() -> None:
    assert consumer_group(FleetSettings(topic_prefix="t1."), "abc") == "t1.workspace-abc"
