"""The drafter and the escalator as `supportflow run` runs them, against the real Kafka, with a real
gRPC server standing in for the investigator (and the retriever): an account-specific ticket's
draft states what the findings show, checked against them, and is answered on evidence under the
tenant's opt-in; an escalation that never reached the drafter is investigated by the escalator and
its packet carries the findings; a customer's "yes" on their channel runs the pending proposal
through `RunAction`; and an investigator that does not answer in time leaves the draft without
findings, never without a draft."""

from __future__ import annotations

import threading
import time
import uuid
from importlib import resources

import grpc
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, decode, ensure_topics, new_meta
from supportflow.investigation import investigator_client
from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel
from supportflow.service import run_service
from supportflow.topics import DECISION_TOPICS, Topic

from tests.kafka_helpers import read_all
from tooling.fleet import free_port

HELD = ev.Finding(source="transactions", lookup="recent_transfers", record_id="TRF-88213", available=True,
                  summary="The transfer of 120.00 GBP to J. Smith on 3 December is held for a new-payee check.",
                  facts={"amount": "120.00", "currency": "GBP", "status": "held", "date": "2026-12-03"},
                  supports=[ev.CASE_TYPE_EXPECTED_BEHAVIOUR])
CARD = ev.Finding(source="account", lookup="cards", record_id="card-77", available=True,
                  summary="One active card ending 1234.", facts={"last4": "1234", "card_status": "active"})
TRANSFER_HOLDS = tk.EvidencePassage(
    article_id="transfer-holds", chunk_id="transfer-holds#0", title="Why a transfer is held", is_policy=True,
    score=0.9, url="https://help.example/transfer-holds", intents=["pending_transfer"],
    text="- A transfer to a new payee can be held for a security check before it is sent.\n"
         "- Held transfers are released within 2 business days.",
)


