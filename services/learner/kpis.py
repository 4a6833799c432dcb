"""The KPI panel: outcomes per (tenant, archetype, segment). Pure and deterministic.

Decisions (TicketDecided) open a ticket's record; feedback (FeedbackReceived) and KB gaps
(KbGapDetected) are attached to it by (tenant, ticket id). Feedback that arrives before its
decision waits in a bounded pending list and is attached when the decision comes. When a fact
is reported twice for one ticket (two CSATs at one latency), the latest counts; of two draft
verdicts, the one given last (meta.occurred_at; the latest read when either has no time), whatever
the order they are read in: verdicts come from two topics (tickets.feedback and, as agents'
actions, agent.actions), which are not ordered against each other. Of two decisions for one
ticket, the one decided last (by its timeline), whatever the order they are read in.

Definitions. N = tickets decided in the bucket; a KPI whose denominator is 0 is absent (not 0).

| KPI                                  | definition                                                                  |
|--------------------------------------|-----------------------------------------------------------------------------|
| tickets_decided                      | N, distinct tickets with a decision (a re-decided ticket counts once, with its latest decision) |
| respond_decisions                    | tickets decided RESPOND                                                     |
| review_decisions                     | tickets decided REVIEW                                                      |
| follow_up_decisions                  | tickets decided FOLLOW_UP                                                   |
| escalate_decisions                   | tickets decided ESCALATE                                                    |
| resolved_tickets                     | tickets with a Resolution: how many endings the helpdesk has reported so far |
| deflection_rate                      | RESPOND / N                                                                 |
| deflection_attempt_rate              | (RESPOND + REVIEW) / N: tickets that got a customer-ready AI draft           |
| containment_rate                     | tickets whose Resolution says resolved_by_bot / tickets with a Resolution    |
| csat_protected_deflection_rate       | RESPOND tickets with at-resolution CSAT >= satisfied_score / N              |
| csat_at_resolution                   | mean at-resolution CSAT (0..100) over tickets that have one                 |
| csat_delayed                         | same, delayed (48-72 h) CSAT                                                |
| csat_model_scored                    | same, model-scored CSAT                                                     |
| csat_delta_at_resolution             | csat_at_resolution - the configured baseline for the archetype              |
| csat_delta_delayed                   | csat_delayed - baseline                                                     |
| csat_delta_model_scored              | csat_model_scored - baseline                                                |
| escalated_csat_delta                 | mean at-resolution CSAT of ESCALATE tickets - at-resolution baseline        |
| draft_acceptance_rate                | ACCEPTED / tickets with a draft verdict                                     |
| draft_rejection_rate                 | REJECTED / tickets with a draft verdict                                     |
| edit_burden                          | mean edit_ratio over ACCEPTED and EDITED verdicts (0..1)                    |
| context_loss_rate                    | REVIEW+ESCALATE tickets flagged context_loss / REVIEW+ESCALATE tickets (the customer repeated themselves after a handoff) |
| misroute_rate                        | tickets flagged misroute / N                                                |
| escalation_precision                 | ESCALATE tickets not flagged misroute / ESCALATE tickets (an unflagged escalation counts as correct, so this is an upper bound) |
| hallucinated_policy_tickets          | tickets with a QA result hallucinated_policy=true (absolute count)          |
| repeat_contact_7d_rate               | tickets with a RepeatContact at <= 7 days after resolution / N              |
| repeat_contact_30d_rate              | tickets with a RepeatContact at <= 30 days after resolution / N             |
| reopen_rate                          | tickets with a RepeatContact that reopened the ticket / N                   |
| kb_gap_rate                          | tickets with at least one KbGapDetected / N                                 |
| bot_handle_time_seconds              | mean Resolution.handle_time_s over tickets resolved by the bot              |
| escalated_handle_time_seconds        | mean Resolution.handle_time_s over ESCALATE tickets resolved by a human     |
| time_to_decision_p50_seconds         | nearest-rank p50 of timeline decided_at - received_at (time to first useful response) |
| time_to_decision_p95_seconds         | nearest-rank p95 of the same                                                |
| time_to_first_evidence_p50_seconds   | nearest-rank p50 of evidence_at - received_at over tickets with evidence    |
| time_to_first_evidence_p95_seconds   | nearest-rank p95 of the same                                                |

Nearest-rank percentile p of n sorted values: the value at rank ceil(p * n / 100) (1-based).
Rows come per (archetype, segment) and, with segment "all", per archetype over its segments;
archetypes are never blended. An empty segment is reported as "unknown".

State is in memory, rebuilt at start by replaying the input topics (services/learner/main.py). Bounded: beyond `max_tickets` the oldest
ticket records are forgotten (their contribution to the KPIs stays; feedback arriving for them
later waits as pending and, beyond `max_pending_feedback`, is dropped and counted).
"""

