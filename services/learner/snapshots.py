"""Learner snapshots: a shard's state (shards.py) with the position in its partition of the log
(learner.events) it was applied up to, so that taking the shard again reads only what came after
instead of every retained event.

Without snapshots a replica builds each shard it takes by replaying the shard's partition from the
beginning (main.py). With a snapshot folder (`SUPPORTFLOW_LEARNER_SNAPSHOT_DIR`), the apply loop's
thread writes a shard's snapshot between two batches every `SUPPORTFLOW_LEARNER_SNAPSHOT_INTERVAL_S`
(when it applied anything since the last), when the shard goes to another replica and once more at
shutdown, one file per shard (`learner-<partition>.snapshot`). It is taken under the learner's
lock, after the batch's output was published: the state (with the ids of the events applied last,
applied_ids.py) and the position are one consistent cut. A shard restored starts at that position
(overrides are on the log too, and the guardrails' state is in the snapshot), and overrides the
tail of the replay would issue are held and compared with the topic as in a full replay. Replicas
take their snapshots each in a folder of its own; a shard's state depends only on its partition,
so any replica's snapshot of it would do for another.

The file is written under a temporary name, flushed to disk and renamed over the previous one, so a
crash while writing leaves the previous snapshot. Its first line is a JSON header; a snapshot of
another format, learner code, learner configuration or topic namespace (the header's `version`:
a digest of services/learner/*.py, the configuration file and the topic prefix) is not loaded, and the learner replays from the
beginning as it would without one. A snapshot whose positions Kafka no longer holds (retention
deleted them) restarts those partitions at their earliest offset.

The state itself is JSON (state.py: numbers, strings, lists and the protobuf messages the learner
holds, as wire bytes under their type's name): loading it reads data and runs nothing, and a state
the learner cannot read is logged and replayed from the beginning like a missing snapshot. The
folder still belongs to the learner alone (in Kubernetes, a volume mounted into its pod only): a
changed snapshot would change the panel's figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from services.learner import metrics

log = logging.getLogger(__name__)

FORMAT = "supportflow-learner-snapshot/3"  # 3: one per shard (partition of learner.events)


def file_name(partition: int) -> str:
    return f"learner-{partition}.snapshot"

Positions = Mapping[tuple[str, int], int]  # (physical topic, partition) -> next offset to read


def learner_version(config_text: str, topic_prefix: str) -> str:
    """A digest of the learner's code, its configuration and the deployment's topic namespace
    (positions name physical topics): a snapshot is loaded only by the same."""
    digest = hashlib.sha256(FORMAT.encode())
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(config_text.encode() + b"\0" + topic_prefix.encode())
    return digest.hexdigest()[:20]


def shard_stores(directory: Path, version: str, interval_s: float) -> Callable[[int], "SnapshotStore"]:
    """The store of each shard's snapshots in `directory`, by partition."""
    def store(partition: int) -> SnapshotStore:
        return SnapshotStore(directory, version, interval_s=interval_s, partition=partition)
    return store


@dataclass(frozen=True)
class Snapshot:
    state: bytes
    positions: dict[tuple[str, int], int]
    taken_at: float  # Unix time
    version: str


class SnapshotStore:
    def __init__(self, directory: Path, version: str, *, interval_s: float, partition: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(directory) / file_name(partition)
        self._version = version
        self._interval_s = interval_s
        self._clock = clock
        self._last_save = clock()
        self._saved_positions: dict[tuple[str, int], int] | None = None

    def load(self) -> Snapshot | None:
        """The snapshot in the folder, or None (and why, in the log) when there is none to use."""
        fields = {"path": str(self.path)}
        try:
            with self.path.open("rb") as handle:
                header = json.loads(handle.readline())
                state = handle.read()
        except FileNotFoundError:
            log.info("no learner snapshot: replaying from the beginning", extra={"fields": fields})
            return None
        except (OSError, ValueError) as exc:
            log.warning("learner snapshot unreadable: replaying from the beginning",
                        extra={"fields": fields | {"error": str(exc)}})
            return None
        try:
            if header["format"] != FORMAT or header["version"] != self._version:
                log.warning("learner snapshot from other code or configuration: replaying from the beginning",
                            extra={"fields": fields | {"format": header["format"], "version": header["version"],
                                                       "expected": self._version}})
                return None
            if len(state) != header["state_bytes"] or hashlib.sha256(state).hexdigest() != header["state_sha256"]:
                log.warning("learner snapshot truncated or damaged: replaying from the beginning", extra={"fields": fields})
                return None
            positions = {(topic, int(partition)): int(offset) for topic, partition, offset in header["positions"]}
            snapshot = Snapshot(state=state, positions=positions, taken_at=float(header["taken_at"]),
                                version=header["version"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("learner snapshot header invalid: replaying from the beginning",
                        extra={"fields": fields | {"error": str(exc)}})
            return None
        self._saved_positions = dict(positions)
        log.info("learner snapshot found", extra={"fields": fields | {
            "age_s": round(time.time() - snapshot.taken_at, 1), "partitions": len(positions), "bytes": len(state)}})
        return snapshot

    def saved_position(self) -> dict[tuple[str, int], int] | None:
        """The positions in the snapshot's header, without reading its state; None without a
        snapshot, or one of another format or version (it would not be loaded)."""
        try:
            with self.path.open("rb") as handle:
                header = json.loads(handle.readline())
            if header["format"] != FORMAT or header["version"] != self._version:
                return None
            return {(topic, int(partition)): int(offset) for topic, partition, offset in header["positions"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def changed(self, positions: Positions) -> bool:
        """Whether the positions moved since the last save (or the snapshot loaded)."""
        return dict(positions) != self._saved_positions

    def due(self, positions: Positions) -> bool:
        """Whether to save now: the interval has passed and the positions moved."""
        return self._clock() - self._last_save >= self._interval_s and self.changed(positions)

    def try_save(self, state: Callable[[], bytes], positions: Positions) -> bool:
        """`save`, except that a failure (a full or read-only disk, anything) is logged and
        counted, not raised: the learner goes on, and tries again at the next interval."""
        try:
            self.save(state(), positions)
        except Exception as exc:  # noqa: BLE001 - a snapshot must never stop the learner
            self._last_save = self._clock()
            metrics.SNAPSHOTS.labels("failed").inc()
            log.error("learner snapshot not saved", extra={"fields": {"path": str(self.path), "error": str(exc)}})
            return False
        metrics.SNAPSHOTS.labels("saved").inc()
        return True

    def save(self, state: bytes, positions: Positions) -> None:
        header = {
            "format": FORMAT,
            "version": self._version,
            "taken_at": time.time(),
            "positions": sorted([topic, partition, offset] for (topic, partition), offset in positions.items()),
            "state_bytes": len(state),
            "state_sha256": hashlib.sha256(state).hexdigest(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(json.dumps(header).encode() + b"\n")
                handle.write(state)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._last_save = self._clock()
        self._saved_positions = dict(positions)
        log.info("learner snapshot saved", extra={"fields": {
            "path": str(self.path), "bytes": len(state), "seconds": round(time.monotonic() - started, 3)}})