class StandInSystems(services_pb2_grpc.InvestigatorServicer, services_pb2_grpc.RetrieverServicer):
    """The investigator and the retriever, as the drafter and the escalator call them."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.investigated: list[svc.InvestigateRequest] = []
        self.actions: list[svc.RunActionRequest] = []

    def Investigate(self, request, context):  # noqa: N802
        self.investigated.append(request)
        time.sleep(self.delay_s)
        findings = [HELD] if "transfer" in request.ticket.body else [CARD]
        return svc.InvestigateResponse(investigation=ev.Investigation(
            playbook="account_specific", findings=findings, completeness=1.0, elapsed_ms=12.0,
            case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR if findings == [HELD] else ev.CASE_TYPE_UNSPECIFIED))

    def RunAction(self, request, context):  # noqa: N802
        self.actions.append(request)
        return svc.RunActionResponse(executed=True, status="frozen", reference=f"chg-{request.action_id[:6]}",
                                     result={"last4": "1234", "card_id": "card-77"})

    def Search(self, request, context):  # noqa: N802
        return svc.SearchResponse(passages=[TRANSFER_HOLDS], best_score=0.9)

    def SimilarCases(self, request, context):  # noqa: N802
        return svc.SimilarCasesResponse()


def serve(systems: StandInSystems) -> tuple[grpc.Server, int]:
    health = Health("stand-in")
    server, port = create_server("stand-in", [
        (services_pb2_grpc.add_InvestigatorServicer_to_server, systems, "supportflow.contracts.v1.Investigator"),
        (services_pb2_grpc.add_RetrieverServicer_to_server, systems, "supportflow.contracts.v1.Retriever"),
    ], health, 0, host="127.0.0.1")
    server.start()
    return server, port


@pytest.fixture
def pipeline(settings, tmp_path):
    """The stand-in systems and the drafter and escalator in threads, live actions on, the test's
    tenant opted in to answering on evidence; yields (settings, tenant, systems)."""
    tenant = f"ev-{uuid.uuid4().hex[:8]}"
    config = resources.files("services.escalator").joinpath("escalation.yaml").read_text(encoding="utf-8")
    path = tmp_path / "escalation.yaml"
    path.write_text(config.replace("\n  demo-bank:\n", f"\n  {tenant}:\n", 1))
    systems = StandInSystems()
    server, port = serve(systems)
    base = settings.replace(ops_port=0, retriever_addr=f"127.0.0.1:{port}", investigator_addr=f"127.0.0.1:{port}",
                            escalation_config_path=path, actions_dry_run=False)
    ensure_topics(base)
    stop = threading.Event()
    exits: dict[str, int] = {}
    threads = [threading.Thread(target=lambda name=name, port=port: exits.__setitem__(
        name, run_service(name, base.replace(grpc_port=port), stop)), daemon=True)
        for name, port in (("drafter", free_port()), ("escalator", 0))]
    for thread in threads:
        thread.start()
    yield base, tenant, systems
    stop.set()
    for thread in threads:
        thread.join(30)
    server.stop(0)
    assert exits == {"drafter": 0, "escalator": 0}


def classified(tenant: str, ticket_id: str, body: str, route: int, intent: str) -> ev.TicketClassified:
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, customer_id="cust-0001", channel=tk.CHANNEL_EMAIL, body=body)
    ticket.received_at.GetCurrentTime()
    event = ev.TicketClassified(
        meta=new_meta(tenant, "classifier"), ticket=ticket,
        normalized=tk.NormalizedTicket(problem_statement=body, language="en"),
        classification=tk.Classification(
            intent=intent, confidence=0.95, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC, urgency=tk.URGENCY_NORMAL,
            tier=tk.CUSTOMER_TIER_STANDARD, route=route, segment="retail",
            route_reason=f"archetype account_specific: {tk.Route.Name(route).removeprefix('ROUTE_').lower()} (policy file)"),
    )
    event.timeline.received_at.CopyFrom(ticket.received_at)
    return event


def decisions_of(settings, expected: int) -> dict[str, tuple[Topic, ev.TicketDecided]]:
    found: dict[str, tuple[Topic, ev.TicketDecided]] = {}
    deadline = time.monotonic() + 60
    while len(found) < expected and time.monotonic() < deadline:
        for topic in DECISION_TOPICS.values():
            for record in read_all(settings, topic.name_in(settings.topic_prefix), expected=0, timeout_s=1):
                event = decode(topic, record)
                found[event.ticket.ticket_id] = (topic, event)
    return found


@pytest.mark.infra
def test_evidence_reaches_the_draft_the_decision_and_the_packet(pipeline):
    settings, tenant, systems = pipeline
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-held", classified(
        tenant, "t-held", "Why is my transfer to a new payee held and not sent yet?",
        tk.ROUTE_DRAFT_FOR_REVIEW, "pending_transfer"))
    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-lost", classified(
        tenant, "t-lost", "I lost my card at the station this morning.", tk.ROUTE_ESCALATE, "lost_or_stolen_card"))
    publisher.flush()

    [record] = read_all(settings, Topic.TICKETS_DRAFTED.name_in(settings.topic_prefix), expected=1, timeout_s=60)
    drafted = decode(Topic.TICKETS_DRAFTED, record)
    assert drafted.ticket.ticket_id == "t-held" and list(drafted.investigation.findings) == [HELD]
    assert HELD.summary in drafted.draft.text
    evidence = [claim for claim in drafted.draft.ledger if claim.kind == "evidence"]
    assert evidence and all(claim.verified and claim.article_id == "TRF-88213" for claim in evidence)

    decided = decisions_of(settings, 2)
    topic, held = decided["t-held"]
    assert topic is Topic.TICKETS_RESPONDED and "answered on evidence" in held.reason
    assert held.case_type == ev.CASE_TYPE_EXPECTED_BEHAVIOUR and held.investigation == drafted.investigation
    topic, lost = decided["t-lost"]
    assert topic is Topic.TICKETS_ESCALATED
    assert list(lost.packet.investigation) == [CARD] and lost.packet.evidence_completeness == 1.0
    assert lost.investigation.findings[0].record_id == "card-77"
    # The drafter asked for the drafted ticket, the escalator for the one that never reached it.
    assert sorted(r.ticket.ticket_id for r in systems.investigated) == ["t-held", "t-lost"]


@pytest.mark.infra
def test_a_customers_yes_on_their_channel_runs_the_proposal_through_the_account_system(pipeline):
    settings, tenant, systems = pipeline
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_CLASSIFIED, "t-freeze", classified(
        tenant, "t-freeze", "I lost my card, please help", tk.ROUTE_ESCALATE, "lost_or_stolen_card"))
    publisher.flush()
    actions = Topic.ACTIONS_RECORDED.name_in(settings.topic_prefix)
    [proposed] = [decode(Topic.ACTIONS_RECORDED, r) for r in read_all(settings, actions, expected=1, timeout_s=60)]
    assert (proposed.tool, proposed.status) == ("card_freeze", ev.ACTION_STATUS_PROPOSED)

    publisher.publish(Topic.TICKETS_FEEDBACK, "t-freeze", ev.FeedbackReceived(
        meta=new_meta(tenant, "gateway"), ticket_id="t-freeze", source="zendesk",
        customer_reply=ev.CustomerReply(text="Yes please, freeze it")))
    publisher.flush()
    records = [decode(Topic.ACTIONS_RECORDED, r) for r in read_all(settings, actions, expected=2, timeout_s=60)]
    assert [r.status for r in records] == [ev.ACTION_STATUS_PROPOSED, ev.ACTION_STATUS_EXECUTED]
    done = records[1]
    assert done.proposal_id == proposed.action_id and done.confirmed_by == "customer:zendesk"
    assert dict(done.params)["status"] == "frozen" and dict(done.params)["result.last4"] == "1234"
    [call] = systems.actions
    assert (call.tool, call.customer_id, call.action_id, call.tenant_id) == (
        "card_freeze", "cust-0001", done.action_id, tenant)


def test_an_investigator_too_slow_for_its_deadline_leaves_an_investigation_without_findings():
    systems = StandInSystems(delay_s=1.5)
    server, port = serve(systems)
    channel = open_channel("test", f"127.0.0.1:{port}", 0.3)
    try:
        investigate = investigator_client(channel, 0.2, "drafter")
        started = time.monotonic()
        slow = investigate(svc.InvestigateRequest(ticket=tk.Ticket(ticket_id="t", tenant_id="x", body="transfer")))
        assert time.monotonic() - started < 1.2  # the deadline (0.2 s) plus the call's margin, not the 1.5 s
        assert list(slow.findings) == [] and "DEADLINE_EXCEEDED" in slow.uncertain[0]
        systems.delay_s = 0.0
        found = investigate(svc.InvestigateRequest(ticket=tk.Ticket(ticket_id="t", tenant_id="x", body="transfer")))
        assert list(found.findings) == [HELD]
    finally:
        channel.close()
        server.stop(0)
    down = investigator_client(open_channel("test", "127.0.0.1:1", 0.3), 0.2, "escalator")
    assert "UNAVAILABLE" in down(svc.InvestigateRequest()).uncertain[0]


def test_against_the_real_investigator_and_the_demo_account_system(tmp_path):
    """The drafter's and the escalator's clients against services/investigator over gRPC, with the
    demo bank's account system behind it: findings the draft states verify against themselves, and
    a confirmed card freeze runs once, is told to the customer in the system's own terms."""
    from services.delivery.action_results import ActionMessages
    from services.drafter.handlers import TicketDrafter
    from services.drafter.offline import OfflineDrafter
    from services.drafter.templates import TemplateBook
    from services.escalator.actions import ActionGate, ActionLedger, ActionRequest, Confirmation
    from services.escalator.config import ActionLimits
    from services.escalator.investigator_client import run_action_executor
    from services.investigator.main import build_investigator
    from services.investigator.servicer import InvestigatorServicer
    from tooling.settings import FleetSettings
    from tooling.demo_systems import AccountSystemProcess, systems_file
    from tooling.round_trip import DemoTicket

    seeded = [DemoTicket(id=f"real-{n}", tenant="demo-bank", channel="email", subject="", body="", customer_id=customer,
                         customer_email=f"{customer}@customers.example", label=label)
              for n, (customer, label) in enumerate([("cust-0007", "pending_transfer"), ("cust-0008", "pending_top_up")])]
    with AccountSystemProcess(tmp_path / "bank", seeded, latency_ms=(1.0, 5.0)) as bank:
        settings = FleetSettings().replace(systems_path=systems_file(tmp_path / "systems.yaml", {"demo-bank": bank}))
        investigator = build_investigator(settings)
        server, port = create_server("investigator", [(services_pb2_grpc.add_InvestigatorServicer_to_server,
                                                       InvestigatorServicer(investigator),
                                                       "supportflow.contracts.v1.Investigator")],
                                     Health("investigator"), 0, host="127.0.0.1")
        server.start()
        channel = open_channel("test", f"127.0.0.1:{port}", 5.0)
        try:
            drafter = TicketDrafter(lambda request: svc.SearchResponse(passages=[TRANSFER_HOLDS], best_score=0.9),
                                    OfflineDrafter(TemplateBook.load()),
                                    investigate=investigator_client(channel, settings.investigation_deadline_s, "drafter"))
            ticket = tk.Ticket(ticket_id="real-0", tenant_id="demo-bank", customer_id="cust-0007", channel=tk.CHANNEL_EMAIL,
                               body="Why is my transfer to a new payee held and not sent yet?")
            outcome = drafter.draft(ticket, tk.NormalizedTicket(problem_statement=ticket.body), tk.Classification(
                intent="pending_transfer", confidence=0.9, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC,
                route=tk.ROUTE_DRAFT_FOR_REVIEW))
            found = [f for f in outcome.investigation.findings if f.available]
            assert outcome.investigation.playbook and found
            stated = [c for c in outcome.draft.ledger if c.kind == "evidence"]
            assert stated and all(c.verified for c in stated)
            assert any(f.summary in outcome.draft.text for f in found)

            gate = ActionGate(ActionLimits.load(), ActionLedger(), dry_run=False,
                              executor=run_action_executor(channel, settings.investigation_deadline_s))
            proposal = gate.attempt(ActionRequest(tool="card_freeze", ticket_id="real-1", tenant_id="demo-bank",
                                                  customer_id="cust-0008", tier=tk.CUSTOMER_TIER_STANDARD,
                                                  requested_by="escalator:intent:lost_or_stolen_card"), 1_800_000_000.0)
            record = gate.confirm(Confirmation(proposal.action_id, "real-1", "demo-bank", "reply:e-1", "customer:email"),
                                  lambda customer: tk.CUSTOMER_TIER_STANDARD, 1_800_000_010.0)
            assert record.status == ev.ACTION_STATUS_EXECUTED, record.reason
            params = dict(record.params)
            assert params["status"] == "frozen" and params["reference"] and len(params["result.last4"]) == 4
            assert ActionMessages.load().text(record) == (
                f"Your card ending {params['result.last4']} is now frozen (ref {params['reference']}).")
            # The same action id again: the system answers with its first answer, nothing runs twice.
            again = services_pb2_grpc.InvestigatorStub(channel).RunAction(svc.RunActionRequest(
                tenant_id="demo-bank", action_id=record.action_id, tool="card_freeze", customer_id="cust-0008"))
            assert again.reference == params["reference"]
        finally:
            channel.close()
            server.stop(0)
            investigator.close()
