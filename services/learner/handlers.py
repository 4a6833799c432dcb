"""The learner's consumer handlers: new tickets, decisions, outcomes (feedback from the channels and
surveys, agents' actions, deliveries, KB gaps) feed the KPI panel, the guardrails and the weekly QA
sample; guardrails answer with routing overrides, the sample with QaSampleRequested. No Kafka or
gRPC here.

Agents' actions (AgentAction, agent.actions, from the workspace) count as the outcome they amount to:

| action            | counted as                                                   |
|-------------------|--------------------------------------------------------------|
| APPROVE           | draft_verdict ACCEPTED, edit ratio 0                         |
| EDIT_AND_SEND     | draft_verdict EDITED, the action's edit ratio                |
| REJECT            | draft_verdict REJECTED                                       |
| FLAG_CONTEXT_LOSS | context_loss                                                 |
| QA_SEVERITY       | qa: the reviewer's class (`qa_class`; "none": no hallucination) |
| ESCALATE          | the ticket was escalated by an agent (containment)           |
| others            | nothing (reassign, action confirmations, redraft)            |

Bad input: an outcome for a ticket not decided yet is held until its decision comes (bounded by
`max_pending_feedback`, counted in `supportflow_learner_feedback_total{outcome="pending"}` and the
`supportflow_learner_pending_feedback` gauge), never dropped silently; a CSAT score outside 0..100 (or
without a latency) raises InvalidEvent, so the consumer dead-letters it with the reason, and
`supportflow_learner_invalid_outcomes_total` counts it.

State is in memory: a Learner is one shard of the learner's state (shards.py), rebuilt by the
replica holding it by replaying its partition of the learner's log, learner.events, in its one
order (main.py), so it is the same on whichever replica builds it. `applied_once` wraps each
handler of the log: an event id applied already (the log is written at least once) is skipped, and
the memory of applied ids is part of the state (applied_ids.py). While the learner
replays (`replaying=True`) what a holder before applied and published, it holds the overrides and
QA samples it would emit and drops the knowledge loop's outputs; past the previous holders'
committed position (`past_published`, shards.py) it emits as a live learner does, and
`finish_replay` then returns the held overrides `routing.overrides` does not already hold (their
ids are deterministic) and the held samples of the current week (their event ids derive from
their decision's, as a live replica's do, so the workspace drops one it already has). Two
consumer threads and the gRPC server share the state, hence the lock.

The state is a set of entries keyed below the shard (entries.py: per ticket, per customer, per
guardrail, per applied event id, ...): `export_state` and `from_state` carry them across a restart
(snapshots.py), `entries` and `from_entries` are the same as a table of key and value, and with
`track_changes` on, `take_changes` gives the entries the records applied since it was last called
wrote or deleted: what a changelog-backed table of the state records.
"""

from __future__ import annotations

import logging
import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, Handler, InvalidEvent, derived_event_id, new_meta
from supportflow.timestamps import seconds_of
from supportflow.topics import Topic

from services.learner import metrics
from services.learner.applied_ids import AppliedIds
from services.learner.config import QA_CLASSES, QA_NONE, LearnerConfig, archetype_name
from services.learner.guardrails import ISSUER, GuardrailOutcome, Guardrails, GuardrailStatus, ReviewChange
from services.learner.knowledge import KnowledgeLoop
from services.learner.kpis import (
    KpiRowValues, KpiStore, TicketRecord, iso_week, panel_rows, qa_class_of, with_status,
)
from services.learner.qa_sampling import QaSampler
from services.learner.entries import Changes, Entries, EntryMap, entry_key, entry_parts
from services.learner.state import StateError, collector_paused, listed, message_from_state, message_state, types_by_name
from services.learner.tenant_data import TenantData

log = logging.getLogger(__name__)

PRODUCER = "learner"
_DECISIONS = (ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_FOLLOW_UP, ev.DECISION_ESCALATE)
_HANDOFFS = (ev.DECISION_REVIEW, ev.DECISION_ESCALATE)
_OVERRIDE_TYPE = types_by_name(ev.RoutingOverride)
_SAMPLE_TYPE = types_by_name(ev.QaSampleRequested)
MAX_REVIEWS_KEPT = 1000  # the latest guardrail reviews opened and closed, for the weekly report
_META_KEY = entry_key("shard", ())  # the shard's own figures


