"""Guardrails: a 2-point CSAT slip alerts, a 4-point slip or a hallucinated-policy QA result
emits exactly one override per archetype until it is cleared."""

from __future__ import annotations

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import GuardrailConfig, LearnerConfig
from services.learner.guardrails import ISSUER, TRIGGER_CSAT, TRIGGER_HALLUCINATION, Guardrails

BASELINES = LearnerConfig.load().baselines  # at resolution: 80 by default, 76 for account_specific
CONFIG = GuardrailConfig(window=50, min_samples=20, alert_slip_points=2, alert_clear_slip_points=1,
                         override_slip_points=4)


def guardrails():
    return Guardrails(CONFIG, BASELINES)


def feed(g, scores, archetype="faq_bounded", tenant="rho-bank", prefix="t"):
    overrides, alerts = [], []
    for i, score in enumerate(scores):
        outcome = g.observe_csat(tenant, archetype, f"{prefix}{i}", score)
        overrides += outcome.overrides
        alerts += outcome.alerts
    return overrides, alerts


def human(action, archetype=tk.ARCHETYPE_FAQ_BOUNDED, tenant="rho-bank", issuer="human:ana"):
    return ev.RoutingOverride(meta=new_meta(tenant, "ops"), archetype=archetype, action=action, issued_by=issuer)


def test_no_verdict_below_min_samples():
    overrides, alerts = feed(guardrails(), [0.0] * 19)
    assert overrides == [] and alerts == []


def test_two_point_slip_raises_an_alert_but_no_override():
    overrides, alerts = feed(guardrails(), [78.0] * 20)
    assert overrides == []
    [alert] = alerts
    assert (alert.raised, alert.slip, alert.mean, alert.baseline, alert.samples) == (True, 2.0, 78.0, 80.0, 20)


def test_just_under_two_points_is_no_alert():
    overrides, alerts = feed(guardrails(), [78.5] * 30)
    assert (overrides, alerts) == ([], [])


def test_alert_is_lowered_when_csat_recovers():
    g = guardrails()
    feed(g, [78.0] * 20)
    _, alerts = feed(g, [100.0] * 5, prefix="good")  # mean 82.4 over 25
    assert [(a.raised, a.samples) for a in alerts] == [(False, 21)]


def test_a_raised_alert_stays_up_until_the_slip_is_under_one_point():
    g = guardrails()
    feed(g, [78.0] * 25)  # slip 2: raised
    _, alerts = feed(g, [79.0] * 25, prefix="hover")  # slip 1.5 over 50: still raised, no flapping
    assert alerts == []
    _, alerts = feed(g, [79.5] * 50, prefix="better")  # slip 0.5
    assert [a.raised for a in alerts] == [False]


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
        "CSAT 76.00 over the latest 20 surveys is 4.00 points below the baseline 80.00 (override threshold 4)")
    assert [a.raised for a in alerts] == [True]
    assert [s.overridden for s in g.status()] == [True]


def test_archetype_baselines_differ():
    overrides, _ = feed(guardrails(), [76.0] * 20, archetype="account_specific")  # its baseline is 76
    assert overrides == []


def test_any_hallucinated_policy_emits_one_override_and_only_one():
    g = guardrails()
    first = g.observe_hallucination("rho-bank", "repetitive", "t-9", "quoted a 90-day refund window")
    second = g.observe_hallucination("rho-bank", "repetitive", "t-10", "again")
    [(trigger, override)] = first.overrides
    assert trigger == TRIGGER_HALLUCINATION
    assert override.archetype == tk.ARCHETYPE_REPETITIVE
    assert override.reason == "QA found hallucinated policy on ticket t-9: quoted a 90-day refund window"
    assert second.overrides == []
    overrides, _ = feed(g, [0.0] * 30, archetype="repetitive")
    assert overrides == []  # the CSAT trigger does not repeat what the P0 already did


def test_each_tenant_and_archetype_has_its_own_latch():
    g = guardrails()
    assert len(g.observe_hallucination("rho-bank", "faq_bounded", "t", "").overrides) == 1
    assert len(g.observe_hallucination("acme", "faq_bounded", "t", "").overrides) == 1
    assert len(g.observe_hallucination("rho-bank", "repetitive", "t", "").overrides) == 1


def test_unspecified_archetype_gets_no_override():
    assert guardrails().observe_hallucination("rho-bank", "unspecified", "t", "").overrides == []


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
    g.observe_hallucination("rho-bank", "faq_bounded", "t", "")
    g.observe_override(human(ev.OVERRIDE_ACTION_KILL_SWITCH_ON))
    assert g.observe_hallucination("rho-bank", "faq_bounded", "t2", "").overrides == []
    g.observe_override(human(ev.OVERRIDE_ACTION_SET_AUTOMATION))
    assert len(g.observe_hallucination("rho-bank", "faq_bounded", "t3", "").overrides) == 1


def test_a_clear_for_another_tenant_changes_nothing():
    g = guardrails()
    g.observe_hallucination("rho-bank", "faq_bounded", "t", "")
    g.observe_override(human(ev.OVERRIDE_ACTION_CLEAR, tenant="acme"))
    assert g.observe_hallucination("rho-bank", "faq_bounded", "t2", "").overrides == []


def test_replaying_the_override_topic_after_a_restart_restores_the_latch():
    before = guardrails()
    [(_, issued)] = before.observe_hallucination("rho-bank", "faq_bounded", "t", "").overrides
    restarted = guardrails()
    restarted.observe_override(issued)
    assert restarted.observe_hallucination("rho-bank", "faq_bounded", "t2", "").overrides == []
    cleared = guardrails()
    for event in (issued, human(ev.OVERRIDE_ACTION_CLEAR)):
        cleared.observe_override(event)
    assert len(cleared.observe_hallucination("rho-bank", "faq_bounded", "t3", "").overrides) == 1


def test_a_second_survey_for_the_same_ticket_replaces_the_first():
    g = guardrails()
    feed(g, [70.0] * 19)
    assert g.observe_csat("rho-bank", "faq_bounded", "t0", 90.0).overrides == []
    assert g.status()[0].samples == 19
