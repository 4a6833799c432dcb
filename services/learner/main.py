"""Learner: the KPI panel (GetKpis and Prometheus), guardrails that pull an archetype back to
draft-for-review, and the weekly QA sample, from new tickets, decisions, outcomes from the channels
(tickets.feedback), agents' actions, deliveries and KB gaps; baselines and lexicons per tenant from
`SUPPORTFLOW_TENANTS_DIR` (services/learner/tenant_data.py).

Runs as any number of replicas, which share the work by tenant through a log in shards:

- intake: one consumer group shared by the replicas (committed, so each input event is read by one
  of them) passes every input event on, untouched, to `learner.events`, to the partition of its
  tenant (shards.shard_of), with the topic it came from in a header (eventbus.Forward): publish,
  flush, commit, so at least once. An event the handlers would refuse (handlers.check_input) is
  dead-lettered there instead, on its own topic's twin, once;
- apply: the replicas share the log's partitions in a second group (never committed; partitions
  move one at a time). A replica builds the shard of each partition it is given (shards.py): from
  the partition's beginning, or from the shard's last snapshot (in Kafka, snapshots.py), and
  applies each event with the pure handlers in the partition's one order, skipping an event id the shard applied already
  (handlers.Learner.applied_once). Same partition, same order, same deterministic handlers: the
  same shard on whichever replica builds it;
- standby (`SUPPORTFLOW_LEARNER_STANDBY`, off by default): a replica also keeps a warm copy of each
  shard it does not hold, applied as far as its holder has (standby.py), and takes a shard from
  there when it is given one;
- `routing.overrides` is one of the intake's inputs: a person's override and the learner's own
  reach the tenant's partition in the order the intake read them, so a shard latches and clears
  its guardrails at the same point of its partition wherever it is built.

Outputs (overrides, QA samples, resolved tickets, KB proposals) have event ids derived from the log
event that caused them, so a shard built twice (moved between replicas) emits one event downstream:
consumers skip repeated ids. A shard being built holds its outputs until it has applied its
partition up to the end (shards.py). GetKpis answers for the tenants of the shards this replica
holds, once the shard has applied its partition up to its end as of the request (at most
PANEL_WAIT_S), and asks the replica holding any other (panel_owners.py): every replica gives the
same answer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaException
from google.protobuf.message import Message
from prometheus_client import REGISTRY
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import (
    ConsumerLoop, EventPublisher, Forward, LogEnd, TransientError, group_has_committed, topic_id,
)
from supportflow.observability import Health
from supportflow.service import DEFAULT_GRPC_PORTS, ServiceParts, StateLost
from supportflow.topics import learner_snapshots_in

from services.learner import metrics
from services.learner.config import LearnerConfig
from services.learner.handlers import check_input
from services.learner.metrics import LearnerCollector
from services.learner.panel_owners import PanelOwners, advertised_address, member_name
from services.learner.servicer import LearnerServicer
from services.learner.settings import LearnerSettings
from services.learner.shards import INPUTS, LOG, SHARDS, LearnerShards, shard_of, tenant_of
from services.learner.snapshots import KafkaSnapshotLog, Snapshot, learner_version, shard_stores
from services.learner.standby import WarmStandby
from services.learner.tenant_data import TenantData

SERVICE = "learner"
INTAKE_BATCH = 1000
PANEL_WAIT_S = 5.0  # at most, for the tenant's shard to apply its partition up to its end before GetKpis answers
REPLAY_WATCH_S = 0.2

log = logging.getLogger(__name__)


def forward_to_log(event: Message) -> list[Forward]:
    """The intake's handler: an event the learner would refuse is dead-lettered here, on its own
    topic's twin, once; any other is passed on to its tenant's partition of the log, untouched."""
    check_input(event)
    return [Forward(LOG, partition=shard_of(tenant_of(event)))]


@retry(retry=retry_if_exception_type(TransientError), stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
def _ends_of(reader: LogEnd) -> list[int]:
    """The end of each of the log's partitions, asked again while Kafka cannot say (a log created a
    moment ago, at this very start, has no partition leaders yet)."""
    return [reader.offset(partition, timeout_s=10.0) for partition in range(SHARDS)]


@retry(retry=retry_if_exception_type(KafkaException), stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
def _log_id_of(settings: LearnerSettings, name: str) -> str:
    """Kafka's id of the log, asked again while Kafka cannot say (a log created at this very start)."""
    return topic_id(settings, name)


def rebuild_advice(settings: LearnerSettings) -> str:
    log_name = LOG.name_in(settings.topic_prefix)
    group = f"{settings.topic_prefix}{SERVICE}-intake"
    return (f"Restore the topic, or rebuild the state from the inputs (as far as their retention goes): stop "
            f"every learner replica, delete {log_name}, {learner_snapshots_in(settings.topic_prefix)} and the "
            f"intake group's offsets (kafka-consumer-groups --delete-offsets --group {group} --topic <each input "
            f"topic>) and start again: the intake passes every input on to the log anew.")


