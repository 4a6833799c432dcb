"""The weekly review: the panel per day and for the period, and the page that shows it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import LearnerConfig
from services.learner.kpis import KPI_NAMES
from services.learner.report import build_review, parse_since, render_html, write_report
from services.learner.tenant_data import TenantData
from tests.unit.test_learner_handlers import TENANTS

TENANT_DATA = TenantData(TENANTS)  # rho-bank: at-resolution baseline 80

DAY1 = int(datetime(2026, 11, 20, 12, tzinfo=timezone.utc).timestamp())
DAY2 = DAY1 + 86400


def decided(ticket_id, decision, day, archetype=tk.ARCHETYPE_FAQ_BOUNDED, tenant="rho-bank"):
    event = ev.TicketDecided(meta=new_meta(tenant, "escalator"), ticket=tk.Ticket(ticket_id=ticket_id, tenant_id=tenant),
                             classification=tk.Classification(archetype=archetype, segment="retail"), decision=decision)
    event.timeline.received_at.seconds = day
    event.timeline.decided_at.seconds = day + 2
    return event


def csat(ticket_id, score):
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id=ticket_id,
                               csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=score))


def test_since_takes_days_hours_and_minutes():
    assert parse_since("7d") == 7 * 86400 and parse_since("36h") == 36 * 3600 and parse_since("90m") == 5400
    with pytest.raises(ValueError, match="--since"):
        parse_since("a week")


def test_trends_per_day_and_totals_for_the_period(tmp_path):
    events = [
        decided("a", ev.DECISION_RESPOND, DAY1), decided("b", ev.DECISION_REVIEW, DAY1),
        decided("c", ev.DECISION_RESPOND, DAY2), decided("d", ev.DECISION_RESPOND, DAY2),
        decided("e", ev.DECISION_ESCALATE, DAY2, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC),
        decided("x", ev.DECISION_RESPOND, DAY2, tenant="other-bank"),  # another tenant's ticket stays out
        csat("a", 60.0), csat("c", 90.0),
    ]
    since, until = datetime.fromtimestamp(DAY1 - 3600, timezone.utc), datetime.fromtimestamp(DAY2 + 3600, timezone.utc)
    report = build_review(events, "rho-bank", LearnerConfig.load(), since, until, TENANT_DATA)

    assert report.days == ["2026-11-20", "2026-11-21"]
    assert report.trends["deflection_rate"]["faq_bounded"] == [0.5, 1.0]
    assert report.trends["deflection_rate"]["account_specific"] == [None, 0.0]
    assert report.trends["csat_at_resolution"]["faq_bounded"] == [60.0 - 80.0, 90.0 - 80.0]
    faq_all = next(r for r in report.totals
                   if r["archetype"] == "faq_bounded" and r["segment"] == "all" and r["channel"] == "all")
    assert faq_all["tickets"] == 4 and faq_all["deflection_rate"] == 0.75

    page = write_report(report, tmp_path / "review").read_text()
    # One plotly chart per KPI with data, in the panel's order: deflection (3), CSAT at resolution,
    # context loss, the five hallucinated-policy counts, qa_sampled, escalation precision, misroute
    # and KB gap rates (14); the other 15 (no endings, deliveries, verdicts, ...) say so.
    assert page.startswith("<!doctype html>") and page.count('class="plotly-graph-div"') == 14
    assert page.count("no data in this period") == 15
    assert page.count("plotly.js v") == 1  # inlined once: the page opens from disk
    headings = [page.index(f"<h3>{kpi}</h3>") for kpi in KPI_NAMES]
    assert headings == sorted(headings)  # the panel's order
    assert "faq_bounded" in page and "other-bank" not in page
    assert "No overrides and no guardrail reviews in this period." in page
    assert (tmp_path / "review" / "panel.json").exists()


def test_the_review_lists_the_actions_taken():
    events = [decided(f"s{i}", ev.DECISION_RESPOND, DAY1) for i in range(25)]
    events += [csat(f"s{i}", 70.0) for i in range(25)]  # 10 points under: review opened, then an override
    since, until = datetime.fromtimestamp(DAY1 - 3600, timezone.utc), datetime.fromtimestamp(DAY2, timezone.utc)
    report = build_review(events, "rho-bank", LearnerConfig.load(), since, until, TENANT_DATA)
    assert [(a["kind"], a["archetype"]) for a in report.actions] == [
        ("review opened", "faq_bounded"), ("override", "faq_bounded")]
    assert report.actions[1]["by"] == "learner:guardrail" and "below the baseline 80.00" in report.actions[1]["reason"]
    page = render_html(report)
    assert "Actions taken" in page and "review opened" in page and "override (set_automation)" in page


def test_every_kpi_has_its_place_in_the_review():
    report = build_review([decided("a", ev.DECISION_RESPOND, DAY1)], "rho-bank", LearnerConfig.load(),
                          datetime.fromtimestamp(DAY1, timezone.utc), datetime.fromtimestamp(DAY2, timezone.utc))
    assert set(report.trends) == set(KPI_NAMES)
    page = render_html(report)
    assert all(f"<h3>{kpi}</h3>" in page for kpi in KPI_NAMES)


def test_an_empty_period_says_so():
    now = datetime.now(timezone.utc)
    page = render_html(build_review([], "rho-bank", LearnerConfig.load(), now, now))
    assert "No decisions in this period" in page


def test_agents_actions_count_in_the_review_as_in_the_panel():
    def acted(ticket_id, kind, ratio=0.0, tenant="rho-bank"):
        return ev.AgentAction(meta=new_meta(tenant, "workspace"), action_id=f"a-{ticket_id}", ticket_id=ticket_id,
                              kind=kind, edit_ratio=ratio, agent="agent:sam")

    events = [
        decided("a", ev.DECISION_REVIEW, DAY1), decided("b", ev.DECISION_REVIEW, DAY1),
        decided("c", ev.DECISION_ESCALATE, DAY1),
        acted("a", ev.AGENT_ACTION_KIND_APPROVE), acted("b", ev.AGENT_ACTION_KIND_EDIT_AND_SEND, 0.5),
        acted("c", ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS), acted("c", ev.AGENT_ACTION_KIND_ESCALATE),
        acted("a", ev.AGENT_ACTION_KIND_REJECT, tenant="other-bank"),  # another tenant's "a"
        ev.AgentAction(meta=new_meta("rho-bank", "workspace"), kind=ev.AGENT_ACTION_KIND_APPROVE),  # no ticket: left out
    ]
    since, until = datetime.fromtimestamp(DAY1 - 3600, timezone.utc), datetime.fromtimestamp(DAY1 + 3600, timezone.utc)
    report = build_review(events, "rho-bank", LearnerConfig.load(), since, until, TENANT_DATA)
    assert report.trends["draft_acceptance_rate"]["faq_bounded"] == [0.5]
    assert report.trends["edit_burden"]["faq_bounded"] == [0.25]
    assert report.trends["context_loss_rate"]["faq_bounded"] == [1 / 3]
