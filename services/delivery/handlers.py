"""What to post for a decision, and where: a TicketDecided plus the tenant's channels in, a
DeliveryPlan (or the reason there is no channel) out. Pure: no Kafka, no HTTP, no database.

| decision  | kind      | public | texts (messages.py)                         | ticket fields set                        |
|-----------|-----------|--------|---------------------------------------------|------------------------------------------|
| RESPOND   | reply     | yes    | draft + linked sources (<= 3) + colleague    | status answered, tag supportflow_answered |
| REVIEW    | note      | no     | draft, sources with passages, ledger, reason | status review, priority, group, tags     |
| ESCALATE  | note      | no     | the whole context packet                     | status review, priority, group / team    |
| FOLLOW_UP | follow_up | yes    | the missing identifiers or the draft's asks  | status pending                           |

An agent's action from the workspace (an AgentAction on agent.actions) is delivered as a decision
too: `decision_from_action` turns it into a TicketDecided (its `decision` copied, then marked as the
agent's: meta.event_id = the action's action_id, meta.producer = the agent, "agent:<username>"),
and plan_delivery composes what the agent sent instead of what the decision would have:

| action            | as       | kind  | texts (messages.py)                                 | ticket fields set   |
|-------------------|----------|-------|-----------------------------------------------------|---------------------|
| APPROVE           | RESPOND  | reply | the text sent + the draft's linked sources (<= 3)   | as RESPOND          |
| EDIT_AND_SEND     | RESPOND  | reply | the same, with the agent's edited text              | as RESPOND          |
| ESCALATE          | ESCALATE | note  | the target queue, the agent, the agent's note       | as ESCALATE         |
| REJECT            | -        | -     | nothing is posted                                   | -                   |
| FLAG_CONTEXT_LOSS | -        | -     | nothing is posted                                   | -                   |

A person sent the reply, so it has no line saying it was sent automatically (nor, in a mail, an
Auto-Submitted header); the ticket is set to the answered status as for an automatic reply.

Everything about such a decision is then the same as for the escalator's: one delivery per
action_id in the ledger, the same reconciliation, and the same retry topic, whose DeliveryRetry
carries this TicketDecided whole, so the retry composes the very same message.

A ticket that came through the API (or carries no origin) is answered by a signed callback when
its tenant configures `api.callback_url`; without one there is no channel to post to: its sender
reads tickets.delivered and the decision topics, so it is recorded as FAILED "no channel" and not
dead-lettered. A ticket from a helpdesk or mailbox the tenant has no settings for is a deployment
mistake: recorded FAILED and dead-lettered, so it can be replayed once the channels file is fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from supportflow.channels import ApiChannel, ChannelsConfig, EmailChannel, FreshdeskChannel, IntercomChannel, ZendeskChannel
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, new_meta
from supportflow.timestamps import seconds_of, timestamp_at

from services.delivery.messages import (
    MAX_REPLY_CITATIONS,
    ComposedMessage,
    SourceLink,
    compose_agent_escalation_note,
    compose_escalation_note,
    compose_follow_up,
    compose_reply,
    compose_review_note,
)

PRODUCER = "delivery"
HELPDESKS = ("zendesk", "intercom", "freshdesk")
# meta.producer of a decision built from an agent's action: "agent:<username>", as AgentAction.agent.
AGENT_PREFIX = "agent:"
POSTED_ACTIONS = {
    ev.AGENT_ACTION_KIND_APPROVE: ev.DECISION_RESPOND,
    ev.AGENT_ACTION_KIND_EDIT_AND_SEND: ev.DECISION_RESPOND,
    ev.AGENT_ACTION_KIND_ESCALATE: ev.DECISION_ESCALATE,
}
# Actions that change nothing on the helpdesk ticket: the workspace, the learner or the escalator
# act on them (a confirmed action is posted once the system that executes it answers).
UNPOSTED_ACTIONS = (
    ev.AGENT_ACTION_KIND_REJECT,
    ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS,
    ev.AGENT_ACTION_KIND_REASSIGN,
    ev.AGENT_ACTION_KIND_QA_SEVERITY,
    ev.AGENT_ACTION_KIND_CONFIRM_ACTION,
    ev.AGENT_ACTION_KIND_DECLINE_ACTION,
    ev.AGENT_ACTION_KIND_REDRAFT,
)

KIND_OF = {
    ev.DECISION_RESPOND: ev.DELIVERY_KIND_REPLY,
    ev.DECISION_REVIEW: ev.DELIVERY_KIND_NOTE,
    ev.DECISION_ESCALATE: ev.DELIVERY_KIND_NOTE,
    ev.DECISION_FOLLOW_UP: ev.DELIVERY_KIND_FOLLOW_UP,
}
TAGS = {
    ev.DECISION_RESPOND: ("supportflow_answered",),
    ev.DECISION_REVIEW: ("supportflow_review",),
    ev.DECISION_ESCALATE: ("supportflow_escalated",),
    ev.DECISION_FOLLOW_UP: ("supportflow_follow_up",),
}
# Urgency -> the canonical priority; each client maps it to its provider's values.
PRIORITY_OF = {tk.URGENCY_LOW: "low", tk.URGENCY_NORMAL: "normal", tk.URGENCY_HIGH: "high", tk.URGENCY_CRITICAL: "urgent"}
ZENDESK_PENDING = "pending"  # awaiting the customer: what a follow-up leaves a Zendesk ticket in
FRESHDESK_PENDING = 3
_ASK_FOR = re.compile(r"^ask the customer for (?P<kinds>[a-z0-9_, ]+)$")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class EmailEnvelope:
    to: str
    sender: str
    sender_name: str
    subject: str
    message_id: str  # "<...>", derived from the decision: the same on every retry and restart
    in_reply_to: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class DeliveryPlan:
    decision_event_id: str
    ticket_id: str
    tenant_id: str
    decision: int  # ev.Decision
    kind: int  # ev.DeliveryKind
    provider: str
    external_ticket_id: str
    public: bool
    message: ComposedMessage
    citations: tuple[tk.Citation, ...]
    received_at: float | None
    status: str | int | None = None  # Zendesk: a status name; Freshdesk: a status number
    priority: str = ""  # low / normal / high / urgent; "" leaves it
    group_id: int | None = None
    assignee_team: str = ""  # Intercom team to assign the conversation to
    tags: tuple[str, ...] = ()
    email: EmailEnvelope | None = None
    # An email note for a tenant without a notes_address: there is nowhere to send it, so it is
    # recorded on tickets.delivered only (the workspace shows it there).
    record_only: bool = False
    # False for what an agent sent from the workspace: a mail then carries no Auto-Submitted header.
    automatic: bool = True

    @property
    def lane(self) -> tuple[str, str]:
        return (self.tenant_id, self.provider)


@dataclass(frozen=True)
class NoChannel:
    """A decision that cannot be posted anywhere; recorded FAILED with `error`."""

    provider: str
    external_ticket_id: str
    error: str
    dead_letter: bool
    citations: tuple[tk.Citation, ...] = field(default=())


def plan_delivery(decided: ev.TicketDecided, channels: ChannelsConfig) -> DeliveryPlan | NoChannel:
    """The delivery for one decision. Raises InvalidEvent for a decision that can never be
    delivered whatever the configuration (no id, no ticket, no decision, a reply without text)."""
    if not decided.meta.event_id:
        raise InvalidEvent("decision has no meta.event_id")
    ticket = decided.ticket
    if not ticket.ticket_id:
        raise InvalidEvent("decision's ticket has no ticket_id")
    tenant_id = ticket.tenant_id or decided.meta.tenant_id
    if not tenant_id:
        raise InvalidEvent("decision has no tenant (neither ticket.tenant_id nor meta.tenant_id)")
    if decided.decision not in KIND_OF:
        raise InvalidEvent(f"decision {decided.decision} (unspecified or unknown) cannot be delivered")
    if decided.decision == ev.DECISION_RESPOND and not decided.draft.text.strip():
        raise InvalidEvent("respond decision without draft text")

    origin = ticket.origin
    # A ticket without an origin came in before channels had one: through the API.
    provider = (origin.provider.strip().lower() if ticket.HasField("origin") else "") or "api"
    tenant = channels.tenant(tenant_id)
    settings = tenant.provider(provider) if tenant is not None else None
    if provider == "api" and settings is None:
        return NoChannel("api", origin.external_id, f"no channel: the ticket came through the API and tenant "
                         f"{tenant_id} has no api.callback_url; its sender reads tickets.delivered", dead_letter=False)
    if settings is None:
        return NoChannel(provider, origin.external_id,
                         f"no channel: tenant {tenant_id} has no {provider} channel configured", dead_letter=True)
    if provider in HELPDESKS and not origin.external_id:
        return NoChannel(provider, "", f"no channel: the {provider} ticket has no external id", dead_letter=True)

    sources = source_links(decided, tenant_id, channels)
    kind = KIND_OF[decided.decision]
    reference = f"sf-{decided.meta.event_id[:12]}"
    agent = acting_agent(decided)
    if decided.decision == ev.DECISION_RESPOND:
        shown = sources[:MAX_REPLY_CITATIONS]
        message = compose_reply(decided.draft.text, shown, automatic=not agent)
        citations = _citations(decided, shown)
    elif decided.decision == ev.DECISION_ESCALATE and agent:
        message = compose_agent_escalation_note(target_queue(decided), agent, decided.reason, reference)
        citations = ()
    elif decided.decision == ev.DECISION_FOLLOW_UP:
        message = compose_follow_up(list(decided.draft.follow_up_questions), missing_identifiers(decided))
        citations = ()
    elif decided.decision == ev.DECISION_REVIEW:
        message = compose_review_note(decided, sources, reference)
        citations = _citations(decided, sources)
    else:
        message = compose_escalation_note(decided, sources, reference)
        citations = _citations(decided, sources)

    base = dict(
        decision_event_id=decided.meta.event_id, ticket_id=ticket.ticket_id, tenant_id=tenant_id,
        decision=decided.decision, kind=kind, provider=provider,
        external_ticket_id=origin.external_id or (ticket.ticket_id if provider == "api" else ""),
        public=kind != ev.DELIVERY_KIND_NOTE, message=message, citations=citations,
        received_at=seconds_of(ticket.received_at), automatic=not agent,
    )
    if isinstance(settings, EmailChannel):
        return _email_plan(base, decided, settings)
    if isinstance(settings, ApiChannel):
        return DeliveryPlan(**base)
    fields = _ticket_fields(decided, settings)
    return DeliveryPlan(**base, **fields)


def decision_from_action(action: ev.AgentAction) -> ev.TicketDecided | None:
    """The decision that delivers an agent's action (see the table above), or None for an action
    that posts nothing. Raises InvalidEvent for an action that can never be delivered (no
    action_id, an unknown kind, no decision to say where the ticket came from, a reply without
    text)."""
    if action.kind in UNPOSTED_ACTIONS:
        return None
    if action.kind not in POSTED_ACTIONS:
        raise InvalidEvent(f"agent action kind {action.kind} (unspecified or unknown) cannot be delivered")
    if not action.action_id:
        raise InvalidEvent("agent action has no action_id")
    if not action.HasField("decision") or not action.decision.ticket.ticket_id:
        raise InvalidEvent("agent action without the decision it acts on: its ticket's origin says where to post")
    if action.ticket_id and action.ticket_id != action.decision.ticket.ticket_id:
        raise InvalidEvent(f"agent action for ticket {action.ticket_id} carries the decision of ticket "
                           f"{action.decision.ticket.ticket_id}")
    decided = ev.TicketDecided()
    decided.CopyFrom(action.decision)
    agent = action.agent.strip()
    agent = agent if agent.startswith(AGENT_PREFIX) else f"{AGENT_PREFIX}{agent or 'unknown'}"
    decided.meta.CopyFrom(ev.EventMeta(
        event_id=action.action_id,  # the ledger's key: one delivery per action
        tenant_id=decided.ticket.tenant_id or action.meta.tenant_id or action.decision.meta.tenant_id,
        schema_version=action.meta.schema_version or action.decision.meta.schema_version,
        producer=agent,  # marks the decision as the agent's (acting_agent)
    ))
    if action.meta.HasField("occurred_at"):
        decided.meta.occurred_at.CopyFrom(action.meta.occurred_at)
    decided.decision = POSTED_ACTIONS[action.kind]
    if action.kind == ev.AGENT_ACTION_KIND_ESCALATE:
        decided.target_queue = action.target_queue.strip() or target_queue(action.decision)
        decided.reason = action.note
        return decided
    # An approval sends the draft as written: its text, when the action does not repeat it.
    text = action.text if action.text.strip() else (action.decision.draft.text
                                                     if action.kind == ev.AGENT_ACTION_KIND_APPROVE else "")
    if not text.strip():
        raise InvalidEvent(f"{ev.AgentActionKind.Name(action.kind).removeprefix('AGENT_ACTION_KIND_').lower()} "
                           "without the reply's text")
    decided.draft.text = text
    verb = "approved" if action.kind == ev.AGENT_ACTION_KIND_APPROVE else "edited and sent"
    decided.reason = f"{verb} by {agent}"
    return decided


def acting_agent(decided: ev.TicketDecided) -> str:
    """The agent whose action this decision delivers ("agent:<username>"); "" for the escalator's."""
    producer = decided.meta.producer
    return producer if producer.startswith(AGENT_PREFIX) else ""


