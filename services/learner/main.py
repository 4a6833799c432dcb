"""Learner: the KPI panel (GetKpis and Prometheus), guardrails that pull an archetype back to
draft-for-review, and the weekly QA sample, from new tickets, decisions, outcomes from the channels
(tickets.feedback), agents' actions, deliveries and KB gaps; baselines and lexicons per tenant from
`SUPPORTFLOW_TENANTS_DIR` (services/learner/tenant_data.py).

Runs as any number of replicas, each with the same state, through a replicated log:

- intake: one consumer group shared by the replicas (committed, so each input event is read by
  one of them) passes every input event on, untouched, to `learner.events`, a topic of ONE
  partition, with the topic it came from in a header (eventbus.Forward): publish, flush, commit,
  so at least once. An event the handlers would refuse (handlers.check_input) is dead-lettered
  there instead, on its own topic's twin, once;
- apply: every replica reads `learner.events` from its beginning (a group of its own, never
  committed) and applies each event with the pure handlers in the log's one order, skipping an
  event id it applied already (handlers.Learner.applied_once). Same log, same order, same
  deterministic handlers: the same state on every replica, whichever replica's intake read what;
- `routing.overrides` is one of the intake's inputs: a person's override and the learner's own
  reach the log in the order the intake read them, so every replica latches and clears its
  guardrails at the same point of the log (each override applies once, by id).

Outputs (overrides, QA samples, resolved tickets, KB proposals) are computed by every replica; their
event ids derive from the log event that caused them, so the N copies are one event to the
consumers downstream, which skip repeated ids. The log is the learner's state, as a changelog is a
Faust table's: a restart loses nothing and counts nothing twice; its retention bounds the history
the panel can show. With a snapshot folder the apply loop starts where the last snapshot left off
(snapshots.py). GetKpis first waits (at most PANEL_WAIT_S) until this replica has applied the log
up to its end as of the request, so every replica gives the same answer.
"""

from __future__ import annotations

import logging
import threading
import time

from google.protobuf.message import Message
from prometheus_client import REGISTRY
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, EventPublisher, Forward, LogEnd, TransientError, group_has_committed
from supportflow.observability import Health
from supportflow.service import ServiceParts, StateLost
from supportflow.topics import DECISION_TOPICS, Topic

from services.learner import metrics
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner, check_input
from services.learner.metrics import LearnerCollector
from services.learner.servicer import LearnerServicer
from services.learner.settings import LearnerSettings
from services.learner.snapshots import SnapshotStore, learner_version
from services.learner.state import StateError
from services.learner.tenant_data import TenantData

SERVICE = "learner"
INPUTS = (*DECISION_TOPICS.values(), Topic.TICKETS_FEEDBACK, Topic.AGENT_ACTIONS, Topic.TICKETS_RECEIVED,
          Topic.TICKETS_DELIVERED, Topic.KB_GAPS, Topic.ROUTING_OVERRIDES)
LOG = Topic.LEARNER_EVENTS
INTAKE_BATCH = 1000
PANEL_WAIT_S = 5.0  # at most, for this replica to apply the log up to its end before GetKpis answers

log = logging.getLogger(__name__)


def forward_to_log(event: Message) -> list[Forward]:
    """The intake's handler: an event the learner would refuse is dead-lettered here, on its own
    topic's twin, once; any other is passed on to the log untouched."""
    check_input(event)
    return [Forward(LOG)]


