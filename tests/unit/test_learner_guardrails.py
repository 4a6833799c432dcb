"""Guardrails: a 2-point CSAT slip (at resolution or delayed) opens a review; a 4-point slip, a P0
QA verdict or context loss above 5% emits exactly one override per archetype until it is cleared."""

from __future__ import annotations

import collections
import random
from pathlib import Path

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import GuardrailConfig
from services.learner.guardrails import ISSUER, TRIGGER_CONTEXT_LOSS, TRIGGER_CSAT, TRIGGER_HALLUCINATION, Guardrails
from services.learner.tenant_data import TenantData

# At resolution 80 by default, 76 for account_specific; delayed 78 / 74 (the fixture tenant).
TENANT_DATA = TenantData(Path(__file__).parent / "fixtures" / "learner-tenants")
CONFIG = GuardrailConfig(window=50, min_samples=20, alert_slip_points=2, alert_clear_slip_points=1,
                         override_slip_points=4, context_loss_window=100, context_loss_min_handoffs=20)
T0 = 1_800_000_000.0
AT, DELAYED = ev.CSAT_LATENCY_AT_RESOLUTION, ev.CSAT_LATENCY_DELAYED


def guardrails():
    return Guardrails(CONFIG, TENANT_DATA.csat_baseline)


def feed(g, scores, archetype="faq_bounded", tenant="rho-bank", prefix="t", latency=AT, at=T0):
    overrides, alerts = [], []
    for i, score in enumerate(scores):
        outcome = g.observe_csat(tenant, archetype, f"{prefix}{i}", latency, score, at)
        overrides += outcome.overrides
        alerts += outcome.reviews
    return overrides, alerts


def p0(g, archetype, ticket, note="", tenant="rho-bank", qa_class="refund_pricing"):
    return g.observe_qa(tenant, archetype, ticket, qa_class, "", note)


def human(action, archetype=tk.ARCHETYPE_FAQ_BOUNDED, tenant="rho-bank", issuer="human:ana"):
    return ev.RoutingOverride(meta=new_meta(tenant, "ops"), archetype=archetype, action=action, issued_by=issuer)


def test_no_verdict_below_min_samples():
    overrides, alerts = feed(guardrails(), [0.0] * 19)
    assert overrides == [] and alerts == []


def test_two_point_slip_raises_an_alert_but_no_override():
    overrides, alerts = feed(guardrails(), [78.0] * 20)
    assert overrides == []
    [alert] = alerts
    assert (alert.opened, alert.latency, alert.slip, alert.mean, alert.baseline, alert.samples) == (
        True, "at_resolution", 2.0, 78.0, 80.0, 20)


def test_just_under_two_points_is_no_alert():
    overrides, alerts = feed(guardrails(), [78.5] * 30)
    assert (overrides, alerts) == ([], [])


def test_alert_is_lowered_when_csat_recovers():
    g = guardrails()
    feed(g, [78.0] * 20)
    _, alerts = feed(g, [100.0] * 5, prefix="good")  # mean 82.4 over 25
    assert [(a.opened, a.samples) for a in alerts] == [(False, 21)]


def test_a_raised_alert_stays_up_until_the_slip_is_under_one_point():
    g = guardrails()
    feed(g, [78.0] * 25)  # slip 2: raised
    _, alerts = feed(g, [79.0] * 25, prefix="hover")  # slip 1.5 over 50: still raised, no flapping
    assert alerts == []
    _, alerts = feed(g, [79.5] * 50, prefix="better")  # slip 0.5
    assert [a.opened for a in alerts] == [False]


def test_four_point_slip_emits_exactly_one_override():
    g = guardrails()
    overrides, alerts = feed(g, [76.0] * 20 + [50.0] * 100)
    assert len(overrides) == 1
    trigger, override = overrides[0]
    assert trigger == TRIGGER_CSAT
    assert override.action == ev.OVERRIDE_ACTION_SET_AUTOMATION
    assert override.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert override.archetype == tk.ARCHETYPE_FAQ_BOUNDED
    assert override.issued_by == ISSUER == "learner:guardrail"
    assert override.meta.tenant_id == "rho-bank" and override.meta.producer == "learner"
    assert override.reason == (
        "at_resolution CSAT 76.00 over the latest 20 surveys is 4.00 points below the baseline 80.00 "
        "(override threshold 4)")
    assert [a.opened for a in alerts] == [True]
    assert [s.overridden for s in g.status()] == [True]


