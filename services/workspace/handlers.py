"""The workspace's pure side: a TicketDecided -> a queue row, a DeliveryRecorded -> a delivery row,
an agent's action request -> an AgentAction event and the ticket's new status (or the refusal),
and a ticket's view for the page and the API. No Kafka, no HTTP, no database.

| decision  | queue     |
|-----------|-----------|
| RESPOND   | (none: sent without a person) |
| REVIEW    | review    |
| ESCALATE  | escalated |
| FOLLOW_UP | follow_up |

| action            | AgentActionKind   | status after | refused when                                   |
|-------------------|-------------------|--------------|------------------------------------------------|
| approve           | APPROVE           | sent         | already sent (409), no draft (422)             |
| edit              | EDIT_AND_SEND     | sent         | already sent (409), empty or too long (422)    |
| reject            | REJECT            | rejected     | already sent (409), reason not in the list (422) |
| escalate          | ESCALATE          | escalated    | already sent (409), no or bad queue (422)      |
| flag_context_loss | FLAG_CONTEXT_LOSS | (unchanged)  | never                                          |

A sent ticket is closed to everything but a context-loss flag: its reply is on the way, and an
escalation or a rejection after that would reopen it to a second approval.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass

from google.protobuf import json_format

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, new_meta
from supportflow.timestamps import seconds_of

PRODUCER = "workspace"

QUEUE_OF = {
    ev.DECISION_REVIEW: "review",
    ev.DECISION_ESCALATE: "escalated",
    ev.DECISION_FOLLOW_UP: "follow_up",
}
QUEUES = ("review", "escalated", "follow_up")

OPEN, SENT, REJECTED, ESCALATED = "open", "sent", "rejected", "escalated"
STATUSES = (OPEN, SENT, REJECTED, ESCALATED)

REJECT_REASONS = ("wrong_intent", "wrong_or_outdated_policy", "incomplete", "tone", "not_needed", "other")

APPROVE, EDIT, REJECT, ESCALATE, FLAG_CONTEXT_LOSS = "approve", "edit", "reject", "escalate", "flag_context_loss"
ACTION_KINDS = {
    APPROVE: ev.AGENT_ACTION_KIND_APPROVE,
    EDIT: ev.AGENT_ACTION_KIND_EDIT_AND_SEND,
    REJECT: ev.AGENT_ACTION_KIND_REJECT,
    ESCALATE: ev.AGENT_ACTION_KIND_ESCALATE,
    FLAG_CONTEXT_LOSS: ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS,
}
ACTION_NAMES = {kind: name for name, kind in ACTION_KINDS.items()}
STATUS_AFTER = {APPROVE: SENT, EDIT: SENT, REJECT: REJECTED, ESCALATE: ESCALATED, FLAG_CONTEXT_LOSS: None}

URGENCIES = ("critical", "high", "normal", "low", "unspecified")  # most urgent first
MAX_REPLY_CHARS = 20_000
MAX_NOTE_CHARS = 2_000
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class ActionRefused(Exception):
    """The action cannot be taken: `status` is the HTTP status that says why (409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- decisions and deliveries in ------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    """What the `tickets` table keeps of a decision (its status is the store's business)."""

    ticket_id: str
    tenant: str
    queue: str
    intent: str
    archetype: str
    urgency: str
    urgency_rank: int
    tier: str
    channel: str
    incident: str
    target_queue: str
    decision_event_id: str
    decision_json: str
    received_at: float
    decided_at: float


def queue_row(decided: ev.TicketDecided) -> QueueRow | None:
    """The queue row of a decision that waits for a person; None for one that did not (respond)."""
    queue = QUEUE_OF.get(decided.decision)
    if queue is None:
        return None
    ticket_id = decided.ticket.ticket_id
    tenant = decided.ticket.tenant_id or decided.meta.tenant_id
    if not ticket_id:
        raise InvalidEvent("decision without a ticket id")
    if not tenant:
        raise InvalidEvent("decision without a tenant (neither ticket.tenant_id nor meta.tenant_id)")
    classification = decided.classification
    received_at = (seconds_of(decided.ticket.received_at) or seconds_of(decided.timeline.received_at)
                   or seconds_of(decided.meta.occurred_at) or 0.0)
    decided_at = seconds_of(decided.timeline.decided_at) or seconds_of(decided.meta.occurred_at) or received_at
    incident = decided.incident_id or (decided.packet.incident_id if decided.HasField("packet") else "")
    return QueueRow(
        ticket_id=ticket_id,
        tenant=tenant,
        queue=queue,
        intent=classification.intent,
        archetype=enum_name(classification, "archetype"),
        urgency=enum_name(classification, "urgency"),
        urgency_rank=int(classification.urgency),
        tier=enum_name(classification, "tier"),
        channel=enum_name(decided.ticket, "channel"),
        incident=incident,
        target_queue=decided.target_queue,
        decision_event_id=decided.meta.event_id,
        decision_json=decision_to_json(decided),
        received_at=received_at,
        decided_at=decided_at,
    )


@dataclass(frozen=True)
class DeliveryRow:
    event_id: str
    ticket_id: str
    decision_event_id: str
    decision: str
    kind: str
    provider: str
    external_ticket_id: str
    external_id: str
    status: str
    attempts: int
    error: str
    text: str
    citations_json: str
    delivered_at: float | None


def delivery_row(recorded: ev.DeliveryRecorded) -> DeliveryRow:
    if not recorded.ticket_id:
        raise InvalidEvent("delivery without a ticket id")
    citations = [{"article_id": c.article_id, "title": c.title, "passage": c.passage, "url": c.url}
                 for c in recorded.citations]
    return DeliveryRow(
        event_id=recorded.meta.event_id,
        ticket_id=recorded.ticket_id,
        decision_event_id=recorded.decision_event_id,
        decision=ev.Decision.Name(recorded.decision).removeprefix("DECISION_").lower(),
        kind=ev.DeliveryKind.Name(recorded.kind).removeprefix("DELIVERY_KIND_").lower(),
        provider=recorded.provider,
        external_ticket_id=recorded.external_ticket_id,
        external_id=recorded.external_id,
        status=ev.DeliveryStatus.Name(recorded.status).removeprefix("DELIVERY_STATUS_").lower(),
        attempts=recorded.attempts,
        error=recorded.error,
        text=recorded.text,
        citations_json=json.dumps(citations),
        delivered_at=seconds_of(recorded.delivered_at),
    )


def decision_to_json(decided: ev.TicketDecided) -> str:
    return json_format.MessageToJson(decided, preserving_proto_field_name=True, indent=None)


def decision_from_json(text: str) -> ev.TicketDecided:
    return json_format.Parse(text, ev.TicketDecided(), ignore_unknown_fields=True)


# --- actions out ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionRequest:
    kind: str  # one of ACTION_KINDS
    text: str = ""  # edit: the reply to send
    reason: str = ""  # reject: one of REJECT_REASONS
    note: str = ""
    target_queue: str = ""  # escalate


@dataclass(frozen=True)
class ActionOutcome:
    event: ev.AgentAction
    new_status: str | None  # None: the status does not change


@dataclass(frozen=True)
class ActionRecord:
    """What the `actions` table keeps of one AgentAction."""

    action_id: str
    ticket_id: str
    kind: str
    agent: str
    at: float
    text: str
    reason: str
    note: str
    target_queue: str
    edit_ratio: float | None
    decision_event_id: str


def edit_ratio(draft: str, sent: str) -> float:
    """The share of the draft that changed on its way out, 0 (as written) .. 1 (all new)."""
    return round(1.0 - difflib.SequenceMatcher(None, draft, sent).ratio(), 3)


def agent_action(request: ActionRequest, decided: ev.TicketDecided, status: str, username: str,
                 *, action_id: str | None = None) -> ActionOutcome:
    """The AgentAction for `request` on a ticket whose current decision is `decided` and status
    `status`, or ActionRefused saying why not. Nothing is published or stored here."""
    kind = ACTION_KINDS.get(request.kind)
    if kind is None:
        raise ActionRefused(404, f"no action {request.kind!r}")
    if status == SENT and request.kind != FLAG_CONTEXT_LOSS:
        raise ActionRefused(409, "this ticket's reply was already sent: it is sent once")
    note = _clean(request.note)
    if len(note) > MAX_NOTE_CHARS:
        raise ActionRefused(422, f"the note is longer than {MAX_NOTE_CHARS} characters")
    draft = decided.draft.text if decided.HasField("draft") else ""
    event = ev.AgentAction(
        meta=new_meta(decided.ticket.tenant_id or decided.meta.tenant_id, PRODUCER),
        action_id=action_id or uuid.uuid4().hex,
        ticket_id=decided.ticket.ticket_id,
        kind=kind,
        agent=f"agent:{username}",
        note=note,
    )
    if request.kind == APPROVE:
        if not draft.strip():
            raise ActionRefused(422, "there is no draft to approve: write the reply and send it edited")
        event.text = draft
    elif request.kind == EDIT:
        text = _clean(request.text)
        if not text.strip():
            raise ActionRefused(422, "the reply to send is empty")
        if len(text) > MAX_REPLY_CHARS:
            raise ActionRefused(422, f"the reply is longer than {MAX_REPLY_CHARS} characters")
        event.text = text
        event.edit_ratio = edit_ratio(draft, text)
    elif request.kind == REJECT:
        if request.reason not in REJECT_REASONS:
            raise ActionRefused(422, f"the reason must be one of {', '.join(REJECT_REASONS)}")
        event.reason = request.reason
    elif request.kind == ESCALATE:
        queue = request.target_queue.strip()
        if not _QUEUE_NAME.match(queue):
            raise ActionRefused(422, "name the queue to escalate to (letters, digits, - _ . :)")
        event.target_queue = queue
    event.decision.CopyFrom(decided)
    return ActionOutcome(event, STATUS_AFTER[request.kind])


def action_record(action: ev.AgentAction, at: float) -> ActionRecord:
    kind = ACTION_NAMES.get(action.kind)
    if kind is None:
        raise InvalidEvent(f"unknown agent action kind {action.kind}")
    if not action.action_id or not action.ticket_id:
        raise InvalidEvent("agent action without an action id or a ticket id")
    return ActionRecord(
        action_id=action.action_id,
        ticket_id=action.ticket_id,
        kind=kind,
        agent=action.agent,
        at=seconds_of(action.meta.occurred_at) or at,
        text=action.text,
        reason=action.reason,
        note=action.note,
        target_queue=action.target_queue,
        edit_ratio=action.edit_ratio if kind == EDIT else None,
        decision_event_id=action.decision.meta.event_id,
    )


def _clean(text: str) -> str:
    """Browsers send form text with CRLF line ends; the reply is stored and sent with LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- the ticket view ------------------------------------------------------------------------------


def ticket_view(decided: ev.TicketDecided, *, status: str, queue: str, deliveries: list[dict],
                actions: list[dict]) -> dict:
    """A ticket as the page and the API show it: JSON-ready, plain text everywhere (the page
    escapes it)."""
    ticket = decided.ticket
    classification = decided.classification
    has_draft = decided.HasField("draft")
    draft = decided.draft
    decision = ev.Decision.Name(decided.decision).removeprefix("DECISION_").lower()
    return {
        "ticket_id": ticket.ticket_id,
        "tenant": ticket.tenant_id or decided.meta.tenant_id,
        "queue": queue,
        "status": status,
        "channel": enum_name(ticket, "channel"),
        "provider": ticket.origin.provider,
        "received_at": seconds_of(ticket.received_at),
        "subject": ticket.subject,
        "body": ticket.body,
        "conversation": [{"author": turn.author, "text": turn.text, "at": seconds_of(turn.at)} for turn in ticket.history],
        "classification": {
            "intent": classification.intent,
            "confidence": round(classification.confidence, 4),
            "archetype": enum_name(classification, "archetype"),
            "urgency": enum_name(classification, "urgency"),
            "tier": enum_name(classification, "tier"),
            "route": enum_name(classification, "route"),
            "route_reason": classification.route_reason,
            "risk_flags": [tk.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in classification.risk_flags],
            "input_flags": list(classification.input_flags),
        },
        "decision": decision,
        "decision_event_id": decided.meta.event_id,
        "reason": decided.reason,
        "case_type": ev.CaseType.Name(decided.case_type).removeprefix("CASE_TYPE_").lower(),
        "target_queue": decided.target_queue,
        "incident_id": decided.incident_id,
        "draft": {
            "text": draft.text,
            "status": enum_name(draft, "status"),
            "block_reason": draft.block_reason,
            "generator": draft.generator,
            "grounding": round(draft.grounding, 3),
            "answerability": enum_name(draft, "answerability"),
            "answerability_reason": draft.answerability_reason,
            "uncertainties": list(draft.uncertainties),
            "follow_up_questions": list(draft.follow_up_questions),
            "next_step": draft.next_step,
        } if has_draft else None,
        "citations": [
            {"article_id": c.article_id, "title": c.title, "passage": c.passage, "url": c.url, "stale": c.stale}
            for c in draft.citations
        ],
        "ledger": [
            {"claim": c.claim, "kind": c.kind, "article_id": c.article_id, "passage": c.passage, "verified": c.verified}
            for c in draft.ledger
        ],
        "packet": _packet_view(decided.packet) if decided.HasField("packet") else None,
        "delivered": [_delivered_view(d, decision) for d in deliveries],
        "actions": actions,
    }


def _packet_view(packet: ev.ContextPacket) -> dict:
    return {
        "completeness": round(packet.completeness, 3),
        "missing_information": list(packet.missing_information),
        "unknown_fields": list(packet.unknown_fields),
        "intent": packet.intent,
        "conversation_summary": packet.conversation_summary,
        "steps_tried": list(packet.steps_tried),
        "frustration_signals": list(packet.frustration_signals),
        "account_state": dict(sorted(packet.account_state.items())),
        "similar_case_ids": list(packet.similar_case_ids),
        "incident_id": packet.incident_id,
        "suggested_next_step": packet.suggested_next_step,
        "target_queue": packet.target_queue,
        "risk_flags": [tk.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in packet.risk_flags],
        "articles": [{"article_id": a.article_id, "title": a.title} for a in packet.articles],
    }


def _delivered_view(delivery: dict, decision: str) -> dict:
    """One delivery as the demo report lists what a channel received ({kind, channel, external_id,
    text, citations, at}), with its status and error. A helpdesk shows a follow-up as a public
    reply: on a ticket whose decision was to ask for more, that reply is the follow-up."""
    kind = delivery["kind"]
    if decision == "follow_up" and kind == "reply":
        kind = "follow_up"
    return {
        "kind": kind,
        "channel": delivery["provider"],
        "external_id": delivery["external_id"],
        "text": delivery["text"],
        "citations": json.loads(delivery["citations"] or "[]"),
        "at": delivery["delivered_at"],
        "status": delivery["status"],
        "error": delivery["error"],
    }


def enum_name(message, field: str) -> str:  # noqa: ANN001 - any protobuf message
    """A protobuf enum field's value without its type prefix: URGENCY_HIGH -> high."""
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = descriptor.values_by_number.get(getattr(message, field))
    if value is None:
        return "unspecified"
    prefix = "".join("_" + c if c.isupper() else c for c in descriptor.name).lstrip("_").upper() + "_"
    return value.name.removeprefix(prefix).lower()
