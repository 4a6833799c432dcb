"""The KPI panel, as the project defines it (docs/kpi-panel.md): outcomes per (tenant, archetype,
customer segment, channel). Two halves:

- `KpiStore` turns events into plain per-ticket records (`TicketRecord`): a decision opens the
  record, outcomes (feedback, agents' actions, deliveries, KB gaps) set its fields; an outcome for a
  ticket not decided yet is held (bounded) until the decision comes. New tickets (tickets.received)
  are remembered per customer, for repeat contact.
- `kpi_values` and `panel_rows` compute the panel from those records: pure functions over plain
  records, with no event or Kafka type in sight (the state can move to tables without touching them).

Rules for facts reported twice: the latest CSAT per latency counts; of two draft verdicts, the one
given last (meta.occurred_at) whatever the order they are read in (they come from two topics); of
two decisions, the one decided last; of QA verdicts, the latest. "Now", for the rolling windows, is
the latest event time read, so a replay computes what the live run computed.

State is bounded: beyond `max_tickets` the oldest records are forgotten (and leave the panel),
beyond `max_pending_feedback` the oldest held outcomes are dropped and counted, beyond
`max_customers` the customers seen longest ago are forgotten. Records, held outcomes and contacts
are entries keyed by (tenant, ticket) and (tenant, customer) (entries.py): a record changed in
place is marked (`touch`), so the entries a change wrote can be taken for a changelog.
"""

from __future__ import annotations

import bisect
import collections
import operator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.timestamps import seconds_of

from services.learner.config import QA_CLASSES, QA_NONE, LearnerConfig, PanelConfig, archetype_name
from services.learner.entries import EntryMap
from services.learner.state import StateError, listed as _listed, message_from_state, message_state, types_by_name
from services.learner.tenant_data import KpiBaseline

ALL = "all"
UNKNOWN = "unknown"
DAY_S = 86400.0
CUSTOMER_REPLY_TURNS = 3  # customer repetition counts within the first three agent turns
SOLVED_STATUSES = ("solved", "closed", "resolved")
REOPEN_STATUSES = ("reopened",)

# The panel, in its order (docs/kpi-panel.md). Every row is one cut: archetype x segment x channel.
KPI_NAMES = (
    "csat_protected_deflection",
    "deflection_rate",
    "deflection_attempt_rate",
    "containment_rate",
    "csat_at_resolution",
    "csat_delayed",
    "csat_model_scored",
    "context_loss_rate",
    "escalated_csat_delta",
    "customer_repetition_rate",
    "hallucinated_policy",
    *(f"hallucinated_policy_{qa_class}" for qa_class in QA_CLASSES),
    "qa_sampled",
    "bot_handle_time",
    "escalated_handle_time",
    "repeat_contact_7d",
    "repeat_contact_30d",
    "time_to_first_useful_response",
    "time_to_first_useful_response_p95",
    "time_to_first_evidence",
    "time_to_first_evidence_p95",
    "escalation_precision",
    "misroute_rate",
    "kb_gap_rate",
    "draft_acceptance_rate",
    "edit_burden",
)

# Values beside the KPIs that say why one is what it is (or absent).
COMPANION_NAMES = (
    "csat_protected_deflection_withheld",
    "csat_protected_deflection_csat_delta",
    "csat_at_resolution_mean",
    "csat_delayed_mean",
    "csat_model_scored_mean",
    "qa_reviewed",
    "bot_handle_time_mean_seconds",
    "escalated_handle_time_mean_seconds",
    "tickets_resolved",
    "resolutions_reported",
    "drafts_with_verdict",
    "baseline_unknown",
    "guardrail_review_open",
    "guardrail_override_active",
)