def test_archetype_baselines_differ():
    overrides, _ = feed(guardrails(), [76.0] * 20, archetype="account_specific")  # its baseline is 76
    assert overrides == []


def test_a_p0_emits_one_override_and_only_one():
    g = guardrails()
    first = p0(g, "repetitive", "t-9", "quoted a 90-day refund window")
    second = p0(g, "repetitive", "t-10", "again", qa_class="warranty_service_level")
    [(trigger, override)] = first.overrides
    assert trigger == TRIGGER_HALLUCINATION
    assert override.archetype == tk.ARCHETYPE_REPETITIVE
    assert override.reason == "QA found hallucinated policy (refund_pricing, P0) on ticket t-9: quoted a 90-day refund window"
    assert second.overrides == []
    overrides, _ = feed(g, [0.0] * 30, archetype="repetitive")
    assert overrides == []  # the CSAT trigger does not repeat what the P0 already did


def test_each_tenant_and_archetype_has_its_own_latch():
    g = guardrails()
    assert len(p0(g, "faq_bounded", "t").overrides) == 1
    assert len(p0(g, "faq_bounded", "t", tenant="acme").overrides) == 1
    assert len(p0(g, "repetitive", "t").overrides) == 1


def test_unspecified_archetype_gets_no_override():
    assert p0(guardrails(), "unspecified", "t").overrides == []


def test_a_human_clear_rearms_with_fresh_evidence_and_a_new_override_id():
    g = guardrails()
    [(_, first)] = feed(g, [70.0] * 20)[0]
    g.observe_override(first)  # reading its own override back changes nothing
    assert feed(g, [70.0] * 5, prefix="more")[0] == []
    g.observe_override(human(ev.OVERRIDE_ACTION_CLEAR))
    assert g.status()[0].samples == 0 and not g.status()[0].overridden
    assert feed(g, [70.0] * 19, prefix="new")[0] == []  # the old slip does not count again
    [(_, second)] = feed(g, [70.0], prefix="last")[0]
    assert second.override_id != first.override_id


def test_kill_switch_on_does_not_clear_but_a_human_automation_level_does():
    g = guardrails()
    p0(g, "faq_bounded", "t")
    g.observe_override(human(ev.OVERRIDE_ACTION_KILL_SWITCH_ON))
    assert p0(g, "faq_bounded", "t2").overrides == []
    g.observe_override(human(ev.OVERRIDE_ACTION_SET_AUTOMATION))
    assert len(p0(g, "faq_bounded", "t3").overrides) == 1


def test_a_clear_for_another_tenant_changes_nothing():
    g = guardrails()
    p0(g, "faq_bounded", "t")
    g.observe_override(human(ev.OVERRIDE_ACTION_CLEAR, tenant="acme"))
    assert p0(g, "faq_bounded", "t2").overrides == []


def test_replaying_the_override_topic_after_a_restart_restores_the_latch():
    before = guardrails()
    [(_, issued)] = p0(before, "faq_bounded", "t").overrides
    restarted = guardrails()
    restarted.observe_override(issued)
    assert p0(restarted, "faq_bounded", "t2").overrides == []
    cleared = guardrails()
    for event in (issued, human(ev.OVERRIDE_ACTION_CLEAR)):
        cleared.observe_override(event)
    assert len(p0(cleared, "faq_bounded", "t3").overrides) == 1


def test_a_second_survey_for_the_same_ticket_replaces_the_first():
    g = guardrails()
    feed(g, [70.0] * 19)
    assert g.observe_csat("rho-bank", "faq_bounded", "t0", AT, 90.0, T0).overrides == []
    assert g.status()[0].samples == 19


def test_p1_and_p2_classes_are_counted_but_pull_nothing_back():
    g = guardrails()
    assert p0(g, "faq_bounded", "a", qa_class="capability_overreach").overrides == []
    assert p0(g, "faq_bounded", "b", qa_class="process_contact").overrides == []
    # A reviewer's explicit P0 severity, or hallucinated policy not yet classified, does.
    assert len(g.observe_qa("rho-bank", "faq_bounded", "c", "process_contact", "P0", "").overrides) == 1
    assert len(guardrails().observe_qa("rho-bank", "faq_bounded", "d", "unclassified", "", "").overrides) == 1


