"""The learner's state in shards: one per partition of its log (learner.events), each a Learner of
its own, built from that partition alone, in its one order.

Everything the learner keeps is kept per tenant (panel records, repeat contact, guardrails, the QA
sample, the knowledge loop), so the intake (main.py) writes each event to the partition of its
tenant (`shard_of`: CRC-32 of the tenant id modulo the log's partition count, fixed in
supportflow/topics.py). The replicas share the partitions in one consumer group; a replica applies
the shards it holds, serves their tenants' panels, and hands a panel question about another shard
to the replica holding it (panel_owners.py). A shard's state depends only on its partition: the
same on whichever replica builds it, and a shard that moves is rebuilt by its new holder from the
partition (or from the shard's last snapshot, snapshots.py) while the old one drops it.

A shard replays (holds its overrides and QA samples, as a restarted learner does) from the moment
it is taken until it has applied its partition up to the end read once the intake caught up; then
main.py publishes what it held that is missing downstream (`Learner.finish_replay`). Records past
the previous holders' committed position (the apply loop commits what it applied once their
outputs are published) were never published: from there the shard emits as a live one.

With warm standbys (standby.py) a replica also keeps every shard it does not hold, applied as far
as its holder has: a shard taken comes from there when it can (then only the few records since),
and a shard given up goes there.
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Handler
from supportflow.topics import DECISION_TOPICS, Topic

from services.learner import metrics
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner, action_tenant
from services.learner.snapshots import Snapshot, SnapshotStore
from services.learner.state import StateError
from services.learner.tenant_data import TenantData

LOG = Topic.LEARNER_EVENTS
SHARDS = LOG.partitions
INPUTS = (*DECISION_TOPICS.values(), Topic.TICKETS_FEEDBACK, Topic.AGENT_ACTIONS, Topic.TICKETS_RECEIVED,
          Topic.TICKETS_DELIVERED, Topic.KB_GAPS, Topic.ROUTING_OVERRIDES)

log = logging.getLogger(__name__)


def shard_of(tenant: str) -> int:
    """The log partition, and so the shard, that holds `tenant`'s events and state."""
    return zlib.crc32(tenant.encode()) % SHARDS


def tenant_of(event) -> str:  # noqa: ANN001 - any of the learner's input events
    """The tenant whose state `event` changes, as the handlers attach it."""
    if isinstance(event, (ev.TicketDecided, ev.TicketReceived)):
        return event.ticket.tenant_id or event.meta.tenant_id
    if isinstance(event, ev.AgentAction):
        return action_tenant(event)
    return event.meta.tenant_id


def shard_handlers(learner: Learner) -> dict[Topic, Handler]:
    """The handler of each input topic (INPUTS), each applying an event id once (Learner.applied_once)."""
    handlers = {topic: learner.on_decided for topic in DECISION_TOPICS.values()}
    handlers |= {Topic.TICKETS_FEEDBACK: learner.on_feedback, Topic.AGENT_ACTIONS: learner.on_agent_action,
                 Topic.TICKETS_RECEIVED: learner.on_received, Topic.TICKETS_DELIVERED: learner.on_delivered,
                 Topic.KB_GAPS: learner.on_kb_gap, Topic.ROUTING_OVERRIDES: learner.on_override}
    return {topic: learner.applied_once(handlers[topic]) for topic in INPUTS}


@dataclass
class Shard:
    partition: int
    learner: Learner
    handlers: dict[Topic, Handler]
    store: SnapshotStore | None
    position: int | None  # the next offset to apply; None: the partition's beginning, nothing applied
    replaying: bool = True
    # The previous holders' committed position when this replica took the shard: they published
    # the outputs of what came before. From there on the shard emits its outputs as a live one.
    published_to: int | None = None
    replay_start: int = 0  # the partition's first offset held when the replay's end was read
    replay_end: int | None = None  # where the replay ends, read once the intake caught up


class Standby(Protocol):
    """Warm copies of the shards this replica does not hold (standby.py)."""

    def take(self, partition: int) -> Shard | None:
        """The copy of `partition`'s shard, if there is one, which this replica now holds."""

    def give(self, shard: Shard) -> None:
        """A shard this replica no longer holds, to keep up to date from now on."""