N = "the cut's decided tickets"
DEFINITIONS = {
    "csat_protected_deflection": "deflection_rate while the cut's 4-week rolling CSAT (at resolution and delayed, "
                                 "each that has surveys) is flat or better against the baseline; else 0 "
                                 "(csat_protected_deflection_withheld = 1). Absent without a baseline",
    "deflection_rate": f"tickets answered automatically (RESPOND) / {N}",
    "deflection_attempt_rate": f"tickets given a customer-ready AI draft (RESPOND or REVIEW) / {N}",
    "containment_rate": "attempts (RESPOND or REVIEW) that ended (resolution, or solved/closed) without an agent "
                        "escalating or the customer reopening / attempts that ended",
    "csat_at_resolution": "4-week rolling mean of at-resolution CSAT (0..100) minus the baseline, in points",
    "csat_delayed": "same, CSAT 48-72 h after resolution",
    "csat_model_scored": "same, the system's own score of each interaction",
    "context_loss_rate": "handoffs (REVIEW or ESCALATE) an agent flagged context loss / handoffs",
    "escalated_csat_delta": "4-week rolling mean at-resolution CSAT of ESCALATE tickets minus the baseline",
    "customer_repetition_rate": "conversations where the customer said they already explained (tenant lexicon) "
                                f"in a reply within the first {CUSTOMER_REPLY_TURNS} agent turns / conversations "
                                "with a customer reply read from the channel",
    "hallucinated_policy": "tickets QA found hallucinated policy on, any class (absolute count)",
    "hallucinated_policy_refund_pricing": "tickets QA classed refund_pricing (P0), absolute count",
    "hallucinated_policy_warranty_service_level": "tickets QA classed warranty_service_level (P0/P1), absolute count",
    "hallucinated_policy_process_contact": "tickets QA classed process_contact (P2), absolute count",
    "hallucinated_policy_capability_overreach": "tickets QA classed capability_overreach (P1), absolute count",
    "qa_sampled": "tickets the learner sampled into the QA queue (absolute count)",
    "bot_handle_time": "mean handle time of bot-resolved tickets / the baseline's - 1 (0.10: 10% above)",
    "escalated_handle_time": "mean handle time of ESCALATE tickets resolved by a person / the baseline's - 1",
    "repeat_contact_7d": "resolved tickets whose customer came back within 7 days (a new ticket, a reopen, or the "
                         "helpdesk's repeat contact) / resolved tickets",
    "repeat_contact_30d": "same, within 30 days",
    "time_to_first_useful_response": "p50 (nearest rank) seconds from receipt to the channel's receipt of the first "
                                     "delivery (tickets.delivered)",
    "time_to_first_useful_response_p95": "p95 of the same",
    "time_to_first_evidence": "p50 seconds from receipt to the first evidence: KB passages (timeline.evidence_at) "
                              "or the investigation's first finding, whichever came first",
    "time_to_first_evidence_p95": "p95 of the same",
    "escalation_precision": "ESCALATE tickets not flagged misroute / ESCALATE tickets (an upper bound)",
    "misroute_rate": f"tickets flagged misroute / {N}",
    "kb_gap_rate": f"tickets with at least one KB gap / {N}",
    "draft_acceptance_rate": "drafts approved unchanged / drafts with a verdict",
    "edit_burden": "mean share of the draft changed over approved and edited drafts (0..1)",
    "csat_protected_deflection_withheld": "1 when deflection is not reported as a win: the rolling CSAT slipped "
                                          "under the baseline, or there is no CSAT in the window",
    "csat_protected_deflection_csat_delta": "the rolling CSAT delta that gates it (the lower of at resolution and delayed)",
    "csat_at_resolution_mean": "4-week rolling mean at-resolution CSAT, points",
    "csat_delayed_mean": "4-week rolling mean delayed CSAT, points",
    "csat_model_scored_mean": "4-week rolling mean model-scored CSAT, points",
    "qa_reviewed": "tickets with a QA verdict (absolute count)",
    "bot_handle_time_mean_seconds": "mean handle time of bot-resolved tickets, seconds",
    "escalated_handle_time_mean_seconds": "mean handle time of escalated tickets resolved by a person, seconds",
    "tickets_resolved": "tickets whose ending is known (absolute count)",
    "resolutions_reported": "tickets whose resolution (by the bot or a person, with its handle time) was reported "
                            "(absolute count; the handle times' base)",
    "drafts_with_verdict": "drafts an agent approved, edited or rejected (absolute count; draft_acceptance_rate's base)",
    "baseline_unknown": "1 when the tenant has no baseline (tenants/<tenant>/kpi-baseline.yaml): deltas are absent",
    "guardrail_review_open": "1 while the archetype's CSAT slipped 2+ points (a review is open)",
    "guardrail_override_active": "1 while the learner's guardrail holds the archetype at draft-for-review",
}