def test_a_delayed_csat_slip_opens_a_review_and_at_four_points_pulls_back():
    g = guardrails()
    overrides, reviews = feed(g, [76.0] * 20, latency=DELAYED)  # delayed baseline 78: slip 2
    assert overrides == [] and [(r.opened, r.latency, r.slip) for r in reviews] == [(True, "delayed", 2.0)]
    overrides, _ = feed(g, [70.0] * 20, latency=DELAYED, prefix="worse")  # at the 10th: mean 74, slip 4
    [(trigger, override)] = overrides
    assert trigger == TRIGGER_CSAT and override.reason.startswith("delayed CSAT 74.00 over the latest 30 surveys")


def test_surveys_older_than_the_rolling_window_leave_it():
    g = guardrails()
    feed(g, [60.0] * 19, at=T0 - 40 * 86400)  # six weeks old
    overrides, reviews = feed(g, [80.0], prefix="now")  # the old ones drop out: one survey, no verdict
    assert (overrides, reviews) == ([], []) and g.status()[0].samples == 1


def test_context_loss_above_five_percent_of_handoffs_pulls_back():
    g = guardrails()
    outcomes = [g.observe_handoff("rho-bank", "account_specific", f"h{i}", False) for i in range(19)]
    outcomes.append(g.observe_handoff("rho-bank", "account_specific", "h0", True))  # its flag arrives: 1 of 19
    assert all(o.overrides == [] for o in outcomes)  # under the minimum of 20 handoffs
    assert g.observe_handoff("rho-bank", "account_specific", "h19", False).overrides == []  # 1 / 20 = 5%: not above
    [(trigger, override)] = g.observe_handoff("rho-bank", "account_specific", "h20", True).overrides  # 2 / 21
    assert trigger == TRIGGER_CONTEXT_LOSS and override.archetype == tk.ARCHETYPE_ACCOUNT_SPECIFIC
    assert override.reason == "context loss on 9.5% of the latest 21 handoffs (threshold 5%)"
    assert [s.context_loss_rate for s in g.status()] == [2 / 21]


def test_no_baseline_no_csat_verdict():
    g = guardrails()
    overrides, reviews = feed(g, [0.0] * 30, tenant="no-baseline-bank")
    assert (overrides, reviews) == ([], [])
    assert g.status()[0].slip is None


# ---- the same guardrails through the learner's handlers: streams of events, the audit trail ----

def learner_stream():
    from services.learner.config import LearnerConfig
    from services.learner.handlers import Learner

    return Learner(LearnerConfig.load(), TENANT_DATA)


def decision(ticket, archetype, decision=ev.DECISION_RESPOND):
    event = ev.TicketDecided(meta=new_meta("rho-bank", "escalator"),
                             ticket=tk.Ticket(ticket_id=ticket, tenant_id="rho-bank"),
                             classification=tk.Classification(archetype=archetype, segment="retail"), decision=decision)
    event.timeline.decided_at.seconds = int(T0)
    return event


def trail(emits):
    return [e.event for e in emits if e.topic.base_name == "routing.overrides"]


def override_active(learner, archetype):
    return {r.values["guardrail_override_active"] for r in learner.kpi_rows("rho-bank", archetype)}


def test_a_stream_with_a_four_point_slip_in_one_archetype_ends_with_it_on_draft_for_review():
    learner, emits = learner_stream(), []
    for i in range(60):
        emits += learner.on_decided(decision(f"f{i}", tk.ARCHETYPE_FAQ_BOUNDED))
        emits += learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "zendesk"), ticket_id=f"f{i}",
                                                         csat=ev.CsatScore(latency=AT, score=75.5)))  # 4.5 under 80
        emits += learner.on_decided(decision(f"r{i}", tk.ARCHETYPE_REPETITIVE))
        emits += learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "zendesk"), ticket_id=f"r{i}",
                                                         csat=ev.CsatScore(latency=AT, score=81.0)))
    [override] = trail(emits)
    assert (override.archetype, override.action, override.route, override.issued_by) == (
        tk.ARCHETYPE_FAQ_BOUNDED, ev.OVERRIDE_ACTION_SET_AUTOMATION, tk.ROUTE_DRAFT_FOR_REVIEW, "learner:guardrail")
    assert "4.50 points below the baseline 80.00" in override.reason
    learner.on_override(override)  # read back from the audit trail
    assert override_active(learner, "faq_bounded") == {1.0} and override_active(learner, "repetitive") == {0.0}
    assert {r.values["guardrail_review_open"] for r in learner.kpi_rows("rho-bank", "faq_bounded")} == {1.0}