from __future__ import annotations

import bisect
import collections
import operator
from dataclasses import dataclass, field, fields

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.timestamps import seconds_of

from services.learner.config import LATENCY_NAMES, LearnerConfig, archetype_name

ALL_SEGMENTS = "all"
UNKNOWN_SEGMENT = "unknown"

KPI_NAMES = (
    "tickets_decided",
    "respond_decisions",
    "review_decisions",
    "follow_up_decisions",
    "escalate_decisions",
    "resolved_tickets",
    "deflection_rate",
    "deflection_attempt_rate",
    "containment_rate",
    "csat_protected_deflection_rate",
    "csat_at_resolution",
    "csat_delayed",
    "csat_model_scored",
    "csat_delta_at_resolution",
    "csat_delta_delayed",
    "csat_delta_model_scored",
    "escalated_csat_delta",
    "draft_acceptance_rate",
    "draft_rejection_rate",
    "edit_burden",
    "context_loss_rate",
    "misroute_rate",
    "escalation_precision",
    "hallucinated_policy_tickets",
    "repeat_contact_7d_rate",
    "repeat_contact_30d_rate",
    "reopen_rate",
    "kb_gap_rate",
    "bot_handle_time_seconds",
    "escalated_handle_time_seconds",
    "time_to_decision_p50_seconds",
    "time_to_decision_p95_seconds",
    "time_to_first_evidence_p50_seconds",
    "time_to_first_evidence_p95_seconds",
)

_DECISION_KEYS = {
    ev.DECISION_RESPOND: "respond",
    ev.DECISION_REVIEW: "review",
    ev.DECISION_FOLLOW_UP: "follow_up",
    ev.DECISION_ESCALATE: "escalate",
}
_HANDOFFS = (ev.DECISION_REVIEW, ev.DECISION_ESCALATE)


@dataclass(frozen=True, order=True)
class BucketKey:
    tenant: str
    archetype: str
    segment: str


@dataclass(frozen=True)
class KpiRowValues:
    archetype: str
    segment: str
    tickets: int
    values: dict[str, float]


@dataclass(slots=True)
class TicketRecord:
    """Everything known about one decided ticket."""

    key: BucketKey
    decision: int
    decision_seconds: float | None
    evidence_seconds: float | None
    decided_at: float = 0.0  # when the recorded decision was made (0: unknown)
    csat: dict[int, float] = field(default_factory=dict)  # latency -> latest score
    verdict: int = ev.AGENT_VERDICT_UNSPECIFIED
    edit_ratio: float = 0.0
    repeat_days: int | None = None  # the earliest repeat contact, in days after resolution
    reopened: bool = False
    context_loss: bool = False
    misroute: bool = False
    hallucinated: bool = False
    kb_gap: bool = False
    resolved_by_bot: bool | None = None
    handle_time_s: float | None = None
    verdict_at: float | None = None  # when the recorded verdict was given (None: unknown)

    def __reduce__(self) -> tuple:
        # Pickled as the constructor's arguments, not a dict of slots: a learner snapshot holds one
        # record per ticket, and this makes it 20% smaller and 25% faster to write and to read.
        return TicketRecord, _record_values(self)


_record_values = operator.attrgetter(*(f.name for f in fields(TicketRecord)))


def kpi_definitions() -> dict[str, str]:
    """KPI name -> its definition, read from the table above (the one place they are written)."""
    definitions = {}
    for line in (__doc__ or "").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] in KPI_NAMES:
            definitions[cells[0]] = cells[1]
    return definitions



def _elapsed(start: Timestamp, end: Timestamp) -> float | None:
    a, b = seconds_of(start), seconds_of(end)
    if a is None or b is None:
        return None
    return max(b - a, 0.0)  # clock skew between producers must not give negative latencies