def source_links(decided: ev.TicketDecided, tenant_id: str, channels: ChannelsConfig) -> list[SourceLink]:
    """The draft's citations, numbered as the draft numbers them, each with its link: the
    citation's URL, else the tenant's help centre article URL."""
    links = []
    for number, citation in enumerate(decided.draft.citations, start=1):
        url = citation.url
        if not url and citation.article_id:
            url = channels.article_url(tenant_id, citation.article_id)
        links.append(SourceLink(number, citation.article_id, citation.title, url, citation.passage))
    return links


def _citations(decided: ev.TicketDecided, shown: list[SourceLink]) -> tuple[tk.Citation, ...]:
    by_number = {link.number: link for link in shown}
    cited = []
    for number, citation in enumerate(decided.draft.citations, start=1):
        if number in by_number:
            copy = tk.Citation()
            copy.CopyFrom(citation)
            copy.url = by_number[number].url
            cited.append(copy)
    return tuple(cited)


def missing_identifiers(decided: ev.TicketDecided) -> list[str]:
    """Identifier kinds the customer still has to give. The escalator states them in the follow-up
    decision's reason ("ask the customer for order_id, transaction_id"), or in a packet's missing
    information when it built one; free-text uncertainties there are not kinds and are left out."""
    if decided.HasField("packet"):
        kinds = [item for item in decided.packet.missing_information if _KIND.match(item)]
        if kinds:
            return kinds
    match = _ASK_FOR.match(decided.reason.strip())
    if match:
        return [kind.strip() for kind in match.group("kinds").split(",") if _KIND.match(kind.strip())]
    return []


