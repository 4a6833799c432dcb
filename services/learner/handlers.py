"""The learner's consumer handlers: decisions, feedback, agents' actions and KB gaps feed the KPI
panel and the guardrails; guardrails answer with routing overrides. No Kafka or gRPC here.

Agents' actions (AgentAction, agent.actions, from the workspace) are verdicts: each is counted as
the FeedbackReceived it amounts to (`feedback_of_action`), through the very path feedback takes:

| action            | counted as                                  |
|-------------------|---------------------------------------------|
| APPROVE           | draft_verdict ACCEPTED, edit ratio 0        |
| EDIT_AND_SEND     | draft_verdict EDITED, the action's edit ratio |
| REJECT            | draft_verdict REJECTED                      |
| FLAG_CONTEXT_LOSS | context_loss                                |
| ESCALATE          | nothing (a routing step, not a verdict)     |

Both sources may report one ticket (a helpdesk integration on tickets.feedback, an agent in the
workspace): nothing is counted twice, because a ticket holds one verdict and one context-loss flag.
Of two verdicts for one ticket the one given last (meta.occurred_at) counts, whichever topic
brought it and in whichever order the two topics are read, so a replay counts what the live run
counted (kpis.py).

State is in memory and rebuilt at every start by replaying the input topics from the beginning
(services/learner/main.py): every update is idempotent per ticket (a decision replaces the
ticket's record, feedback sets a field), so a replay neither loses nor double-counts. While the
learner replays (`replaying=True`) it holds the guardrail overrides it would issue; `finish_replay`
then returns only those that `routing.overrides` does not already hold (their ids are
deterministic), so a restart never repeats an override and never drops one that a crash kept from
being published. Two consumer threads and the gRPC server share the state, hence the lock.
`export_state` and `from_state` carry the whole state across a restart (snapshots.py).
"""

from __future__ import annotations

import logging
import pickle
import threading
from dataclasses import dataclass

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent
from supportflow.topics import Topic

from services.learner import metrics
from services.learner.config import LearnerConfig, archetype_name
from services.learner.guardrails import ISSUER, GuardrailOutcome, Guardrails, GuardrailStatus
from services.learner.knowledge import KnowledgeLoop
from services.learner.kpis import BucketKey, KpiAccumulator, KpiRowValues

log = logging.getLogger(__name__)

_DECISIONS = (ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_FOLLOW_UP, ev.DECISION_ESCALATE)


@dataclass(frozen=True)
class LearnerSnapshot:
    rows: dict[str, list[KpiRowValues]]  # tenant -> rows (with the per-archetype "all" rollups)
    guardrails: list[GuardrailStatus]
    pending_feedback: int
    dropped_feedback: int


