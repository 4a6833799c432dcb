"""Learner: the KPI panel (GetKpis and Prometheus), guardrails that pull an archetype back to
draft-for-review, and the weekly QA sample, from new tickets, decisions, outcomes from the channels
(tickets.feedback), agents' actions, deliveries and KB gaps; baselines and lexicons per tenant from
`SUPPORTFLOW_TENANTS_DIR` (services/learner/tenant_data.py).

Two consumer loops, both reading their topics from the beginning at every start (a group of their
own per process): `routing.overrides`, which rebuilds the guardrail latches, and the outcomes
(new tickets, decisions, feedback, agents' actions, deliveries, gaps), which rebuild the KPI panel. The retained topics are the learner's
state, as a changelog is a Faust table's: a restart loses nothing and counts nothing twice. The
outcomes wait until the overrides are replayed; once both loops have caught up, the overrides held
during the replay that were never published are published. Run one replica; retention of the
outcome topics bounds the history the panel can show. With a snapshot folder the outcome loop
starts where the last snapshot left off instead of at the beginning (snapshots.py), so the replay
at start is what came since.
"""

from __future__ import annotations

import logging
import threading

from google.protobuf.message import Message
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, Emit, EventPublisher, Handler, TransientError
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings
from supportflow.topics import DECISION_TOPICS, Topic

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.metrics import LearnerCollector
from services.learner.servicer import LearnerServicer
from services.learner.snapshots import SnapshotStore, learner_version
from services.learner.state import StateError
from services.learner.tenant_data import TenantData

SERVICE = "learner"
# Tenant data (baselines, lexicons) when SUPPORTFLOW_TENANTS_DIR is unset: the repository's, as the
# investigator does.

log = logging.getLogger(__name__)


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    store = None
    snapshot = None
    if settings.learner_snapshot_dir is not None:
        version = learner_version(LearnerConfig.source_text(settings.learner_config_path), settings.topic_prefix)
        store = SnapshotStore(settings.learner_snapshot_dir, version, interval_s=settings.learner_snapshot_interval_s)
        snapshot = store.load()
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
    overrides = ConsumerLoop(
        settings, SERVICE, {Topic.ROUTING_OVERRIDES: learner.on_override}, publisher, health,
        group=f"{settings.topic_prefix}{SERVICE}-overrides", broadcast=True,
    )

    def after_overrides(handler: Handler) -> Handler:
        def handle(event: Message) -> list[Emit]:
            # Latches first, so replayed evidence cannot re-fire them.
            while not overrides.caught_up.wait(0.5):
                if overrides.stopped.is_set():
                    raise TransientError("routing.overrides consumer stopped before it caught up")
            return handler(event)
        return handle

    handlers = {topic: after_overrides(learner.on_decided) for topic in DECISION_TOPICS.values()}
    handlers |= {Topic.TICKETS_FEEDBACK: after_overrides(learner.on_feedback),
                 Topic.AGENT_ACTIONS: after_overrides(learner.on_agent_action),
                 Topic.TICKETS_RECEIVED: after_overrides(learner.on_received),
                 Topic.TICKETS_DELIVERED: after_overrides(learner.on_delivered),
                 Topic.KB_GAPS: after_overrides(learner.on_kb_gap)}
    def save_snapshot(positions: dict[tuple[str, int], int]) -> None:
        if store is not None and store.due(positions):
            store.try_save(learner.export_state, positions)

    outcomes = ConsumerLoop(settings, SERVICE, handlers, publisher, health,
                            group=f"{settings.topic_prefix}{SERVICE}-outcomes", broadcast=True,
                            start_at=snapshot.positions if snapshot else None,
                            after_batch=save_snapshot if store is not None else None)

    def final_snapshot() -> None:
        # Only once the outcome loop has exited: mid-batch, state and positions would disagree.
        if store is not None and outcomes.stopped.is_set() and store.changed(outcomes.positions):
            store.try_save(learner.export_state, outcomes.positions)

    stop_replay_watch = threading.Event()

    def finish_replay() -> None:
        for loop in (overrides, outcomes):
            while not loop.caught_up.wait(0.5):
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
        consumers=[outcomes, overrides],
        grpc=[(services_pb2_grpc.add_LearnerServicer_to_server, LearnerServicer(learner, settings.default_tenant),
               "supportflow.contracts.v1.Learner")],
        on_start=[lambda: threading.Thread(target=finish_replay, name="learner-replay", daemon=True).start()],
        on_stop=[stop_replay_watch.set, final_snapshot, lambda: REGISTRY.unregister(collector)],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("learner")