def target_queue(decided: ev.TicketDecided) -> str:
    return decided.target_queue or decided.packet.target_queue


def urgency(decided: ev.TicketDecided) -> int:
    return decided.classification.urgency or decided.packet.urgency


def tag_safe(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def _tags(decided: ev.TicketDecided) -> tuple[str, ...]:
    tags = list(TAGS[decided.decision])
    intent = tag_safe(decided.classification.intent)
    if decided.decision in (ev.DECISION_REVIEW, ev.DECISION_ESCALATE) and intent:
        tags.append(f"intent_{intent}")
    return tuple(tags)


def _ticket_fields(
    decided: ev.TicketDecided, channel: ZendeskChannel | IntercomChannel | FreshdeskChannel
) -> dict[str, object]:
    decision = decided.decision
    note = KIND_OF[decision] == ev.DELIVERY_KIND_NOTE
    queue = target_queue(decided)
    fields: dict[str, object] = {"tags": _tags(decided)}
    if note:
        fields["priority"] = PRIORITY_OF.get(urgency(decided), "")
    if isinstance(channel, ZendeskChannel):
        fields["status"] = (channel.review_status if note else
                            ZENDESK_PENDING if decision == ev.DECISION_FOLLOW_UP else channel.answered_status)
        if note:
            fields["group_id"] = channel.queue_groups.get(queue)
    elif isinstance(channel, FreshdeskChannel):
        fields["status"] = (channel.review_status if note else
                            FRESHDESK_PENDING if decision == ev.DECISION_FOLLOW_UP else channel.answered_status)
        if note:
            fields["group_id"] = channel.queue_groups.get(queue)
    elif isinstance(channel, IntercomChannel):
        # Intercom tags need tag ids of the workspace; an escalation is assigned to the queue's team.
        fields["tags"] = ()
        if decision == ev.DECISION_ESCALATE:
            fields["assignee_team"] = channel.queue_teams.get(queue, "")
    return fields


def _email_plan(base: dict, decided: ev.TicketDecided, mailbox: EmailChannel) -> DeliveryPlan | NoChannel:
    origin = decided.ticket.origin
    thread = _references(origin)
    message_id = f"<sf-{base['decision_event_id']}@{_domain(mailbox.address)}>"
    in_reply_to = _angle(origin.message_id) if origin.message_id else (thread[-1] if thread else "")
    subject = reply_subject(decided.ticket.subject)
    if base["kind"] == ev.DELIVERY_KIND_NOTE:
        if not mailbox.notes_address:
            return DeliveryPlan(**base, record_only=True)
        label = "Review" if decided.decision == ev.DECISION_REVIEW else "Escalated"
        envelope = EmailEnvelope(
            to=mailbox.notes_address, sender=mailbox.address, sender_name=mailbox.display_name,
            subject=f"[Supportflow {label}] {decided.ticket.subject or decided.ticket.ticket_id}",
            message_id=message_id, in_reply_to=in_reply_to, references=thread,
        )
        return DeliveryPlan(**base, email=envelope)
    if not origin.requester_email:
        return NoChannel("email", origin.external_id, "no channel: the mail has no requester_email to answer", dead_letter=True)
    envelope = EmailEnvelope(
        to=origin.requester_email, sender=mailbox.address, sender_name=mailbox.display_name, subject=subject,
        message_id=message_id, in_reply_to=in_reply_to, references=thread,
    )
    return DeliveryPlan(**base, email=envelope)


def reply_subject(subject: str) -> str:
    subject = " ".join(subject.split())
    if not subject:
        return "Re: your message"
    return subject if re.match(r"^(re|aw|sv)\s*(\[\d+\])?\s*:", subject, re.I) else f"Re: {subject}"


def _references(origin: tk.ChannelOrigin) -> tuple[str, ...]:
    """The thread's Message-IDs, oldest first, then the message answered; each once."""
    ids: list[str] = []
    for raw in [*origin.references, origin.message_id]:
        for part in re.findall(r"<[^<>\s]+>|[^<>\s]+", raw or ""):
            wrapped = _angle(part)
            if wrapped not in ids:
                ids.append(wrapped)
    return tuple(ids)


def _angle(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>')}>"


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip().lower() or "supportflow.invalid"




# --- the record of what was done ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int  # ev.DeliveryStatus
    external_id: str = ""
    attempts: int = 0
    error: str = ""
    delivered_at: float | None = None


def delivery_record(decided: ev.TicketDecided, plan: DeliveryPlan | NoChannel, outcome: Outcome) -> ev.DeliveryRecorded:
    """The DeliveryRecorded for a decision. Its event id is set by whoever publishes it (derived
    from the decision's, so a repeat is recognisable downstream)."""
    ticket = decided.ticket
    tenant_id = ticket.tenant_id or decided.meta.tenant_id
    record = ev.DeliveryRecorded(
        meta=new_meta(tenant_id, PRODUCER),
        ticket_id=ticket.ticket_id,
        decision_event_id=decided.meta.event_id,
        decision=decided.decision,
        kind=KIND_OF.get(decided.decision, ev.DELIVERY_KIND_UNSPECIFIED),
        provider=plan.provider,
        external_ticket_id=plan.external_ticket_id,
        external_id=outcome.external_id,
        status=outcome.status,
        attempts=outcome.attempts,
        error=outcome.error,
        text=plan.message.text if isinstance(plan, DeliveryPlan) else "",
        citations=list(plan.citations),
    )
    received = seconds_of(ticket.received_at)
    if received is not None:
        record.received_at.CopyFrom(ticket.received_at)
    if outcome.delivered_at is not None:
        record.delivered_at.CopyFrom(timestamp_at(outcome.delivered_at))
        if received is not None:
            record.latency_s = max(0.0, outcome.delivered_at - received)
    return record


def delivery_retry(decided: ev.TicketDecided, *, attempts: int, error: str, retry_at: float) -> ev.DeliveryRetry:
    """A decision handed to the retry topic. The decision is carried whole, its meta (and so its
    event id, the ledger's key) untouched; the retry's own event id is set by whoever publishes it."""
    tenant_id = decided.ticket.tenant_id or decided.meta.tenant_id
    retry = ev.DeliveryRetry(meta=new_meta(tenant_id, PRODUCER), attempts=attempts, error=error[:4000],
                             retry_at=timestamp_at(retry_at))
    retry.decision.CopyFrom(decided)
    return retry