def contribution(record: TicketRecord, satisfied_score: float) -> dict[str, float]:
    """What one ticket adds to its bucket's totals."""
    decision = record.decision
    out: dict[str, float] = {"tickets": 1.0, _DECISION_KEYS[decision]: 1.0}
    for latency, score in record.csat.items():
        out[f"csat_sum_{latency}"] = score
        out[f"csat_n_{latency}"] = 1.0
    at_resolution = record.csat.get(ev.CSAT_LATENCY_AT_RESOLUTION)
    if decision == ev.DECISION_RESPOND and at_resolution is not None and at_resolution >= satisfied_score:
        out["protected"] = 1.0
    if decision == ev.DECISION_ESCALATE and at_resolution is not None:
        out["escalated_csat_sum"] = at_resolution
        out["escalated_csat_n"] = 1.0
    if record.verdict != ev.AGENT_VERDICT_UNSPECIFIED:
        out["verdicts"] = 1.0
        if record.verdict == ev.AGENT_VERDICT_ACCEPTED:
            out["accepted"] = 1.0
        if record.verdict == ev.AGENT_VERDICT_REJECTED:
            out["rejected"] = 1.0
        else:
            out["edit_sum"] = record.edit_ratio
            out["edit_n"] = 1.0
    if decision in _HANDOFFS:
        out["handoffs"] = 1.0
        if record.context_loss:
            out["handoff_context_loss"] = 1.0
    if record.misroute:
        out["misroute"] = 1.0
        if decision == ev.DECISION_ESCALATE:
            out["escalated_misroute"] = 1.0
    if record.hallucinated:
        out["hallucinated"] = 1.0
    if record.repeat_days is not None:
        if record.repeat_days <= 7:
            out["repeat_7d"] = 1.0
        if record.repeat_days <= 30:
            out["repeat_30d"] = 1.0
    if record.reopened:
        out["reopened"] = 1.0
    if record.kb_gap:
        out["kb_gap"] = 1.0
    if record.resolved_by_bot is not None:
        out["resolutions"] = 1.0
        handle = record.handle_time_s or 0.0
        if record.resolved_by_bot:
            out["resolved_by_bot"] = 1.0
            out["bot_handle_sum"] = handle
            out["bot_handle_n"] = 1.0
        elif decision == ev.DECISION_ESCALATE:
            out["escalated_handle_sum"] = handle
            out["escalated_handle_n"] = 1.0
    return out


def nearest_rank(sorted_values: list[float], percentile: int) -> float:
    rank = (percentile * len(sorted_values) + 99) // 100  # ceil without floating point
    return sorted_values[max(rank, 1) - 1]


@dataclass
class _Bucket:
    totals: collections.Counter = field(default_factory=collections.Counter)
    decision_times: list[float] = field(default_factory=list)  # kept sorted
    evidence_times: list[float] = field(default_factory=list)  # kept sorted

    def merged(self, other: "_Bucket") -> "_Bucket":
        return _Bucket(
            totals=self.totals + other.totals,
            decision_times=sorted(self.decision_times + other.decision_times),
            evidence_times=sorted(self.evidence_times + other.evidence_times),
        )


def _remove_sorted(values: list[float], value: float) -> None:
    index = bisect.bisect_left(values, value)
    if index < len(values) and values[index] == value:
        del values[index]