@dataclass(frozen=True)
class _CachedRows:
    version: int
    rows: list[KpiRowValues]


@dataclass(frozen=True)
class LearnerSnapshot:
    rows: dict[str, list[KpiRowValues]]  # tenant -> rows (with the rollups)
    guardrails: list[GuardrailStatus]
    pending_feedback: int
    dropped_feedback: int


class Learner:
    def __init__(self, config: LearnerConfig, tenant_data: TenantData | None = None, *, replaying: bool = False) -> None:
        self._tenant_data = tenant_data or TenantData(None)
        self._config = config
        self._kpis = KpiStore(config, self._tenant_data.said_already)
        self._guardrails = Guardrails(config.guardrails, self._tenant_data.csat_baseline)
        self._knowledge = KnowledgeLoop(config.knowledge, config.max_tickets)
        self._sampler = QaSampler(config.qa_sampling.rate, config.qa_sampling.seed)
        self._lock = threading.Lock()
        # Replaying what a holder before applied and published: outputs are held (overrides, QA
        # samples) or dropped (the knowledge loop's), until `past_published` or `finish_replay`.
        self._replaying = replaying
        # override id -> (trigger, override)
        self._held: EntryMap[str, tuple[str, ev.RoutingOverride]] = EntryMap(
            "held-override", lambda held: [held[0], message_state(held[1])], _held_from_state)
        # ticket id -> sample
        self._held_samples: EntryMap[str, ev.QaSampleRequested] = EntryMap(
            "held-sample", message_state, lambda value: message_from_state(value, _SAMPLE_TYPE))
        # ids of our overrides seen on routing.overrides
        self._published: EntryMap[str, bool] = EntryMap("published-override", bool, bool)
        self._rows_cache: dict[str, _CachedRows] = {}
        # the latest guardrail reviews opened and closed, under their number (of _review_count)
        self._reviews: EntryMap[str, ReviewChange] = EntryMap("review", asdict, _review_from_state)
        self._review_count = 0
        self._applied = AppliedIds()
        self._maps: list[EntryMap] = [
            *self._kpis.entry_maps(), *self._guardrails.entry_maps(), *self._knowledge.entry_maps(),
            *self._sampler.entry_maps(), self._held, self._held_samples, self._published, self._reviews,
            self._applied.ids]
        self._meta_taken: dict | None = None

    # -- state, as entries keyed below the shard (entries.py)

    def track_changes(self) -> None:
        """Mark the entries written from now on, for `take_changes` (a caller that writes them to a
        changelog); untracked by default, as the marks are kept until taken."""
        with self._lock:
            for entry_map in self._maps:
                entry_map.track_changes()

    def take_changes(self) -> Changes:
        """The entries written or deleted (None) since the last call or `track_changes`: what a
        changelog of the shard's state records for the records applied in between."""
        with self._lock:
            changes: Changes = {}
            for entry_map in self._maps:
                entry_map.take_changes(changes)
            meta = self._meta()
            if meta != self._meta_taken:
                changes[_META_KEY] = self._meta_taken = meta
            return changes

    def entries(self) -> Entries:
        """Every entry of the state; taken under the lock, so consistent."""
        with self._lock:
            entries: Entries = {}
            for entry_map in self._maps:
                entry_map.entries(entries)
            entries[_META_KEY] = self._meta()
            return entries

    @classmethod
    def from_entries(cls, entries: Mapping[str, object], config: LearnerConfig,
                     tenants_dir: Path | None = None) -> "Learner":
        """A learner with the state `entries` hold (a table's), its changes tracked from there on
        (`take_changes`, numbered after the table's), replaying (what came after them) until
        `finish_replay`; tenant data is read again from `tenants_dir`. StateError when they are
        not a state this learner can read."""
        rows: dict[str, list] = {}
        try:
            for key, value in entries.items():
                if key != _META_KEY:
                    kind, parts = entry_parts(key)
                    number, encoded = value  # type: ignore[misc]
                    rows.setdefault(kind, []).append((parts, number, encoded))
            return cls._from_rows(rows, entries[_META_KEY], config, tenants_dir, track_changes=True)
        except StateError:
            raise
        except (ValueError, KeyError, TypeError) as exc:  # values of another shape
            raise StateError(f"the learner's state cannot be read: {exc!r}") from exc

    @classmethod
    def _from_rows(cls, rows: Mapping[str, list], meta: object, config: LearnerConfig,
                   tenants_dir: Path | None, *, track_changes: bool = False) -> "Learner":
        learner = cls(config, TenantData(tenants_dir), replaying=True)
        if track_changes:
            learner.track_changes()
        unknown = set(rows) - {entry_map.kind for entry_map in learner._maps}
        if unknown:
            raise StateError(f"an entry of an unknown kind {sorted(unknown)[0]!r}")
        try:
            for entry_map in learner._maps:
                entry_map.load(rows.get(entry_map.kind, ()))
            learner._load_meta(meta)
        except StateError:
            raise
        except (ValueError, KeyError, TypeError) as exc:  # values of another shape
            raise StateError(f"the learner's state cannot be read: {exc!r}") from exc
        return learner

    def export_state(self) -> bytes:
        """Everything the learner knows, for a snapshot, as JSON: its entries grouped by kind, each
        as [key parts, number, value], and the shard's meta entry; taken under the lock, so
        consistent."""
        with self._lock, collector_paused():
            state = {"meta": self._meta(), "entries": {entry_map.kind: entry_map.rows() for entry_map in self._maps}}
        return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_state(cls, state: bytes, config: LearnerConfig, tenants_dir: Path | None = None) -> "Learner":
        """The learner `export_state` wrote, replaying until `finish_replay` (see `from_entries`)."""
        try:
            with collector_paused():
                values = json.loads(state)
                return cls._from_rows(values["entries"], values["meta"], config, tenants_dir)
        except StateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or of another shape
            raise StateError(f"the learner's state cannot be read: {exc!r}") from exc

    def _meta(self) -> dict:
        return {"kpis": self._kpis.meta(), "reviews_recorded": self._review_count}

    def _load_meta(self, meta: object) -> None:
        if not isinstance(meta, dict):
            raise StateError("the shard's meta entry is not an object")
        self._kpis.load_meta(meta["kpis"])
        self._review_count = int(meta["reviews_recorded"])
        self._meta_taken = self._meta()

    def finish_replay(self) -> list[Emit]:
        """End the replay: the held overrides that were never published, and this week's held QA
        samples, to publish now."""
        with self._lock:
            self._replaying = False
            missing = [held for override_id, held in self._held.items() if override_id not in self._published]
            week = iso_week(self._kpis.latest_seen) if self._kpis.latest_seen else ""
            samples = [sample for sample in self._held_samples.values() if sample.week == week]
            self._held.clear()
            self._held_samples.clear()
        return [_issue(trigger, override) for trigger, override in missing] + [_sample(s) for s in samples]

    def hold_outputs(self) -> None:
        """Hold the overrides and QA samples from now on, as during a replay: a shard kept as a warm
        standby (standby.py), whose holder publishes them; `finish_replay` publishes what is
        missing once this replica takes the shard."""
        with self._lock:
            self._replaying = True

    def past_published(self) -> None:
        """The records applied from now on were never applied by a holder that published what they
        caused (a replay past the previous holders' committed position): their outputs go out as
        a live learner's do (their ids derive from the record's, so one published already is
        skipped downstream). What was held before stays held for `finish_replay`."""
        with self._lock:
            self._replaying = False

    def applied_once(self, handler: Handler) -> Handler:
        """`handler` for the events of the log: one whose id was applied already changes nothing
        and emits nothing. An event the handler refuses (InvalidEvent) is not remembered, as the
        consumer loop does not remember it: its copy is refused again."""
        def apply(event) -> list[Emit]:
            event_id = event.meta.event_id
            with self._lock:
                if event_id in self._applied:
                    metrics.LOG_DUPLICATES.inc()
                    return []
            emits = list(handler(event))
            with self._lock:
                self._applied.add(event_id)
            return emits
        return apply

    def applied_count(self) -> int:
        with self._lock:
            return len(self._applied)

    # -- inputs

    def on_received(self, event: ev.TicketReceived) -> list[Emit]:
        with self._lock:
            self._kpis.record_received(event)
        return []

    def on_decided(self, event: ev.TicketDecided) -> list[Emit]:
        _check_decided(event)
        with self._lock:
            attached = self._kpis.record_decision(event)
            if attached is None:  # older than the decision already recorded for the ticket
                return []
            self._knowledge.remember(event)
            tenant = event.ticket.tenant_id or event.meta.tenant_id
            record = self._kpis.record(tenant, event.ticket.ticket_id)
            if record is None:
                return []
            emits = self._qa_sample(event, record)
            if record.decision in _HANDOFFS:
                emits += self._act(self._guardrails.observe_handoff(
                    tenant, record.key.archetype, event.ticket.ticket_id, record.context_loss))
            for item in attached:
                metrics.FEEDBACK.labels(_kind(item), "attached").inc()
                emits += self._after_attach(record, event.ticket.ticket_id, item)
            return emits

    def on_feedback(self, event: ev.FeedbackReceived) -> list[Emit]:
        _check_feedback(event)
        return self._outcome(event.meta.tenant_id, event.ticket_id, event)

    def on_agent_action(self, event: ev.AgentAction) -> list[Emit]:
        """An agent's action as the outcome it amounts to (the table above)."""
        metrics.AGENT_ACTIONS.labels(metrics.action_label(event.kind)).inc()
        ticket_id = event.ticket_id or event.decision.ticket.ticket_id
        if event.kind == ev.AGENT_ACTION_KIND_ESCALATE:
            if not ticket_id:
                raise InvalidEvent("agent action without a ticket id")
            return self._outcome(action_tenant(event), ticket_id, event)
        feedback = feedback_of_action(event)
        if feedback is None:
            return []
        return self.on_feedback(feedback)

    def on_delivered(self, event: ev.DeliveryRecorded) -> list[Emit]:
        _check_delivered(event)
        return self._outcome(event.meta.tenant_id, event.ticket_id, event)

    def on_kb_gap(self, event: ev.KbGapDetected) -> list[Emit]:
        if not event.ticket_id:  # a gap from an agent's ad-hoc search belongs to no ticket
            return []
        return self._outcome(event.meta.tenant_id, event.ticket_id, event)

    def on_override(self, event: ev.RoutingOverride) -> list[Emit]:
        with self._lock:
            self._guardrails.observe_override(event)
            if event.issued_by == ISSUER:
                self._published[event.override_id] = True
        return []

    # -- the panel

    def kpi_rows(self, tenant: str, archetype: str = "", segment: str = "", channel: str = "") -> list[KpiRowValues]:
        """Rows for `tenant` of the state as it is now, optionally one archetype, segment and/or
        channel ("all": the rollups)."""
        rows = self._tenant_rows(tenant)
        return [r for r in rows if (not archetype or r.archetype == archetype) and (not segment or r.segment == segment)
                and (not channel or r.channel == channel)]

    def reviews(self, tenant: str) -> list[ReviewChange]:
        """The guardrail reviews opened and closed for `tenant` (the latest MAX_REVIEWS_KEPT)."""
        with self._lock:
            return [review for review in self._reviews.values() if review.tenant == tenant]

    def snapshot(self) -> LearnerSnapshot:
        with self._lock:
            tenants = self._kpis.tenants()
        rows = {tenant: self._tenant_rows(tenant) for tenant in tenants}
        with self._lock:
            return LearnerSnapshot(
                rows=rows,
                guardrails=self._guardrails.status(),
                pending_feedback=self._kpis.pending_feedback,
                dropped_feedback=self._kpis.dropped_feedback,
            )

    def _tenant_rows(self, tenant: str) -> list[KpiRowValues]:
        """The tenant's rows, computed from the records outside the lock (the consumers go on
        meanwhile) and kept until the state changes. How often Prometheus's scrapes may have them
        computed is bounded for all the tenants a replica holds together (metrics.LearnerCollector)."""
        with self._lock:
            version = self._kpis.version
            cached = self._rows_cache.get(tenant)
            if cached is not None and cached.version == version:
                return cached.rows
            view = self._kpis.view(tenant)
            status = {s.archetype: {"guardrail_review_open": float(s.reviewing),
                                    "guardrail_override_active": float(s.overridden)}
                      for s in self._guardrails.status() if s.tenant == tenant}
        rows = with_status(panel_rows(view.entries(), self._tenant_data.baseline(tenant), self._config.panel,
                                      view.latest_seen), status)
        with self._lock:
            self._rows_cache[tenant] = _CachedRows(version, rows)
        return rows

    # -- internals

    def _outcome(self, tenant: str, ticket_id: str, item) -> list[Emit]:
        with self._lock:
            record = self._kpis.record_outcome(tenant, ticket_id, item)
            metrics.FEEDBACK.labels(_kind(item), "attached" if record else "pending").inc()
            return self._after_attach(record, ticket_id, item) if record else []

    def _after_attach(self, record: TicketRecord, ticket_id: str, item) -> list[Emit]:
        if not isinstance(item, ev.FeedbackReceived):
            return []
        kind = item.WhichOneof("kind")
        tenant, archetype = record.key.tenant, record.key.archetype
        if kind == "csat":
            given_at = seconds_of(item.meta.occurred_at) or self._kpis.latest_seen
            return self._act(self._guardrails.observe_csat(tenant, archetype, ticket_id, item.csat.latency,
                                                           item.csat.score, given_at))
        if kind == "qa":
            qa_class = qa_class_of(item.qa)
            if qa_class == QA_NONE:
                return []
            metrics.HALLUCINATED_POLICY.labels(tenant, archetype, qa_class).inc()
            log.error("hallucinated policy reported by QA", extra={"fields": {
                "ticket_id": ticket_id, "archetype": archetype, "class": qa_class, "note": item.qa.note[:500]}})
            return self._act(self._guardrails.observe_qa(tenant, archetype, ticket_id, qa_class, item.qa.severity,
                                                         item.qa.note))
        if kind == "context_loss" and item.context_loss and record.decision in _HANDOFFS:
            return self._act(self._guardrails.observe_handoff(tenant, archetype, ticket_id, True))
        if kind == "resolution":
            return self._learn(tenant, ticket_id, item.resolution, record.kb_gap)
        return []

    def _qa_sample(self, event: ev.TicketDecided, record: TicketRecord) -> list[Emit]:
        if record.qa_sampled:
            return []
        week = self._sampler.consider(record.key.tenant, record.key.archetype, event.ticket.ticket_id,
                                      record.decided_at or self._kpis.latest_seen)
        if week is None:
            return []
        self._kpis.mark_qa_sampled(record.key.tenant, event.ticket.ticket_id)
        sample = ev.QaSampleRequested(meta=new_meta(record.key.tenant, PRODUCER), ticket_id=event.ticket.ticket_id,
                                      week=week, decision=event)
        # The id the consumer loop gives the first output of this decision: the same whether a
        # live replica emits it now or one that replayed the log emits it at `finish_replay`.
        sample.meta.event_id = derived_event_id(event.meta.event_id, Topic.QA_SAMPLES, 0)
        if self._replaying:
            # Only this week's are published when the replay ends: one of an earlier week never is.
            week = iso_week(self._kpis.latest_seen)
            if next(iter(self._held_samples.values()), sample).week < week:
                for ticket in [ticket for ticket, held in self._held_samples.items() if held.week < week]:
                    self._held_samples.pop(ticket)
            self._held_samples[event.ticket.ticket_id] = sample
            return []
        return [_sample(sample)]

    def _learn(self, tenant: str, ticket_id: str, resolution: ev.Resolution, kb_gap: bool) -> list[Emit]:
        """A resolution feeds the knowledge loop. During a replay of what a holder before published,
        its outputs are already on their topics: the loop's state is rebuilt, nothing is re-published."""
        emits = self._knowledge.on_resolution(tenant, ticket_id, resolution, kb_gap=kb_gap)
        if self._replaying:
            return []
        for emit in emits:
            if emit.topic is Topic.KB_PROPOSALS:
                metrics.KB_PROPOSALS.labels(tenant).inc()
                log.info("KB article proposed", extra={"fields": {
                    "topic": emit.event.topic, "tickets": len(emit.event.source_ticket_ids)}})
        return emits

    def _act(self, outcome: GuardrailOutcome) -> list[Emit]:
        for change in outcome.reviews:
            self._reviews[str(self._review_count)] = change
            self._review_count += 1
            if len(self._reviews) > MAX_REVIEWS_KEPT:
                self._reviews.popitem(last=False)
            fields = {"tenant": change.tenant, "archetype": change.archetype, "latency": change.latency,
                      "slip_points": round(change.slip, 2), "csat": round(change.mean, 2),
                      "baseline": change.baseline, "samples": change.samples}
            if change.opened:
                metrics.REVIEWS_OPENED.labels(change.tenant, change.archetype).inc()
                log.warning("CSAT slip: guardrail review opened", extra={"fields": fields})
            else:
                log.info("CSAT slip recovered: guardrail review closed", extra={"fields": fields})
        issued = []
        for trigger, override in outcome.overrides:
            if self._replaying:
                self._held[override.override_id] = (trigger, override)
            else:
                issued.append(_issue(trigger, override))
        return issued


