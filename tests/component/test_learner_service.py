"""The learner as deployed: its consumer loops on the real broker, GetKpis over gRPC, and a
guardrail override published on routing.overrides exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, decode, ensure_topics, new_meta
from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel
from supportflow.topics import DECISION_TOPICS, Topic
from tests.kafka_helpers import read_all

from services.learner.main import build

pytestmark = pytest.mark.infra


def decided(ticket_id: str, decision: int) -> ev.TicketDecided:
    event = ev.TicketDecided(
        meta=new_meta("rho-bank", "escalator"), ticket=tk.Ticket(ticket_id=ticket_id, tenant_id="rho-bank"),
        classification=tk.Classification(archetype=tk.ARCHETYPE_FAQ_BOUNDED, segment="retail"), decision=decision,
    )
    event.timeline.received_at.seconds = 1_700_000_000
    event.timeline.decided_at.seconds = 1_700_000_003
    return event


def qa(ticket_id: str) -> ev.FeedbackReceived:
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id=ticket_id,
                               qa=ev.QaResult(hallucinated_policy=True, note="invented a fee"))


def test_learner_computes_kpis_and_issues_one_override(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    # Feedback first: it must wait for its decision, then act once; the second P0 must not repeat it.
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-1", qa("t-1"))
    for index, decision in enumerate([ev.DECISION_RESPOND, ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE]):
        publisher.publish(DECISION_TOPICS[decision], f"t-{index}", decided(f"t-{index}", decision))
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-2", qa("t-2"))
    publisher.flush()

    health = Health("learner")
    parts = build(settings, EventPublisher(settings, "learner"), health)
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in parts.consumers]
    server, port = create_server("learner", parts.grpc, health, 0, host="127.0.0.1")
    server.start()
    for thread in threads:
        thread.start()
    try:
        overrides = read_all(settings, Topic.ROUTING_OVERRIDES.name_in(settings.topic_prefix), expected=1, timeout_s=60)
        stub = services_pb2_grpc.LearnerStub(open_channel("test", f"127.0.0.1:{port}", 5.0))
        deadline = time.monotonic() + 30
        while True:
            rows = stub.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank", segment="retail")).rows
            if rows and rows[0].tickets == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        server.stop(0)
        for hook in parts.on_stop:
            hook()

    assert [c.error for c in parts.consumers] == [None, None]
    [record] = overrides
    override = decode(Topic.ROUTING_OVERRIDES, record)
    assert record.key() == b"faq_bounded"
    assert (override.action, override.route, override.issued_by) == (
        ev.OVERRIDE_ACTION_SET_AUTOMATION, tk.ROUTE_DRAFT_FOR_REVIEW, "learner:guardrail")
    # Topics are not ordered against each other, so either P0 may be the one that acts; only one does.
    assert override.reason in {f"QA found hallucinated policy on ticket {t}: invented a fee" for t in ("t-1", "t-2")}
    [row] = rows
    assert (row.archetype, row.segment, row.tickets) == ("faq_bounded", "retail", 4)
    assert row.values["deflection_rate"] == 0.5
    assert row.values["hallucinated_policy_tickets"] == 2
    assert row.values["time_to_decision_p95_seconds"] == 3.0