class Learner:
    def __init__(self, config: LearnerConfig, *, replaying: bool = False) -> None:
        self._kpis = KpiAccumulator(config)
        self._guardrails = Guardrails(config.guardrails, config.baselines)
        self._knowledge = KnowledgeLoop(config.knowledge, config.max_tickets)
        self._lock = threading.Lock()
        self._replaying = replaying
        self._held: dict[str, tuple[str, ev.RoutingOverride]] = {}  # override id -> (trigger, override)
        self._published: set[str] = set()  # ids of our overrides seen on routing.overrides

    def export_state(self) -> bytes:
        """Everything the learner knows, for a snapshot; taken under the lock, so consistent."""
        with self._lock:
            state = {name: value for name, value in vars(self).items() if name != "_lock"}
            return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_state(cls, state: bytes) -> "Learner":
        """A learner with an exported state, replaying (what came after the snapshot) until
        `finish_replay`."""
        learner = cls.__new__(cls)
        vars(learner).update(pickle.loads(state))  # noqa: S301 - our own snapshot (snapshots.py)
        learner._lock = threading.Lock()
        learner._replaying = True
        return learner

    def finish_replay(self) -> list[Emit]:
        """End the replay: the held overrides that were never published, to publish now."""
        with self._lock:
            self._replaying = False
            missing = [held for override_id, held in self._held.items() if override_id not in self._published]
            self._held.clear()
        return [_issue(trigger, override) for trigger, override in missing]

    def on_decided(self, event: ev.TicketDecided) -> list[Emit]:
        if not event.ticket.ticket_id:
            raise InvalidEvent("decision without a ticket id")
        if event.decision not in _DECISIONS:
            raise InvalidEvent(f"unknown decision {event.decision}")
        with self._lock:
            attached = self._kpis.record_decision(event)
            if attached is None:  # older than the decision already recorded for the ticket
                return []
            self._knowledge.remember(event)
            key = self._kpis.key_of(event.ticket.tenant_id or event.meta.tenant_id, event.ticket.ticket_id)
            emits = []
            for feedback in attached:
                metrics.FEEDBACK.labels(feedback.WhichOneof("kind"), "attached").inc()
                emits += self._guard(key, feedback) + self._learn(key, feedback)
            return emits

    def on_feedback(self, event: ev.FeedbackReceived) -> list[Emit]:
        kind = event.WhichOneof("kind")
        if not event.ticket_id or kind is None:
            raise InvalidEvent("feedback needs a ticket id and a kind")
        with self._lock:
            key = self._kpis.record_feedback(event)
            metrics.FEEDBACK.labels(kind, "attached" if key else "pending").inc()
            return self._guard(key, event) + self._learn(key, event) if key else []

    def on_agent_action(self, event: ev.AgentAction) -> list[Emit]:
        """An agent's action as the feedback it amounts to (the table above)."""
        feedback = feedback_of_action(event)
        metrics.AGENT_ACTIONS.labels(metrics.action_label(event.kind)).inc()
        if feedback is None:
            return []
        return self.on_feedback(feedback)

    def on_kb_gap(self, event: ev.KbGapDetected) -> list[Emit]:
        if not event.ticket_id:  # a gap from an agent's ad-hoc search belongs to no ticket
            return []
        with self._lock:
            key = self._kpis.record_kb_gap(event)
        metrics.FEEDBACK.labels("kb_gap", "attached" if key else "pending").inc()
        return []

    def on_override(self, event: ev.RoutingOverride) -> list[Emit]:
        with self._lock:
            self._guardrails.observe_override(event)
            if event.issued_by == ISSUER:
                self._published.add(event.override_id)
        return []

    def kpi_rows(self, tenant: str, archetype: str = "", segment: str = "") -> list[KpiRowValues]:
        with self._lock:
            return self._kpis.rows(tenant, archetype, segment)

    def snapshot(self) -> LearnerSnapshot:
        with self._lock:
            return LearnerSnapshot(
                rows={tenant: self._kpis.rows(tenant) for tenant in self._kpis.tenants()},
                guardrails=self._guardrails.status(),
                pending_feedback=self._kpis.pending_feedback,
                dropped_feedback=self._kpis.dropped_feedback,
            )

    def _learn(self, key: BucketKey, feedback: ev.FeedbackReceived) -> list[Emit]:
        """A resolution feeds the knowledge loop. During a replay its outputs are already on their
        topics: the loop's state is rebuilt, nothing is re-published."""
        if feedback.WhichOneof("kind") != "resolution":
            return []
        emits = self._knowledge.on_resolution(
            key.tenant, feedback.ticket_id, feedback.resolution, kb_gap=self._kpis.had_gap(key.tenant, feedback.ticket_id)
        )
        if self._replaying:
            return []
        for emit in emits:
            if emit.topic is Topic.KB_PROPOSALS:
                metrics.KB_PROPOSALS.labels(key.tenant).inc()
                log.info("KB article proposed", extra={"fields": {
                    "topic": emit.event.topic, "tickets": len(emit.event.source_ticket_ids)}})
        return emits

    def _guard(self, key: BucketKey, feedback: ev.FeedbackReceived) -> list[Emit]:
        kind = feedback.WhichOneof("kind")
        if kind == "csat" and feedback.csat.latency == self._guardrails.latency:
            outcome = self._guardrails.observe_csat(key.tenant, key.archetype, feedback.ticket_id, feedback.csat.score)
        elif kind == "qa" and feedback.qa.hallucinated_policy:
            metrics.HALLUCINATED_POLICY.labels(key.tenant, key.archetype).inc()
            log.error("hallucinated policy reported by QA", extra={"fields": {
                "ticket_id": feedback.ticket_id, "archetype": key.archetype, "note": feedback.qa.note[:500]}})
            outcome = self._guardrails.observe_hallucination(key.tenant, key.archetype, feedback.ticket_id, feedback.qa.note)
        else:
            return []
        self._log_alerts(outcome)
        issued = []
        for trigger, override in outcome.overrides:
            if self._replaying:
                self._held[override.override_id] = (trigger, override)
            else:
                issued.append(_issue(trigger, override))
        return issued

    @staticmethod
    def _log_alerts(outcome: GuardrailOutcome) -> None:
        for change in outcome.alerts:
            fields = {"tenant": change.tenant, "archetype": change.archetype, "slip_points": round(change.slip, 2),
                      "csat": round(change.mean, 2), "baseline": change.baseline, "samples": change.samples}
            if change.raised:
                log.warning("CSAT slip alert raised", extra={"fields": fields})
            else:
                log.info("CSAT slip alert cleared", extra={"fields": fields})