_VERDICTS = {
    ev.AGENT_ACTION_KIND_APPROVE: ev.AGENT_VERDICT_ACCEPTED,
    ev.AGENT_ACTION_KIND_EDIT_AND_SEND: ev.AGENT_VERDICT_EDITED,
    ev.AGENT_ACTION_KIND_REJECT: ev.AGENT_VERDICT_REJECTED,
}
_NOT_OUTCOMES = (ev.AGENT_ACTION_KIND_ESCALATE, ev.AGENT_ACTION_KIND_REASSIGN, ev.AGENT_ACTION_KIND_CONFIRM_ACTION,
                 ev.AGENT_ACTION_KIND_DECLINE_ACTION, ev.AGENT_ACTION_KIND_REDRAFT)


def check_input(event) -> None:  # noqa: ANN001 - any of the learner's input events
    """Raise InvalidEvent for an input event the handlers would refuse, saying why: the intake
    (main.py) dead-letters it on its own topic's twin, once, instead of putting it on the log for
    every replica to refuse."""
    if isinstance(event, ev.TicketDecided):
        _check_decided(event)
    elif isinstance(event, ev.FeedbackReceived):
        _check_feedback(event)
    elif isinstance(event, ev.DeliveryRecorded):
        _check_delivered(event)
    elif isinstance(event, ev.AgentAction):
        if event.kind == ev.AGENT_ACTION_KIND_ESCALATE:
            if not (event.ticket_id or event.decision.ticket.ticket_id):
                raise InvalidEvent("agent action without a ticket id")
            return
        feedback = feedback_of_action(event)
        if feedback is not None:
            _check_feedback(feedback)