def check_log_kept(settings: LearnerSettings) -> None:
    """Raise StateLost when the log, which is the learner's state, is gone or cannot be read as
    shards: the log never held a record while the intake group has passed inputs on to it before,
    or it has another partition count than SHARDS (tenants would be read from other partitions than
    they were written to). Replaying an empty log would start with an empty panel and re-armed
    guardrails, silently. (A log created again under a shard's snapshot: `check_snapshot_kept`,
    when the shard is taken.)"""
    log_name = LOG.name_in(settings.topic_prefix)
    group = f"{settings.topic_prefix}{SERVICE}-intake"
    try:
        reader = LogEnd(settings, LOG, SHARDS)
    except RuntimeError as exc:
        raise StateLost(f"{exc}. {rebuild_advice(settings)}") from exc
    try:
        ends = _ends_of(reader)
    finally:
        reader.close()
    if not any(ends) and group_has_committed(settings, group, [t.name_in(settings.topic_prefix) for t in INPUTS]):
        raise StateLost(f"{log_name} has never held a record, but consumer group {group!r} has passed inputs on to "
                        f"it: the log, which is the learner's state, was deleted. {rebuild_advice(settings)}")


def check_snapshot_kept(settings: LearnerSettings, reader: LogEnd, log_id: str) -> Callable[[int, Snapshot], None]:
    """For LearnerShards: raise StateLost when a shard's snapshot was taken of another log than
    this one (`log_id`: Kafka's id of the log now: deleted and created again since), or when its
    partition ends before the snapshot's position (cut short, as an unclean leader election can):
    what the log held after the snapshot is gone, and new records there would be skipped. The
    apply loop stops on it and the service exits as for any lost state. A partition end that cannot
    be read now is logged, not waited for: the topic id is the stronger test."""
    log_name = LOG.name_in(settings.topic_prefix)

    def lost(partition: int, snapshot: Snapshot, what: str) -> StateLost:
        return StateLost(f"{log_name} [{partition}] is not the log the shard's snapshot was taken of ({what}): "
                         f"the log was deleted and created again or cut short, and what it held after the "
                         f"snapshot is gone. {rebuild_advice(settings)}")

    def check(partition: int, snapshot: Snapshot) -> None:
        if snapshot.log_id != log_id:
            raise lost(partition, snapshot, f"topic id {log_id}, the snapshot's {snapshot.log_id}")
        try:
            end = reader.offset(partition, timeout_s=10.0)
        except TransientError as exc:
            log.warning("the end of a shard's partition not read: its snapshot's position not checked",
                        extra={"fields": {"partition": partition, "error": str(exc)}})
            return
        if snapshot.position > end:
            raise lost(partition, snapshot,
                       f"it ends at offset {end}, before the snapshot's position {snapshot.position}")
    return check


class AppliedThroughEnd:
    """Waits until a shard has applied its partition of the log up to its end as of the question:
    before the panel answers (past the wait, or when the end cannot be read, the panel answers with
    what it has, logged and counted in supportflow_learner_panel_waits_total), and before a shard's
    replay ends."""

    def __init__(self, settings: LearnerSettings, shards: LearnerShards) -> None:
        self._end = LogEnd(settings, LOG, SHARDS)
        self._shards = shards

    def bounds_of(self, partition: int) -> tuple[int, int]:
        """The partition's first held and next offsets now."""
        return self._end.bounds(partition, timeout_s=2.0)

    def applied_to(self, partition: int, low: int) -> int:
        """Where the shard has applied its partition up to: a shard that has read nothing yet is
        at the partition's first record (`low`: retention may have deleted the ones before)."""
        position = self._shards.position(partition)
        return low if position is None else position

    def wait(self, tenant: str, timeout_s: float) -> bool:
        """Whether `tenant`'s shard applied its partition up to its end (as of the call) within
        `timeout_s`; logged and counted when it did not."""
        started = time.monotonic()
        partition = shard_of(tenant)
        try:
            low, end = self._end.bounds(partition, timeout_s=max(min(timeout_s, 2.0), 0.1))
        except TransientError as exc:
            metrics.PANEL_WAITS.labels("unavailable").inc()
            log.warning("panel answered without waiting for the log: its end is unknown",
                        extra={"fields": {"error": str(exc)}})
            return False
        while self.applied_to(partition, low) < end:
            if time.monotonic() - started >= timeout_s:
                metrics.PANEL_WAITS.labels("timed_out").inc()
                log.warning("panel answered before its shard applied the log up to its end", extra={"fields": {
                    "partition": partition, "applied_to": self.applied_to(partition, low), "log_end": end,
                    "waited_s": round(time.monotonic() - started, 3)}})
                return False
            time.sleep(0.005)
        metrics.PANEL_WAITS.labels("caught_up").inc()
        return True

    def close(self) -> None:
        self._end.close()


