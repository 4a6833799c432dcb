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
| reassign          | REASSIGN          | (unchanged; the assignee changes) | sent (409), not an active user granted the tenant, or oneself (422) |
| confirm_action    | CONFIRM_ACTION    | (unchanged)  | no such proposal on the ticket (404), already confirmed, declined or carried out (409), no confirmation reference (422) |
| decline_action    | DECLINE_ACTION    | (unchanged)  | as confirm, without the reference              |
| redraft           | REDRAFT           | (unchanged; the draft is the drafter's new one) | sent (409), no instruction, or the new draft blocked or empty (422) |
| qa_severity       | QA_SEVERITY       | (a QA sample, not a queued ticket) | a class outside QA_CLASSES (422), already marked (409) |

A sent ticket is closed to everything but a context-loss flag, a QA class and the answer to a
proposed action: its reply is on the way, and an escalation or a rejection after that would reopen
it to a second approval.

What the new kinds carry (AgentAction): reassign `assignee` ("agent:<username>"); confirm_action
`proposal_id` and, in `note`, the reference of the customer's confirmation record (the same
confirmation goes to the escalator as an ActionConfirmed); decline_action `proposal_id` and the
agent's note; redraft the instruction in `note`, the new draft's text in `text` and, in `decision`,
the decision with the drafter's new draft in place of the old (so that a rebuilt queue shows the
draft the agent saw); qa_severity `qa_class`.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass

from google.protobuf import json_format

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
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
REASSIGN, QA_SEVERITY, CONFIRM_ACTION, DECLINE_ACTION, REDRAFT = (
    "reassign", "qa_severity", "confirm_action", "decline_action", "redraft")
ACTION_KINDS = {
    APPROVE: ev.AGENT_ACTION_KIND_APPROVE,
    EDIT: ev.AGENT_ACTION_KIND_EDIT_AND_SEND,
    REJECT: ev.AGENT_ACTION_KIND_REJECT,
    ESCALATE: ev.AGENT_ACTION_KIND_ESCALATE,
    FLAG_CONTEXT_LOSS: ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS,
    REASSIGN: ev.AGENT_ACTION_KIND_REASSIGN,
    QA_SEVERITY: ev.AGENT_ACTION_KIND_QA_SEVERITY,
    CONFIRM_ACTION: ev.AGENT_ACTION_KIND_CONFIRM_ACTION,
    DECLINE_ACTION: ev.AGENT_ACTION_KIND_DECLINE_ACTION,
    REDRAFT: ev.AGENT_ACTION_KIND_REDRAFT,
}
ACTION_NAMES = {kind: name for name, kind in ACTION_KINDS.items()}
STATUS_AFTER = {APPROVE: SENT, EDIT: SENT, REJECT: REJECTED, ESCALATE: ESCALATED, FLAG_CONTEXT_LOSS: None,
                REASSIGN: None, QA_SEVERITY: None, CONFIRM_ACTION: None, DECLINE_ACTION: None, REDRAFT: None}
# What may still be done once a ticket's reply was sent.
AFTER_SENT = (FLAG_CONTEXT_LOSS, QA_SEVERITY, CONFIRM_ACTION, DECLINE_ACTION)
# The QA severity classes of a sampled conversation (issue 24); "none": nothing wrong was said.
QA_CLASSES = ("refund_pricing", "warranty_service_level", "process_contact", "capability_overreach", "none")
MAX_INSTRUCTION_CHARS = 500
AGENT_PREFIX = "agent:"

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
    note: str = ""  # free text; redraft: the instruction to the drafter
    target_queue: str = ""  # escalate
    assignee: str = ""  # reassign: a username
    proposal_id: str = ""  # confirm_action, decline_action
    confirmation_ref: str = ""  # confirm_action: the customer's confirmation record
    qa_class: str = ""  # qa_severity: one of QA_CLASSES


@dataclass(frozen=True)
class Proposal:
    """A proposed action as the workspace knows it: what the escalator proposed, and whether an
    agent already answered it or a later attempt carried it out."""

    proposal_id: str
    ticket_id: str
    tool: str
    answered: str  # "", or the kind of the agent's answer: confirm_action, decline_action
    outcome: str  # "", or executed, dry_run, refused


@dataclass(frozen=True)
class ActionOutcome:
    event: ev.AgentAction
    new_status: str | None  # None: the status does not change
    confirmation: ev.ActionConfirmed | None = None  # confirm_action: for the escalator, on actions.confirmed


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
    assignee: str = ""
    qa_class: str = ""
    proposal_id: str = ""


