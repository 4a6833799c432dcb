"""`supportflow draft --tenant T --json [--input FILE.jsonl]`: the stable evaluation contract.

Reads canonical tickets as JSON lines (`{"id", "subject", "body", ...}`, the gateway's payload
shape) and writes one JSON line per input line, in order, with at least:

- `id`; `text`: the reply, empty when the draft is blocked or was not drafted;
- `citations`: `[{article_id, chunk_id, title, passage, stale}]`, numbered as the [n] markers in
  `text`;
- `ledger`: `[{claim, kind, article_id, passage, verified}]`, every policy claim checked;
- `decision`: what should happen to the draft, one of
  `respond`   ready, route AUTO_RESPOND, every claim verified, no risk flag, confidence >= 0.7, no
              cited article past its review date, not judged off the question by the generator,
              not a policy exception (escalation.yaml's case type for the intent), not the
              customer writing back after an answer (an `agent` or `bot` turn in `history`);
  `review`    an agent reviews it (the default without a classifier: nothing is sent unreviewed);
  `follow_up` the customer must first give missing identifiers (or the classifier asked for it);
  `escalate`  a human takes over: route ESCALATE, a risk flag (security, legal, billing dispute,
              prompt injection), no evidence for an account-specific question, or unreadable input;
  `blocked`   the draft had unverifiable policy claims and cannot stand: a human must answer.
  The escalator's own rule (services/escalator/decision.py), so the command and the pipeline agree.
- plus `status`, `generator`, `grounding`, `answerability` (`answered`, `not_answered`, or
  `unspecified` when the generator does not judge it) and `answerability_reason`, `uncertainties`,
  `follow_up_questions`, `next_step`,
  `block_reason`, `evidence` (article ids retrieved) and, with a classifier, `intent`, `route`,
  `confidence`. A line that is not a valid ticket gets `error` and decision `escalate`.

Evidence comes from `search(SearchRequest) -> SearchResponse`: by default the retriever over gRPC
at settings.retriever_addr; a caller can inject an in-process search so the command works without
the services. Classification comes from `classify(Ticket) -> (NormalizedTicket, Classification)`
when given, or from the in-process classifier when settings.intent_model_dir is set.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, TextIO

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.settings import FleetSettings

from services.drafter.handlers import Search, TicketDrafter
from services.drafter.reply import ReplyGenerator
from services.escalator.case_routing import case_type_for
from services.escalator.config import EscalationConfig
from services.escalator.decision import decide_classified, decide_drafted, writes_back_after_an_answer
from services.gateway.intake import PayloadError, ticket_from_payload

Classify = Callable[[tk.Ticket], tuple[tk.NormalizedTicket, tk.Classification]]

# The escalator's decisions in this command's words.
_DECISION_NAMES = {
    ev.DECISION_RESPOND: "respond",
    ev.DECISION_REVIEW: "review",
    ev.DECISION_FOLLOW_UP: "follow_up",
    ev.DECISION_ESCALATE: "escalate",
}


def decision_for(
    ticket: tk.Ticket,
    draft: tk.Draft | None,
    classification: tk.Classification,
    normalized: tk.NormalizedTicket,
    escalation: EscalationConfig,
    *,
    classified: bool,
) -> str:
    """What the escalator would decide for this ticket and draft (services/escalator/decision.py:
    one rule for the pipeline and the command), with `blocked` for a draft that cannot stand.
    Without a classifier the draft is decided as on the draft-for-review route: nothing is sent
    unreviewed. The command sees no incidents: the pipeline may hold a draft it would send."""
    if draft is None:
        return "escalate"
    if not classified:
        classification = tk.Classification(route=tk.ROUTE_DRAFT_FOR_REVIEW)
    case_type = case_type_for(classification, normalized, "", escalation)
    verdict = decide_classified(classification, normalized) or decide_drafted(
        classification, normalized, draft, policy_exception=case_type == ev.CASE_TYPE_POLICY_EXCEPTION,
        writes_back=writes_back_after_an_answer(ticket),
    )
    return "blocked" if verdict.draft_blocked else _DECISION_NAMES[verdict.decision]


def draft_record(
    ticket_id: Any,
    draft: tk.Draft | None,
    evidence: Iterable[tk.EvidencePassage],
    normalized: tk.NormalizedTicket,
    classification: tk.Classification,
    decision: str,
    *,
    classified: bool,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": ticket_id,
        "text": draft.text if draft else "",
        "citations": [
            {"article_id": c.article_id, "chunk_id": c.chunk_id, "title": c.title, "passage": c.passage, "stale": c.stale}
            for c in (draft.citations if draft else [])
        ],
        "ledger": [
            {"claim": c.claim, "kind": c.kind, "article_id": c.article_id, "passage": c.passage, "verified": c.verified}
            for c in (draft.ledger if draft else [])
        ],
        "decision": decision,
        "status": tk.DraftStatus.Name(draft.status).removeprefix("DRAFT_STATUS_").lower() if draft else "not_drafted",
        "generator": draft.generator if draft else "",
        "grounding": draft.grounding if draft else 0.0,
        "answerability": tk.Answerability.Name(draft.answerability).removeprefix("ANSWERABILITY_").lower()
        if draft else "unspecified",
        "answerability_reason": draft.answerability_reason if draft else "",
        "uncertainties": list(draft.uncertainties) if draft else [],
        "follow_up_questions": list(draft.follow_up_questions) if draft else [],
        "next_step": draft.next_step if draft else "",
        "block_reason": draft.block_reason if draft else "",
        "evidence": list(dict.fromkeys(p.article_id for p in evidence)),
    }
    if classified:
        record |= {
            "intent": classification.intent,
            "route": tk.Route.Name(classification.route).removeprefix("ROUTE_").lower(),
            "confidence": round(classification.confidence, 4),
        }
    return record


def _error_record(ticket_id: Any, error: str) -> dict[str, Any]:
    return {
        "id": ticket_id, "text": "", "citations": [], "ledger": [], "decision": "escalate",
        "status": "not_drafted", "error": error,
    }


def draft_jsonl(
    in_stream: Iterable[str],
    out_stream: TextIO,
    tenant: str,
    settings: FleetSettings,
    *,
    search: Search | None = None,
    classify: Classify | None = None,
    generator: ReplyGenerator | None = None,
) -> int:
    """Draft every ticket of `in_stream` for `tenant`; returns the number of lines written."""
    search = search or grpc_search(settings)
    classify = classify or in_process_classifier(settings)
    if generator is None:
        from services.drafter.generators import generator_from_settings

        generator = generator_from_settings(settings)
    drafter = TicketDrafter(search, generator, k=settings.drafter_evidence_k)
    escalation = EscalationConfig.load(settings.escalation_config_path)
    written = 0
    for line in in_stream:
        if not line.strip():
            continue
        record = _draft_line(line, tenant, drafter, classify, escalation)
        out_stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        out_stream.flush()
        written += 1
    return written


def _draft_line(
    line: str, tenant: str, drafter: TicketDrafter, classify: Classify | None, escalation: EscalationConfig
) -> dict[str, Any]:
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as exc:
        return _error_record(None, f"not JSON: {exc}")
    ticket_id = payload.get("id", payload.get("ticket_id")) if isinstance(payload, dict) else None
    try:
        ticket = ticket_from_payload(payload, default_tenant=tenant)
    except PayloadError as exc:
        return _error_record(ticket_id, str(exc))
    ticket.tenant_id = tenant  # the command runs as one tenant: no ticket reads another's KB
    if classify is not None:
        normalized, classification = classify(ticket)
    else:
        normalized, classification = tk.NormalizedTicket(), tk.Classification()
    classified = classify is not None
    if classification.route == tk.ROUTE_ESCALATE:
        decision = decision_for(ticket, None, classification, normalized, escalation, classified=classified)
        return draft_record(ticket_id, None, [], normalized, classification, decision, classified=classified)
    outcome = drafter.draft(ticket, normalized, classification)
    decision = decision_for(ticket, outcome.draft, classification, normalized, escalation, classified=classified)
    return draft_record(ticket_id, outcome.draft, outcome.evidence, normalized, classification, decision, classified=classified)


def grpc_search(settings: FleetSettings) -> Search:
    from supportflow.rpc import open_channel

    from services.drafter.retriever_client import retriever_search

    channel = open_channel("drafter-cli", settings.retriever_addr, settings.grpc_deadline_s)
    return retriever_search(channel, settings.grpc_deadline_s)


def in_process_classifier(settings: FleetSettings) -> Classify | None:
    """The classifier service's own triage, when a trained intent model is configured."""
    if settings.intent_model_dir is None:
        return None
    from services.classifier.main import build_triage

    return build_triage(settings).classify