def kpi_definitions() -> dict[str, str]:
    return dict(DEFINITIONS)


@dataclass(frozen=True, order=True)
class CutKey:
    tenant: str
    archetype: str
    segment: str
    channel: str


@dataclass(frozen=True)
class KpiRowValues:
    archetype: str
    segment: str
    channel: str
    tickets: int
    values: dict[str, float]


@dataclass(slots=True)
class TicketRecord:
    """Everything known about one decided ticket, as plain values."""

    key: CutKey
    decision: int
    decided_at: float = 0.0  # when the recorded decision was made (0: unknown)
    # when the ticket's first decision was made: the ticket stays in that decision's cut (a customer's
    # "thanks, it came" is classified again, but the ticket is still about what it opened with)
    opened_at: float | None = None
    customer_id: str = ""
    evidence_seconds: float | None = None
    first_response_seconds: float | None = None
    csat: dict[int, tuple[float, float]] = field(default_factory=dict)  # latency -> (score, given at)
    verdict: int = ev.AGENT_VERDICT_UNSPECIFIED
    edit_ratio: float = 0.0
    verdict_at: float | None = None
    repeat_days: float | None = None  # the helpdesk's own repeat contact, days after resolution
    resolved_at: float | None = None
    reopened_at: float | None = None
    reopened: bool = False
    context_loss: bool = False
    misroute: bool = False
    kb_gap: bool = False
    escalated_by_agent: bool = False
    resolved_by_bot: bool | None = None
    handle_time_s: float | None = None
    conversation_read: bool = False  # a customer reply was read from the channel
    repeated_themselves: bool = False
    qa_class: str = ""  # the latest QA verdict: "" none yet, "none", a class, or "unclassified"
    qa_at: float | None = None
    qa_sampled: bool = False


# ---- pure computations ---------------------------------------------------------------------------

def nearest_rank(sorted_values: Sequence[float], percentile: int) -> float:
    rank = (percentile * len(sorted_values) + 99) // 100  # ceil without floating point
    return sorted_values[max(rank, 1) - 1]


def repeat_contact_days(record: TicketRecord, contacts: Sequence[tuple[float, str]], own_ticket: str) -> float | None:
    """Days from the ticket's resolution to the customer's next contact: a new ticket from the same
    customer, a reopen, or the helpdesk's own repeat-contact report; None when none is known."""
    candidates = [record.repeat_days] if record.repeat_days is not None else []
    if record.resolved_at is not None:
        if record.reopened_at is not None and record.reopened_at >= record.resolved_at:
            candidates.append((record.reopened_at - record.resolved_at) / DAY_S)
        index = bisect.bisect_right(contacts, (record.resolved_at, "\uffff"))
        for received, ticket_id in contacts[index:]:
            if ticket_id != own_ticket:
                candidates.append((received - record.resolved_at) / DAY_S)
                break
    elif record.reopened:
        candidates.append(0.0)
    return min(candidates) if candidates else None