class LearnerShards:
    """The shards this replica holds (a `PartitionOwner` for the apply loop). Taken, given up and
    applied on the loop's thread; read by the panel, the metrics and the replay watcher."""

    def __init__(self, config: LearnerConfig, tenants_dir: Path | None, log_name: str,
                 snapshots: Callable[[int], SnapshotStore] | None = None,
                 check_kept: Callable[[int, Snapshot], None] | None = None) -> None:
        """`check_kept(partition, snapshot)` raises StateLost when the log is not the one a
        shard's snapshot was taken of (deleted and created again since)."""
        self._config = config
        self._tenants_dir = tenants_dir
        self._log_name = log_name
        self._snapshots = snapshots
        self._check_kept = check_kept
        self._shards: dict[int, Shard] = {}  # replaced whole on change: readers take it as it is
        self.sources = INPUTS
        self._lock = threading.Lock()
        self.standby: Standby | None = None

    # -- the apply loop's (eventbus.PartitionOwner)

    def assigned(self, partitions: list[int], committed: Mapping[int, int]) -> dict[int, int | None]:
        shards = dict(self._shards)
        sources: dict[str, list[int]] = {"standby": [], "snapshot": [], "log": []}
        for partition in partitions:
            shard = self.standby.take(partition) if self.standby is not None else None
            if shard is not None:
                sources["standby"].append(partition)
                shard.replaying, shard.replay_end = True, None  # the standby held its outputs
            else:
                shard = self.open(partition)
                sources["snapshot" if shard.position is not None else "log"].append(partition)
            shard.published_to = committed.get(partition)
            self._note_position(shard, shard.position)
            shards[partition] = shard
        with self._lock:
            self._shards = shards
        metrics.SHARDS_HELD.set(len(shards))
        for source, taken in sources.items():
            metrics.SHARDS_TAKEN.labels(source).inc(len(taken))
        if partitions:
            log.info("log partitions taken", extra={"fields": {
                "partitions": sorted(partitions), "from_standby": sources["standby"], "from_snapshot": sources["snapshot"],
                "positions": {p: shards[p].position for p in partitions},
                "published_to": {p: shards[p].published_to for p in partitions}}})
        return {partition: shards[partition].position for partition in partitions}

    def revoked(self, partitions: list[int]) -> None:
        shards = dict(self._shards)
        given = []
        for partition in partitions:
            shard = shards.pop(partition, None)
            if shard is not None:
                self._save(shard)
                given.append(shard)
        with self._lock:
            self._shards = shards
        metrics.SHARDS_HELD.set(len(shards))
        if self.standby is not None:
            for shard in given:
                self.standby.give(shard)

    def handlers(self, partition: int, offset: int) -> Mapping[Topic, Handler] | None:
        shard = self._shards.get(partition)
        if shard is None:
            return None
        self._note_position(shard, offset)
        return shard.handlers

    def after_batch(self, positions: dict[tuple[str, int], int]) -> None:
        """The loop's positions after a batch: each shard's, and its snapshot when one is due."""
        for shard in self._shards.values():
            position = positions.get((self._log_name, shard.partition))
            if position is not None:
                shard.position = position
            if shard.store is not None and shard.position is not None and shard.store.due(shard.position):
                shard.store.try_save(shard.learner.export_state, shard.position)

    # -- readers

    def held(self) -> list[Shard]:
        return list(self._shards.values())

    def learner_of(self, tenant: str) -> Learner | None:
        """The shard holding `tenant`, if this replica holds it."""
        shard = self._shards.get(shard_of(tenant))
        return None if shard is None else shard.learner

    def position(self, partition: int) -> int | None:
        shard = self._shards.get(partition)
        return None if shard is None else shard.position

    def save_all(self) -> None:
        """A snapshot of every shard held whose position moved (at stop, once the loop has exited)."""
        for shard in self._shards.values():
            self._save(shard)

    # -- internals

    @staticmethod
    def _note_position(shard: Shard, offset: int | None) -> None:
        """A replaying shard about to apply the record at `offset`: past what the previous holders
        published (the group's committed position), its outputs go out as a live shard's
        (Learner.past_published). Not known (Kafka could not say when the shard was taken): held
        or dropped until the replay ends, as before the commits were kept."""
        if (shard.replaying and shard.published_to is not None and offset is not None
                and offset >= shard.published_to):
            shard.learner.past_published()
            shard.published_to = None  # once

    def open(self, partition: int) -> Shard:
        """`partition`'s shard, from its snapshot when there is a good one, else empty: at its
        position, replaying (holding its outputs). Raises StateLost when the snapshot was taken
        of another log."""
        store = self._snapshots(partition) if self._snapshots is not None else None
        snapshot = store.load() if store is not None else None
        if snapshot is not None and self._check_kept is not None:
            self._check_kept(partition, snapshot)
        learner = None
        if snapshot is not None:
            try:
                learner = Learner.from_state(snapshot.state, self._config, self._tenants_dir)
            except StateError as exc:
                log.warning("learner snapshot state unreadable: replaying the shard from the beginning",
                            extra={"fields": {"partition": partition, "error": str(exc)}})
                snapshot = None
        if learner is None:
            learner = Learner(self._config, TenantData(self._tenants_dir), replaying=True)
        position = snapshot.position if snapshot is not None else None
        return Shard(partition, learner, shard_handlers(learner), store, position)

    def _save(self, shard: Shard) -> None:
        if shard.store is not None and shard.position is not None and shard.store.changed(shard.position):
            shard.store.try_save(shard.learner.export_state, shard.position)