def kpi_values(bucket: _Bucket, archetype: str, config: LearnerConfig) -> dict[str, float]:
    t = bucket.totals
    n = t["tickets"]
    values: dict[str, float] = {}

    def ratio(name: str, numerator: float, denominator: float) -> None:
        if denominator:
            values[name] = numerator / denominator

    values["tickets_decided"] = n
    for key in ("respond", "review", "follow_up", "escalate"):
        values[f"{key}_decisions"] = t[key]
    values["resolved_tickets"] = t["resolutions"]
    ratio("deflection_rate", t["respond"], n)
    ratio("deflection_attempt_rate", t["respond"] + t["review"], n)
    ratio("containment_rate", t["resolved_by_bot"], t["resolutions"])
    ratio("csat_protected_deflection_rate", t["protected"], n)
    for latency, name in LATENCY_NAMES.items():
        count = t[f"csat_n_{latency}"]
        if count:
            mean = t[f"csat_sum_{latency}"] / count
            values[f"csat_{name}"] = mean
            baseline = config.baselines.baseline(archetype, latency)
            if baseline is not None:
                values[f"csat_delta_{name}"] = mean - baseline
    escalated_baseline = config.baselines.baseline(archetype, ev.CSAT_LATENCY_AT_RESOLUTION)
    if t["escalated_csat_n"] and escalated_baseline is not None:
        values["escalated_csat_delta"] = t["escalated_csat_sum"] / t["escalated_csat_n"] - escalated_baseline
    ratio("draft_acceptance_rate", t["accepted"], t["verdicts"])
    ratio("draft_rejection_rate", t["rejected"], t["verdicts"])
    ratio("edit_burden", t["edit_sum"], t["edit_n"])
    ratio("context_loss_rate", t["handoff_context_loss"], t["handoffs"])
    ratio("misroute_rate", t["misroute"], n)
    ratio("escalation_precision", t["escalate"] - t["escalated_misroute"], t["escalate"])
    values["hallucinated_policy_tickets"] = t["hallucinated"]
    ratio("repeat_contact_7d_rate", t["repeat_7d"], n)
    ratio("repeat_contact_30d_rate", t["repeat_30d"], n)
    ratio("reopen_rate", t["reopened"], n)
    ratio("kb_gap_rate", t["kb_gap"], n)
    ratio("bot_handle_time_seconds", t["bot_handle_sum"], t["bot_handle_n"])
    ratio("escalated_handle_time_seconds", t["escalated_handle_sum"], t["escalated_handle_n"])
    for name, samples in (("time_to_decision", bucket.decision_times), ("time_to_first_evidence", bucket.evidence_times)):
        if samples:
            values[f"{name}_p50_seconds"] = nearest_rank(samples, 50)
            values[f"{name}_p95_seconds"] = nearest_rank(samples, 95)
    return values


