"""Outcomes read from a channel: how a ticket went on after its first response (a status change, a
satisfaction rating, a customer's reply), as FeedbackReceived events for `tickets.feedback`
(docs/channels.md, "Outcomes from the channels").

Pure: no Kafka, no HTTP. An outcome the adapter cannot read as its provider documents it (a rating
out of range or of an unknown form, a status the provider does not have) is a `RefusedOutcome`:
the gateway dead-letters the webhook's body with the reason and answers 400 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supportflow.contracts.v1 import events_pb2 as ev

from services.gateway.intake import delivery_uuid

CSAT, CUSTOMER_REPLY, STATUS_CHANGE = "csat", "customer_reply", "status_change"
# StatusChange.status values (events.proto)
SOLVED, CLOSED, REOPENED, PENDING, OPEN, NEW, ON_HOLD = "solved", "closed", "reopened", "pending", "open", "new", "on_hold"
# StatusChange.changed_by values: "system" is Supportflow itself or the helpdesk's automation.
BY_CUSTOMER, BY_AGENT, BY_SYSTEM = "customer", "agent", "system"
INVALID_RATING, INVALID_STATUS = "invalid_rating", "invalid_status"


@dataclass(frozen=True)
class ChannelOutcome:
    """One outcome on one ticket, and the provider's name for the delivery it came in: every
    redelivery of it has the same event id, so the learner skips the repeats."""

    feedback: ev.FeedbackReceived  # without meta; ticket_id, source, channel and the kind set
    delivery: str

    @property
    def kind(self) -> str:
        return self.feedback.WhichOneof("kind") or ""

    @property
    def ticket_id(self) -> str:
        return self.feedback.ticket_id

    def event_id(self, tenant: str) -> str:
        return delivery_uuid(f"{self.feedback.source}-outcome-{self.kind}", tenant, self.delivery)


@dataclass(frozen=True)
class RefusedOutcome:
    """An outcome that cannot be read: `path` is the payload field, `reason` the dead letter's."""

    ticket_id: str
    path: str
    reason: str
    message: str


@dataclass(frozen=True)
class ChannelOutcomes:
    outcomes: tuple[ChannelOutcome, ...] = ()
    refused: tuple[RefusedOutcome, ...] = ()
    ignored: str = ""  # why nothing came of the delivery, when nothing did
    handled: bool = True  # False: an event that never carries an outcome


def no_outcome(provider: str, event: str) -> ChannelOutcomes:
    """What an event that never carries an outcome (a new ticket, a ping) gives."""
    return ChannelOutcomes(ignored=f"{provider} event {event[:60]!r} carries no outcome", handled=False)


@dataclass
class OutcomeBuilder:
    """Outcomes of one delivery on one ticket."""

    provider: str
    ticket_id: str
    channel: int
    delivery: str
    outcomes: list[ChannelOutcome] = field(default_factory=list)
    refused: list[RefusedOutcome] = field(default_factory=list)

    def _add(self, **kind: object) -> None:
        feedback = ev.FeedbackReceived(ticket_id=self.ticket_id, source=self.provider, channel=self.channel, **kind)
        self.outcomes.append(ChannelOutcome(feedback, self.delivery))

    def csat(self, score: float) -> None:
        """A satisfaction rating on the 0..100 scale, given when the ticket was resolved."""
        self._add(csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=score))

    def customer_reply(self, text: str, agent_turns_before: int) -> None:
        self._add(customer_reply=ev.CustomerReply(text=text, agent_turns_before=max(0, agent_turns_before)))

    def status(self, status: str, changed_by: str) -> None:
        self._add(status_change=ev.StatusChange(status=status, changed_by=changed_by))

    def refuse(self, path: str, reason: str, problem: str) -> None:
        message = f"{self.provider} payload: {path} {problem}"
        self.refused.append(RefusedOutcome(self.ticket_id, path, reason, message))

    def result(self, ignored: str = "") -> ChannelOutcomes:
        nothing = not (self.outcomes or self.refused)
        return ChannelOutcomes(tuple(self.outcomes), tuple(self.refused), ignored if nothing else "")


def whole_number(value: object) -> int | None:
    """An integer sent as a JSON number or as text ("4", "-103"); None for anything else
    (booleans, fractions, words)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None
