"""Learner snapshots: a shard's state (shards.py) with the position in its partition of the log
(learner.events) it was applied up to, kept in Kafka, so that whichever replica takes the shard
next reads only what came after instead of every retained event.

Where they are kept: a compacted topic (`supportflow.topics.learner_snapshots_in`), one partition
per shard, created by the learner at start. The state, JSON of a few hundred bytes per ticket, is
cut into chunks of CHUNK_BYTES (compressed by the producer), each under a key of its own
snapshot's id; the snapshot's header (format, version, position and Kafka's id of the log it is a
position in, chunk count, size and SHA-256 of the state) comes after them under the partition's
one header key, and after it, tombstones for the chunks of the snapshot it replaces (compaction
then drops them), all in one ordered write. A reader reads the partition to its end, keeps the
latest value of each key, and loads the snapshot the header names; a header whose chunks are not
all there, or do not add up to its size and digest, is not loaded, and the shard replays from the
beginning. A snapshot of another log than the one there now (deleted and created again) stops
the replica taking the shard (main.check_snapshot_kept). Kept in the cluster, a snapshot survives
its replica: a shard moved by a rebalance, a rolling update, a pod rescheduled or a replica killed
is taken from the last snapshot by the next holder.

When: the apply loop's thread writes a shard's snapshot between two batches every
`SUPPORTFLOW_LEARNER_SNAPSHOT_INTERVAL_S` (when it applied anything since the last), when the shard
goes to another replica (before the group hands it on) and at shutdown. It is taken under the
learner's lock, after the batch's output was published: the state (with the ids of the events
applied last, applied_ids.py) and the position are one consistent cut. A shard restored starts at
that position, and the overrides and QA samples the tail of the replay would issue are held and
compared with the topic as in a full replay.

Why a stale or concurrent writer cannot make a shard wrong: a shard's state at a position is the
same whoever built it (one partition, one order, deterministic handlers), so any snapshot at any
position is a right one. A replica that has lost a shard without knowing it yet can still write
an older snapshot over the newer header: the next holder then replays a little more. Chunks are
keyed by their snapshot's id, so two writers never mix their chunks. Chunks that no header names
and that are older than ORPHAN_AGE_S (left by such a writer) are deleted by the next reader.

A snapshot of another format, learner code, learner configuration or topic namespace (the
header's `version`: a digest of services/learner/*.py, the configuration file and the topic
prefix) is not loaded, and the shard replays from the beginning as it would without one. The
state is the shard's entries (entries.py), grouped by kind, as JSON (state.py: numbers, strings,
lists and the protobuf messages the learner holds, as wire bytes under their type's name): loading
it reads data and runs nothing, and a state the
learner cannot read is logged and replayed from the beginning like a missing snapshot. The topic
belongs to the learner alone: a changed snapshot would change the panel's figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from confluent_kafka.admin import AdminClient, NewTopic

from supportflow.eventbus import EventPublisher, create_topics, kafka_config, read_ranges, watermarks
from supportflow.settings import Settings
from supportflow.topics import Topic, learner_snapshots_in

from services.learner import metrics

log = logging.getLogger(__name__)

FORMAT = "supportflow-learner-snapshot/5"  # 4: in a compacted topic, in chunks; 5: the state as entries
HEADER_KEY = b"header"
CHUNK_BYTES = 512 * 1024  # under the broker's default largest message (1 MB) before compression
ORPHAN_AGE_S = 3600.0
# Compaction only cleans segments no longer written to; the broker's default segment (1 GB) would
# keep dozens of superseded snapshots of a large shard (30 MB at 100,000 tickets) on disk.
SEGMENT_BYTES = 64 * 1024 * 1024
READ_DEADLINE_S = 120.0
WRITE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes | None  # None: a tombstone
    timestamp: float  # Unix time the record was written


class SnapshotLog(Protocol):
    """The records of the snapshot topic's partitions."""

    def read(self, partition: int) -> list[Record]:
        """Every record `partition` holds, in order; raises when they cannot all be read."""

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append `records` to `partition`, in order, and wait for them; raises when any failed."""


def learner_version(config_text: str, topic_prefix: str) -> str:
    """A digest of the learner's code, its configuration and the deployment's topic namespace: a
    snapshot is loaded only by the same."""
    digest = hashlib.sha256(FORMAT.encode())
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(config_text.encode() + b"\0" + topic_prefix.encode())
    return digest.hexdigest()[:20]


def chunk_key(snapshot_id: str, index: int) -> bytes:
    return f"chunk/{snapshot_id}/{index:05d}".encode()


@dataclass(frozen=True)
class Snapshot:
    state: bytes
    position: int  # the next offset of the shard's partition to apply
    log_id: str  # Kafka's id of the log the position is in (another if it was deleted and created again)
    taken_at: float  # Unix time
    version: str


class SnapshotStore:
    """One shard's snapshots, in its partition of the snapshot topic."""

    def __init__(self, records: SnapshotLog, version: str, *, interval_s: float, partition: int, log_id: str,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self._records = records
        self._version = version
        self._log_id = log_id
        self._interval_s = interval_s
        self.partition = partition
        self._clock = clock
        self._wall_clock = wall_clock
        self._last_save = clock()
        self._saved_position: int | None = None
        self._replaced: tuple[str, int] | None = None  # (id, chunks) of the snapshot the next save replaces

    def load(self) -> Snapshot | None:
        """The shard's snapshot, or None (and why, in the log) when there is none to use."""
        fields: dict = {"partition": self.partition}
        try:
            records = self._records.read(self.partition)
        except Exception as exc:  # noqa: BLE001 - without its snapshot the shard replays: slower, not wrong
            log.warning("learner snapshot not read: replaying the shard from the beginning",
                        extra={"fields": fields | {"error": str(exc)}})
            return None
        latest: dict[bytes, Record] = {}
        for record in records:
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record
        header_record = latest.get(HEADER_KEY)
        if header_record is None:
            log.info("no learner snapshot: replaying the shard from the beginning", extra={"fields": fields})
            return None
        try:
            header = json.loads(header_record.value)
            snapshot_id, chunks = str(header["id"]), int(header["chunks"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("learner snapshot header invalid: replaying the shard from the beginning",
                        extra={"fields": fields | {"error": str(exc)}})
            return None
        self._replaced = (snapshot_id, chunks)
        self._delete_orphans(latest, snapshot_id)
        if header.get("format") != FORMAT or header.get("version") != self._version:
            log.warning("learner snapshot from other code or configuration: replaying the shard from the beginning",
                        extra={"fields": fields | {"format": header.get("format"), "version": header.get("version"),
                                                   "expected": self._version}})
            return None
        parts = [latest.get(chunk_key(snapshot_id, index)) for index in range(chunks)]
        state = b"".join(part.value for part in parts if part is not None)  # type: ignore[misc]
        if (None in parts or len(state) != header.get("state_bytes")
                or hashlib.sha256(state).hexdigest() != header.get("state_sha256")):
            log.warning("learner snapshot incomplete or damaged: replaying the shard from the beginning",
                        extra={"fields": fields | {"chunks": chunks, "chunks_found": chunks - parts.count(None)}})
            return None
        try:
            snapshot = Snapshot(state=state, position=int(header["position"]), log_id=str(header["log_id"]),
                                taken_at=float(header["taken_at"]), version=header["version"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("learner snapshot header invalid: replaying the shard from the beginning",
                        extra={"fields": fields | {"error": str(exc)}})
            return None
        self._saved_position = snapshot.position
        log.info("learner snapshot found", extra={"fields": fields | {
            "age_s": round(self._wall_clock() - snapshot.taken_at, 1), "position": snapshot.position,
            "bytes": len(state)}})
        return snapshot

    def changed(self, position: int) -> bool:
        """Whether the position moved since the last save (or the snapshot loaded)."""
        return position != self._saved_position

    def due(self, position: int) -> bool:
        """Whether to save now: the interval has passed and the position moved."""
        return self._clock() - self._last_save >= self._interval_s and self.changed(position)

    def try_save(self, state: Callable[[], bytes], position: int) -> bool:
        """`save`, except that a failure (Kafka unreachable, anything) is logged and counted, not
        raised: the learner goes on, and tries again at the next interval."""
        try:
            self.save(state(), position)
        except Exception as exc:  # noqa: BLE001 - a snapshot must never stop the learner
            self._last_save = self._clock()
            metrics.SNAPSHOTS.labels("failed").inc()
            log.error("learner snapshot not saved", extra={"fields": {"partition": self.partition, "error": str(exc)}})
            return False
        metrics.SNAPSHOTS.labels("saved").inc()
        return True

    def save(self, state: bytes, position: int) -> None:
        started = time.monotonic()
        snapshot_id = uuid.uuid4().hex[:16]
        pieces = [state[at:at + CHUNK_BYTES] for at in range(0, len(state), CHUNK_BYTES)] or [b""]
        header = {"format": FORMAT, "version": self._version, "id": snapshot_id, "taken_at": self._wall_clock(),
                  "log_id": self._log_id, "position": position, "chunks": len(pieces), "state_bytes": len(state),
                  "state_sha256": hashlib.sha256(state).hexdigest()}
        records: list[tuple[bytes, bytes | None]] = [
            (chunk_key(snapshot_id, i), piece) for i, piece in enumerate(pieces)]
        records.append((HEADER_KEY, json.dumps(header).encode()))
        if self._replaced is not None:  # after the header: until it is written, the old snapshot stays whole
            old_id, old_chunks = self._replaced
            records += [(chunk_key(old_id, i), None) for i in range(old_chunks)]
        self._records.write(self.partition, records)
        self._replaced = (snapshot_id, len(pieces))
        self._last_save = self._clock()
        self._saved_position = position
        log.info("learner snapshot saved", extra={"fields": {
            "partition": self.partition, "position": position, "bytes": len(state), "chunks": len(pieces),
            "seconds": round(time.monotonic() - started, 3)}})

    def _delete_orphans(self, latest: dict[bytes, Record], current_id: str) -> None:
        """Delete chunks that no header names and that are older than ORPHAN_AGE_S (a writer that
        lost the shard mid-save, or whose header a later one replaced before its chunks were
        deleted): a younger one may be a save in progress elsewhere."""
        prefix, kept = b"chunk/", f"chunk/{current_id}/".encode()
        cutoff = self._wall_clock() - ORPHAN_AGE_S
        orphans = [key for key, record in latest.items()
                   if key.startswith(prefix) and not key.startswith(kept) and record.timestamp < cutoff]
        if not orphans:
            return
        try:
            self._records.write(self.partition, [(key, None) for key in orphans])
            log.info("orphaned snapshot chunks deleted", extra={"fields": {"partition": self.partition,
                                                                           "chunks": len(orphans)}})
        except Exception as exc:  # noqa: BLE001 - left for the next reader
            log.warning("orphaned snapshot chunks not deleted", extra={"fields": {
                "partition": self.partition, "error": str(exc)}})


class KafkaSnapshotLog:
    """The snapshot topic on Kafka: created compacted with one partition per shard if missing; read
    with a reader of its own, written with a publisher of its own (idempotent, so a partition's
    records stay in order across retries; compressed, as the state is JSON)."""

    def __init__(self, settings: Settings, partitions: int = Topic.LEARNER_EVENTS.partitions) -> None:
        self._settings = settings
        self.name = learner_snapshots_in(settings.topic_prefix)
        self._admin = AdminClient(kafka_config(settings))
        self._ensure(partitions)
        # A publisher of its own: a flush here waits for the snapshot's records only, and takes
        # no other loop's delivery failures.
        self._publisher = EventPublisher(settings, "learner-snapshots")

    def _ensure(self, partitions: int) -> None:
        topic = NewTopic(self.name, partitions, self._settings.topic_replication,
                         config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)})
        if create_topics(self._admin, [topic]):
            log.info("learner snapshot topic created", extra={"fields": {"topic": self.name, "partitions": partitions}})
        found = self._admin.list_topics(self.name, timeout=30).topics.get(self.name)
        if found is not None and found.error is None and len(found.partitions) != partitions:
            raise RuntimeError(f"{self.name} has {len(found.partitions)} partitions; the learner's snapshots need "
                               f"exactly {partitions}, one per shard (delete the topic: it is created again, and "
                               f"the shards replay their log once)")

    def read(self, partition: int) -> list[Record]:
        where = (self.name, partition)
        low, high = watermarks(self._admin, [where], timeout_s=30)[where]
        records: list[Record] = []

        def keep(message) -> None:  # noqa: ANN001 - a confluent_kafka Message
            records.append(Record(message.key() or b"", message.value(), message.timestamp()[1] / 1000.0))

        if read_ranges(self._settings, {where: (low, high)}, keep, deadline_s=READ_DEADLINE_S):
            raise TimeoutError(f"{self.name} [{partition}] not read to its end within {READ_DEADLINE_S:.0f} s")
        return records

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            self._publisher.produce_raw(self.name, key, value, [], partition=partition)
        self._publisher.flush(WRITE_TIMEOUT_S)  # TransientError when any failed


def shard_stores(records: SnapshotLog, version: str, interval_s: float, log_id: str) -> Callable[[int], SnapshotStore]:
    """The store of each shard's snapshots, by partition; `log_id`: Kafka's id of the log, written
    in each snapshot's header."""
    def store(partition: int) -> SnapshotStore:
        return SnapshotStore(records, version, interval_s=interval_s, partition=partition, log_id=log_id)
    return store
