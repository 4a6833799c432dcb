"""Investigation in packets and decisions, on a recorded demo run (issue 25).

    python benchmarks/evidence_routing_eval.py DEMO_JSON

DEMO_JSON is a demo report (`supportflow demo --json F`) recorded before investigation reached the
escalator. Its tickets are rebuilt from the demo's sample set (same ids), the demo bank's account
system is seeded from them (tooling/demo_systems) and each ticket is investigated with the
investigator's handlers in process. Then, as the escalator does:

- the packets of the tickets handed to a person (review, escalate) are scored again with their
  available findings counting toward `evidence`, `account_state` and `steps_tried`
  (services/escalator/packet.py): completeness before and after, per archetype, and how many carry
  findings;
- the account-specific tickets that went to review only because of their route are put to the
  answer-on-evidence rule (services/escalator/decision.py `evidence_settles`, with the offline
  drafter's evidence lines checked by services/drafter/evidence_ledger.py): how many would be
  answered, and the case each was seeded with (the account system's ground truth).
"""

import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402
from tooling.demo_systems import AccountSystemProcess, systems_file  # noqa: E402
from tooling.round_trip import TENANTS_DIR, sample_tickets  # noqa: E402

from services.drafter.evidence_ledger import check_evidence_facts  # noqa: E402
from services.drafter.offline import MAX_EVIDENCE_LINES, stated_findings  # noqa: E402
from services.drafter.reply import ReplyParts  # noqa: E402
from services.escalator.packet import ACCOUNT_SOURCE, ATTEMPTS_SOURCE, REQUIRED_FIELDS  # noqa: E402
from services.investigator.investigation import Subject  # noqa: E402
from services.investigator.main import build_investigator  # noqa: E402


def normalized(text: str) -> str:
    return " ".join(text.split())


def would_answer(record: dict, investigation: ev.Investigation) -> bool:
    """The escalator's answer-on-evidence conditions (decision.evidence_settles) for a ticket the
    demo held only for its route, with the offline drafter's evidence lines checked."""
    found = [f for f in investigation.findings if f.available]
    lines = tuple(f.summary for f in stated_findings(investigation)[:MAX_EVIDENCE_LINES])
    check = check_evidence_facts(ReplyParts(status=tk.DRAFT_STATUS_READY, generator="offline", evidence=lines,
                                            findings=tuple(found)))
    return (investigation.case_type == ev.CASE_TYPE_EXPECTED_BEHAVIOUR and investigation.completeness >= 1.0
            and len(found) == len(investigation.findings) and record["route_reason"].rstrip().endswith("(policy file)")
            and record["confidence"] >= 0.7 and not record["risk_flags"] and not record["input_flags"]
            and (record["packet"] or {}).get("tier") != "CUSTOMER_TIER_ENTERPRISE"
            and bool(lines) and not check.removed and all(c.verified for c in check.ledger))


def completeness_with(packet: dict, investigation: ev.Investigation) -> float:
    unknown = set(packet.get("unknown_fields", []))
    found = [f for f in investigation.findings if f.available]
    if found:
        unknown.discard("evidence")
    if any(f.source == ACCOUNT_SOURCE and f.facts for f in found):
        unknown.discard("account_state")
    if any(f.source == ATTEMPTS_SOURCE for f in found):
        unknown.discard("steps_tried")
    return (len(REQUIRED_FIELDS) - len(unknown)) / len(REQUIRED_FIELDS)


def main(path: str) -> dict:
    demo = json.loads(Path(path).read_text())
    run_id = demo["tickets"][0]["id"].rsplit("-", 1)[0]
    tickets = {t.id: t for t in sample_tickets(len(demo["tickets"]), run_id=run_id)}
    records = [r for r in demo["tickets"] if r["id"] in tickets]
    if not all(normalized(tickets[r["id"]].body)[:40] in normalized(r["message"])
               for r in records if not r["label"].startswith("oversized")):
        sys.exit("the report's tickets are not the demo's sample tickets")
    state = Path(tempfile.mkdtemp())
    scenarios = TENANTS_DIR / "demo-bank" / "systems" / "scenarios.yaml"
    with AccountSystemProcess(state / "bank", list(tickets.values()), scenarios=scenarios) as system:
        investigator = build_investigator(
            FleetSettings().replace(systems_path=systems_file(state / "systems.yaml", {"demo-bank": system})))
        truth = system.truth()
        rows: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
        answered: list[str] = []
        seeded: collections.Counter[str] = collections.Counter()
        candidates = 0
        elapsed = []
        try:
            for r in records:
                started = time.monotonic()
                investigation = investigator.investigate(
                    Subject("demo-bank", r["ticket_id"], tickets[r["id"]].customer_id, r["archetype"]), r["intent"])
                elapsed.append((time.monotonic() - started) * 1000)
                row = rows[r["archetype"]]
                if r["decision"] in ("review", "escalate") and r["packet"]:
                    row["before"].append(r["packet"].get("completeness", 0.0))
                    row["after"].append(completeness_with(r["packet"], investigation))
                    row["findings"].append(1 if investigation.findings else 0)
                    if investigation.findings:
                        row["evidence"].append(investigation.completeness)
                if (r["archetype"] == "account_specific" and r["route"] == "draft_for_review"
                        and r["reason"] == "agent review: route is draft-for-review"):
                    candidates += 1
                    if would_answer(r, investigation):
                        answered.append(r["intent"])
                        seeded[truth.get(r["id"], {}).get("case", "unknown")] += 1
        finally:
            investigator.close()

    def mean(values: list) -> float | None:
        return round(statistics.mean(values), 3) if values else None

    every = [v for row in rows.values() for v in row["before"]], [v for row in rows.values() for v in row["after"]]
    return {
        "tickets": len(records),
        "investigate_ms_p50": round(statistics.median(elapsed), 1),
        "by_archetype": {archetype: {
            "handed_to_a_person": len(row["before"]), "with_findings": sum(row["findings"]),
            "packet_completeness_before": mean(row["before"]), "packet_completeness_after": mean(row["after"]),
            "evidence_completeness_mean": mean(row["evidence"]),
        } for archetype, row in sorted(rows.items())},
        "all_packets": {"count": len(every[0]), "before": mean(every[0]), "after": mean(every[1])},
        "answer_on_evidence": {"held_only_by_route": candidates, "answered": len(answered),
                               "seeded_case_of_answered": dict(seeded),
                               "intents": dict(collections.Counter(answered))},
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(main(sys.argv[1]), indent=2))