def test_a_p0_from_the_qa_queue_pulls_the_archetype_back():
    learner, emits = learner_stream(), []
    emits += learner.on_decided(decision("q", tk.ARCHETYPE_REPETITIVE))
    emits += learner.on_agent_action(ev.AgentAction(meta=new_meta("rho-bank", "workspace"), ticket_id="q",
                                                    kind=ev.AGENT_ACTION_KIND_QA_SEVERITY, qa_class="process_contact"))
    assert trail(emits) == []  # a P2 is counted, not acted on
    emits += learner.on_agent_action(ev.AgentAction(meta=new_meta("rho-bank", "workspace"), ticket_id="q",
                                                    kind=ev.AGENT_ACTION_KIND_QA_SEVERITY,
                                                    qa_class="warranty_service_level", note="promised a 5-year warranty"))
    [override] = trail(emits)
    assert override.archetype == tk.ARCHETYPE_REPETITIVE and override.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert "warranty_service_level" in override.reason and "promised a 5-year warranty" in override.reason


def test_context_loss_above_five_percent_pulls_the_archetype_back():
    learner, emits = learner_stream(), []
    for i in range(20):
        emits += learner.on_decided(decision(f"h{i}", tk.ARCHETYPE_ACCOUNT_SPECIFIC, ev.DECISION_ESCALATE))
    emits += learner.on_agent_action(ev.AgentAction(meta=new_meta("rho-bank", "workspace"), ticket_id="h1",
                                                    kind=ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS))
    assert trail(emits) == []  # 1 of 20: 5%, not above
    emits += learner.on_agent_action(ev.AgentAction(meta=new_meta("rho-bank", "workspace"), ticket_id="h2",
                                                    kind=ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS))
    [override] = trail(emits)  # 2 of 20: 10%
    assert override.archetype == tk.ARCHETYPE_ACCOUNT_SPECIFIC and override.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert override.reason == "context loss on 10.0% of the latest 20 handoffs (threshold 5%)"
    [row] = learner.kpi_rows("rho-bank", "account_specific", "all", "all")
    assert row.values["context_loss_rate"] == 0.1


def test_windows_kept_in_constant_time_match_a_recount_of_every_survey_and_handoff():
    """The newest survey, the oldest bound and the handoffs' loss count are kept as they change;
    against the plain recount (newest over the window, drop what is older than the rolling days,
    trim to the window; losses summed), over surveys with repeated tickets, out-of-order and stale
    timestamps, windows trimmed by count and by age, and a clear in the middle."""
    rng = random.Random(7)
    config = GuardrailConfig(window=30, min_samples=5, alert_slip_points=2, alert_clear_slip_points=1,
                             override_slip_points=50, rolling_days=2, context_loss_window=25,
                             context_loss_min_handoffs=5, context_loss_max_rate=1.0)
    g = Guardrails(config, TENANT_DATA.csat_baseline)
    recount: collections.OrderedDict = collections.OrderedDict()
    handoffs: collections.OrderedDict = collections.OrderedDict()
    clock = T0
    for step in range(3000):
        clock += rng.choice([0.0, 600.0, 3600.0, 4 * 3600.0])
        at = clock - rng.choice([0.0, 0.0, 0.0, 7200.0, 3 * 86400.0])  # late, some past the rolling days
        ticket = f"t{rng.randrange(60)}"
        score = float(rng.randrange(60, 101))
        g.observe_csat("rho-bank", "faq_bounded", ticket, AT, score, at)
        recount.pop(ticket, None)
        recount[ticket] = (score, at)
        newest = max(a for _, a in recount.values())
        for old in [t for t, (_, a) in recount.items() if a < newest - 2 * 86400]:
            del recount[old]
        while len(recount) > 30:
            recount.popitem(last=False)
        handoff, lost = f"h{rng.randrange(80)}", rng.random() < 0.3
        g.observe_handoff("rho-bank", "faq_bounded", handoff, lost)
        handoffs[handoff] = handoffs.get(handoff, False) or lost
        while len(handoffs) > 25:
            handoffs.popitem(last=False)
        if step == 1500:  # a person re-arms it: both windows start over
            assert p0(g, "faq_bounded", "x").overrides  # latched
            g.observe_override(human(ev.OVERRIDE_ACTION_CLEAR))
            recount.clear()
            handoffs.clear()
        guard = g._guards[("rho-bank", "faq_bounded")]
        assert guard.scores[AT] == recount, step
        [status] = g.status()
        expected = sum(handoffs.values()) / len(handoffs) if len(handoffs) >= 5 else None
        assert status.context_loss_rate == expected, step

