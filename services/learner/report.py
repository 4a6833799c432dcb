"""`supportflow report --since 7d --out DIR`: the weekly review, as one HTML page with charts.

The history is read from the topics (decisions, feedback, agents' actions, KB gaps), like the
learner's own replay (an agent's action counted as the feedback it amounts to, as there),
and run through the same KPI panel (services/learner/kpis.py) once for the whole period and once
per day, so the trends and the totals agree with `GetKpis` by construction. Days are UTC days of
the decision. Feedback is attached to its ticket whatever day it arrived on.

The page is self-contained (inline SVG, no scripts), so it opens from disk in any browser.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import InvalidEvent

from services.learner.config import LearnerConfig
from services.learner.handlers import feedback_of_action
from services.learner.kpis import ALL_SEGMENTS, KpiAccumulator, kpi_definitions

# What the page charts per archetype and day. Leading indicators move before CSAT does.
LEADING = ("draft_acceptance_rate", "edit_burden", "kb_gap_rate", "time_to_first_evidence_p95_seconds", "misroute_rate")
OUTCOMES = ("deflection_rate", "csat_protected_deflection_rate", "csat_delta_at_resolution", "context_loss_rate",
            "repeat_contact_7d_rate", "time_to_decision_p95_seconds")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


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
    totals: list[dict]  # one row per archetype (all segments) and per (archetype, segment)
    trends: dict[str, dict[str, list[float | None]]]  # kpi -> archetype -> value per day


def build_review(events: list[object], tenant: str, config: LearnerConfig, since: datetime, until: datetime) -> ReviewReport:
    decisions = [e for e in events if isinstance(e, ev.TicketDecided) and (e.ticket.tenant_id or e.meta.tenant_id) == tenant]
    extras = [e for e in map(_as_feedback, events)
              if isinstance(e, (ev.FeedbackReceived, ev.KbGapDetected)) and e.meta.tenant_id == tenant]

    def panel(selected: list[ev.TicketDecided]) -> KpiAccumulator:
        accumulator = KpiAccumulator(config)
        for decision in selected:
            accumulator.record_decision(decision)
        for extra in extras:
            if isinstance(extra, ev.FeedbackReceived):
                accumulator.record_feedback(extra)
            else:
                accumulator.record_kb_gap(extra)
        return accumulator

    by_day: dict[str, list[ev.TicketDecided]] = defaultdict(list)
    for decision in decisions:
        by_day[_day(decision)].append(decision)
    days = sorted(by_day)
    totals = [
        {"archetype": row.archetype, "segment": row.segment, "tickets": row.tickets, **row.values}
        for row in panel(decisions).rows(tenant)
    ]
    trends: dict[str, dict[str, list[float | None]]] = {kpi: defaultdict(lambda: [None] * len(days)) for kpi in LEADING + OUTCOMES}
    for index, day in enumerate(days):
        for row in panel(by_day[day]).rows(tenant, segment=ALL_SEGMENTS):
            for kpi in trends:
                trends[kpi][row.archetype][index] = row.values.get(kpi)
    return ReviewReport(tenant, since, until, days, totals, {k: dict(v) for k, v in trends.items()})


def _as_feedback(event: object) -> object:
    """An agent's action as the feedback it amounts to (None for none, or for one the learner
    would refuse); any other event as it is."""
    if not isinstance(event, ev.AgentAction):
        return event
    try:
        return feedback_of_action(event)
    except InvalidEvent:
        return None


def _day(decision: ev.TicketDecided) -> str:
    stamp = decision.timeline.decided_at if decision.timeline.decided_at.seconds else decision.meta.occurred_at
    return datetime.fromtimestamp(stamp.seconds, tz=timezone.utc).strftime("%Y-%m-%d")


def render_html(report: ReviewReport) -> str:
    definitions = kpi_definitions()
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Supportflow weekly review: {e(report.tenant)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}"
        ".chart{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}.def{color:#666;font-size:12px;"
        "max-width:420px}</style></head><body>",
        f"<h1>Weekly review: {e(report.tenant)}</h1>",
        f"<p>{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC; "
        f"{sum(r['tickets'] for r in report.totals if r['segment'] == ALL_SEGMENTS)} tickets decided over "
        f"{len(report.days)} day(s). Deflection is shown only beside its CSAT delta.</p>",
    ]
    if not report.days:
        parts.append("<p><b>No decisions in this period.</b></p></body></html>")
        return "".join(parts)
    for heading, kpis in (("Leading indicators", LEADING), ("Outcomes", OUTCOMES)):
        parts.append(f"<h2>{heading}</h2>")
        for kpi in kpis:
            parts.append(f"<div class='chart'><h3>{e(kpi)}</h3>{_svg_chart(report.days, report.trends[kpi])}"
                         f"<div class='def'>{e(definitions.get(kpi, ''))}</div></div>")
    columns = ["archetype", "segment", "tickets", "deflection_rate", "csat_delta_at_resolution",
               "csat_protected_deflection_rate", "draft_acceptance_rate", "kb_gap_rate", "context_loss_rate",
               "hallucinated_policy_tickets", "time_to_decision_p95_seconds"]
    parts.append("<h2>The period's panel</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
    for row in report.totals:
        cells = [row.get(c) for c in columns]
        parts.append("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in cells) + "</tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def _svg_chart(days: list[str], series: dict[str, list[float | None]], width: int = 420, height: int = 180) -> str:
    values = [v for line in series.values() for v in line if v is not None]
    if not values:
        return "<p class='def'>no data in this period</p>"
    low, high = min(values + [0.0]), max(values)
    high = high if high > low else low + 1.0
    left, bottom, top, right = 48, 28, 10, 10
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 18 * len(series)}'>",
           f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#999'/>",
           f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' stroke='#999'/>",
           f"<text x='{left - 4}' y='{top + 10}' font-size='10' text-anchor='end'>{_cell(high)}</text>",
           f"<text x='{left - 4}' y='{top + plot_h}' font-size='10' text-anchor='end'>{_cell(low)}</text>",
           f"<text x='{left}' y='{height - 8}' font-size='10'>{days[0]}</text>",
           f"<text x='{left + plot_w}' y='{height - 8}' font-size='10' text-anchor='end'>{days[-1]}</text>"]
    for n, (archetype, line) in enumerate(sorted(series.items())):
        colour = COLOURS[n % len(COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(line) if v is not None]
        if len(points) > 1:
            out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='"
                       + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + "'/>")
        out += [f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3' fill='{colour}'/>" for px, py in points]
        out.append(f"<text x='{left}' y='{height + 14 + 18 * n}' font-size='11' fill='{colour}'>{html.escape(archetype)}</text>")
    out.append("</svg>")
    return "".join(out)


def write_report(report: ReviewReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(render_html(report), encoding="utf-8")
    (out_dir / "panel.json").write_text(json.dumps({
        "tenant": report.tenant, "since": report.since.isoformat(), "until": report.until.isoformat(),
        "days": report.days, "totals": report.totals, "trends": report.trends,
    }, indent=2))
    return page