def is_resolved(record: TicketRecord) -> bool:
    return record.resolved_at is not None or record.repeat_days is not None or record.reopened


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def kpi_values(entries: Sequence[tuple[TicketRecord, float | None]], archetype: str, baseline: KpiBaseline | None,
               config: PanelConfig, now: float) -> dict[str, float]:
    """The panel's values for one cut. `entries`: each ticket's record and its repeat-contact days
    (`repeat_contact_days`). A ratio whose denominator is 0, and a delta without a baseline, is
    absent; counts are always there."""
    records = [record for record, _ in entries]
    n = len(records)
    values: dict[str, float] = {"baseline_unknown": 1.0 if baseline is None else 0.0}

    def ratio(name: str, numerator: float, denominator: float) -> None:
        if denominator:
            values[name] = numerator / denominator

    respond = sum(r.decision == ev.DECISION_RESPOND for r in records)
    review = sum(r.decision == ev.DECISION_REVIEW for r in records)
    escalated = [r for r in records if r.decision == ev.DECISION_ESCALATE]
    ratio("deflection_rate", respond, n)
    ratio("deflection_attempt_rate", respond + review, n)
    attempts_ended = [r for r in records if r.decision in (ev.DECISION_RESPOND, ev.DECISION_REVIEW) and is_resolved(r)]
    ratio("containment_rate", sum(not (r.escalated_by_agent or r.reopened or r.reopened_at is not None)
                                  for r in attempts_ended), len(attempts_ended))

    since = now - config.rolling_days * DAY_S
    deltas = {}
    for latency, name in ((ev.CSAT_LATENCY_AT_RESOLUTION, "csat_at_resolution"),
                          (ev.CSAT_LATENCY_DELAYED, "csat_delayed"), (ev.CSAT_LATENCY_MODEL_SCORED, "csat_model_scored")):
        mean = _mean([r.csat[latency][0] for r in records if latency in r.csat and r.csat[latency][1] >= since])
        if mean is None:
            continue
        values[f"{name}_mean"] = mean
        reference = baseline.csat(archetype, latency) if baseline else None
        if reference is not None:
            values[name] = deltas[latency] = mean - reference
    if baseline is not None and "deflection_rate" in values:
        gate = [deltas[lat] for lat in (ev.CSAT_LATENCY_AT_RESOLUTION, ev.CSAT_LATENCY_DELAYED) if lat in deltas]
        held = bool(gate) and min(gate) >= -config.flat_tolerance_points
        values["csat_protected_deflection"] = values["deflection_rate"] if held else 0.0
        values["csat_protected_deflection_withheld"] = 0.0 if held else 1.0
        if gate:
            values["csat_protected_deflection_csat_delta"] = min(gate)
    escalated_mean = _mean([r.csat[ev.CSAT_LATENCY_AT_RESOLUTION][0] for r in escalated
                            if ev.CSAT_LATENCY_AT_RESOLUTION in r.csat
                            and r.csat[ev.CSAT_LATENCY_AT_RESOLUTION][1] >= since])
    escalated_reference = baseline.csat(archetype, ev.CSAT_LATENCY_AT_RESOLUTION) if baseline else None
    if escalated_mean is not None and escalated_reference is not None:
        values["escalated_csat_delta"] = escalated_mean - escalated_reference

    handoffs = [r for r in records if r.decision in (ev.DECISION_REVIEW, ev.DECISION_ESCALATE)]
    ratio("context_loss_rate", sum(r.context_loss for r in handoffs), len(handoffs))
    conversations = [r for r in records if r.conversation_read]
    ratio("customer_repetition_rate", sum(r.repeated_themselves for r in conversations), len(conversations))

    found = [r.qa_class for r in records if r.qa_class and r.qa_class != QA_NONE]
    values["hallucinated_policy"] = float(len(found))
    for qa_class in QA_CLASSES:
        values[f"hallucinated_policy_{qa_class}"] = float(found.count(qa_class))
    values["qa_sampled"] = float(sum(r.qa_sampled for r in records))
    values["qa_reviewed"] = float(sum(bool(r.qa_class) for r in records))

    values["resolutions_reported"] = float(sum(r.resolved_by_bot is not None for r in records))
    for name, kind, selected in (
        ("bot_handle_time", "bot", [r for r in records if r.resolved_by_bot]),
        ("escalated_handle_time", "escalated", [r for r in escalated if r.resolved_by_bot is False]),
    ):
        mean = _mean([r.handle_time_s or 0.0 for r in selected])
        if mean is None:
            continue
        values[f"{name}_mean_seconds"] = mean
        reference = baseline.handle_time(archetype, kind) if baseline else None
        if reference:
            values[name] = mean / reference - 1.0

    resolved = [(r, days) for r, days in entries if is_resolved(r)]
    values["tickets_resolved"] = float(len(resolved))
    ratio("repeat_contact_7d", sum(days is not None and days <= 7 for _, days in resolved), len(resolved))
    ratio("repeat_contact_30d", sum(days is not None and days <= 30 for _, days in resolved), len(resolved))

    for name, samples in (("time_to_first_useful_response", [r.first_response_seconds for r in records]),
                          ("time_to_first_evidence", [r.evidence_seconds for r in records])):
        known = sorted(s for s in samples if s is not None)
        if known:
            values[name] = nearest_rank(known, 50)
            values[f"{name}_p95"] = nearest_rank(known, 95)

    ratio("escalation_precision", sum(not r.misroute for r in escalated), len(escalated))
    ratio("misroute_rate", sum(r.misroute for r in records), n)
    ratio("kb_gap_rate", sum(r.kb_gap for r in records), n)
    verdicts = [r for r in records if r.verdict != ev.AGENT_VERDICT_UNSPECIFIED]
    values["drafts_with_verdict"] = float(len(verdicts))
    ratio("draft_acceptance_rate", sum(r.verdict == ev.AGENT_VERDICT_ACCEPTED for r in verdicts), len(verdicts))
    edited = [r.edit_ratio for r in verdicts if r.verdict != ev.AGENT_VERDICT_REJECTED]
    ratio("edit_burden", sum(edited), len(edited))
    return values


