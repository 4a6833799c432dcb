"""The guardrail loop across services, without Kafka: a scripted 4-point CSAT slip in one archetype
makes the learner issue exactly one override, the classifier applies it, and the archetype's next
confident tickets are routed to review while other archetypes keep their automation."""

from __future__ import annotations

from pathlib import Path

from integrations.crm import FileCrm
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta
from supportflow.topics import Topic
from tests.intent_stubs import FixedModel
from tooling.sample_data import SAMPLE_CRM_PATH

from services.classifier.handlers import TicketTriage, routing_override_handler
from services.classifier.routing import DEFAULT_POLICY_PATH, PolicyStore
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.tenant_data import TenantData


def decided(ticket_id: str) -> ev.TicketDecided:
    event = ev.TicketDecided(
        meta=new_meta("rho-bank", "escalator"), ticket=tk.Ticket(ticket_id=ticket_id, tenant_id="rho-bank"),
        classification=tk.Classification(archetype=tk.ARCHETYPE_REPETITIVE, segment="retail"), decision=ev.DECISION_RESPOND)
    event.timeline.received_at.seconds, event.timeline.decided_at.seconds = 1_700_000_000, 1_700_000_002
    return event


def csat(ticket_id: str, score: float) -> ev.FeedbackReceived:
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "survey"), ticket_id=ticket_id,
                               csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=score))


def route_of(triage: TicketTriage, body: str) -> int:
    ticket = tk.Ticket(ticket_id="next", tenant_id="rho-bank", customer_id="cust-0001", body=body)
    return triage.classify(ticket)[1].route


def test_a_four_point_slip_pulls_only_that_archetype_back_to_review(tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(DEFAULT_POLICY_PATH.read_text())
    policies = PolicyStore(policy_file)
    repetitive = TicketTriage(FixedModel([("activate_my_card", 0.99)]), policies, FileCrm(SAMPLE_CRM_PATH))
    faq = TicketTriage(FixedModel([("exchange_rate", 0.99)]), policies, FileCrm(SAMPLE_CRM_PATH))
    assert route_of(repetitive, "How do I activate my new card?") == tk.ROUTE_AUTO_RESPOND
    faq_route = route_of(faq, "What exchange rate do you use?")

    tenant_data = TenantData(Path(__file__).parent / "fixtures" / "learner-tenants")
    learner = Learner(LearnerConfig.load(), tenant_data)
    emits = []
    baseline = tenant_data.csat_baseline("rho-bank", "repetitive", ev.CSAT_LATENCY_AT_RESOLUTION)
    for index in range(60):  # 4.5 points under the baseline once min_samples surveys are in
        emits += learner.on_decided(decided(f"t{index}"))
        emits += learner.on_feedback(csat(f"t{index}", baseline - 4.5))
    overrides = [e for e in emits if e.topic is Topic.ROUTING_OVERRIDES]
    assert len(overrides) == 1 and overrides[0].event.archetype == tk.ARCHETYPE_REPETITIVE

    apply = routing_override_handler(policies)
    assert apply(overrides[0].event) == []
    assert route_of(repetitive, "How do I activate my new card?") == tk.ROUTE_DRAFT_FOR_REVIEW
    assert route_of(faq, "What exchange rate do you use?") == faq_route