@dataclass(frozen=True)
class TicketEffect:
    """What an action changes on its ticket's row, whichever side (the web, or the consumer in a
    rebuild) records it first."""

    status: str | None  # None: unchanged
    assignee: str | None  # a username; None: unchanged
    decision_json: str | None  # redraft: the decision with its new draft; None: unchanged


def ticket_effect(action: ev.AgentAction) -> TicketEffect:
    kind = ACTION_NAMES.get(action.kind)
    if kind is None:
        raise InvalidEvent(f"unknown agent action kind {action.kind}")
    assignee = action.assignee.removeprefix(AGENT_PREFIX) if kind == REASSIGN else None
    decision = decision_to_json(action.decision) if kind == REDRAFT and action.HasField("decision") else None
    return TicketEffect(STATUS_AFTER[kind], assignee, decision)


def edit_ratio(draft: str, sent: str) -> float:
    """The share of the draft that changed on its way out, 0 (as written) .. 1 (all new)."""
    return round(1.0 - difflib.SequenceMatcher(None, draft, sent).ratio(), 3)


def agent_action(request: ActionRequest, decided: ev.TicketDecided, status: str, username: str,
                 *, action_id: str | None = None, assignees: frozenset[str] = frozenset(),
                 proposal: Proposal | None = None, new_draft: tk.Draft | None = None) -> ActionOutcome:
    """The AgentAction for `request` on a ticket whose current decision is `decided` and status
    `status`, or ActionRefused saying why not. Nothing is published or stored here.

    reassign needs `assignees` (the active users granted the ticket's tenant); confirm_action and
    decline_action the `proposal` named (None: there is none on this ticket); redraft the drafter's
    `new_draft`."""
    kind = ACTION_KINDS.get(request.kind)
    if kind is None or request.kind == QA_SEVERITY:  # a QA class is marked on a sample: qa_action
        raise ActionRefused(404, f"no action {request.kind!r}")
    if status == SENT and request.kind not in AFTER_SENT:
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
    elif request.kind == REASSIGN:
        assignee = request.assignee.strip()
        if assignee == username:
            raise ActionRefused(422, "choose another agent: the ticket is yours to hand over")
        if assignee not in assignees:
            raise ActionRefused(422, "reassign to an active agent granted this ticket's tenant")
        event.assignee = f"{AGENT_PREFIX}{assignee}"
    elif request.kind in (CONFIRM_ACTION, DECLINE_ACTION):
        if proposal is None or proposal.ticket_id != decided.ticket.ticket_id:
            raise ActionRefused(404, "no such proposed action on this ticket")
        if proposal.answered or proposal.outcome:
            done = proposal.answered.replace("_action", "ed") if proposal.answered else proposal.outcome.replace("_", " ")
            raise ActionRefused(409, f"this proposed action was already {done}")
        event.proposal_id = proposal.proposal_id
        if request.kind == CONFIRM_ACTION:
            reference = request.confirmation_ref.strip()
            if not reference:
                raise ActionRefused(422, "give the reference of the customer's confirmation (where and when they agreed)")
            if len(reference) > 200:
                raise ActionRefused(422, "the confirmation reference is longer than 200 characters")
            event.note = reference
            event.decision.CopyFrom(decided)
            confirmation = ev.ActionConfirmed(
                meta=new_meta(event.meta.tenant_id, PRODUCER), proposal_id=proposal.proposal_id,
                ticket_id=decided.ticket.ticket_id, confirmation_ref=reference, confirmed_by=event.agent)
            return ActionOutcome(event, None, confirmation)
    elif request.kind == REDRAFT:
        instruction = note.strip()
        if not instruction:
            raise ActionRefused(422, "say what the new draft should do differently")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise ActionRefused(422, f"the instruction is longer than {MAX_INSTRUCTION_CHARS} characters")
        if new_draft is None or new_draft.status == tk.DRAFT_STATUS_BLOCKED or not new_draft.text.strip():
            why = (new_draft.block_reason if new_draft is not None and new_draft.block_reason else "it came back empty")
            raise ActionRefused(422, f"the drafter's new draft cannot stand ({why}): the draft shown stays")
        event.note = instruction
        event.text = new_draft.text
        event.decision.CopyFrom(redrafted(decided, new_draft))
        return ActionOutcome(event, None)
    event.decision.CopyFrom(decided)
    return ActionOutcome(event, STATUS_AFTER[request.kind])