def panel_rows(entries: Iterable[tuple[CutKey, TicketRecord, float | None]], baseline: KpiBaseline | None,
               config: PanelConfig, now: float) -> list[KpiRowValues]:
    """Rows for one tenant: every (archetype, segment, channel) cut that has tickets, and per
    archetype the rollups over segments and/or channels ("all"). Archetypes are never blended."""
    cuts: dict[tuple[str, str, str], list[tuple[TicketRecord, float | None]]] = collections.defaultdict(list)
    for key, record, days in entries:
        for segment in (key.segment, ALL):
            for channel in (key.channel, ALL):
                cuts[(key.archetype, segment, channel)].append((record, days))
    rows = [KpiRowValues(archetype, segment, channel, len(members), kpi_values(members, archetype, baseline, config, now))
            for (archetype, segment, channel), members in cuts.items()]
    return sorted(rows, key=lambda r: (r.archetype, r.segment == ALL, r.segment, r.channel == ALL, r.channel))


# ---- events -> records -----------------------------------------------------------------------------

def channel_of(ticket: tk.Ticket) -> str:
    """The channel a ticket came through: the integration (zendesk, intercom, freshdesk, email, api)
    when the gateway recorded one, else the channel kind."""
    if ticket.origin.provider:
        return ticket.origin.provider.lower()
    if ticket.channel:
        return tk.Channel.Name(ticket.channel).removeprefix("CHANNEL_").lower()
    return UNKNOWN


def _elapsed(start: Timestamp, end: Timestamp) -> float | None:
    a, b = seconds_of(start), seconds_of(end)
    if a is None or b is None:
        return None
    return max(b - a, 0.0)  # clock skew between producers must not give negative latencies


def evidence_seconds(event: ev.TicketDecided) -> float | None:
    """Receipt to the first evidence: the first KB passages, or the investigation's first finding
    (which starts once the ticket is classified), whichever came first."""
    timeline = event.timeline
    candidates = [s for s in (_elapsed(timeline.received_at, timeline.evidence_at),) if s is not None]
    investigation = event.investigation
    if investigation.first_evidence_ms > 0 and any(f.available for f in investigation.findings):
        start = _elapsed(timeline.received_at, timeline.classified_at) or 0.0
        candidates.append(start + investigation.first_evidence_ms / 1000.0)
    return min(candidates) if candidates else None


Outcome = ev.FeedbackReceived | ev.KbGapDetected | ev.DeliveryRecorded | ev.AgentAction
OUTCOME_TYPES = types_by_name(ev.FeedbackReceived, ev.KbGapDetected, ev.DeliveryRecorded, ev.AgentAction)
RECORD_FIELDS = tuple(f.name for f in fields(TicketRecord))


_KEY, _CSAT = RECORD_FIELDS.index("key"), RECORD_FIELDS.index("csat")
_record_values = operator.attrgetter(*RECORD_FIELDS)


