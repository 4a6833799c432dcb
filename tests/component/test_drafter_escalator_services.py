"""The drafter and the escalator as `supportflow run` runs them, with a running retriever, against
the real Kafka and Weaviate: a classified ticket is drafted from an article that arrived on
`kb.articles` (cited, its fee verified against the canonical passage) and decided; an escalated
ticket gets a context packet that names a similar resolved case from `tickets.resolved`; a proposed
password reset is carried out when the customer's confirmation arrives on `actions.confirmed`."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, decode, ensure_topics, new_meta
from tooling.fleet import free_port
from supportflow.rpc import open_channel
from supportflow.service import run_service
from supportflow.topics import DECISION_TOPICS, Topic

from services.retriever.components import build_components
from tests.component.test_retriever_service import eventually
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.infra

WIRE_FEES = (
    "## Outgoing wire fees\n"
    "Domestic outgoing wires cost $10.00 per transfer. International outgoing wires cost $25.00 per "
    "transfer and usually arrive within 2 business days.\n"
)


@pytest.fixture
def services(settings):
    """Retriever, drafter and escalator running in threads; yields (settings, tenant)."""
    tenant = f"svc-{uuid.uuid4().hex[:10]}"
    retriever_port = free_port()
    base = settings.replace(ops_port=0, retriever_addr=f"127.0.0.1:{retriever_port}")
    ensure_topics(base)
    stop = threading.Event()
    exits: dict[str, int] = {}
    threads = []
    for name, port in (("retriever", retriever_port), ("drafter", free_port()), ("escalator", 0)):
        thread = threading.Thread(
            target=lambda name=name, port=port: exits.__setitem__(name, run_service(name, base.replace(grpc_port=port), stop)),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    yield base, tenant
    stop.set()
    for thread in threads:
        thread.join(30)
    assert exits == {"retriever": 0, "drafter": 0, "escalator": 0}
    parts = build_components(settings)
    try:
        parts.knowledge.drop_tenant(tenant)
        parts.cases.drop_tenant(tenant)
    finally:
        parts.close()


def classified(tenant: str, ticket_id: str, body: str, route: int, intent: str, archetype: int) -> ev.TicketClassified:
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, customer_id="cust-0001", channel=tk.CHANNEL_EMAIL, body=body)
    ticket.received_at.GetCurrentTime()
    event = ev.TicketClassified(
        meta=new_meta(tenant, "classifier"), ticket=ticket,
        normalized=tk.NormalizedTicket(problem_statement=body, language="en"),
        classification=tk.Classification(intent=intent, confidence=0.97, archetype=archetype, urgency=tk.URGENCY_NORMAL,
                                         tier=tk.CUSTOMER_TIER_STANDARD, route=route, segment="retail"),
    )
    event.timeline.received_at.CopyFrom(ticket.received_at)
    return event


def test_a_ticket_is_drafted_from_kafka_fed_evidence_and_an_escalation_names_a_similar_case(services):
    settings, tenant = services
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.KB_ARTICLES, "wire-fees", ev.KbArticleChanged(
        meta=new_meta(tenant, "cms"), article_id="wire-fees", title="Wire transfer fees", content=WIRE_FEES,
        source="help_center", is_policy=True))
    publisher.publish(Topic.TICKETS_RESOLVED, "old-1", ev.TicketResolved(
        meta=new_meta(tenant, "learner"), ticket_id="old-1", intent="lost_or_stolen_card",
        problem_statement="My card was stolen on the train and I see payments I did not make",
        resolution_notes="Froze the card, ordered a replacement, opened a dispute for the two payments."))
    publisher.flush()

    stub = services_pb2_grpc.RetrieverStub(open_channel("test", settings.retriever_addr, 10.0))

    def answers(call):
        try:
            return call()
        except grpc.RpcError:  # the retriever is still starting
            return None

    assert eventually(lambda: answers(
        lambda: stub.Search(services_pb2.SearchRequest(tenant_id=tenant, query="international wire fee", k=3)).passages))
    assert eventually(lambda: answers(
        lambda: stub.SimilarCases(services_pb2.SimilarCasesRequest(tenant_id=tenant, query="stolen card", k=3)).cases))

    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-wire", classified(
        tenant, "t-wire", "How much does an international outgoing wire cost?", tk.ROUTE_AUTO_RESPOND,
        "transfer_fee_charged", tk.ARCHETYPE_FAQ_BOUNDED))
    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-stolen", classified(
        tenant, "t-stolen", "Someone stole my card on the bus and there are payments I never made.",
        tk.ROUTE_ESCALATE, "lost_or_stolen_card", tk.ARCHETYPE_ACCOUNT_SPECIFIC))
    publisher.flush()

    [drafted_record] = read_all(settings, Topic.TICKETS_DRAFTED.name_in(settings.topic_prefix), expected=1, timeout_s=60)
    drafted = decode(Topic.TICKETS_DRAFTED, drafted_record)
    assert drafted.ticket.ticket_id == "t-wire"
    assert [c.article_id for c in drafted.draft.citations] == ["wire-fees"]
    assert "$25.00" in drafted.draft.text
    assert drafted.draft.ledger and all(claim.verified for claim in drafted.draft.ledger)

    def decided() -> dict:
        found = {}
        for topic in DECISION_TOPICS.values():
            for record in read_all(settings, topic.name_in(settings.topic_prefix), expected=0, timeout_s=1):
                event = decode(topic, record)
                found[event.ticket.ticket_id] = (topic, event)
        return found if len(found) >= 2 else None

    # The escalator decides the drafted ticket after the draft lands, and may still be joining its
    # group and recovering its tables when the escalated one arrives: wait for both decisions.
    decisions = eventually(decided) or {}
    assert set(decisions) == {"t-wire", "t-stolen"}
    assert decisions["t-wire"][0] in (Topic.TICKETS_RESPONDED, Topic.TICKETS_REVIEW)
    topic, escalated = decisions["t-stolen"]
    assert topic is Topic.TICKETS_ESCALATED
    assert list(escalated.packet.similar_case_ids) == ["old-1"]
    assert escalated.packet.completeness > 0.5


def test_a_proposed_action_runs_when_the_customer_confirms_it(services):
    settings, tenant = services
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-reset", classified(
        tenant, "t-reset", "I forgot my passcode and cannot log in.", tk.ROUTE_ESCALATE, "passcode_forgotten",
        tk.ARCHETYPE_ACCOUNT_SPECIFIC))
    publisher.flush()
    actions = Topic.ACTIONS_RECORDED.name_in(settings.topic_prefix)
    [proposed] = [decode(Topic.ACTIONS_RECORDED, r) for r in read_all(settings, actions, expected=1, timeout_s=60)]
    assert (proposed.tool, proposed.status, proposed.customer_id) == (
        "password_reset", ev.ACTION_STATUS_PROPOSED, "cust-0001")

    publisher.publish(Topic.ACTIONS_CONFIRMED, "t-reset", ev.ActionConfirmed(
        meta=new_meta(tenant, "gateway"), proposal_id=proposed.action_id, ticket_id="t-reset",
        confirmation_ref="sms-4411", confirmed_by="customer:sms"))
    publisher.flush()
    records = [decode(Topic.ACTIONS_RECORDED, r) for r in read_all(settings, actions, expected=2, timeout_s=60)]
    assert [r.status for r in records] == [ev.ACTION_STATUS_PROPOSED, ev.ACTION_STATUS_DRY_RUN]
    assert records[1].proposal_id == proposed.action_id and records[1].confirmation_ref == "sms-4411"
