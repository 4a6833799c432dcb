"""Summarise a demo run: what a support lead wants to see after pushing tickets through."""

from __future__ import annotations

import statistics
import textwrap
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.retriever.search import ResolvedCase


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def investigation_by_archetype(records: list[dict]) -> dict[str, dict]:
    """Per archetype, of the tickets handed to a person (review, escalate): how many carry
    investigation findings in their packet, the packets' mean completeness and the findings' mean
    evidence completeness; and how many tickets were answered automatically on evidence."""
    rows: dict[str, dict] = {}
    for archetype in sorted({r["archetype"] for r in records}):
        mine = [r for r in records if r["archetype"] == archetype]
        handed = [r for r in mine if r["decision"] in ("review", "escalate") and r["packet"]]
        with_findings = [r for r in handed if r["packet"].get("investigation")]
        rows[archetype] = {
            "handed_to_a_person": len(handed),
            "with_findings": len(with_findings),
            "share_with_findings": round(len(with_findings) / len(handed), 3) if handed else None,
            "packet_completeness_mean": (
                round(statistics.mean(r["packet"].get("completeness", 0.0) for r in handed), 3) if handed else None),
            "evidence_completeness_mean": (
                round(statistics.mean(r["packet"].get("evidence_completeness", 0.0) for r in with_findings), 3)
                if with_findings else None),
            "answered_on_evidence": sum(1 for r in mine if r["decision"] == "respond" and "answered on evidence" in r["reason"]),
        }
    return rows


def build_report(records: list[dict], *, tickets_sent: int, missing: list[str], duplicated: list[str], wall_s: float) -> dict:
    latencies = [r["timings_ms"]["received_to_decided"] for r in records if r["timings_ms"]["received_to_decided"] is not None]
    labelled = [r for r in records if r["label"] and ":" not in r["label"]]
    packets = [r["packet"] for r in records if r["decision"] == "escalate" and r["packet"]]
    hostile = [r for r in records if r["label"].startswith(("hostile:", "oversized:", "foreign:"))]
    return {
        "summary": {
            "tickets_sent": tickets_sent,
            "decisions": len(records),
            "missing": missing,
            "duplicated": duplicated,
            "wall_s": round(wall_s, 2),
            "by_decision": dict(Counter(r["decision"] for r in records).most_common()),
            "by_route": dict(Counter(r["route"] for r in records).most_common()),
            "by_archetype": dict(Counter(r["archetype"] for r in records).most_common()),
            "top_intents": dict(Counter(r["intent"] for r in records).most_common(10)),
            "intent_accuracy_on_labelled": (
                round(sum(r["intent"] == r["label"] for r in labelled) / len(labelled), 4) if labelled else None
            ),
            "received_to_decided_ms": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "max": max(latencies) if latencies else None,
            },
            "escalation_packets_naming_similar_cases": sum(1 for p in packets if p.get("similar_case_ids")),
            "escalation_packet_completeness_mean": (
                round(statistics.mean(p.get("completeness", 0.0) for p in packets), 3) if packets else None
            ),
            "investigation_by_archetype": investigation_by_archetype(records),
            "drafts_with_unverified_claims": sum(
                1 for r in records if r["decision"] == "respond" and any(not c["verified"] for c in r["ledger"])
            ),
            "hostile_inputs": {r["id"]: {"label": r["label"], "decision": r["decision"], "flags": list(dict.fromkeys(r["risk_flags"] + r["input_flags"]))} for r in hostile},
        },
        "tickets": records,
    }