def record_state(record: TicketRecord) -> list:
    """A record's values in RECORD_FIELDS order, as JSON values."""
    values = list(_record_values(record))
    key = values[_KEY]
    values[_KEY] = [key.tenant, key.archetype, key.segment, key.channel]
    values[_CSAT] = [[latency, score, at] for latency, (score, at) in values[_CSAT].items()]
    return values


def record_from_state(values: Sequence) -> TicketRecord:
    """The record `record_state` wrote (of this code's RECORD_FIELDS: the caller checks)."""
    if len(values) != len(RECORD_FIELDS):
        raise StateError(f"a ticket record of {len(values)} values, not {len(RECORD_FIELDS)}")
    given = list(values)
    given[_KEY] = CutKey(*given[_KEY])
    given[_CSAT] = {int(latency): (float(score), float(at)) for latency, score, at in given[_CSAT]}
    return TicketRecord(*given)


@dataclass(frozen=True)
class TenantView:
    tenant: str
    records: list[tuple[str, TicketRecord]]  # (ticket id, record)
    contacts: Mapping[tuple[str, str], Sequence[tuple[float, str]]]  # (tenant, customer) -> (received at, ticket id)
    latest_seen: float

    def entries(self) -> list[tuple[CutKey, TicketRecord, float | None]]:
        """Each ticket's cut, record and repeat-contact days."""
        out = []
        for ticket_id, record in self.records:
            contacts = self.contacts.get((self.tenant, record.customer_id), ()) if record.customer_id else ()
            out.append((record.key, record, repeat_contact_days(record, contacts, ticket_id)))
        return out


