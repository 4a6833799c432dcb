"""The KPI panel on a synthetic stream whose every value is known in advance (exact equality)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import LearnerConfig
from services.learner.kpis import KPI_NAMES, KpiAccumulator, kpi_definitions, nearest_rank

CONFIG = LearnerConfig.load()  # baselines: default 80 / 78 / 80, account_specific 76; satisfied 75
T0 = 1_700_000_000
R, V, F, E = ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_FOLLOW_UP, ev.DECISION_ESCALATE
AT, DELAYED = ev.CSAT_LATENCY_AT_RESOLUTION, ev.CSAT_LATENCY_DELAYED


@dataclass
class Ticket:
    ticket_id: str
    decision: int
    archetype: int
    segment: str
    decide_after_s: float
    evidence_after_s: float | None = None
    tenant: str = "rho-bank"
    feedback: list[dict] = field(default_factory=list)


def decided(t: Ticket, index: int) -> ev.TicketDecided:
    event = ev.TicketDecided(
        meta=new_meta(t.tenant, "escalator"),
        ticket=tk.Ticket(ticket_id=t.ticket_id, tenant_id=t.tenant),
        classification=tk.Classification(archetype=t.archetype, segment=t.segment),
        decision=t.decision,
    )
    received = T0 + 100 * index
    event.timeline.received_at.seconds = received
    event.timeline.decided_at.FromNanoseconds(int((received + t.decide_after_s) * 1e9))
    if t.evidence_after_s is not None:
        event.timeline.evidence_at.FromNanoseconds(int((received + t.evidence_after_s) * 1e9))
    return event


def feedback(t: Ticket, fields: dict) -> ev.FeedbackReceived | ev.KbGapDetected:
    if "kb_gap" in fields:
        return ev.KbGapDetected(meta=new_meta(t.tenant, "retriever"), ticket_id=t.ticket_id, query="q")
    return ev.FeedbackReceived(meta=new_meta(t.tenant, "gateway"), ticket_id=t.ticket_id, **fields)


def csat(score, latency=AT):
    return {"csat": ev.CsatScore(latency=latency, score=score)}


def verdict(kind, ratio):
    return {"draft_verdict": ev.DraftVerdict(verdict=kind, edit_ratio=ratio)}


def repeat(days, reopened=False):
    return {"repeat_contact": ev.RepeatContact(days_after_resolution=days, reopened=reopened)}


def resolution(by_bot, seconds):
    return {"resolution": ev.Resolution(resolved_by_bot=by_bot, handle_time_s=seconds)}


FAQ, ACCOUNT = tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_ACCOUNT_SPECIFIC

# faq_bounded / retail: 8 tickets, decided after 1..8 s; evidence for the first six after 0.5..3 s.
RETAIL = [
    Ticket("a0", R, FAQ, "retail", 1, 0.5, feedback=[
        csat(100), csat(90, DELAYED), verdict(ev.AGENT_VERDICT_REJECTED, 1.0), {"context_loss": True},
        repeat(3), resolution(True, 30)]),
    Ticket("a1", R, FAQ, "retail", 2, 1.0, feedback=[
        csat(75), csat(70, DELAYED), verdict(ev.AGENT_VERDICT_EDITED, 0.25),
        {"qa": ev.QaResult(hallucinated_policy=True, note="wrong refund window")}, repeat(20), resolution(True, 50)]),
    Ticket("a2", R, FAQ, "retail", 3, 1.5, feedback=[
        csat(100), csat(50), {"qa": ev.QaResult(hallucinated_policy=False)}, repeat(40, reopened=True)]),
    Ticket("a3", R, FAQ, "retail", 4, 2.0),
    Ticket("a4", V, FAQ, "retail", 5, 2.5, feedback=[
        csat(80), verdict(ev.AGENT_VERDICT_ACCEPTED, 0.0), {"kb_gap": True}, resolution(False, 300)]),
    Ticket("a5", V, FAQ, "retail", 6, 3.0, feedback=[
        verdict(ev.AGENT_VERDICT_EDITED, 0.5), {"kb_gap": True}, {"kb_gap": True}]),
    Ticket("a6", F, FAQ, "retail", 7, None, feedback=[{"misroute": True}]),
    Ticket("a7", E, FAQ, "retail", 8, None, feedback=[csat(60), {"context_loss": True}, resolution(False, 600)]),
]
BUSINESS = [
    Ticket("b0", R, FAQ, "business", 10, feedback=[csat(90)]),
    Ticket("b1", R, FAQ, "business", 20, feedback=[csat(70)]),
]
ACCOUNT_RETAIL = [
    Ticket("c0", E, ACCOUNT, "retail", 2, feedback=[csat(70)]),
    Ticket("c1", E, ACCOUNT, "retail", 4, feedback=[{"misroute": True}]),
    Ticket("c2", E, ACCOUNT, "retail", 6),
    Ticket("c3", V, ACCOUNT, "", 8),
]
OTHER_TENANT = [Ticket("a0", R, FAQ, "retail", 99, tenant="acme", feedback=[csat(0)])]
ALL = RETAIL + BUSINESS + ACCOUNT_RETAIL + OTHER_TENANT

EXPECTED_FAQ_RETAIL = {
    "tickets_decided": 8, "respond_decisions": 4, "review_decisions": 2, "follow_up_decisions": 1,
    "escalate_decisions": 1, "resolved_tickets": 4,
    "deflection_rate": 4 / 8, "deflection_attempt_rate": 6 / 8,
    "containment_rate": 2 / 4,  # a0, a1 resolved by the bot out of four resolutions
    "csat_protected_deflection_rate": 2 / 8,  # a0 (100) and a1 (75) are RESPOND with CSAT >= 75
    "csat_at_resolution": 73.0,  # (100 + 75 + 50 + 80 + 60) / 5: a2's later 50 replaced its 100
    "csat_delta_at_resolution": -7.0,
    "csat_delayed": 80.0, "csat_delta_delayed": 2.0,  # (90 + 70) / 2 vs baseline 78
    "escalated_csat_delta": -20.0,  # a7: 60 vs 80
    "draft_acceptance_rate": 1 / 4, "draft_rejection_rate": 1 / 4,
    "edit_burden": 0.25,  # (0.0 + 0.5 + 0.25) / 3, the rejection excluded
    "context_loss_rate": 1 / 3,  # a7 of the handoffs a4, a5, a7 (a0 is no handoff)
    "misroute_rate": 1 / 8, "escalation_precision": 1.0,
    "hallucinated_policy_tickets": 1,
    "repeat_contact_7d_rate": 1 / 8, "repeat_contact_30d_rate": 2 / 8, "reopen_rate": 1 / 8,
    "kb_gap_rate": 2 / 8,  # a4 and a5 (twice, counted once)
    "bot_handle_time_seconds": 40.0, "escalated_handle_time_seconds": 600.0,
    "time_to_decision_p50_seconds": 4.0, "time_to_decision_p95_seconds": 8.0,
    "time_to_first_evidence_p50_seconds": 1.5, "time_to_first_evidence_p95_seconds": 3.0,
}
EXPECTED_FAQ_BUSINESS = {
    "tickets_decided": 2, "respond_decisions": 2, "review_decisions": 0, "follow_up_decisions": 0,
    "escalate_decisions": 0, "resolved_tickets": 0, "deflection_rate": 1.0, "deflection_attempt_rate": 1.0,
    "csat_protected_deflection_rate": 0.5, "csat_at_resolution": 80.0, "csat_delta_at_resolution": 0.0,
    "misroute_rate": 0.0, "hallucinated_policy_tickets": 0, "repeat_contact_7d_rate": 0.0,
    "repeat_contact_30d_rate": 0.0, "reopen_rate": 0.0, "kb_gap_rate": 0.0,
    "time_to_decision_p50_seconds": 10.0, "time_to_decision_p95_seconds": 20.0,
}
EXPECTED_ACCOUNT_RETAIL = {
    "tickets_decided": 3, "respond_decisions": 0, "review_decisions": 0, "follow_up_decisions": 0,
    "escalate_decisions": 3, "resolved_tickets": 0, "deflection_rate": 0.0, "deflection_attempt_rate": 0.0,
    "csat_protected_deflection_rate": 0.0, "csat_at_resolution": 70.0,
    "csat_delta_at_resolution": -6.0, "escalated_csat_delta": -6.0,  # account_specific baseline 76
    "context_loss_rate": 0.0, "misroute_rate": 1 / 3, "escalation_precision": 2 / 3,
    "hallucinated_policy_tickets": 0, "repeat_contact_7d_rate": 0.0, "repeat_contact_30d_rate": 0.0,
    "reopen_rate": 0.0, "kb_gap_rate": 0.0,
    "time_to_decision_p50_seconds": 4.0, "time_to_decision_p95_seconds": 6.0,
}


def run(stream_order: str, seed: int = 0) -> KpiAccumulator:
    """Feed ALL in one of three orders; the KPIs must not depend on which."""
    kpis = KpiAccumulator(CONFIG)
    decisions = [decided(t, i) for i, t in enumerate(ALL)]
    events = [(t, feedback(t, f)) for t in ALL for f in t.feedback]
    if stream_order == "decisions_first":
        for d in decisions:
            kpis.record_decision(d)
        for _, f in events:
            submit(kpis, f)
    elif stream_order == "feedback_first":  # everything waits as pending, then attaches
        for _, f in events:
            assert submit(kpis, f) is None
        assert kpis.pending_feedback == len(events)
        for d in decisions:
            kpis.record_decision(d)
        assert kpis.pending_feedback == 0
    else:  # shuffled, keeping each ticket's own feedback in order (the latest CSAT wins)
        rng = random.Random(seed)
        queues = [[d] + [f for t, f in events if t is ALL[i]] for i, d in enumerate(decisions)]
        rng.shuffle(queues)
        while queues:
            queue = rng.choice(queues)
            item = queue.pop(0)
            kpis.record_decision(item) if isinstance(item, ev.TicketDecided) else submit(kpis, item)
            queues = [q for q in queues if q]
    return kpis


def submit(kpis, item):
    return kpis.record_kb_gap(item) if isinstance(item, ev.KbGapDetected) else kpis.record_feedback(item)


def by_bucket(kpis, tenant="rho-bank"):
    return {(row.archetype, row.segment): row for row in kpis.rows(tenant)}


@pytest.mark.parametrize("order", ["decisions_first", "feedback_first", "shuffled"])
def test_kpis_per_archetype_and_segment_are_exact(order):
    rows = by_bucket(run(order, seed=11))
    assert rows[("faq_bounded", "retail")].values == EXPECTED_FAQ_RETAIL
    assert rows[("faq_bounded", "business")].values == EXPECTED_FAQ_BUSINESS
    assert rows[("account_specific", "retail")].values == EXPECTED_ACCOUNT_RETAIL
    unknown = rows[("account_specific", "unknown")]  # c3 had no segment
    assert (unknown.tickets, unknown.values["review_decisions"], unknown.values["context_loss_rate"]) == (1, 1, 0.0)


def test_rows_are_sorted_with_one_rollup_per_archetype():
    rows = run("decisions_first").rows("rho-bank")
    assert [(r.archetype, r.segment, r.tickets) for r in rows] == [
        ("account_specific", "retail", 3), ("account_specific", "unknown", 1), ("account_specific", "all", 4),
        ("faq_bounded", "business", 2), ("faq_bounded", "retail", 8), ("faq_bounded", "all", 10),
    ]


def test_rollup_recomputes_from_merged_totals_not_averages_of_rates():
    rollup = by_bucket(run("decisions_first"))[("faq_bounded", "all")].values
    assert rollup["deflection_rate"] == 6 / 10
    assert rollup["csat_at_resolution"] == 75.0  # (365 + 160) / 7
    assert rollup["csat_protected_deflection_rate"] == 3 / 10  # a0, a1, b0
    assert rollup["time_to_decision_p50_seconds"] == 5.0  # ranks over 1..8, 10, 20
    assert rollup["time_to_decision_p95_seconds"] == 20.0
    assert rollup["time_to_first_evidence_p95_seconds"] == 3.0


def test_tenants_never_mix():
    kpis = run("decisions_first")
    [acme, acme_all] = kpis.rows("acme")
    assert (acme.archetype, acme.segment, acme.tickets) == ("faq_bounded", "retail", 1)
    assert acme.values["csat_at_resolution"] == 0.0
    assert by_bucket(kpis)[("faq_bounded", "retail")].tickets == 8  # acme's "a0" is another ticket
    assert kpis.tenants() == ["acme", "rho-bank"]


def test_filters_by_archetype_and_segment():
    kpis = run("decisions_first")
    assert [(r.archetype, r.segment) for r in kpis.rows("rho-bank", "faq_bounded", "retail")] == [("faq_bounded", "retail")]
    assert [(r.archetype, r.segment) for r in kpis.rows("rho-bank", segment="all")] == [
        ("account_specific", "all"), ("faq_bounded", "all")]
    assert kpis.rows("nobody") == []


def test_a_redecided_ticket_counts_once_with_its_latest_decision():
    kpis = KpiAccumulator(CONFIG)
    t = Ticket("x", V, FAQ, "retail", 5)
    kpis.record_decision(decided(t, 0))
    kpis.record_decision(decided(Ticket("x", E, FAQ, "retail", 9), 0))
    [row, _] = kpis.rows("rho-bank")
    assert (row.values["tickets_decided"], row.values["review_decisions"], row.values["escalate_decisions"]) == (1, 0, 1)
    assert row.values["time_to_decision_p50_seconds"] == 9.0


def test_pending_feedback_is_bounded_and_counted_when_dropped():
    config = LearnerConfig.load()
    small = KpiAccumulator(type(config)(**{**config.__dict__, "max_pending_feedback": 3}))
    for i in range(5):
        small.record_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "gw"), ticket_id=f"t{i}", misroute=True))
    assert (small.pending_feedback, small.dropped_feedback) == (3, 2)


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 21)]
    assert nearest_rank(values, 50) == 10.0
    assert nearest_rank(values, 95) == 19.0
    assert nearest_rank([7.0], 95) == 7.0
    assert nearest_rank(values[:3], 50) == 2.0


def test_every_kpi_has_a_definition_in_the_table():
    assert sorted(kpi_definitions()) == sorted(KPI_NAMES)