_VERDICTS = {
    ev.AGENT_ACTION_KIND_APPROVE: ev.AGENT_VERDICT_ACCEPTED,
    ev.AGENT_ACTION_KIND_EDIT_AND_SEND: ev.AGENT_VERDICT_EDITED,
    ev.AGENT_ACTION_KIND_REJECT: ev.AGENT_VERDICT_REJECTED,
}


def feedback_of_action(action: ev.AgentAction) -> ev.FeedbackReceived | None:
    """The FeedbackReceived an agent's action amounts to; None for an escalation (no verdict).
    Raises InvalidEvent for an action without a ticket or of an unknown kind."""
    ticket_id = action.ticket_id or action.decision.ticket.ticket_id
    if not ticket_id:
        raise InvalidEvent("agent action without a ticket id")
    if action.kind == ev.AGENT_ACTION_KIND_ESCALATE:
        return None
    if action.kind not in _VERDICTS and action.kind != ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS:
        raise InvalidEvent(f"agent action kind {action.kind} (unspecified or unknown)")
    meta = ev.EventMeta()
    meta.CopyFrom(action.meta)
    # Attached by (tenant, ticket) as feedback is: the tenant of the decision acted on, if the action lacks one.
    meta.tenant_id = action.meta.tenant_id or action.decision.ticket.tenant_id or action.decision.meta.tenant_id
    feedback = ev.FeedbackReceived(meta=meta, ticket_id=ticket_id)
    if action.kind == ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS:
        feedback.context_loss = True
    else:
        # An approval changed nothing; a rejection's ratio counts nowhere (edit_burden leaves rejections out).
        ratio = min(max(action.edit_ratio, 0.0), 1.0) if action.kind == ev.AGENT_ACTION_KIND_EDIT_AND_SEND else 0.0
        feedback.draft_verdict.CopyFrom(ev.DraftVerdict(verdict=_VERDICTS[action.kind], edit_ratio=ratio))
    return feedback


def _issue(trigger: str, override: ev.RoutingOverride) -> Emit:
    """Count and log a guardrail override; the Emit that publishes it."""
    tenant, archetype = override.meta.tenant_id, archetype_name(override.archetype)
    metrics.GUARDRAIL_OVERRIDES.labels(tenant, archetype, trigger).inc()
    log.warning("guardrail override issued", extra={"fields": {
        "tenant": tenant, "archetype": archetype, "trigger": trigger,
        "reason": override.reason, "override_id": override.override_id}})
    # RoutingOverride is keyed by archetype, so one archetype's overrides stay in order.
    return Emit(Topic.ROUTING_OVERRIDES, archetype, override)
