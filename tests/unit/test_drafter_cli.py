"""`supportflow draft --json`: one JSON line per input line, in order, with the contract fields."""

from __future__ import annotations

import io
import json

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.settings import FleetSettings

from tooling.commands.drafter import decision_for, draft_jsonl
from services.drafter.offline import OfflineDrafter
from services.drafter.reply import DraftInput, ReplyParts, Sentence, SourceRef
from services.drafter.templates import TemplateBook
from services.escalator.config import EscalationConfig

WIRES = tk.EvidencePassage(
    article_id="lime_green_004", chunk_id="lime_green_004#0", title="Lime Green Account: Wire Transfer Pricing",
    is_policy=True, text="- Domestic outgoing wire: $10.00 per transfer.\n- International outgoing wire: $25.00 per transfer.",
)


def search(request: svc.SearchRequest) -> svc.SearchResponse:
    if "wire" in request.query.lower():
        return svc.SearchResponse(passages=[WIRES], best_score=0.8)
    return svc.SearchResponse(gap=True, best_score=0.05)


def run(lines: list[str], **kwargs) -> list[dict]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    kwargs.setdefault("generator", OfflineDrafter(TemplateBook.load()))
    written = draft_jsonl(io.StringIO("\n".join(lines) + "\n"), out, "rho-bank", FleetSettings(), search=search, **kwargs)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert written == len(records)
    return records


def test_one_line_per_ticket_in_order_with_the_contract_fields() -> None:
    records = run([
        json.dumps({"id": "a", "subject": "Wire", "body": "What does a domestic outgoing wire cost?"}),
        json.dumps({"id": "b", "body": "Can I pay my rent in bitcoin?"}),
        "",
        "{not json",
        json.dumps({"id": "d", "subject": 5}),
    ])
    assert [r["id"] for r in records] == ["a", "b", None, "d"]
    first = records[0]
    assert {"id", "text", "citations", "ledger", "decision"} <= set(first)
    assert "$10.00" in first["text"]
    assert first["citations"][0]["article_id"] == "lime_green_004" and "$10.00" in first["citations"][0]["passage"]
    assert first["ledger"] and all(c["verified"] for c in first["ledger"]) and first["ledger"][0]["article_id"] == "lime_green_004"
    assert first["decision"] == "review"  # without a classifier nothing is sent unreviewed
    assert records[1]["status"] == "no_evidence" and records[1]["decision"] == "review"
    assert records[2]["decision"] == "escalate" and "not JSON" in records[2]["error"]
    assert records[3]["text"] == "" and "error" in records[3]


class InventingGenerator:
    name = "inventing"

    def generate(self, request: DraftInput) -> ReplyParts:
        return ReplyParts(
            status=tk.DRAFT_STATUS_READY, generator=self.name,
            answer=(Sentence("Your friend is right, the wire fee is $5.", (0,)),),
            sources=tuple(SourceRef(p) for p in request.evidence),
        )


def test_a_blocked_draft_has_no_text() -> None:
    [record] = run([json.dumps({"id": "x", "body": "My friend says the wire fee is $5, confirm"})], generator=InventingGenerator())
    assert record["decision"] == "blocked" and record["text"] == "" and record["status"] == "blocked"
    assert record["ledger"] == [{"claim": "the wire fee is $5", "kind": "fee", "article_id": "", "passage": "", "verified": False}]


def classify_as(route: int, intent: str = "wire_pricing", **fields):  # type: ignore[no-untyped-def]
    def classify(ticket: tk.Ticket):  # type: ignore[no-untyped-def]
        return tk.NormalizedTicket(problem_statement=ticket.body), tk.Classification(intent=intent, route=route, **fields)

    return classify


@pytest.mark.parametrize(
    "route, fields, decision",
    [
        (tk.ROUTE_AUTO_RESPOND, {"confidence": 0.95}, "respond"),
        (tk.ROUTE_AUTO_RESPOND, {"confidence": 0.4}, "review"),
        (tk.ROUTE_DRAFT_FOR_REVIEW, {"confidence": 0.95}, "review"),
        (tk.ROUTE_AUTO_RESPOND, {"confidence": 0.95, "input_flags": ["prompt_injection"]}, "escalate"),
        (tk.ROUTE_ESCALATE, {"confidence": 0.95}, "escalate"),
        # escalation.yaml types an extra charge on a statement as a policy exception: an agent decides.
        (tk.ROUTE_AUTO_RESPOND, {"confidence": 0.95, "intent": "extra_charge_on_statement"}, "review"),
    ],
)
def test_decision_follows_the_classification(route: int, fields: dict, decision: str) -> None:
    [record] = run([json.dumps({"id": "c", "body": "What does a domestic outgoing wire cost?"})], classify=classify_as(route, **fields))
    assert record["decision"] == decision
    assert record["route"] and record["intent"] == fields.get("intent", "wire_pricing")
    if route == tk.ROUTE_ESCALATE:
        assert record["text"] == "" and record["status"] == "not_drafted"


def test_a_customer_writing_back_after_an_answer_gets_a_colleague() -> None:
    first = {"id": "c", "body": "What does a domestic outgoing wire cost?"}
    reply = first | {"body": "That is not what I asked, the fee was higher.", "history": [
        {"author": "customer", "text": first["body"]},
        {"author": "bot", "text": "Domestic outgoing wire: $10.00 per transfer."},
    ]}
    classify = classify_as(tk.ROUTE_AUTO_RESPOND, confidence=0.95)
    records = run([json.dumps(first), json.dumps(reply)], classify=classify)
    assert [r["decision"] for r in records] == ["respond", "review"]


def test_missing_identifiers_ask_for_a_follow_up() -> None:
    draft = tk.Draft(status=tk.DRAFT_STATUS_READY, text="Hello")
    normalized = tk.NormalizedTicket(missing_identifiers=["transaction_id"])
    classification = tk.Classification(route=tk.ROUTE_AUTO_RESPOND, confidence=0.99)
    assert decision_for(tk.Ticket(), draft, classification, normalized, EscalationConfig.load(), classified=True) == "follow_up"


@pytest.mark.parametrize(
    "draft, decision",
    [
        (tk.Draft(status=tk.DRAFT_STATUS_READY, text="Hello", citations=[tk.Citation(article_id="a")]), "respond"),
        (tk.Draft(status=tk.DRAFT_STATUS_READY, text="Hello", citations=[tk.Citation(article_id="a", stale=True)]), "review"),
        (tk.Draft(status=tk.DRAFT_STATUS_READY, text="Hello", answerability=tk.ANSWERABILITY_NOT_ANSWERED), "review"),
    ],
    ids=["fresh", "stale-article", "not-answered"],
)
def test_the_command_holds_what_the_escalator_holds(draft: tk.Draft, decision: str) -> None:
    from services.escalator.decision import decide_drafted

    classification = tk.Classification(route=tk.ROUTE_AUTO_RESPOND, confidence=0.99)
    assert decision_for(tk.Ticket(), draft, classification, tk.NormalizedTicket(), EscalationConfig.load(), classified=True) == decision
    verdict = decide_drafted(classification, tk.NormalizedTicket(), draft)
    assert (verdict.decision == ev.DECISION_RESPOND) == (decision == "respond")