def _check_decided(event: ev.TicketDecided) -> None:
    if not event.ticket.ticket_id:
        raise InvalidEvent("decision without a ticket id")
    if event.decision not in _DECISIONS:
        raise InvalidEvent(f"unknown decision {event.decision}")


def _check_feedback(event: ev.FeedbackReceived) -> None:
    kind = event.WhichOneof("kind")
    if not event.ticket_id or kind is None:
        raise InvalidEvent("feedback needs a ticket id and a kind")
    if kind == "csat":
        score = event.csat.score
        if not math.isfinite(score) or not 0.0 <= score <= 100.0:
            metrics.INVALID_OUTCOMES.labels("csat_out_of_range").inc()
            raise InvalidEvent(f"csat score {score} is outside 0..100")
        if event.csat.latency == ev.CSAT_LATENCY_UNSPECIFIED:
            metrics.INVALID_OUTCOMES.labels("csat_without_latency").inc()
            raise InvalidEvent("csat without a latency (at_resolution, delayed or model_scored)")


def _check_delivered(event: ev.DeliveryRecorded) -> None:
    if not event.ticket_id:
        raise InvalidEvent("delivery record without a ticket id")


def action_tenant(action: ev.AgentAction) -> str:
    # Attached by (tenant, ticket) as feedback is: the tenant of the decision acted on, if the action lacks one.
    return action.meta.tenant_id or action.decision.ticket.tenant_id or action.decision.meta.tenant_id