def format_summary(report: dict, *, examples: int = 3, cases: Mapping[str, ResolvedCase] | None = None) -> str:
    """The report as text; `cases` (resolved cases by ticket id) lets it show what the similar
    cases named in escalation packets say."""
    s = report["summary"]
    lines = [
        "",
        "Supportflow demo",
        "================",
        f"tickets sent {s['tickets_sent']}, decisions {s['decisions']}, missing {len(s['missing'])}, "
        f"duplicated {len(s['duplicated'])}, wall time {s['wall_s']} s",
        "",
        "by decision: " + ", ".join(f"{k} {v}" for k, v in s["by_decision"].items()),
        "by route:    " + ", ".join(f"{k} {v}" for k, v in s["by_route"].items()),
        "by archetype: " + ", ".join(f"{k} {v}" for k, v in s["by_archetype"].items()),
        "top intents: " + ", ".join(f"{k} {v}" for k, v in s["top_intents"].items()),
    ]
    if s["intent_accuracy_on_labelled"] is not None:
        lines.append(f"intent accuracy on the labelled demo tickets (held out from training): {s['intent_accuracy_on_labelled']:.1%}")
    lat = s["received_to_decided_ms"]
    if lat["p50"] is not None:
        lines.append(f"time from ticket received to decision: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms")
    if s["escalation_packet_completeness_mean"] is not None:
        lines.append(f"escalation packets: mean completeness {s['escalation_packet_completeness_mean']:.2f}, "
                     f"{s['escalation_packets_naming_similar_cases']} name a similar resolved case")
    lines.append(f"auto-sent drafts with an unverified policy claim: {s['drafts_with_unverified_claims']}")
    for archetype, row in s.get("investigation_by_archetype", {}).items():
        if row["handed_to_a_person"] or row["answered_on_evidence"]:
            share = f"{row['share_with_findings']:.0%}" if row["share_with_findings"] is not None else "-"
            evidence = f"{row['evidence_completeness_mean']:.2f}" if row["evidence_completeness_mean"] is not None else "-"
            packets = f"{row['packet_completeness_mean']:.2f}" if row["packet_completeness_mean"] is not None else "-"
            lines.append(f"{archetype}: {row['with_findings']} of {row['handed_to_a_person']} handed to a person carry "
                         f"findings ({share}), packet completeness {packets}, evidence completeness {evidence}, "
                         f"{row['answered_on_evidence']} answered on evidence")

    tickets = report["tickets"]
    drafts = [r for r in tickets if r["draft"] and r["citations"]][:examples]
    if drafts:
        lines += ["", "Drafts with their citations", "---------------------------"]
        for r in drafts:
            lines.append(f"[{r['id']}] intent {r['intent']} ({r['confidence']:.2f}), decision {r['decision']}: {r['reason']}")
            lines += ["    " + line for line in textwrap.wrap(r["draft"], 96)]
            for c in r["citations"]:
                lines.append(f"    cites {c['article_id']}: {c['title']}")
    escalations = [r for r in tickets if r["decision"] == "escalate" and r["packet"]][:examples]
    if escalations:
        lines += ["", "Escalation packets", "------------------"]
        for r in escalations:
            p = r["packet"]
            lines.append(f"[{r['id']}] {r['reason']} -> queue {p.get('target_queue', '?')}, completeness {p.get('completeness', 0):.2f}")
            for key in ("intent", "urgency", "tier", "conversation_summary", "missing_information", "suggested_next_step", "unknown_fields"):
                if key in p:
                    value = p[key]
                    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                    lines.append(f"    {key}: {text[:140]}")
    with_cases = [r for r in tickets if r["decision"] == "escalate" and r["packet"] and r["packet"].get("similar_case_ids")]
    if with_cases:
        lines += ["", "Similar resolved cases in escalation packets", "--------------------------------------------"]
        for r in with_cases[:examples]:
            lines.append(f"[{r['id']}] {str(r['packet'].get('conversation_summary', ''))[:120]}")
            for case_id in r["packet"]["similar_case_ids"]:
                case = (cases or {}).get(case_id)
                if case is None:
                    lines.append(f"    similar case {case_id}")
                    continue
                lines.append(f"    similar case {case_id}: {case.problem_statement}")
                lines += ["        " + line for line in textwrap.wrap(f"resolution: {case.resolution_notes}", 92)]
    if s["hostile_inputs"]:
        lines += ["", "Hostile and unusual inputs", "--------------------------"]
        for ticket_id, h in s["hostile_inputs"].items():
            lines.append(f"[{ticket_id}] {h['label']}: {h['decision']} (flags: {', '.join(h['flags']) or 'none'})")
    if s["missing"]:
        lines += ["", "MISSING decisions for: " + ", ".join(s["missing"][:20])]
    return "\n".join(lines) + "\n"