class KpiAccumulator:
    def __init__(self, config: LearnerConfig) -> None:
        self._config = config
        self._records: collections.OrderedDict[tuple[str, str], TicketRecord] = collections.OrderedDict()
        self._pending: collections.OrderedDict[tuple[str, str], list[ev.FeedbackReceived | ev.KbGapDetected]] = (
            collections.OrderedDict()
        )
        self._buckets: dict[BucketKey, _Bucket] = collections.defaultdict(_Bucket)
        self._keys: dict[BucketKey, BucketKey] = {}
        self.pending_feedback = 0
        self.dropped_feedback = 0  # pushed out of the bounded pending list


    def had_gap(self, tenant: str, ticket_id: str) -> bool:
        record = self._records.get((tenant, ticket_id))
        return record is not None and record.kb_gap

    def key_of(self, tenant: str, ticket_id: str) -> BucketKey | None:
        record = self._records.get((tenant, ticket_id))
        return record.key if record is not None else None

    def record_decision(self, event: ev.TicketDecided) -> list[ev.FeedbackReceived] | None:
        """Open (or replace) the ticket's record; returns the pending feedback it now carries, or
        None when the ticket already has a newer decision (this one is ignored)."""
        key = BucketKey(event.ticket.tenant_id or event.meta.tenant_id, archetype_name(event.classification.archetype),
                        event.classification.segment or UNKNOWN_SEGMENT)
        key = self._keys.setdefault(key, key)  # one key object (and tenant string) per bucket, not per ticket
        ident = (key.tenant, event.ticket.ticket_id)
        timeline = event.timeline
        decided_at = seconds_of(timeline.decided_at) or 0.0
        previous = self._records.get(ident)
        if previous is not None and decided_at < previous.decided_at:
            # An older decision read after a newer one (decision topics are not ordered against
            # each other, e.g. in a replay): the newer one stands.
            return None
        if previous is not None:
            self._apply(previous, -1)
            record = previous
            record.key, record.decision, record.decided_at = key, event.decision, decided_at
            record.decision_seconds = _elapsed(timeline.received_at, timeline.decided_at)
            record.evidence_seconds = _elapsed(timeline.received_at, timeline.evidence_at)
        else:
            record = TicketRecord(
                key=key, decision=event.decision,
                decision_seconds=_elapsed(timeline.received_at, timeline.decided_at),
                evidence_seconds=_elapsed(timeline.received_at, timeline.evidence_at),
                decided_at=decided_at,
            )
            self._records[ident] = record
            while len(self._records) > self._config.max_tickets:
                self._records.popitem(last=False)
        waiting = self._pending.pop(ident, [])
        self.pending_feedback -= len(waiting)
        for item in waiting:
            self._update(record, item)
        self._apply(record, +1)
        attached = [item for item in waiting if isinstance(item, ev.FeedbackReceived)]
        return attached

    def record_feedback(self, event: ev.FeedbackReceived) -> BucketKey | None:
        """Attach feedback to its ticket; None when the ticket is not decided yet (kept pending)."""
        return self._attach(event.meta.tenant_id, event.ticket_id, event)

    def record_kb_gap(self, event: ev.KbGapDetected) -> BucketKey | None:
        return self._attach(event.meta.tenant_id, event.ticket_id, event)

    def _attach(self, tenant: str, ticket_id: str, item: ev.FeedbackReceived | ev.KbGapDetected) -> BucketKey | None:
        record = self._records.get((tenant, ticket_id))
        if record is None:
            self._pending.setdefault((tenant, ticket_id), []).append(item)
            self.pending_feedback += 1
            while self.pending_feedback > self._config.max_pending_feedback:
                _, dropped = self._pending.popitem(last=False)
                self.pending_feedback -= len(dropped)
                self.dropped_feedback += len(dropped)
            return None
        self._apply(record, -1)
        self._update(record, item)
        self._apply(record, +1)
        return record.key

    def _apply(self, record: TicketRecord, sign: int) -> None:
        bucket = self._buckets[record.key]
        for name, value in contribution(record, self._config.satisfied_score).items():
            bucket.totals[name] += sign * value
        for samples, value in ((bucket.decision_times, record.decision_seconds),
                               (bucket.evidence_times, record.evidence_seconds)):
            if value is None:
                continue
            if sign > 0:
                bisect.insort(samples, value)
            else:
                _remove_sorted(samples, value)

    @staticmethod
    def _update(record: TicketRecord, item: ev.FeedbackReceived | ev.KbGapDetected) -> None:
        if isinstance(item, ev.KbGapDetected):
            record.kb_gap = True
            return
        kind = item.WhichOneof("kind")
        if kind == "csat":
            record.csat[item.csat.latency] = item.csat.score
        elif kind == "draft_verdict":
            given_at = seconds_of(item.meta.occurred_at)
            if given_at is not None and record.verdict_at is not None and given_at < record.verdict_at:
                return  # an older verdict read after a newer one: the newer one stands
            record.verdict, record.edit_ratio = item.draft_verdict.verdict, item.draft_verdict.edit_ratio
            record.verdict_at = given_at if given_at is not None else record.verdict_at
        elif kind == "repeat_contact":
            days = item.repeat_contact.days_after_resolution
            record.repeat_days = days if record.repeat_days is None else min(record.repeat_days, days)
            record.reopened = record.reopened or item.repeat_contact.reopened
        elif kind == "context_loss":
            record.context_loss = record.context_loss or item.context_loss
        elif kind == "misroute":
            record.misroute = record.misroute or item.misroute
        elif kind == "qa":
            record.hallucinated = record.hallucinated or item.qa.hallucinated_policy
        elif kind == "resolution":
            record.resolved_by_bot = item.resolution.resolved_by_bot
            record.handle_time_s = item.resolution.handle_time_s

    def rows(self, tenant: str, archetype: str = "", segment: str = "") -> list[KpiRowValues]:
        """Rows for `tenant`, optionally one archetype and/or one segment ("all": the rollups)."""
        per_archetype: dict[str, _Bucket] = {}
        rows: list[KpiRowValues] = []
        for key in sorted(self._buckets):
            bucket = self._buckets[key]
            if key.tenant != tenant or (archetype and key.archetype != archetype) or not bucket.totals["tickets"]:
                continue
            per_archetype[key.archetype] = per_archetype[key.archetype].merged(bucket) if key.archetype in per_archetype else bucket
            if not segment or segment == key.segment:
                rows.append(self._row(key.archetype, key.segment, bucket))
        if not segment or segment == ALL_SEGMENTS:
            rows += [self._row(name, ALL_SEGMENTS, bucket) for name, bucket in sorted(per_archetype.items())]
        return sorted(rows, key=lambda r: (r.archetype, r.segment == ALL_SEGMENTS, r.segment))

    def tenants(self) -> list[str]:
        return sorted({key.tenant for key, bucket in self._buckets.items() if bucket.totals["tickets"]})

    def _row(self, archetype: str, segment: str, bucket: _Bucket) -> KpiRowValues:
        return KpiRowValues(archetype, segment, int(bucket.totals["tickets"]), kpi_values(bucket, archetype, self._config))