def feedback_of_action(action: ev.AgentAction) -> ev.FeedbackReceived | None:
    """The FeedbackReceived an agent's action amounts to; None for an action that is no verdict, flag
    or QA result. Raises InvalidEvent for an action without a ticket, of an unknown kind, or a QA
    verdict of an unknown class."""
    ticket_id = action.ticket_id or action.decision.ticket.ticket_id
    if not ticket_id:
        raise InvalidEvent("agent action without a ticket id")
    if action.kind in _NOT_OUTCOMES:
        return None
    meta = ev.EventMeta()
    meta.CopyFrom(action.meta)
    meta.tenant_id = action_tenant(action)
    feedback = ev.FeedbackReceived(meta=meta, ticket_id=ticket_id, source="workspace")
    if action.kind == ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS:
        feedback.context_loss = True
    elif action.kind == ev.AGENT_ACTION_KIND_QA_SEVERITY:
        qa_class = action.qa_class.strip().lower()
        if qa_class not in (*QA_CLASSES, QA_NONE):
            raise InvalidEvent(f"QA severity class {action.qa_class!r}; expected one of {', '.join((*QA_CLASSES, QA_NONE))}")
        feedback.qa.CopyFrom(ev.QaResult(hallucinated_policy=qa_class != QA_NONE, severity_class=qa_class,
                                         note=action.note))
    elif action.kind in _VERDICTS:
        # An approval changed nothing; a rejection's ratio counts nowhere (edit_burden leaves rejections out).
        ratio = min(max(action.edit_ratio, 0.0), 1.0) if action.kind == ev.AGENT_ACTION_KIND_EDIT_AND_SEND else 0.0
        feedback.draft_verdict.CopyFrom(ev.DraftVerdict(verdict=_VERDICTS[action.kind], edit_ratio=ratio))
    else:
        raise InvalidEvent(f"agent action kind {action.kind} (unspecified or unknown)")
    return feedback


