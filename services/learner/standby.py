"""Warm standbys: a replica keeps an up-to-date copy of every shard it does not hold, so that a shard
it is given (its holder crashed, stopped or handed it on in a rebalance) is served at once, instead
of restored from its snapshot and brought up to date from there.

A copy follows its partition of the log (learner.events) with a consumer of its own that joins no
group, and applies each record with the same handlers as the holder, in the same order, so it is
the shard the holder has. It never gets ahead of the holder: it applies a record only once the
holder has committed a position past it (ConsumerLoop commits a partition owner's positions once
what their records caused is published). So when this replica takes the copy, what comes after it
on the log is applied here, with its outputs, and nothing the copy applied had outputs that no
replica published. The copy holds its overrides and QA samples as a replay does
(`Learner.hold_outputs`), and the apply loop ends its replay as for any shard taken (main.py,
`finish_replays`), publishing what is missing downstream.

Cost: every replica applies every record of the log once (as holder or as standby) and holds every
shard in memory. Failover then costs the group's session timeout and the records between the
copy's position and the log's end (about 1.5 s of the tenant's events at most: the holder commits
every second, the copy reads the commits every half second), where without a copy it costs a
snapshot's restore (about 5 s for 100,000 tickets) and the records since the snapshot (up to its
interval, 300 s of events). Off by default (`SUPPORTFLOW_LEARNER_STANDBY`).

The copies live on one thread; the apply loop's thread takes one (`take`, in its assignment
callback) or gives one back (`give`, in its revocation callback) under the same lock as each record
applied, so a shard is never applied by both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from supportflow.eventbus import InvalidEvent, decode, kafka_config, source_of
from supportflow.service import StateLost
from supportflow.settings import Settings

from services.learner import metrics
from services.learner.shards import INPUTS, SHARDS, Shard

LIMITS_EVERY_S = 0.5  # how often the holders' committed positions are read
REOPEN_AFTER_S = 30.0  # a shard whose copy could not be built is tried again after this
BATCH = 500

log = logging.getLogger(__name__)


class WarmStandby:
    """The copies of the shards this replica does not hold (shards.Standby)."""

    def __init__(self, settings: Settings, open_shard: Callable[[int], Shard], log_name: str, group_id: str,
                 limits_every_s: float = LIMITS_EVERY_S) -> None:
        """`open_shard(partition)`: the shard from its snapshot, or empty (LearnerShards.open);
        `group_id`: the apply group, whose committed positions bound how far a copy goes."""
        self._limits_every_s = limits_every_s
        self._limits_at = 0.0
        self._settings = settings
        self._open_shard = open_shard
        self._log_name = log_name
        self._group_id = group_id
        self._sources = {topic.base_name: topic for topic in INPUTS}
        self._lock = threading.Lock()
        self._copies: dict[int, Shard] = {}
        self._held: set[int] = set()  # partitions the apply loop holds
        self._moved: set[int] = set()  # taken or given since the loop last (un)assigned them
        self._not_before: dict[int, float] = {}  # a copy that failed to build: when to try again
        self._assigned: set[int] = set()  # the standby consumer's partitions (its thread only)
        self._limits: dict[int, int] = {}  # the holders' committed positions (its thread only)

    # -- the apply loop's (shards.Standby)

    def take(self, partition: int) -> Shard | None:
        with self._lock:
            self._held.add(partition)
            self._moved.add(partition)
            shard = self._copies.pop(partition, None)
            metrics.STANDBY_SHARDS.set(len(self._copies))
        return shard

    def give(self, shard: Shard) -> None:
        shard.learner.hold_outputs()
        with self._lock:
            self._held.discard(shard.partition)
            self._moved.add(shard.partition)
            self._copies[shard.partition] = shard
            metrics.STANDBY_SHARDS.set(len(self._copies))

    # -- its own thread

    def run(self, stop: threading.Event, apply_assigned: threading.Event) -> None:
        """Keep the copies until `stop`; begins once the apply loop has its first partitions (which
        it builds itself). A failure is logged and counted, and the loop starts again a second later
        with the copies it has."""
        while not apply_assigned.wait(0.2):
            if stop.is_set():
                return
        while not stop.is_set():
            try:
                self._follow(stop)
            except Exception:  # noqa: BLE001 - a standby that fails costs failover time, not the replica
                metrics.STANDBY_ERRORS.inc()
                log.exception("warm standby failed; starting again")
                self._assigned.clear()
                stop.wait(1.0)

    def _follow(self, stop: threading.Event) -> None:
        consumer = Consumer(kafka_config(self._settings) | {
            "group.id": self._group_id,  # read only: committed positions, never a join or a commit
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "client.id": f"learner-standby-{os.getpid()}",
        })
        try:
            while not stop.is_set():
                self.step(consumer, stop)
        finally:
            consumer.close()

    def step(self, consumer: Consumer, stop: threading.Event) -> None:
        """One round: build the copies missing, read the holders' positions when due, read each
        copy's partition from where the copy is while its holder is ahead, and apply one batch."""
        self._build_missing(stop)
        if time.monotonic() >= self._limits_at:
            self._read_limits(consumer)
            self._limits_at = time.monotonic() + self._limits_every_s
        self._reassign(consumer)
        caught_up = {message.partition() for message in consumer.consume(BATCH, 0.2) if self._apply(message)}
        if caught_up:
            consumer.incremental_unassign([TopicPartition(self._log_name, p) for p in caught_up])

    def _build_missing(self, stop: threading.Event) -> None:
        """Build the copy of each shard that is neither held here nor copied yet, from its snapshot."""
        now = time.monotonic()
        with self._lock:
            missing = [p for p in range(SHARDS) if p not in self._held and p not in self._copies
                       and self._not_before.get(p, 0.0) <= now]
        for partition in missing:
            if stop.is_set():
                return
            try:
                shard = self._open_shard(partition)
            except StateLost as exc:  # the apply loop stops the replica if it takes this shard
                log.warning("warm standby not built: the shard's snapshot is of another log",
                            extra={"fields": {"partition": partition, "error": str(exc)}})
                self._not_before[partition] = float("inf")
                continue
            except Exception as exc:  # noqa: BLE001 - tried again later
                metrics.STANDBY_ERRORS.inc()
                log.warning("warm standby not built", extra={"fields": {"partition": partition, "error": str(exc)}})
                self._not_before[partition] = now + REOPEN_AFTER_S
                continue
            shard.learner.hold_outputs()
            with self._lock:
                if partition not in self._held and partition not in self._copies:
                    self._copies[partition] = shard
                    self._moved.add(partition)
                metrics.STANDBY_SHARDS.set(len(self._copies))

    def _read_limits(self, consumer: Consumer) -> None:
        """Where each partition's holder has applied it up to (its committed position)."""
        try:
            committed = consumer.committed([TopicPartition(self._log_name, p) for p in range(SHARDS)], timeout=5)
        except KafkaException as exc:  # no coordinator for a moment: the limits stay where they were
            log.info("holders' positions not read", extra={"fields": {"error": str(exc)}})
            return
        self._limits = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        with self._lock:
            behind = sum(max(self._limits.get(p, 0) - (shard.position or 0), 0) for p, shard in self._copies.items())
        metrics.STANDBY_BEHIND.set(behind)

    def _reassign(self, consumer: Consumer) -> None:
        """Read each copy's partition from the copy's position while its holder is ahead of it; not
        a partition held here, nor one whose copy caught up with its holder."""
        with self._lock:
            moved, self._moved = self._moved, set()
            wanted = {p: shard.position for p, shard in self._copies.items()
                      if self._limits.get(p, 0) > (shard.position or 0)}
        drop = [p for p in self._assigned if p not in wanted or p in moved]
        if drop:
            consumer.incremental_unassign([TopicPartition(self._log_name, p) for p in drop])
            self._assigned.difference_update(drop)
        add = [TopicPartition(self._log_name, p, OFFSET_BEGINNING if position is None else position)
               for p, position in wanted.items() if p not in self._assigned]
        if add:
            consumer.incremental_assign(add)
            self._assigned.update(tp.partition for tp in add)

    def _apply(self, message) -> bool:  # noqa: ANN001 - a confluent_kafka Message
        """Apply one record to its copy; True when the copy has caught up with its holder (the
        partition is then read again once the holder moves on)."""
        partition = message.partition()
        if message.error() is not None or partition not in self._assigned:
            return False
        if message.offset() >= self._limits.get(partition, 0):
            self._assigned.discard(partition)
            return True
        try:
            source = source_of(message, self._sources)
            event = decode(source, message)
        except InvalidEvent:
            event = None  # the holder dead-letters it
        with self._lock:
            shard = self._copies.get(partition)
            if shard is None or partition in self._moved:
                return False
            if shard.position is not None and message.offset() < shard.position:
                return False  # applied already
            if event is not None:
                try:
                    shard.handlers[source](event)  # its outputs: the holder's to publish
                except InvalidEvent:
                    pass  # refused by the handlers: the holder dead-letters it
                except Exception:  # noqa: BLE001 - a handler's bug: the holder dead-letters the record and goes on
                    log.warning("warm standby: a handler failed on a record, skipped as its holder does",
                                extra={"fields": {"partition": partition, "offset": message.offset()}}, exc_info=True)
            shard.position = message.offset() + 1
        return False