class KpiStore:
    def __init__(self, config: LearnerConfig, said_already: Callable[[str, str], bool]) -> None:
        self._config = config
        self._said_already = said_already
        self._keys: dict[CutKey, CutKey] = {}
        # (tenant, ticket id) -> record; the oldest decided is forgotten first
        self._records: EntryMap[tuple[str, str], TicketRecord] = EntryMap("record", record_state, self._record_from_state)
        # (tenant, ticket id) -> outcomes that came before the ticket's decision
        self._pending: EntryMap[tuple[str, str], list[Outcome]] = EntryMap(
            "pending", lambda items: [message_state(item) for item in items],
            lambda items: [message_from_state(item, OUTCOME_TYPES) for item in _listed(items)])
        # (tenant, customer) -> (received at, ticket id) of the customer's tickets
        self._contacts: EntryMap[tuple[str, str], list[tuple[float, str]]] = EntryMap(
            "contacts", lambda contacts: [[at, ticket_id] for at, ticket_id in contacts],
            lambda contacts: [(float(at), str(ticket_id)) for at, ticket_id in _listed(contacts)])
        self.pending_feedback = 0
        self.dropped_feedback = 0
        self.latest_seen = 0.0
        self.version = 0  # of the panel's inputs, for the rows' cache (not state)

    # -- state, as entries (entries.py)

    def entry_maps(self) -> list[EntryMap]:
        return [self._records, self._pending, self._contacts]

    def meta(self) -> dict:
        return {"record_fields": list(RECORD_FIELDS), "pending_feedback": self.pending_feedback,
                "dropped_feedback": self.dropped_feedback, "latest_seen": self.latest_seen}

    def load_meta(self, meta: dict) -> None:
        if meta["record_fields"] != list(RECORD_FIELDS):
            raise StateError("ticket records of another shape (fields " + ", ".join(meta["record_fields"]) + ")")
        self.pending_feedback = int(meta["pending_feedback"])
        self.dropped_feedback = int(meta["dropped_feedback"])
        self.latest_seen = float(meta["latest_seen"])
        self.version += 1

    def _record_from_state(self, values: object) -> TicketRecord:
        record = record_from_state(_listed(values))
        record.key = self._keys.setdefault(record.key, record.key)
        return record

    # -- queries

    def record(self, tenant: str, ticket_id: str) -> TicketRecord | None:
        return self._records.get((tenant, ticket_id))

    def tenants(self) -> list[str]:
        return sorted({tenant for tenant, _ in self._records})

    def view(self, tenant: str) -> "TenantView":
        """What the panel of `tenant` is computed from: references taken under the caller's lock, so
        the computation (`TenantView.entries`, `panel_rows`) can run outside it."""
        records = [(ticket_id, record) for (record_tenant, ticket_id), record in self._records.items()
                   if record_tenant == tenant]
        return TenantView(tenant, records, dict(self._contacts.items()), self.latest_seen)

    # -- updates

    def record_received(self, event: ev.TicketReceived) -> None:
        """A new ticket: remembered under its customer, for repeat contact."""
        ticket = event.ticket
        tenant = ticket.tenant_id or event.meta.tenant_id
        at = seconds_of(ticket.received_at) or seconds_of(event.meta.occurred_at)
        self._seen(at)
        if not ticket.customer_id or at is None:
            return
        ident = (tenant, ticket.customer_id)
        contacts = self._contacts.pop(ident, [])
        if (at, ticket.ticket_id) not in contacts:
            bisect.insort(contacts, (at, ticket.ticket_id))
        self._contacts[ident] = contacts
        while len(self._contacts) > self._config.max_customers:
            self._contacts.popitem(last=False)
        self.version += 1

    def record_decision(self, event: ev.TicketDecided) -> list[Outcome] | None:
        """Open the ticket's record, or replace its decision with a newer one (the ticket keeps the
        cut of its first decision); returns the held outcomes it now carries, or None when the
        ticket already has a newer decision (this one then only sets the cut, if it is the first)."""
        ticket = event.ticket
        key = CutKey(ticket.tenant_id or event.meta.tenant_id, archetype_name(event.classification.archetype),
                     event.classification.segment or UNKNOWN, channel_of(ticket))
        key = self._keys.setdefault(key, key)
        ident = (key.tenant, ticket.ticket_id)
        decided_at = seconds_of(event.timeline.decided_at) or 0.0
        self._seen(decided_at or seconds_of(event.meta.occurred_at))
        previous = self._records.get(ident)
        if previous is not None and decided_at < previous.decided_at:
            # an older decision read after a newer one: the newer one stands, in the first one's cut
            if previous.opened_at is None or decided_at < previous.opened_at:
                previous.key, previous.opened_at = key, decided_at
                self._records.touch(ident)
                self.version += 1
            return None
        record = previous or TicketRecord(key=key, decision=event.decision, opened_at=decided_at)
        record.decision, record.decided_at = event.decision, decided_at
        record.customer_id = ticket.customer_id
        record.evidence_seconds = evidence_seconds(event)
        if previous is None:
            self._records[ident] = record
            while len(self._records) > self._config.max_tickets:
                self._records.popitem(last=False)
        else:
            self._records.touch(ident)
        waiting = self._pending.pop(ident, [])
        self.pending_feedback -= len(waiting)
        for item in waiting:
            self._update(record, item)
        self.version += 1
        return waiting

    def record_outcome(self, tenant: str, ticket_id: str, item: Outcome) -> TicketRecord | None:
        """Attach an outcome to its ticket; None when the ticket is not decided yet (held)."""
        self._seen(seconds_of(item.meta.occurred_at))
        record = self._records.get((tenant, ticket_id))
        self.version += 1
        if record is None:
            self._pending.setdefault((tenant, ticket_id), []).append(item)
            self._pending.touch((tenant, ticket_id))
            self.pending_feedback += 1
            while self.pending_feedback > self._config.max_pending_feedback:
                _, dropped = self._pending.popitem(last=False)
                self.pending_feedback -= len(dropped)
                self.dropped_feedback += len(dropped)
            return None
        self._update(record, item)
        self._records.touch((tenant, ticket_id))
        return record

    def mark_qa_sampled(self, tenant: str, ticket_id: str) -> None:
        record = self._records.get((tenant, ticket_id))
        if record is not None:
            record.qa_sampled = True
            self._records.touch((tenant, ticket_id))
            self.version += 1

    def _seen(self, at: float | None) -> None:
        if at is not None and at > self.latest_seen:
            self.latest_seen = at

    def _update(self, record: TicketRecord, item: Outcome) -> None:
        at = seconds_of(item.meta.occurred_at)
        if isinstance(item, ev.KbGapDetected):
            record.kb_gap = True
        elif isinstance(item, ev.DeliveryRecorded):
            if item.status == ev.DELIVERY_STATUS_DELIVERED:
                latency = item.latency_s if item.latency_s > 0 else _elapsed(item.received_at, item.delivered_at)
                if latency is not None and (record.first_response_seconds is None or latency < record.first_response_seconds):
                    record.first_response_seconds = latency
        elif isinstance(item, ev.AgentAction):
            if item.kind == ev.AGENT_ACTION_KIND_ESCALATE:
                record.escalated_by_agent = True
        else:
            self._update_feedback(record, item, at)

    def _update_feedback(self, record: TicketRecord, item: ev.FeedbackReceived, at: float | None) -> None:
        kind = item.WhichOneof("kind")
        when = at if at is not None else self.latest_seen
        if kind == "csat":
            record.csat[item.csat.latency] = (item.csat.score, when)
        elif kind == "draft_verdict":
            if at is not None and record.verdict_at is not None and at < record.verdict_at:
                return  # an older verdict read after a newer one: the newer one stands
            record.verdict, record.edit_ratio = item.draft_verdict.verdict, item.draft_verdict.edit_ratio
            record.verdict_at = at if at is not None else record.verdict_at
        elif kind == "repeat_contact":
            days = float(item.repeat_contact.days_after_resolution)
            record.repeat_days = days if record.repeat_days is None else min(record.repeat_days, days)
            record.reopened = record.reopened or item.repeat_contact.reopened
        elif kind == "context_loss":
            record.context_loss = record.context_loss or item.context_loss
        elif kind == "misroute":
            record.misroute = record.misroute or item.misroute
        elif kind == "qa":
            if at is not None and record.qa_at is not None and at < record.qa_at:
                return
            record.qa_class = qa_class_of(item.qa)
            record.qa_at = at if at is not None else record.qa_at
        elif kind == "resolution":
            record.resolved_by_bot = item.resolution.resolved_by_bot
            record.handle_time_s = item.resolution.handle_time_s
            record.resolved_at = when if record.resolved_at is None else min(record.resolved_at, when)
        elif kind == "status_change":
            status = item.status_change.status.strip().lower()
            if status in SOLVED_STATUSES:
                record.resolved_at = when if record.resolved_at is None else min(record.resolved_at, when)
            elif status in REOPEN_STATUSES or (status == "open" and record.resolved_at is not None and when > record.resolved_at):
                record.reopened_at = when if record.reopened_at is None else min(record.reopened_at, when)
        elif kind == "customer_reply":
            record.conversation_read = True
            if (item.customer_reply.agent_turns_before <= CUSTOMER_REPLY_TURNS
                    and self._said_already(record.key.tenant, item.customer_reply.text)):
                record.repeated_themselves = True


def qa_class_of(result: ev.QaResult) -> str:
    """The QA verdict's class: "none" (no hallucinated policy), one of QA_CLASSES, or
    "unclassified" (hallucinated policy without a known class)."""
    qa_class = result.severity_class.strip().lower()
    if qa_class in QA_CLASSES:
        return qa_class
    if qa_class == QA_NONE or not result.hallucinated_policy:
        return QA_NONE
    return "unclassified"


def iso_week(seconds: float) -> str:
    year, week, _ = datetime.fromtimestamp(seconds, tz=timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


GUARDRAIL_VALUES = {"guardrail_review_open": 0.0, "guardrail_override_active": 0.0}


def with_status(rows: list[KpiRowValues], status: Mapping[str, Mapping[str, float]]) -> list[KpiRowValues]:
    """The rows with each archetype's guardrail values (`status`: archetype -> name -> value; 0 for
    an archetype the guardrails have not seen) added."""
    return [KpiRowValues(r.archetype, r.segment, r.channel, r.tickets,
                         {**r.values, **GUARDRAIL_VALUES, **status.get(r.archetype, {})})
            for r in rows]