def qa_action(sampled: ev.TicketDecided, qa_class: str, note: str, username: str, *, already: str,
              action_id: str | None = None) -> ev.AgentAction:
    """The AgentAction marking a QA sample's severity class, or ActionRefused. `already`: the class
    the sample was marked with ("" when none)."""
    if qa_class not in QA_CLASSES:
        raise ActionRefused(422, f"the class must be one of {', '.join(QA_CLASSES)}")
    if already:
        raise ActionRefused(409, f"this sample was already marked {already}")
    note = _clean(note)
    if len(note) > MAX_NOTE_CHARS:
        raise ActionRefused(422, f"the note is longer than {MAX_NOTE_CHARS} characters")
    return ev.AgentAction(
        meta=new_meta(sampled.ticket.tenant_id or sampled.meta.tenant_id, PRODUCER),
        action_id=action_id or uuid.uuid4().hex, ticket_id=sampled.ticket.ticket_id,
        kind=ev.AGENT_ACTION_KIND_QA_SEVERITY, agent=f"{AGENT_PREFIX}{username}", qa_class=qa_class, note=note,
        decision=sampled,
    )


# --- the drafter, asked again ---------------------------------------------------------------------

INSTRUCTION_METADATA_KEY = "draft_instruction"


def redraft_request(decided: ev.TicketDecided, instruction: str, username: str) -> svc.DraftRequest:
    """Drafter.Draft's request for a new draft of `decided`'s ticket. DraftRequest has no field for
    an instruction, so it rides on the ticket: an `agent` turn at the end of its history (an
    internal turn: it is never sent to the customer) and, so that a generator can tell it from the
    conversation, the ticket's metadata `draft_instruction`."""
    ticket = tk.Ticket()
    ticket.CopyFrom(decided.ticket)
    turn = ticket.history.add(author="agent", text=instruction.strip())
    turn.at.GetCurrentTime()
    ticket.metadata[INSTRUCTION_METADATA_KEY] = instruction.strip()
    ticket.metadata["draft_instruction_by"] = f"{AGENT_PREFIX}{username}"
    return svc.DraftRequest(ticket=ticket, classification=decided.classification)


def redrafted(decided: ev.TicketDecided, new_draft: tk.Draft) -> ev.TicketDecided:
    """The same decision (its event id too) with `new_draft` in place of its draft."""
    updated = ev.TicketDecided()
    updated.CopyFrom(decided)
    updated.draft.CopyFrom(new_draft)
    return updated


# --- the other topics the workspace reads ----------------------------------------------------------


@dataclass(frozen=True)
class QaSampleRow:
    ticket_id: str
    tenant: str
    week: str
    event_id: str
    decision_json: str


def qa_sample_row(sample: ev.QaSampleRequested) -> QaSampleRow:
    ticket_id = sample.ticket_id or sample.decision.ticket.ticket_id
    tenant = sample.meta.tenant_id or sample.decision.ticket.tenant_id
    if not ticket_id or not tenant:
        raise InvalidEvent("QA sample without a ticket id or a tenant")
    return QaSampleRow(ticket_id=ticket_id, tenant=tenant, week=sample.week[:16], event_id=sample.meta.event_id,
                       decision_json=decision_to_json(sample.decision))


@dataclass(frozen=True)
class ProposalRow:
    proposal_id: str
    ticket_id: str
    tenant: str
    tool: str
    params_json: str
    reason: str
    requested_by: str
    proposed_at: float


@dataclass(frozen=True)
class ProposalOutcome:
    proposal_id: str
    outcome: str  # executed, dry_run, refused
    reason: str


def proposal_change(recorded: ev.ActionRecorded, now: float) -> ProposalRow | ProposalOutcome | None:
    """A PROPOSED attempt is a new proposal; a later attempt naming one (proposal_id) is its
    outcome; anything else (an attempt without confirmation) concerns no proposal."""
    if recorded.status == ev.ACTION_STATUS_PROPOSED:
        if not recorded.action_id or not recorded.ticket_id:
            raise InvalidEvent("proposed action without an action id or a ticket id")
        return ProposalRow(
            proposal_id=recorded.action_id, ticket_id=recorded.ticket_id, tenant=recorded.meta.tenant_id,
            tool=recorded.tool, params_json=json.dumps(dict(sorted(recorded.params.items()))), reason=recorded.reason,
            requested_by=recorded.requested_by, proposed_at=seconds_of(recorded.meta.occurred_at) or now)
    if recorded.proposal_id:
        outcome = ev.ActionStatus.Name(recorded.status).removeprefix("ACTION_STATUS_").lower()
        return ProposalOutcome(recorded.proposal_id, outcome, recorded.reason)
    return None