def _kind(item) -> str:
    if isinstance(item, ev.FeedbackReceived):
        return item.WhichOneof("kind") or "unspecified"
    if isinstance(item, ev.KbGapDetected):
        return "kb_gap"
    if isinstance(item, ev.DeliveryRecorded):
        return "delivery"
    return "agent_escalation"


def _held_from_state(value: object) -> tuple[str, ev.RoutingOverride]:
    trigger, override = listed(value)
    return str(trigger), message_from_state(override, _OVERRIDE_TYPE)


def _review_from_state(value: object) -> ReviewChange:
    if not isinstance(value, dict):
        raise StateError("a guardrail review that is not an object")
    return ReviewChange(**value)


def _issue(trigger: str, override: ev.RoutingOverride) -> Emit:
    """Count and log a guardrail override; the Emit that publishes it."""
    tenant, archetype = override.meta.tenant_id, archetype_name(override.archetype)
    metrics.GUARDRAIL_OVERRIDES.labels(tenant, archetype, trigger).inc()
    log.warning("guardrail override issued", extra={"fields": {
        "tenant": tenant, "archetype": archetype, "trigger": trigger,
        "reason": override.reason, "override_id": override.override_id}})
    # RoutingOverride is keyed by archetype, so one archetype's overrides stay in order.
    return Emit(Topic.ROUTING_OVERRIDES, archetype, override)


def _sample(sample: ev.QaSampleRequested) -> Emit:
    metrics.QA_SAMPLES.labels(sample.meta.tenant_id).inc()
    return Emit(Topic.QA_SAMPLES, sample.ticket_id, sample)

