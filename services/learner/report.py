"""`supportflow report --since 7d --out DIR`: the weekly review, one HTML page with plotly charts.

The period's history is read from the topics (new tickets, decisions, outcomes, agents' actions,
deliveries, KB gaps, routing overrides, QA samples) and replayed through the learner's own handlers
(services/learner/handlers.py), once for the whole period and once per day of decision, so the
trends and the totals agree with `GetKpis` by construction. Days are UTC days of the decision; an
outcome is attached to its ticket whatever day it arrived on.

The page follows the panel's order (kpis.KPI_NAMES): one chart per KPI with a line per archetype,
then the period's panel per archetype, segment and channel, then the actions taken in the period:
the routing overrides on the audit trail (routing.overrides) and the guardrail reviews opened.
plotly.js is inlined once, so the page opens from disk with no network.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import plotly.graph_objects as go

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import InvalidEvent
from supportflow.timestamps import seconds_of

from services.learner.config import LearnerConfig, archetype_name
from services.learner.guardrails import ISSUER
from services.learner.handlers import Learner
from services.learner.kpis import ALL, KPI_NAMES, kpi_definitions
from services.learner.tenant_data import TenantData

# The period's panel table: the KPIs, in their order, then the values that explain them.
TABLE_EXTRAS = ("csat_protected_deflection_withheld", "baseline_unknown", "guardrail_review_open",
                "guardrail_override_active")


def parse_since(text: str) -> float:
    """'7d', '36h', '90m' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if not match:
        raise ValueError(f"--since takes a number and a unit (d, h or m), for example 7d; got {text!r}")
    return int(match.group(1)) * {"d": 86400, "h": 3600, "m": 60}[match.group(2)]


@dataclass(frozen=True)
class ReviewReport:
    tenant: str
    since: datetime
    until: datetime
    days: list[str]
    totals: list[dict]  # one row per cut (archetype, segment, channel), rollups included
    trends: dict[str, dict[str, list[float | None]]]  # kpi -> archetype -> value per day
    actions: list[dict]  # overrides and reviews opened, in time order
    refused: int  # outcomes the learner would dead-letter (out-of-range CSAT, ...)


def _tenant_of(event: object) -> str:
    ticket = getattr(event, "ticket", None)
    return (ticket.tenant_id if ticket is not None and ticket.tenant_id else "") or event.meta.tenant_id


def _when(event: object) -> float:
    if isinstance(event, ev.TicketDecided) and event.timeline.decided_at.seconds:
        return seconds_of(event.timeline.decided_at) or 0.0
    return seconds_of(event.meta.occurred_at) or 0.0


def _handlers(learner: Learner) -> dict[type, Callable]:
    return {ev.TicketReceived: learner.on_received, ev.TicketDecided: learner.on_decided,
            ev.FeedbackReceived: learner.on_feedback, ev.AgentAction: learner.on_agent_action,
            ev.DeliveryRecorded: learner.on_delivered, ev.KbGapDetected: learner.on_kb_gap,
            ev.RoutingOverride: learner.on_override}


def _replay(events: list[object], config: LearnerConfig, tenant_data: TenantData) -> tuple[Learner, list, int]:
    """A learner fed `events` in time order; the overrides it issued and the outcomes it refused."""
    learner = Learner(config, tenant_data)
    handlers = _handlers(learner)
    issued, refused = [], 0
    for event in sorted(events, key=_when):
        handler = handlers.get(type(event))
        if handler is None:
            continue
        try:
            issued += [emit.event for emit in handler(event) if isinstance(emit.event, ev.RoutingOverride)]
        except InvalidEvent:
            refused += 1
    return learner, issued, refused


def build_review(events: list[object], tenant: str, config: LearnerConfig, since: datetime, until: datetime,
                 tenant_data: TenantData | None = None) -> ReviewReport:
    tenant_data = tenant_data or TenantData(None)
    mine = [e for e in events if hasattr(e, "meta") and _tenant_of(e) == tenant]
    decisions = [e for e in mine if isinstance(e, ev.TicketDecided)]
    others = [e for e in mine if not isinstance(e, ev.TicketDecided)]

    learner, issued, refused = _replay(mine, config, tenant_data)
    totals = [{"archetype": r.archetype, "segment": r.segment, "channel": r.channel, "tickets": r.tickets, **r.values}
              for r in learner.kpi_rows(tenant)]

    by_day: dict[str, list[ev.TicketDecided]] = defaultdict(list)
    for decision in decisions:
        by_day[_day(_when(decision))].append(decision)
    days = sorted(by_day)
    trends: dict[str, dict[str, list[float | None]]] = {kpi: defaultdict(lambda: [None] * len(days)) for kpi in KPI_NAMES}
    for index, day in enumerate(days):
        daily, _, _ = _replay(by_day[day] + others, config, tenant_data)
        for row in daily.kpi_rows(tenant, segment=ALL, channel=ALL):
            for kpi in KPI_NAMES:
                trends[kpi][row.archetype][index] = row.values.get(kpi)

    return ReviewReport(tenant, since, until, days, totals, {k: dict(v) for k, v in trends.items()},
                        _actions(others, issued, learner, tenant), refused)