OVERRIDE_ACTIONS = {ev.OVERRIDE_ACTION_SET_AUTOMATION: "set_automation", ev.OVERRIDE_ACTION_KILL_SWITCH_ON: "kill_switch_on",
                    ev.OVERRIDE_ACTION_KILL_SWITCH_OFF: "kill_switch_off", ev.OVERRIDE_ACTION_CLEAR: "clear"}
ARCHETYPES = {"repetitive": tk.ARCHETYPE_REPETITIVE, "faq_bounded": tk.ARCHETYPE_FAQ_BOUNDED,
              "account_specific": tk.ARCHETYPE_ACCOUNT_SPECIFIC}
ALL_TENANTS = "*"


def override_row(override: ev.RoutingOverride, now: float) -> dict:
    """What the leads' audit view keeps of a routing override."""
    if not override.override_id:
        raise InvalidEvent("routing override without an override id")
    return {
        "override_id": override.override_id,
        "tenant": override.meta.tenant_id.strip() or ALL_TENANTS,
        "archetype": enum_name(override, "archetype"),
        "action": OVERRIDE_ACTIONS.get(override.action, "unspecified"),
        "route": enum_name(override, "route") if override.action == ev.OVERRIDE_ACTION_SET_AUTOMATION else "",
        "reason": override.reason,
        "issued_by": override.issued_by,
        "at": seconds_of(override.meta.occurred_at) or now,
    }


def rollback_override(archetype: str, tenant: str, reason: str, username: str) -> ev.RoutingOverride:
    """The override a rollback owner issues from the page: `archetype` back to draft-for-review for
    `tenant` ("*": every tenant). Raises ActionRefused for an unknown archetype or no reason."""
    if archetype not in ARCHETYPES:
        raise ActionRefused(422, f"the archetype must be one of {', '.join(ARCHETYPES)}")
    reason = _clean(reason).strip()
    if not reason:
        raise ActionRefused(422, "say why the archetype goes back to draft-for-review")
    if len(reason) > MAX_NOTE_CHARS:
        raise ActionRefused(422, f"the reason is longer than {MAX_NOTE_CHARS} characters")
    return ev.RoutingOverride(
        meta=new_meta("" if tenant == ALL_TENANTS else tenant, PRODUCER), override_id=uuid.uuid4().hex,
        archetype=ARCHETYPES[archetype], action=ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_DRAFT_FOR_REVIEW,
        reason=reason, issued_by=f"human:{username}")


def parse_rollback_owners(text: str) -> dict[str, str]:
    """`archetype=username` pairs separated by commas (SUPPORTFLOW_WORKSPACE_ROLLBACK_OWNERS) ->
    {archetype: username}; raises ValueError naming what is wrong."""
    owners: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        archetype, sep, username = (x.strip() for x in part.partition("="))
        if not sep or not username:
            raise ValueError(f"rollback owner {part!r}: write archetype=username")
        if archetype not in ARCHETYPES:
            raise ValueError(f"rollback owner {part!r}: the archetype must be one of {', '.join(ARCHETYPES)}")
        if archetype in owners:
            raise ValueError(f"rollback owner of {archetype} named twice")
        owners[archetype] = username
    return owners


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
        assignee=action.assignee.removeprefix(AGENT_PREFIX),
        qa_class=action.qa_class,
        proposal_id=action.proposal_id,
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
        "investigation": _investigation_view(decided),
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


def _investigation_view(decided: ev.TicketDecided) -> dict | None:
    """What the tenant's systems showed (the investigation playbook's findings), from the decision's
    investigation or, failing that, its packet's; None when there is none."""
    if decided.HasField("investigation") and (decided.investigation.findings or decided.investigation.playbook):
        found = decided.investigation
        findings, playbook, completeness, uncertain = (list(found.findings), found.playbook, found.completeness,
                                                       list(found.uncertain))
    elif decided.HasField("packet") and decided.packet.investigation:
        findings, playbook, completeness, uncertain = (list(decided.packet.investigation), "",
                                                       decided.packet.evidence_completeness, [])
    else:
        return None
    return {
        "playbook": playbook,
        "completeness": round(completeness, 3),
        "uncertain": uncertain,
        "findings": [{
            "source": f.source, "lookup": f.lookup, "summary": f.summary, "observed_at": seconds_of(f.observed_at),
            "available": f.available, "unavailable_reason": f.unavailable_reason, "record_id": f.record_id,
            "facts": dict(sorted(f.facts.items())),
        } for f in findings],
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
