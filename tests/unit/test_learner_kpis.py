"""The KPI panel, one test per KPI: each builds a small stream of events by hand, runs it through
the learner's handlers and checks the value worked out by hand (baselines: the fixture tenant's
tests/unit/fixtures/learner-tenants/rho-bank/kpi-baseline.yaml, at resolution 80, delayed 78,
model-scored 80, account_specific 76/74/76; handle times bot 60 s, escalated 1500 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta
from supportflow.timestamps import timestamp_at
from supportflow.topics import Topic

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.kpis import COMPANION_NAMES, KPI_NAMES, kpi_definitions, nearest_rank
from services.learner.tenant_data import TenantData

TENANTS = Path(__file__).parent / "fixtures" / "learner-tenants"
CONFIG = LearnerConfig.load()
T0 = 1_800_000_000.0
DAY = 86400.0
R, V, F, E = ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_FOLLOW_UP, ev.DECISION_ESCALATE
AT, DELAYED, MODEL = ev.CSAT_LATENCY_AT_RESOLUTION, ev.CSAT_LATENCY_DELAYED, ev.CSAT_LATENCY_MODEL_SCORED
FAQ, ACCOUNT = tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_ACCOUNT_SPECIFIC


class Stream:
    """A learner and the helpers that build the events a deployment would send it."""

    def __init__(self, tenant: str = "rho-bank", tenants_dir: Path | None = TENANTS, config: LearnerConfig = CONFIG):
        self.tenant = tenant
        self.learner = Learner(config, TenantData(tenants_dir))
        self.emits = []

    def decide(self, ticket, decision=R, archetype=FAQ, segment="retail", provider="zendesk", at=T0, customer="",
               evidence_after=None, classified_after=None, investigation_ms=None):
        event = ev.TicketDecided(
            meta=new_meta(self.tenant, "escalator"),
            ticket=tk.Ticket(ticket_id=ticket, tenant_id=self.tenant, customer_id=customer,
                             origin=tk.ChannelOrigin(provider=provider)),
            classification=tk.Classification(archetype=archetype, segment=segment), decision=decision)
        event.timeline.received_at.CopyFrom(timestamp_at(at))
        event.timeline.decided_at.CopyFrom(timestamp_at(at + 5))
        if evidence_after is not None:
            event.timeline.evidence_at.CopyFrom(timestamp_at(at + evidence_after))
        if classified_after is not None:
            event.timeline.classified_at.CopyFrom(timestamp_at(at + classified_after))
        if investigation_ms is not None:
            event.investigation.first_evidence_ms = investigation_ms
            event.investigation.findings.add(source="transactions", available=True)
        self.emits += self.learner.on_decided(event)
        return self

    def feedback(self, ticket, at=T0 + 60, **kind):
        meta = new_meta(self.tenant, "gateway")
        meta.occurred_at.CopyFrom(timestamp_at(at))
        self.emits += self.learner.on_feedback(ev.FeedbackReceived(meta=meta, ticket_id=ticket, **kind))
        return self

    def csat(self, ticket, score, latency=AT, at=T0 + 60):
        return self.feedback(ticket, at=at, csat=ev.CsatScore(latency=latency, score=score))

    def status(self, ticket, status, at):
        return self.feedback(ticket, at=at, status_change=ev.StatusChange(status=status, changed_by="agent"))

    def action(self, ticket, kind, **fields):
        self.emits += self.learner.on_agent_action(ev.AgentAction(
            meta=new_meta(self.tenant, "workspace"), action_id=f"{ticket}-{kind}", ticket_id=ticket, kind=kind,
            agent="agent:sam", **fields))
        return self

    def delivered(self, ticket, latency_s, status=ev.DELIVERY_STATUS_DELIVERED):
        self.emits += self.learner.on_delivered(ev.DeliveryRecorded(
            meta=new_meta(self.tenant, "delivery"), ticket_id=ticket, status=status, latency_s=latency_s))
        return self

    def received(self, ticket, customer, at):
        self.learner.on_received(ev.TicketReceived(meta=new_meta(self.tenant, "gateway"), ticket=tk.Ticket(
            ticket_id=ticket, tenant_id=self.tenant, customer_id=customer, received_at=timestamp_at(at))))
        return self

    def row(self, archetype="faq_bounded", segment="retail", channel="zendesk") -> dict[str, float]:
        [row] = self.learner.kpi_rows(self.tenant, archetype, segment, channel)
        return row.values


def test_the_panel_names_are_the_defined_ones_each_with_a_definition():
    assert len(KPI_NAMES) == len(set(KPI_NAMES)) == 29
    assert {"csat_protected_deflection", "deflection_rate", "deflection_attempt_rate", "containment_rate",
            "csat_at_resolution", "csat_delayed", "csat_model_scored", "context_loss_rate", "escalated_csat_delta",
            "customer_repetition_rate", "hallucinated_policy_refund_pricing",
            "hallucinated_policy_warranty_service_level", "hallucinated_policy_process_contact",
            "hallucinated_policy_capability_overreach", "qa_sampled", "bot_handle_time", "escalated_handle_time",
            "repeat_contact_7d", "repeat_contact_30d", "time_to_first_useful_response", "time_to_first_evidence",
            "escalation_precision", "misroute_rate", "kb_gap_rate", "draft_acceptance_rate",
            "edit_burden"} <= set(KPI_NAMES)
    assert set(kpi_definitions()) == set(KPI_NAMES) | set(COMPANION_NAMES)


def test_deflection_rate_and_deflection_attempt_rate():
    s = Stream().decide("a", R).decide("b", R).decide("c", V).decide("d", E)
    values = s.row()
    assert values["deflection_rate"] == 2 / 4
    assert values["deflection_attempt_rate"] == 3 / 4


def test_containment_rate_counts_attempts_that_ended_without_escalation_or_reopen():
    s = Stream()
    for ticket, decision in (("r1", R), ("r2", R), ("r3", R), ("r4", R), ("v1", V), ("e1", E)):
        s.decide(ticket, decision)
    for ticket in ("r1", "r2", "r3", "v1", "e1"):
        s.status(ticket, "solved", T0 + 100)
    s.action("r2", ev.AGENT_ACTION_KIND_ESCALATE)  # an agent took it over after all
    s.status("r3", "reopened", T0 + 200)
    # Attempts that ended: r1, r2, r3, v1 (r4 has not ended, e1 is no attempt); contained: r1, v1.
    assert s.row()["containment_rate"] == 2 / 4


def test_csat_at_resolution_is_the_4_week_rolling_delta_against_the_baseline():
    s = Stream().decide("old", R, at=T0 - 40 * DAY).decide("a", R).decide("b", R)
    s.csat("old", 0.0, at=T0 - 40 * DAY)  # older than 28 days by the latest event: out of the window
    s.csat("a", 70.0).csat("b", 94.0)
    values = s.row()
    assert values["csat_at_resolution_mean"] == 82.0
    assert values["csat_at_resolution"] == 2.0


def test_csat_delayed_delta():
    s = Stream().decide("a", R).decide("b", R).csat("a", 70.0, DELAYED).csat("b", 74.0, DELAYED)
    assert s.row()["csat_delayed"] == 72.0 - 78.0


def test_csat_model_scored_delta_uses_the_archetype_baseline():
    s = Stream().decide("a", V, archetype=ACCOUNT).csat("a", 81.0, MODEL)
    assert s.row("account_specific")["csat_model_scored"] == 81.0 - 76.0


def test_csat_protected_deflection_counts_deflection_only_while_csat_holds():
    holding = Stream().decide("a", R).decide("b", R).decide("c", V).csat("a", 80.0).csat("b", 79.5, DELAYED)
    values = holding.row()
    assert values["csat_protected_deflection"] == values["deflection_rate"] == 2 / 3
    assert values["csat_protected_deflection_withheld"] == 0.0

    slipping = Stream().decide("a", R).decide("b", R).csat("a", 90.0).csat("b", 70.0, DELAYED)  # delayed -8
    values = slipping.row()
    assert values["deflection_rate"] == 1.0 and values["csat_protected_deflection"] == 0.0
    assert values["csat_protected_deflection_withheld"] == 1.0
    assert values["csat_protected_deflection_csat_delta"] == -8.0

    no_csat = Stream().decide("a", R).row()
    assert no_csat["csat_protected_deflection"] == 0.0 and no_csat["csat_protected_deflection_withheld"] == 1.0
    assert "csat_protected_deflection_csat_delta" not in no_csat


def test_a_tenant_without_a_baseline_reports_deltas_as_unknown():
    s = Stream(tenant="no-baseline-bank").decide("a", R).decide("b", E).csat("a", 90.0).csat("b", 60.0)
    s.feedback("a", resolution=ev.Resolution(resolved_by_bot=True, handle_time_s=30))
    values = s.row()
    assert values["baseline_unknown"] == 1.0
    for name in ("csat_at_resolution", "csat_protected_deflection", "escalated_csat_delta", "bot_handle_time"):
        assert name not in values
    assert values["csat_at_resolution_mean"] == 75.0 and values["bot_handle_time_mean_seconds"] == 30.0
    assert Stream().decide("a", R).row()["baseline_unknown"] == 0.0


def test_context_loss_rate_is_over_handoffs():
    s = Stream().decide("v", V).decide("e1", E).decide("e2", E).decide("e3", E).decide("r", R)
    s.action("e2", ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS)
    s.feedback("r", context_loss=True)  # no handoff: not counted
    assert s.row()["context_loss_rate"] == 1 / 4


def test_escalated_csat_delta():
    s = Stream().decide("e1", E).decide("e2", E).decide("r", R).csat("e1", 60.0).csat("e2", 70.0).csat("r", 100.0)
    assert s.row()["escalated_csat_delta"] == 65.0 - 80.0


def test_customer_repetition_rate_within_the_first_three_agent_turns():
    s = Stream()
    for ticket in ("a", "b", "c", "d"):
        s.decide(ticket, V)

    def reply(ticket, text, turns):
        s.feedback(ticket, customer_reply=ev.CustomerReply(text=text, agent_turns_before=turns))

    reply("a", "As I said in my first message, the card was declined at the till.", 2)
    reply("b", "I have already explained this, please read it.", 5)  # after the third agent turn
    reply("c", "Thanks, that worked.", 1)
    # d: no reply read from the channel, so not a conversation the rate can judge
    assert s.row()["customer_repetition_rate"] == 1 / 3


def test_the_repetition_lexicon_is_the_tenants_own_when_it_has_one(tmp_path):
    (tmp_path / "lexi-bank").mkdir()
    (tmp_path / "lexi-bank" / "repetition-lexicon.yaml").write_text('phrases: ["zoals gezegd"]\n')
    s = Stream(tenant="lexi-bank", tenants_dir=tmp_path).decide("a", V).decide("b", V)
    s.feedback("a", customer_reply=ev.CustomerReply(text="Zoals gezegd: mijn kaart werkt niet", agent_turns_before=1))
    s.feedback("b", customer_reply=ev.CustomerReply(text="As I said, it does not work", agent_turns_before=1))
    assert s.row()["customer_repetition_rate"] == 1 / 2  # the default lexicon does not apply


def test_hallucinated_policy_counts_per_severity_class_and_qa_reviewed():
    s = Stream()
    for ticket in ("a", "b", "c", "d", "e", "f"):
        s.decide(ticket, R, archetype=tk.ARCHETYPE_REPETITIVE)
    s.action("a", ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="process_contact")
    s.action("b", ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="process_contact")
    s.action("c", ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="none")
    s.feedback("d", qa=ev.QaResult(hallucinated_policy=True, severity_class="capability_overreach", severity="P1"))
    s.action("e", ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="refund_pricing")
    values = s.row("repetitive")
    assert values["hallucinated_policy_process_contact"] == 2
    assert values["hallucinated_policy_capability_overreach"] == 1
    assert values["hallucinated_policy_refund_pricing"] == 1
    assert values["hallucinated_policy_warranty_service_level"] == 0
    assert values["hallucinated_policy"] == 4 and values["qa_reviewed"] == 5


def test_qa_sampled_counts_the_tickets_the_learner_sent_to_the_qa_queue():
    s = Stream()
    for index in range(30):
        s.decide(f"t{index}", R)
    samples = [e for e in s.emits if e.topic is Topic.QA_SAMPLES]
    # At the default rate (2%) the first ticket of the week is sampled for the archetype, and the
    # seeded draw may add some; the row counts exactly what was emitted.
    assert samples and samples[0].event.ticket_id == "t0"
    assert s.row()["qa_sampled"] == len(samples)
    assert {e.event.week for e in samples} == {"2027-W02"}  # 2027-01-15, ISO week 2


def test_bot_handle_time_against_the_baseline():
    s = Stream().decide("a", R).decide("b", R)
    s.feedback("a", resolution=ev.Resolution(resolved_by_bot=True, handle_time_s=66))
    s.feedback("b", resolution=ev.Resolution(resolved_by_bot=True, handle_time_s=78))
    values = s.row()
    assert values["bot_handle_time_mean_seconds"] == 72.0
    assert values["bot_handle_time"] == pytest.approx(72.0 / 60.0 - 1.0)  # 20% above the baseline


def test_escalated_handle_time_against_the_baseline():
    s = Stream().decide("e", E).decide("r", R)
    s.feedback("e", resolution=ev.Resolution(resolved_by_bot=False, handle_time_s=1650))
    s.feedback("r", resolution=ev.Resolution(resolved_by_bot=False, handle_time_s=9999))  # not escalated
    assert s.row()["escalated_handle_time"] == pytest.approx(0.1)


def test_resolutions_reported_count_the_handle_times_base_not_status_changes():
    s = Stream().decide("bot", R).decide("person", E).decide("solved", R).decide("open", R)
    s.feedback("bot", resolution=ev.Resolution(resolved_by_bot=True, handle_time_s=0))
    s.feedback("person", resolution=ev.Resolution(resolved_by_bot=False, handle_time_s=600))
    s.status("solved", "solved", T0 + DAY)  # ended, but nobody said who resolved it or how long it took
    values = s.row()
    assert values["resolutions_reported"] == 2
    assert values["tickets_resolved"] == 3


def test_repeat_contact_7d_and_30d_from_new_tickets_and_reopens():
    s = Stream()
    for ticket, customer in (("a", "c1"), ("b", "c2"), ("c", "c3"), ("d", "c4"), ("open", "c5")):
        s.decide(ticket, R, customer=customer)
        s.received(ticket, customer, T0)
    for ticket in ("a", "b", "c", "d"):
        s.status(ticket, "solved", T0 + DAY)
    s.received("a-again", "c1", T0 + 4 * DAY)  # 3 days after resolution
    s.received("b-again", "c2", T0 + 21 * DAY)  # 20 days after
    s.status("c", "reopened", T0 + 2 * DAY)  # 1 day after
    s.received("d-before", "c4", T0 + 0.5 * DAY)  # before d's resolution: not a repeat
    values = s.row()
    assert values["tickets_resolved"] == 4  # "open" has not ended
    assert values["repeat_contact_7d"] == 2 / 4
    assert values["repeat_contact_30d"] == 3 / 4


def test_time_to_first_useful_response_p50_and_p95_from_deliveries():
    s = Stream()
    for ticket in ("a", "b", "c", "d"):
        s.decide(ticket, R)
    s.delivered("a", 2.0).delivered("b", 4.0).delivered("c", 10.0)
    s.delivered("a", 1.0, status=ev.DELIVERY_STATUS_FAILED)  # refused: not a response
    s.delivered("b", 30.0)  # a later delivery on the same ticket: the first counts
    values = s.row()
    assert values["time_to_first_useful_response"] == 4.0
    assert values["time_to_first_useful_response_p95"] == 10.0


def test_time_to_first_evidence_takes_the_earlier_of_kb_passages_and_investigation():
    s = Stream()
    s.decide("kb", V, evidence_after=3.0)
    s.decide("inv", V, evidence_after=3.0, classified_after=0.2, investigation_ms=500)  # 0.7 s
    s.decide("slow-inv", V, evidence_after=1.0, classified_after=0.5, investigation_ms=2000)  # KB first: 1.0
    s.decide("none", V)
    values = s.row()
    assert values["time_to_first_evidence"] == 1.0
    assert values["time_to_first_evidence_p95"] == 3.0


def test_escalation_precision_and_misroute_rate():
    s = Stream().decide("e1", E).decide("e2", E).decide("e3", E).decide("e4", E).decide("r", R)
    s.feedback("e2", misroute=True)
    values = s.row()
    assert values["escalation_precision"] == 3 / 4
    assert values["misroute_rate"] == 1 / 5


def test_kb_gap_rate():
    s = Stream().decide("a").decide("b").decide("c").decide("d")
    for ticket in ("a", "a", "c"):
        s.learner.on_kb_gap(ev.KbGapDetected(meta=new_meta("rho-bank", "retriever"), ticket_id=ticket, query="q"))
    assert s.row()["kb_gap_rate"] == 2 / 4


def test_draft_acceptance_rate_and_edit_burden():
    s = Stream()
    for ticket in ("a", "b", "c", "d", "e"):
        s.decide(ticket, V)
    s.action("a", ev.AGENT_ACTION_KIND_APPROVE)
    s.action("b", ev.AGENT_ACTION_KIND_EDIT_AND_SEND, edit_ratio=0.4)
    s.action("c", ev.AGENT_ACTION_KIND_REJECT)
    s.feedback("d", draft_verdict=ev.DraftVerdict(verdict=ev.AGENT_VERDICT_EDITED, edit_ratio=0.2))
    values = s.row()
    assert values["draft_acceptance_rate"] == 1 / 4
    assert values["drafts_with_verdict"] == 4  # e has none
    assert values["edit_burden"] == pytest.approx((0.0 + 0.4 + 0.2) / 3)  # the rejection left out


def test_rows_cut_by_archetype_segment_and_channel_with_rollups_and_never_blended():
    s = Stream()
    s.decide("a", R, segment="retail", provider="zendesk").decide("b", V, segment="retail", provider="intercom")
    s.decide("c", R, segment="business", provider="zendesk").decide("d", E, archetype=ACCOUNT, provider="email")
    rows = s.learner.kpi_rows("rho-bank")
    cuts = {(r.archetype, r.segment, r.channel): r.tickets for r in rows}
    assert cuts == {
        ("faq_bounded", "retail", "zendesk"): 1, ("faq_bounded", "retail", "intercom"): 1,
        ("faq_bounded", "retail", "all"): 2, ("faq_bounded", "business", "zendesk"): 1,
        ("faq_bounded", "business", "all"): 1, ("faq_bounded", "all", "zendesk"): 2,
        ("faq_bounded", "all", "intercom"): 1, ("faq_bounded", "all", "all"): 3,
        ("account_specific", "retail", "email"): 1, ("account_specific", "retail", "all"): 1,
        ("account_specific", "all", "email"): 1, ("account_specific", "all", "all"): 1,
    }
    by_channel = {r.channel: r.values["deflection_rate"] for r in s.learner.kpi_rows("rho-bank", "faq_bounded", "all")}
    assert by_channel == {"zendesk": 1.0, "intercom": 0.0, "all": 2 / 3}


def test_a_fully_fed_stream_carries_every_kpi_name():
    s = Stream()
    s.decide("r", R, customer="c1", evidence_after=1.0).decide("v", V, evidence_after=2.0).decide("e", E)
    s.received("r", "c1", T0)
    for ticket in ("r", "v", "e"):
        s.csat(ticket, 80.0).csat(ticket, 78.0, DELAYED).csat(ticket, 80.0, MODEL).delivered(ticket, 3.0)
    s.feedback("r", resolution=ev.Resolution(resolved_by_bot=True, handle_time_s=50))
    s.feedback("e", resolution=ev.Resolution(resolved_by_bot=False, handle_time_s=1400))
    s.feedback("v", customer_reply=ev.CustomerReply(text="ok", agent_turns_before=1))
    s.action("v", ev.AGENT_ACTION_KIND_APPROVE)
    values = s.row()
    assert [name for name in KPI_NAMES if name not in values] == []


def test_nearest_rank_percentile():
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert nearest_rank([7.0], 50) == 7.0
