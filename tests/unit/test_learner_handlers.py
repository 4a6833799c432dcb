"""The learner's handlers, GetKpis servicer, metrics collector and KPI table, without Kafka."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, new_meta
from supportflow.topics import Topic

from tooling.commands.learner import format_kpi_table
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.metrics import LearnerCollector, metric_names
from services.learner.servicer import LearnerServicer
from services.learner.tenant_data import TenantData

T0 = 1_700_000_000
TENANTS = Path(__file__).parent / "fixtures" / "learner-tenants"  # rho-bank: at-resolution baseline 80


def make_learner(replaying=False) -> Learner:
    return Learner(LearnerConfig.load(), TenantData(TENANTS), replaying=replaying)


def overrides(emits):
    return [e for e in emits if e.topic is Topic.ROUTING_OVERRIDES]


def decided(ticket_id, decision=ev.DECISION_RESPOND, archetype=tk.ARCHETYPE_FAQ_BOUNDED, segment="retail",
            tenant="rho-bank", after_s=2):
    event = ev.TicketDecided(meta=new_meta(tenant, "escalator"), ticket=tk.Ticket(ticket_id=ticket_id, tenant_id=tenant),
                             classification=tk.Classification(archetype=archetype, segment=segment), decision=decision)
    event.timeline.received_at.seconds = T0
    event.timeline.decided_at.seconds = T0 + after_s
    return event


def csat(ticket_id, score, tenant="rho-bank"):
    return ev.FeedbackReceived(meta=new_meta(tenant, "gateway"), ticket_id=ticket_id,
                               csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=score))


def qa(ticket_id, hallucinated=True):
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id=ticket_id,
                               qa=ev.QaResult(hallucinated_policy=hallucinated, note="invented fee"))


def test_csat_slip_emits_one_override_keyed_by_archetype():
    learner = make_learner()
    emits = []
    for i in range(40):
        emits += learner.on_decided(decided(f"t{i}"))
        emits += learner.on_feedback(csat(f"t{i}", 70.0))  # 10 points under the baseline of 80
    [emit] = overrides(emits)
    assert emit.key == "faq_bounded"
    assert emit.event.route == tk.ROUTE_DRAFT_FOR_REVIEW and emit.event.issued_by == "learner:guardrail"


def test_a_replay_holds_overrides_and_publishes_only_those_the_topic_lacks():
    published = make_learner()
    [original] = overrides(published.on_decided(decided("t1")) + published.on_feedback(qa("t1")))

    # Restart, override on the topic: the replayed P0 re-derives the same override id; nothing new.
    replayed = make_learner(replaying=True)
    assert replayed.on_decided(decided("t1")) + replayed.on_feedback(qa("t1")) == []
    replayed.on_override(original.event)
    assert overrides(replayed.finish_replay()) == []

    # Restart after a crash that kept the override from being published: it is published now, once.
    crashed = make_learner(replaying=True)
    assert crashed.on_decided(decided("t1")) + crashed.on_feedback(qa("t1")) == []
    [late] = overrides(crashed.finish_replay())
    assert late.event.override_id == original.event.override_id and late.topic is Topic.ROUTING_OVERRIDES
    assert crashed.on_feedback(qa("t1")) == [] and crashed.finish_replay() == []


def test_a_decision_is_sampled_for_qa_and_a_replay_emits_only_the_current_weeks_samples():
    live = make_learner()
    [sample] = [e for e in live.on_decided(decided("q1")) if e.topic is Topic.QA_SAMPLES]
    assert (sample.key, sample.event.ticket_id, sample.event.week) == ("q1", "q1", "2023-W46")
    assert sample.event.decision.ticket.ticket_id == "q1"

    replayed = make_learner(replaying=True)
    old = decided("old")
    old.timeline.decided_at.seconds = T0 - 30 * 86400  # a ticket of an earlier week
    assert replayed.on_decided(old) + replayed.on_decided(decided("q1")) == []
    held = replayed.finish_replay()
    assert [(e.topic, e.event.ticket_id) for e in held] == [(Topic.QA_SAMPLES, "q1")]


def test_hallucination_reported_before_the_decision_acts_when_the_decision_arrives():
    learner = make_learner()
    assert learner.on_feedback(qa("early")) == []
    [emit] = overrides(learner.on_decided(decided("early", archetype=tk.ARCHETYPE_REPETITIVE)))
    assert emit.event.archetype == tk.ARCHETYPE_REPETITIVE
    assert "invented fee" in emit.event.reason
    assert learner.on_feedback(qa("early")) == []  # latched


def test_an_outcome_for_an_unknown_ticket_is_held_counted_and_attached_later():
    learner = make_learner()
    held_before = REGISTRY.get_sample_value("supportflow_learner_feedback_total",
                                            {"kind": "csat", "outcome": "pending"}) or 0.0
    assert learner.on_feedback(csat("later", 60.0)) == []
    learner.on_delivered(ev.DeliveryRecorded(meta=new_meta("rho-bank", "delivery"), ticket_id="later",
                                             status=ev.DELIVERY_STATUS_DELIVERED, latency_s=4.0))
    assert learner.snapshot().pending_feedback == 2 and learner.kpi_rows("rho-bank") == []
    assert REGISTRY.get_sample_value("supportflow_learner_feedback_total",
                                     {"kind": "csat", "outcome": "pending"}) == held_before + 1
    learner.on_decided(decided("later"))
    [row] = learner.kpi_rows("rho-bank", segment="retail", channel="unknown")
    assert row.values["csat_at_resolution"] == -20.0 and row.values["time_to_first_useful_response"] == 4.0
    assert learner.snapshot().pending_feedback == 0


@pytest.mark.parametrize("score", [-1.0, 100.5, 250.0, float("nan")])
def test_a_csat_outside_0_to_100_is_refused_with_the_reason(score):
    learner = make_learner()
    learner.on_decided(decided("a"))
    refused_before = REGISTRY.get_sample_value("supportflow_learner_invalid_outcomes_total",
                                               {"reason": "csat_out_of_range"}) or 0.0
    with pytest.raises(InvalidEvent, match="outside 0..100"):
        learner.on_feedback(csat("a", score))
    assert REGISTRY.get_sample_value("supportflow_learner_invalid_outcomes_total",
                                     {"reason": "csat_out_of_range"}) == refused_before + 1
    assert "csat_at_resolution_mean" not in learner.kpi_rows("rho-bank")[0].values  # nothing was counted


def test_an_override_read_back_from_the_topic_keeps_the_latch():
    learner = make_learner()
    learner.on_decided(decided("a"))
    [emit] = overrides(learner.on_feedback(qa("a")))
    restarted = make_learner()
    restarted.on_override(emit.event)
    restarted.on_decided(decided("b"))
    assert restarted.on_feedback(qa("b")) == []


def test_a_clean_qa_result_does_nothing():
    learner = make_learner()
    learner.on_decided(decided("a"))
    assert learner.on_feedback(qa("a", hallucinated=False)) == []


def test_invalid_events_are_rejected_and_ticketless_gaps_ignored():
    learner = make_learner()
    with pytest.raises(InvalidEvent):
        learner.on_decided(decided(""))
    with pytest.raises(InvalidEvent):
        learner.on_decided(decided("x", decision=ev.DECISION_UNSPECIFIED))
    with pytest.raises(InvalidEvent):
        learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "gw"), ticket_id="x"))
    with pytest.raises(InvalidEvent, match="latency"):
        learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "gw"), ticket_id="x",
                                                csat=ev.CsatScore(score=50.0)))
    with pytest.raises(InvalidEvent, match="QA severity class"):
        learner.on_agent_action(ev.AgentAction(meta=new_meta("rho-bank", "workspace"), ticket_id="x",
                                               kind=ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="typo"))
    assert learner.on_kb_gap(ev.KbGapDetected(meta=new_meta("rho-bank", "retriever"), query="q")) == []


class FakeContext:
    def time_remaining(self):
        return None

    def abort(self, code, details):
        raise grpc.RpcError(f"{code}: {details}")


def populated() -> Learner:
    learner = make_learner()
    learner.on_decided(decided("a", ev.DECISION_RESPOND, after_s=2))
    learner.on_decided(decided("b", ev.DECISION_ESCALATE, after_s=6))
    learner.on_decided(decided("c", ev.DECISION_REVIEW, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC, segment="business"))
    learner.on_decided(decided("z", tenant="acme"))
    learner.on_feedback(csat("a", 90.0))
    return learner


def test_get_kpis_returns_rows_per_cut_for_the_default_tenant_and_filters():
    learner = populated()
    servicer = LearnerServicer(lambda _tenant: learner, default_tenant="rho-bank")
    response = servicer.GetKpis(services_pb2.GetKpisRequest(), FakeContext())
    assert [(r.archetype, r.segment, r.channel, r.tickets) for r in response.rows] == [
        ("account_specific", "business", "unknown", 1), ("account_specific", "business", "all", 1),
        ("account_specific", "all", "unknown", 1), ("account_specific", "all", "all", 1),
        ("faq_bounded", "retail", "unknown", 2), ("faq_bounded", "retail", "all", 2),
        ("faq_bounded", "all", "unknown", 2), ("faq_bounded", "all", "all", 2),
    ]
    assert response.rows[4].values["deflection_rate"] == 0.5
    assert response.rows[4].values["csat_at_resolution"] == 10.0
    assert response.computed_at.seconds > 0
    only = servicer.GetKpis(services_pb2.GetKpisRequest(archetype="FAQ_BOUNDED", segment="retail", channel="all"),
                            FakeContext())
    assert [(r.archetype, r.segment, r.channel) for r in only.rows] == [("faq_bounded", "retail", "all")]
    acme = servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id="acme"), FakeContext())
    assert [r.tickets for r in acme.rows] == [1, 1, 1, 1]
    assert acme.rows[0].values["baseline_unknown"] == 1.0 and "csat_at_resolution" not in acme.rows[0].values
    with pytest.raises(grpc.RpcError, match="INVALID_ARGUMENT"):
        servicer.GetKpis(services_pb2.GetKpisRequest(archetype="vip"), FakeContext())


def test_collector_exposes_kpis_and_guardrails_under_documented_names():
    learner = populated()
    for i in range(20):
        learner.on_decided(decided(f"s{i}"))
        learner.on_feedback(csat(f"s{i}", 77.0))
    registry = CollectorRegistry()
    registry.register(LearnerCollector(lambda: [learner]))
    text = generate_latest(registry).decode()
    labels = 'archetype="faq_bounded",channel="unknown",segment="retail",tenant="rho-bank"'
    assert f"supportflow_learner_deflection_rate{{{labels}}} {21 / 22!r}" in text
    assert ('supportflow_learner_time_to_first_evidence{archetype="faq_bounded",channel="all",segment="all",'
            'tenant="rho-bank"}') not in text  # no evidence timestamps: no series
    assert 'supportflow_learner_baseline_unknown{archetype="faq_bounded",channel="all",segment="all",tenant="acme"} 1.0' in text
    assert 'supportflow_learner_guardrail_csat_samples{archetype="faq_bounded",tenant="rho-bank"} 21.0' in text
    assert 'supportflow_learner_guardrail_review_open{archetype="faq_bounded",tenant="rho-bank"} 1.0' in text
    assert 'supportflow_learner_guardrail_override_active{archetype="faq_bounded",tenant="rho-bank"} 0.0' in text
    assert "supportflow_learner_containment_rate{" not in text  # undefined (no endings): no series
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert exposed <= set(metric_names())
    # The open review shows on the archetype's GetKpis rows too, for the workspace.
    assert all(r.values["guardrail_review_open"] == 1.0 for r in learner.kpi_rows("rho-bank", "faq_bounded"))


def test_the_collector_computes_the_panels_at_most_once_per_ten_times_what_they_took():
    now = [100.0]
    learner = populated()
    computed_at = []

    def learners() -> list[Learner]:
        computed_at.append(now[0])
        now[0] += 0.2  # the panels of every tenant held take 0.2 s
        return [learner]
    registry = CollectorRegistry()
    registry.register(LearnerCollector(learners, clock=lambda: now[0]))
    first = generate_latest(registry).decode()
    learner.on_decided(decided("late"))
    now[0] = 101.9  # 1.9 s after the last computation started, which took 0.2 s: the same series
    assert generate_latest(registry).decode() == first
    now[0] = 102.1
    assert generate_latest(registry).decode() != first  # the new ticket counted now
    assert computed_at == [100.0, 102.1]


def test_kpi_table_renders_every_row_in_the_panel_order_and_marks_missing_values():
    rows = [services_pb2.KpiRow(archetype="faq_bounded", segment="retail", channel="zendesk", tickets=2,
                                values={"deflection_rate": 0.5, "csat_at_resolution": -2.25,
                                        "time_to_first_useful_response": 1.5, "bot_handle_time": 0.125,
                                        "hallucinated_policy_refund_pricing": 1.0}),
            services_pb2.KpiRow(archetype="faq_bounded", segment="all", channel="all", tickets=2,
                                values={"deflection_rate": 0.5})]
    lines = format_kpi_table(rows).splitlines()
    assert lines[0].split() == ["faq_bounded/retail/zendesk", "faq_bounded/all/all"]
    table = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(table)[:2] == ["csat_protected_deflection", "deflection_rate"]
    assert table["deflection_rate"] == ["50.0%", "50.0%"]
    assert table["csat_at_resolution"] == ["-2.2", "-"]
    assert table["time_to_first_useful_response"] == ["1.50s", "-"]
    assert table["bot_handle_time"] == ["+12.5%", "-"]
    assert table["hallucinated_policy_refund_pricing"] == ["1", "-"]
    assert format_kpi_table([]) == "No decided tickets yet."


def test_show_kpis_fetches_the_panel_over_grpc(base_settings):
    import io
    import json

    from supportflow.contracts.v1 import services_pb2_grpc
    from supportflow.observability import Health
    from supportflow.rpc import create_server

    from tooling.commands.learner import show_kpis

    health = Health("learner-test")
    learner = populated()
    server, port = create_server(
        "learner", [(services_pb2_grpc.add_LearnerServicer_to_server, LearnerServicer(lambda _tenant: learner, "rho-bank"),
                     "supportflow.contracts.v1.Learner")], health, 0, host="127.0.0.1")
    server.start()
    try:
        settings = base_settings.replace(learner_addr=f"127.0.0.1:{port}", default_tenant="rho-bank")
        table, as_json = io.StringIO(), io.StringIO()
        assert show_kpis(settings, out=table) == 0
        assert show_kpis(settings, as_json=True, out=as_json) == 0
    finally:
        server.stop(0)
    assert table.getvalue().startswith("KPI panel for rho-bank (computed ")
    assert "faq_bounded/retail/unknown" in table.getvalue()
    rows = json.loads(as_json.getvalue())["rows"]
    assert [(r["archetype"], r["segment"], r["channel"]) for r in rows][:2] == [
        ("account_specific", "business", "unknown"), ("account_specific", "business", "all")]
    assert rows[4]["values"]["deflection_rate"] == 0.5
    unreachable = base_settings.replace(learner_addr="127.0.0.1:1", grpc_deadline_s=1.0)
    assert show_kpis(unreachable, out=io.StringIO()) == 1


def resolution(ticket_id, notes, cited=()):
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "helpdesk"), ticket_id=ticket_id,
                               resolution=ev.Resolution(resolved_by_bot=False, handle_time_s=300,
                                                        resolution_notes=notes, cited_article_ids=list(cited)))


def decided_about(ticket_id, intent, problem):
    event = decided(ticket_id)
    event.classification.intent = intent
    event.ticket.body = problem
    return event


def test_resolved_tickets_are_sent_for_indexing_and_ten_unbacked_ones_make_one_proposal():
    learner = make_learner()
    emits = []
    for i in range(10):
        emits += learner.on_decided(decided_about(f"gap{i}", "travel_notice", f"Going abroad, card use #{i}?"))
        emits += learner.on_feedback(resolution(f"gap{i}", "No notice needed; the card works abroad."))
    # A backed resolution (it cites an article) of another topic is indexed but proposes nothing.
    emits += learner.on_decided(decided_about("ok", "card_arrival", "Where is my card?"))
    emits += learner.on_feedback(resolution("ok", "Cards arrive in 5 days.", cited=["doc_cards_1"]))
    # A resolution without notes teaches nothing.
    emits += learner.on_decided(decided_about("bare", "travel_notice", "Abroad?"))
    emits += learner.on_feedback(resolution("bare", ""))

    resolved = [e.event for e in emits if e.topic is Topic.TICKETS_RESOLVED]
    proposals = [e.event for e in emits if e.topic is Topic.KB_PROPOSALS]
    assert [r.ticket_id for r in resolved] == [f"gap{i}" for i in range(10)] + ["ok"]
    assert resolved[-1].article_ids == ["doc_cards_1"] and resolved[0].intent == "travel_notice"
    [proposal] = proposals
    assert proposal.topic == "travel_notice" and proposal.title == "Travel notice"
    assert list(proposal.source_ticket_ids) == ["gap0", "gap1", "gap2"]  # the default threshold is 3
    assert "No notice needed; the card works abroad." in proposal.body and "Going abroad, card use #0?" in proposal.body


def test_a_resolved_case_is_what_the_ticket_opened_with_not_the_customers_later_reply():
    learner = make_learner()
    learner.on_decided(decided_about("t", "card_arrival", "Where is my card?"))
    learner.on_decided(decided_about("t", "beneficiary_not_allowed", "Thanks, it came!"))  # the reply, classified again
    [resolved] = [e.event for e in learner.on_feedback(resolution("t", "Card dispatched on Monday."))
                  if e.topic is Topic.TICKETS_RESOLVED]
    assert (resolved.intent, resolved.problem_statement) == ("card_arrival", "Where is my card?")


def test_a_ticket_decided_without_a_packet_is_remembered_by_the_summary_a_packet_would_carry():
    learner = make_learner()
    event = decided_about("plain", "top_up_by_cash_or_cheque", "Hi team,\nDo you accept cheques for top ups?\nThanks,\nAna")
    event.ticket.subject = "Help request"  # says nothing: left out, as in an escalation packet
    learner.on_decided(event)
    [resolved] = [e.event for e in learner.on_feedback(resolution("plain", "Cheques are not accepted."))
                  if e.topic is Topic.TICKETS_RESOLVED]
    assert resolved.problem_statement == "Do you accept cheques for top ups?"
    escalated = decided_about("esc", "top_up_by_cash_or_cheque", "Do you accept cheques?")
    escalated.packet.conversation_summary = "Subject: Cheque top-up. Do you accept cheques?"
    learner.on_decided(escalated)
    [resolved] = [e.event for e in learner.on_feedback(resolution("esc", "No.")) if e.topic is Topic.TICKETS_RESOLVED]
    assert resolved.problem_statement == escalated.packet.conversation_summary


def test_a_kb_gap_makes_a_cited_resolution_count_as_unbacked_and_a_replay_republishes_nothing():
    def feed(learner):
        out = []
        for i in range(3):
            out += learner.on_decided(decided_about(f"g{i}", "exchange_rate", "What rate do I get?"))
            learner.on_kb_gap(ev.KbGapDetected(meta=new_meta("rho-bank", "retriever"), ticket_id=f"g{i}",
                                               query="rate", intent="exchange_rate", best_score=0.3))
            out += learner.on_feedback(resolution(f"g{i}", "Told the customer the day's rate.", cited=["doc_fx"]))
        return out

    live = feed(make_learner())
    assert sum(e.topic is Topic.KB_PROPOSALS for e in live) == 1
    assert feed(make_learner(replaying=True)) == []


def test_a_ticket_stays_in_the_cut_of_its_first_decision_when_a_reply_is_decided_again():
    """The customer's "thanks, it came" is classified again (another archetype); the ticket is still
    the repetitive one it opened as, now with the newer decision, whichever order they are read in."""
    for order in ((2, 9), (9, 2)):
        learner = make_learner()
        for after_s in order:
            archetype = tk.ARCHETYPE_REPETITIVE if after_s == 2 else tk.ARCHETYPE_ACCOUNT_SPECIFIC
            decision = ev.DECISION_RESPOND if after_s == 2 else ev.DECISION_ESCALATE
            learner.on_decided(decided("x", decision, archetype=archetype, after_s=after_s))
        rows = learner.kpi_rows("rho-bank", segment="retail", channel="unknown")
        assert [row.archetype for row in rows] == ["repetitive"], order
        assert rows[0].values["deflection_rate"] == 0.0, order  # the newer decision: escalated


def test_an_older_decision_read_after_a_newer_one_does_not_replace_it():
    learner = make_learner()
    learner.on_decided(decided("x", ev.DECISION_ESCALATE, after_s=9))
    learner.on_decided(decided("x", ev.DECISION_RESPOND, after_s=5))  # from another topic, read late
    [row] = learner.kpi_rows("rho-bank", segment="retail", channel="unknown")
    assert (row.tickets, row.values["deflection_rate"], row.values["escalation_precision"]) == (1, 0.0, 1.0)