@retry(retry=retry_if_exception_type(TransientError), stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
def _end_of(reader: LogEnd) -> int:
    """The log's end, asked again while Kafka cannot say (a log created a moment ago, at this very
    start, has no partition leader yet)."""
    return reader.offset(timeout_s=10.0)


def check_log_kept(settings: LearnerSettings, snapshot_positions: dict[tuple[str, int], int] | None) -> None:
    """Raise StateLost when the log, which is the learner's state, is gone: its end is before the
    snapshot's position (deleted and created again), or it never held a record while the intake
    group has passed inputs on to it before. Replaying an empty log would start every replica
    with an empty panel and re-armed guardrails, silently."""
    log_name = LOG.name_in(settings.topic_prefix)
    reader = LogEnd(settings, LOG)
    try:
        end = _end_of(reader)
    finally:
        reader.close()
    group = f"{settings.topic_prefix}{SERVICE}-intake"
    snapshots = "empty each replica's snapshot folder, " if snapshot_positions else ""
    rebuild = (f"Restore the topic, or rebuild the state from the inputs (as far as their retention goes): stop "
               f"every learner replica, {snapshots}"
               f"delete the intake group's offsets (kafka-consumer-groups --delete-offsets --group {group} "
               "--topic <each input topic>) and start again: the intake passes every input on to the log anew.")
    at = (snapshot_positions or {}).get((log_name, 0))
    if at is not None and at > end:
        raise StateLost(f"{log_name} ends at offset {end}, before the snapshot's position {at}: the log was deleted "
                        f"and created again, and what it held after the snapshot is gone. {rebuild}")
    if end == 0 and group_has_committed(settings, group, [t.name_in(settings.topic_prefix) for t in INPUTS]):
        raise StateLost(f"{log_name} has never held a record, but consumer group {group!r} has passed inputs on to "
                        f"it: the log, which is the learner's state, was deleted. {rebuild}")


class AppliedThroughEnd:
    """Waits, before the panel answers, until the apply loop has applied the log up to its end as
    of the question; past the wait (or when the end cannot be read) the panel answers with what it
    has, logged and counted (supportflow_learner_panel_waits_total)."""

    def __init__(self, settings: LearnerSettings, positions) -> None:  # noqa: ANN001 - the loop's positions property
        self._end = LogEnd(settings, LOG)
        self._where = (LOG.name_in(settings.topic_prefix), 0)
        self._positions = positions

    def wait(self, timeout_s: float, *, panel: bool = True) -> bool:
        """Whether the log was applied up to its end (as of the call) within `timeout_s`; a
        `panel` wait is logged and counted when it was not."""
        started = time.monotonic()
        try:
            end = self._end.offset(timeout_s=max(min(timeout_s, 2.0), 0.1))
        except TransientError as exc:
            if panel:
                metrics.PANEL_WAITS.labels("unavailable").inc()
                log.warning("panel answered without waiting for the log: its end is unknown",
                            extra={"fields": {"error": str(exc)}})
            return False
        while self._positions().get(self._where, 0) < end:
            if time.monotonic() - started >= timeout_s:
                if panel:
                    metrics.PANEL_WAITS.labels("timed_out").inc()
                    log.warning("panel answered before this replica applied the log up to its end", extra={"fields": {
                        "applied_to": self._positions().get(self._where, 0), "log_end": end,
                        "waited_s": round(time.monotonic() - started, 3)}})
                return False
            time.sleep(0.005)
        if panel:
            metrics.PANEL_WAITS.labels("caught_up").inc()
        return True

    def close(self) -> None:
        self._end.close()


def build(settings: LearnerSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    store = None
    snapshot = None
    if settings.learner_snapshot_dir is not None:
        version = learner_version(LearnerConfig.source_text(settings.learner_config_path), settings.topic_prefix)
        store = SnapshotStore(settings.learner_snapshot_dir, version, interval_s=settings.learner_snapshot_interval_s)
        snapshot = store.load()
    check_log_kept(settings, snapshot.positions if snapshot else None)
    tenants_dir = settings.tenant_data_dir
    with_baseline = TenantData(tenants_dir).check_all()  # a malformed tenant file stops the start, named
    log.info("tenant data read", extra={"fields": {"tenants_dir": str(tenants_dir), "with_baseline": with_baseline}})
    config = LearnerConfig.load(settings.learner_config_path)
    learner = None
    if snapshot is not None:
        try:
            learner = Learner.from_state(snapshot.state, config, tenants_dir)
        except StateError as exc:
            log.warning("learner snapshot state unreadable: replaying from the beginning",
                        extra={"fields": {"error": str(exc)}})
            snapshot = None
    if learner is None:
        learner = Learner(config, TenantData(tenants_dir), replaying=True)
    handlers = {topic: learner.on_decided for topic in DECISION_TOPICS.values()}
    handlers |= {Topic.TICKETS_FEEDBACK: learner.on_feedback, Topic.AGENT_ACTIONS: learner.on_agent_action,
                 Topic.TICKETS_RECEIVED: learner.on_received, Topic.TICKETS_DELIVERED: learner.on_delivered,
                 Topic.KB_GAPS: learner.on_kb_gap, Topic.ROUTING_OVERRIDES: learner.on_override}
    handlers = {topic: learner.applied_once(handler) for topic, handler in handlers.items()}

    def save_snapshot(positions: dict[tuple[str, int], int]) -> None:
        if store is not None and store.due(positions):
            store.try_save(learner.export_state, positions)

    # Bad input events are dead-lettered by the intake, on their own topics' twins, as before.
    # Large batches: passing an event on costs little beside each batch's flush and commit (a
    # backlog, as at a first start, goes through several times faster than in batches of 100).
    intake = ConsumerLoop(settings, SERVICE, {topic: forward_to_log for topic in INPUTS}, publisher, health,
                          group=f"{settings.topic_prefix}{SERVICE}-intake", batch_size=INTAKE_BATCH,
                          session_timeout_s=settings.learner_session_timeout_s)
    apply_log = ConsumerLoop(settings, SERVICE, handlers, publisher, health, via=LOG,
                             group=f"{settings.topic_prefix}{SERVICE}-apply", broadcast=True,
                             start_at=snapshot.positions if snapshot else None,
                             after_batch=save_snapshot if store is not None else None)
    applied = AppliedThroughEnd(settings, lambda: apply_log.positions)

    def final_snapshot() -> None:
        # Only once the apply loop has exited: mid-batch, state and positions would disagree.
        if store is not None and apply_log.stopped.is_set() and store.changed(apply_log.positions):
            store.try_save(learner.export_state, apply_log.positions)

    stop_replay_watch = threading.Event()

    def finish_replay() -> None:
        # The replay is the log as it was at start plus the backlog of the inputs this replica's
        # intake was given (a first start, or one after an outage of every replica, finds the
        # inputs' backlog not yet on the log): outputs of either are held as before.
        while not intake.caught_up.wait(0.5):
            if stop_replay_watch.is_set():
                return
        while not applied.wait(0.5, panel=False):
            if stop_replay_watch.is_set():
                return
        held = learner.finish_replay()
        for emit in held:
            publisher.publish(emit.topic, emit.key, emit.event)
        publisher.flush()
        log.info("replay finished", extra={"fields": {"overrides_published_after_replay": len(held)}})

    collector = LearnerCollector(learner)
    REGISTRY.register(collector)
    return ServiceParts(
        consumers=[apply_log, intake],
        grpc=[(services_pb2_grpc.add_LearnerServicer_to_server,
               LearnerServicer(learner, settings.default_tenant, before_answer=applied.wait, max_wait_s=PANEL_WAIT_S),
               "supportflow.contracts.v1.Learner")],
        on_start=[lambda: threading.Thread(target=finish_replay, name="learner-replay", daemon=True).start()],
        on_stop=[stop_replay_watch.set, final_snapshot, applied.close, lambda: REGISTRY.unregister(collector)],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("learner", LearnerSettings)