def _actions(others: list[object], issued: list[ev.RoutingOverride], learner: Learner, tenant: str) -> list[dict]:
    """Overrides on the audit trail (or, when the topic was not read, those the replay issued) and the
    guardrail reviews the replay opened."""
    trail = [e for e in others if isinstance(e, ev.RoutingOverride)] or issued
    actions = [{"at": _when(o), "kind": "override", "archetype": archetype_name(o.archetype),
                "by": o.issued_by, "action": ev.OverrideAction.Name(o.action).removeprefix("OVERRIDE_ACTION_").lower(),
                "reason": o.reason} for o in trail]
    actions += [{"at": review.at, "kind": "review opened" if review.opened else "review closed",
                 "archetype": review.archetype, "by": ISSUER, "action": "",
                 "reason": f"{review.latency} CSAT {review.mean:.1f} is {review.slip:.1f} points under the baseline "
                           f"{review.baseline:.1f} over {review.samples} surveys"}
                for review in learner.reviews(tenant)]
    return sorted(actions, key=lambda a: a["at"])


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")


def _chart(kpi: str, days: list[str], series: dict[str, list[float | None]], include_js: bool) -> str:
    figure = go.Figure()
    for archetype, values in sorted(series.items()):
        figure.add_trace(go.Scatter(x=days, y=values, mode="lines+markers", name=archetype, connectgaps=False))
    figure.update_layout(height=260, width=460, margin={"l": 50, "r": 10, "t": 10, "b": 40},
                         legend={"orientation": "h", "y": -0.25}, yaxis={"title": {"text": kpi, "font": {"size": 11}}})
    return figure.to_html(full_html=False, include_plotlyjs="inline" if include_js else False,
                          config={"displayModeBar": False})


def render_html(report: ReviewReport) -> str:
    definitions = kpi_definitions()
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Supportflow weekly review: {e(report.tenant)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}"
        ".chart{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top;width:460px}.def{color:#666;"
        "font-size:12px}</style></head><body>",
        f"<h1>Weekly review: {e(report.tenant)}</h1>",
        f"<p>{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC; "
        f"{sum(r['tickets'] for r in report.totals if r['segment'] == ALL and r['channel'] == ALL)} tickets decided "
        f"over {len(report.days)} day(s). Every figure is per archetype; deflection counts as a win only while "
        f"CSAT holds (csat_protected_deflection).</p>",
    ]
    if report.refused:
        parts.append(f"<p>{report.refused} outcome(s) refused (dead-lettered with the reason, e.g. a CSAT outside 0..100).</p>")
    if not report.days:
        parts.append("<p><b>No decisions in this period.</b></p>")
    else:
        parts.append("<h2>The panel, day by day</h2>")
        first = True
        for kpi in KPI_NAMES:
            series = report.trends.get(kpi, {})
            if not any(v is not None for line in series.values() for v in line):
                parts.append(f"<div class='chart'><h3>{e(kpi)}</h3><p class='def'>no data in this period</p>"
                             f"<div class='def'>{e(definitions[kpi])}</div></div>")
                continue
            parts.append(f"<div class='chart'><h3>{e(kpi)}</h3>{_chart(kpi, report.days, series, first)}"
                         f"<div class='def'>{e(definitions[kpi])}</div></div>")
            first = False
        columns = ["archetype", "segment", "channel", "tickets", *KPI_NAMES, *TABLE_EXTRAS]
        parts.append("<h2>The period's panel</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        for row in report.totals:
            parts.append("<tr>" + "".join(f"<td>{e(_cell(row.get(c)))}</td>" for c in columns) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Actions taken</h2>")
    if report.actions:
        parts.append("<table><tr><th>when (UTC)</th><th>what</th><th>archetype</th><th>by</th><th>reason</th></tr>")
        for action in report.actions:
            when = datetime.fromtimestamp(action["at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M") if action["at"] else "-"
            what = action["kind"] + (f" ({action['action']})" if action["action"] else "")
            parts.append(f"<tr><td>{e(when)}</td><td>{e(what)}</td><td>{e(action['archetype'])}</td>"
                         f"<td>{e(action['by'])}</td><td style='text-align:left'>{e(action['reason'])}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No overrides and no guardrail reviews in this period.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def write_report(report: ReviewReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(render_html(report), encoding="utf-8")
    (out_dir / "panel.json").write_text(json.dumps({
        "tenant": report.tenant, "since": report.since.isoformat(), "until": report.until.isoformat(),
        "days": report.days, "totals": report.totals, "trends": report.trends, "actions": report.actions,
        "refused": report.refused,
    }, indent=2))
    return page