def finish_replays(shards: LearnerShards, applied: AppliedThroughEnd, intake: ConsumerLoop,
                   publisher: EventPublisher, stop: threading.Event) -> None:
    """End each shard's replay once it has applied its partition up to the end read after the
    intake caught up (a first start, or one after an outage of every replica, finds the inputs'
    backlog not yet on the log): publish what the shard held that is missing downstream."""
    while not stop.wait(REPLAY_WATCH_S):
        if not intake.caught_up.is_set():
            continue
        for shard in shards.held():
            if not shard.replaying:
                continue
            if shard.replay_end is None:
                try:
                    shard.replay_start, shard.replay_end = applied.bounds_of(shard.partition)
                except TransientError:
                    continue
            if (shard.replay_start if shard.position is None else shard.position) < shard.replay_end:
                continue
            held = shard.learner.finish_replay()
            shard.replaying = False
            for emit in held:
                publisher.publish(emit.topic, emit.key, emit.event)
            publisher.flush()
            log.info("shard replay finished", extra={"fields": {
                "partition": shard.partition, "outputs_published_after_replay": len(held)}})


def build(settings: LearnerSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    log_name = LOG.name_in(settings.topic_prefix)
    check_log_kept(settings)
    stores, check_kept, closing = None, None, []
    if settings.learner_snapshots:
        log_id = _log_id_of(settings, log_name)
        version = learner_version(LearnerConfig.source_text(settings.learner_config_path), settings.topic_prefix)
        stores = shard_stores(KafkaSnapshotLog(settings), version, settings.learner_snapshot_interval_s, log_id)
        ends = LogEnd(settings, LOG, SHARDS)
        check_kept, closing = check_snapshot_kept(settings, ends, log_id), [ends.close]
    tenants_dir = settings.tenant_data_dir
    with_baseline = TenantData(tenants_dir).check_all()  # a malformed tenant file stops the start, named
    log.info("tenant data read", extra={"fields": {"tenants_dir": str(tenants_dir), "with_baseline": with_baseline}})
    shards = LearnerShards(LearnerConfig.load(settings.learner_config_path), tenants_dir, log_name, stores,
                           check_kept=check_kept)
    address = advertised_address(settings.learner_advertised_host, settings.grpc_port or DEFAULT_GRPC_PORTS[SERVICE])

    # Bad input events are dead-lettered by the intake, on their own topics' twins, as before.
    # Large batches: passing an event on costs little beside each batch's flush and commit (a
    # backlog, as at a first start, goes through several times faster than in batches of 100).
    intake = ConsumerLoop(settings, SERVICE, {topic: forward_to_log for topic in INPUTS}, publisher, health,
                          group=f"{settings.topic_prefix}{SERVICE}-intake", batch_size=INTAKE_BATCH,
                          session_timeout_s=settings.learner_session_timeout_s)
    # A shard whose position the apply group never committed: learners before these commits
    # published the outputs of what is on the log if the intake ran before; at a deployment's first
    # start nobody did.
    intake_ran = group_has_committed(settings, intake.group_id, [t.name_in(settings.topic_prefix) for t in INPUTS])
    apply_log = ConsumerLoop(settings, SERVICE, {}, publisher, health, via=LOG, owner=shards,
                             group=f"{settings.topic_prefix}{SERVICE}-apply", client_id=member_name(address),
                             after_batch=shards.after_batch, session_timeout_s=settings.learner_session_timeout_s,
                             published_before=intake_ran)
    applied = AppliedThroughEnd(settings, shards)
    owners = PanelOwners(settings, apply_log.group_id, log_name, address)
    stop_standby = threading.Event()
    standby_thread = None
    if settings.learner_standby:
        shards.standby = WarmStandby(settings, shards.open, log_name, apply_log.group_id)
        standby_thread = threading.Thread(target=shards.standby.run, name="learner-standby", daemon=True,
                                          args=(stop_standby, apply_log.assigned))

    def final_snapshots() -> None:
        # Only once the apply loop has exited: mid-batch, state and positions would disagree.
        if apply_log.stopped.is_set():
            shards.save_all()

    stop_replay_watch = threading.Event()
    collector = LearnerCollector(lambda: [shard.learner for shard in shards.held()])
    REGISTRY.register(collector)
    return ServiceParts(
        consumers=[apply_log, intake],
        grpc=[(services_pb2_grpc.add_LearnerServicer_to_server,
               LearnerServicer(shards.learner_of, settings.default_tenant, before_answer=applied.wait,
                               max_wait_s=PANEL_WAIT_S, elsewhere=owners.ask),
               "supportflow.contracts.v1.Learner")],
        on_start=[lambda: threading.Thread(target=finish_replays, name="learner-replay", daemon=True,
                                           args=(shards, applied, intake, publisher, stop_replay_watch)).start(),
                  *([standby_thread.start] if standby_thread is not None else [])],
        on_stop=[stop_replay_watch.set, stop_standby.set, *([lambda: standby_thread.join(10)] if standby_thread else []),
                 final_snapshots, applied.close, *closing, owners.close,
                 lambda: REGISTRY.unregister(collector)],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("learner", LearnerSettings)
