"""The demo report's per-archetype view of investigation: tickets handed to a person with findings,
packet and evidence completeness, tickets answered on evidence."""

from __future__ import annotations

from tooling.demo_report import build_report, format_summary


def record(archetype: str, decision: str, *, findings: int = 0, completeness: float = 0.9, evidence: float = 1.0,
           reason: str = "agent review") -> dict:
    packet = None
    if decision in ("review", "escalate"):
        packet = {"completeness": completeness}
        if findings:
            packet |= {"investigation": [{"source": "transactions"}] * findings, "evidence_completeness": evidence}
    return {"id": f"t-{archetype}-{decision}-{findings}", "archetype": archetype, "decision": decision, "reason": reason,
            "packet": packet, "label": "", "route": "draft_for_review", "intent": "x", "ledger": [], "risk_flags": [],
            "input_flags": [], "timings_ms": {"received_to_decided": 10.0}, "draft": "", "citations": []}


def test_the_share_of_handed_over_tickets_with_findings_is_per_archetype() -> None:
    records = [
        record("account_specific", "escalate", findings=2, completeness=1.0, evidence=0.5),
        record("account_specific", "review", findings=1, completeness=0.9, evidence=1.0),
        record("account_specific", "review", completeness=0.8),
        record("account_specific", "respond", reason="ready draft; answered on evidence: ..."),
        record("faq_bounded", "review", completeness=0.9),
        record("faq_bounded", "respond", reason="ready draft"),
    ]
    report = build_report(records, tickets_sent=6, missing=[], duplicated=[], wall_s=1.0)
    rows = report["summary"]["investigation_by_archetype"]
    assert rows["account_specific"] == {
        "handed_to_a_person": 3, "with_findings": 2, "share_with_findings": 0.667,
        "packet_completeness_mean": 0.9, "evidence_completeness_mean": 0.75, "answered_on_evidence": 1}
    assert rows["faq_bounded"]["with_findings"] == 0 and rows["faq_bounded"]["evidence_completeness_mean"] is None
    text = format_summary(report)
    assert "account_specific: 2 of 3 handed to a person carry findings (67%), packet completeness 0.90, " \
           "evidence completeness 0.75, 1 answered on evidence" in text
