"""Kafka plumbing shared by every service: topic creation, the protobuf codec, the publisher and the
consumer loop with dead letters.

Delivery is at-least-once. The consumer reads a small batch, hands each event to a pure handler,
publishes what the handlers return, waits for the broker to acknowledge those writes and only then
commits the batch's offsets. A message that cannot be decoded or that a handler rejects goes to the
topic's dead-letter twin with the reason and origin in headers; a transient fault is retried with
backoff and, if it persists, stops the consumer without committing so that nothing is lost. A
dead-letter budget stops the consumer when most messages fail, as after a bad deploy, instead of
dead-lettering the whole topic.

Redelivered events (a sender's retry, a batch handled again after a crash) are skipped by event
id: a committing consumer group writes the ids it handled to its own `<group>.handled-ids` topic
and every consumer of the group reads back the last `SUPPORTFLOW_DEDUPE_TTL_S` of them when it is
given partitions.
"""

from __future__ import annotations

import collections
import functools
import logging
import operator
import os
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import tenacity
from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message as KafkaMessage, Producer, TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, OffsetSpec
from google.protobuf.message import DecodeError, Message

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.observability import (
    CONSUMER_LAG,
    EVENT_PROCESSING_SECONDS,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_PRODUCED,
    HANDLED_IDS_MALFORMED,
    Health,
    Stopwatch,
    ticket_context,
)
from supportflow.settings import Settings
from supportflow.topics import Topic, all_physical_names, handled_ids_in

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-protobuf"

# Header names, in one place.
H_CONTENT_TYPE = "content-type"
H_MESSAGE_TYPE = "sf-message-type"
H_SCHEMA_VERSION = "sf-schema-version"
H_EVENT_ID = "sf-event-id"
H_TRACEPARENT = "traceparent"
H_DLQ_REASON = "sf-dlq-reason"
H_DLQ_ERROR = "sf-dlq-error"
H_DLQ_TOPIC = "sf-dlq-origin-topic"
H_DLQ_PARTITION = "sf-dlq-origin-partition"
H_DLQ_OFFSET = "sf-dlq-origin-offset"
H_DLQ_SERVICE = "sf-dlq-service"
H_SOURCE_TOPIC = "sf-source-topic"  # on a log topic (Forward): the topic the record was first published on


class InvalidEvent(Exception):
    """The event can never be processed (bad shape, missing fields): dead-letter it and move on."""


class TransientError(Exception):
    """A dependency failed in a way that may pass (timeout, unavailable): retry, then stop."""


class DeadLetterBudgetExceeded(RuntimeError):
    """Too many messages in a row (or too large a share) failed; something is wrong with this
    consumer, not with the messages, so it stops rather than dead-letter everything."""


def kafka_config(settings: Settings) -> dict[str, str]:
    """librdkafka settings for connecting, including TLS and SASL when configured."""
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username,
            "sasl.password": settings.kafka_sasl_password,
        }
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every registered topic and its dead-letter twin if missing; returns those created."""
    admin = AdminClient(kafka_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [name for name in all_physical_names(settings.topic_prefix) if name not in existing]
    if not wanted:
        return []
    fixed = {name: topic.partitions for topic in Topic if topic.partitions
             for name in (topic.name_in(settings.topic_prefix), topic.dead_letter_in(settings.topic_prefix))}
    create_topics(admin, [NewTopic(name, fixed.get(name, settings.topic_partitions), settings.topic_replication)
                          for name in wanted], timeout_s)
    return wanted


def create_topics(admin: AdminClient, topics: Sequence[NewTopic], timeout_s: float = 30.0) -> list[str]:
    """Create `topics`, leaving as it is one that another client created meanwhile; returns the
    names this call created. Raises KafkaException for any other failure."""
    if not topics:
        return []
    created = []
    for name, future in admin.create_topics(list(topics), request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def delete_namespace_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Delete the topics of a prefixed namespace (the registered ones, their dead-letter twins and
    any other topic named under the prefix): a test's, a benchmark's. Refuses the unprefixed namespace, which is a deployment's."""
    if not settings.topic_prefix:
        raise ValueError("refusing to delete the topics of the unprefixed (deployment) namespace")
    admin = AdminClient(kafka_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    # Every topic of the namespace, the registry's and those a service derives from its prefix
    # (the escalator's faust changelogs, the consumer groups' handled-ids topics, the learner's snapshots).
    doomed = sorted(set(all_physical_names(settings.topic_prefix)) & existing
                    | {name for name in existing if name.startswith(settings.topic_prefix)})
    if doomed:
        for future in admin.delete_topics(doomed, request_timeout=timeout_s).values():
            future.result(timeout=timeout_s)
    return doomed


def new_meta(tenant_id: str, producer: str) -> ev.EventMeta:
    meta = ev.EventMeta(
        event_id=uuid.uuid4().hex, tenant_id=tenant_id, schema_version=SCHEMA_VERSION, producer=producer
    )
    meta.occurred_at.GetCurrentTime()
    return meta


def ticket_with_tenant(ticket: tk.Ticket, meta: ev.EventMeta) -> tk.Ticket:
    """A copy of an event's ticket with its tenant set: the ticket's own, else the event's.
    Neither is an InvalidEvent: a ticket must never be handled under a guessed tenant."""
    tenant = ticket.tenant_id or meta.tenant_id
    if not tenant:
        raise InvalidEvent("ticket has no tenant (neither ticket.tenant_id nor meta.tenant_id)")
    copy = tk.Ticket()
    copy.CopyFrom(ticket)
    copy.tenant_id = tenant
    return copy


def new_traceparent(parent: str | None = None) -> str:
    """A W3C traceparent: keep the trace id of `parent` if there is one, with a new span id."""
    trace_id = parent.split("-")[1] if parent and parent.count("-") == 3 else secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def derived_event_id(source_event_id: str, topic: Topic, index: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"supportflow:{source_event_id}:{topic.base_name}:{index}").hex


@dataclass(frozen=True)
class Emit:
    """An event a handler wants published, keyed by ticket id (or its own entity id)."""

    topic: Topic
    key: str
    event: Message


@dataclass(frozen=True)
class Forward:
    """What a handler returns to pass the record it was given on to the log topic `to`, untouched
    (same key, value, headers and event id) plus a header naming the topic it came from, so that a
    loop reading the log (`ConsumerLoop(via=...)`) hands it to that topic's handler. `partition`:
    the partition of `to` to write it to (None: by its key)."""

    to: Topic
    partition: int | None = None


def encode(event: Message, traceparent: str | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_MESSAGE_TYPE, event.DESCRIPTOR.full_name.encode()),
        (H_SCHEMA_VERSION, str(SCHEMA_VERSION).encode()),
        (H_TRACEPARENT, (traceparent or new_traceparent()).encode()),
    ]
    meta = getattr(event, "meta", None)
    if meta is not None and meta.event_id:
        headers.append((H_EVENT_ID, meta.event_id.encode()))
    return event.SerializeToString(), headers


def header(message: KafkaMessage, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None


def read_ranges(
    settings: Settings,
    ranges: Mapping[tuple[str, int], tuple[int, int]],
    on_message: Callable[[KafkaMessage], None],
    *,
    deadline_s: float,
) -> set[tuple[str, int]]:
    """Hand every message of each (physical topic, partition) from its start offset up to, not
    including, its end offset to `on_message`, in partition order, without joining a group or
    committing; returns the ranges still unfinished when `deadline_s` ran out (an empty set when
    all were read). Raises KafkaException when Kafka cannot serve them.

    A range is read once its last offset came, or once the reader reached the partition's end: in a
    compacted topic the records at a range's end may be gone (a tombstone past its retention, in a
    segment no longer active), and no message with the last offset would ever come."""
    pending = {where: end for where, (start, end) in ranges.items() if start < end}
    if not pending:
        return set()
    reader = Consumer(kafka_config(settings) | {"group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                                "enable.partition.eof": True})
    try:
        reader.assign([TopicPartition(topic, partition, ranges[(topic, partition)][0]) for topic, partition in pending])
        deadline = time.monotonic() + deadline_s
        # consume() returns when it has 500 messages or its timeout ran out: a short timeout, so
        # the last few messages of a range are not waited on (0.5 s took 0.4 s of a snapshot's 0.5 s read).
        while pending and time.monotonic() < deadline:
            for message in reader.consume(num_messages=500, timeout=min(0.05, max(deadline - time.monotonic(), 0.01))):
                where = (message.topic(), message.partition())
                end = pending.get(where)
                if message.error() is not None:
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("reading a range: consumer error", extra={"fields": {"error": str(message.error())}})
                    elif end is not None and message.offset() >= end:
                        del pending[where]  # at the partition's end: nothing of the range is left to come
                        reader.pause([TopicPartition(*where)])
                    continue
                if end is None:
                    continue
                if message.offset() < end:
                    on_message(message)
                if message.offset() + 1 >= end:
                    del pending[where]
                    reader.pause([TopicPartition(*where)])  # what follows is not ours
    finally:
        reader.close()
    return set(pending)


def watermarks(admin: AdminClient, partitions: Iterable[tuple[str, int]], timeout_s: float) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) watermark of each (topic, partition), asked in two requests whatever their number.
    A consumer's own get_watermark_offsets asks one partition at a time, and each question waits
    behind the fetch the broker may hold open on that connection (fetch.wait.max.ms): over a few
    dozen partitions, seconds. Raises KafkaException (e.g. a partition without a leader yet)."""
    asked = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not asked:
        return {}
    ends: dict[tuple[str, int], list[int]] = {}
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        for tp, future in admin.list_offsets({tp: spec for tp in asked}, request_timeout=timeout_s).items():
            ends.setdefault((tp.topic, tp.partition), []).append(future.result().offset)
    return {key: (low, high) for key, (low, high) in ends.items()}


def topic_id(settings: Settings, name: str, timeout_s: float = 30.0) -> str:
    """Kafka's id of topic `name`: a topic deleted and created again under the same name has
    another. Raises KafkaException when Kafka cannot say (no such topic)."""
    admin = AdminClient(kafka_config(settings))
    return str(admin.describe_topics(TopicCollection([name]), request_timeout=timeout_s)[name].result().topic_id)


def group_has_committed(settings: Settings, group_id: str, topic_names: Sequence[str], timeout_s: float = 30.0) -> bool:
    """Whether consumer group `group_id` has committed an offset past the start of any partition of
    `topic_names`: it handled events before (a state built from them should exist)."""
    existing = AdminClient(kafka_config(settings)).list_topics(timeout=timeout_s).topics
    partitions = [TopicPartition(name, p) for name in topic_names if name in existing for p in existing[name].partitions]
    if not partitions:
        return False
    consumer = Consumer(kafka_config(settings) | {"group.id": group_id, "enable.auto.commit": False})
    try:
        return any(tp.offset > 0 for tp in consumer.committed(partitions, timeout=timeout_s))
    finally:
        consumer.close()


class LogEnd:
    """The end offsets of a log topic's partitions now, read on demand with a client of its own (a
    loop's consumer belongs to the loop's thread): a reader whose position in a partition has
    reached its end has seen everything written there before the question. The topic must have
    exactly `partitions` partitions: records are placed by a function of that count, and another
    count would put them (and the state built from them) elsewhere."""

    def __init__(self, settings: Settings, topic: Topic, partitions: int) -> None:
        self._name = topic.name_in(settings.topic_prefix)
        self._client = Consumer(kafka_config(settings) | {"group.id": f"log-end-{uuid.uuid4().hex}",
                                                          "enable.auto.commit": False})
        self._lock = threading.Lock()
        found = self._client.list_topics(self._name, timeout=30).topics.get(self._name)
        if found is not None and found.error is None and len(found.partitions) != partitions:
            self._client.close()
            raise RuntimeError(f"{self._name} has {len(found.partitions)} partitions; this log needs exactly "
                               f"{partitions} (recreate it with {partitions}, as `supportflow topics create` does)")

    def offset(self, partition: int, timeout_s: float) -> int:
        """The next offset to be written in `partition`; TransientError when Kafka does not answer in time."""
        return self.bounds(partition, timeout_s)[1]

    def bounds(self, partition: int, timeout_s: float) -> tuple[int, int]:
        """The first offset `partition` still holds and the next to be written; TransientError when
        Kafka does not answer in time."""
        try:
            with self._lock:
                return self._client.get_watermark_offsets(TopicPartition(self._name, partition), timeout=timeout_s,
                                                          cached=False)
        except KafkaException as exc:
            raise TransientError(f"end of {self._name} [{partition}] not read: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._client.close()


def dead_letter_headers(message: KafkaMessage, service: str, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The message's own headers plus why it was dead-lettered and where it came from. `message` is
    a confluent-kafka message or anything with its accessors (the faust escalator's adapter)."""
    return list(message.headers() or []) + [
        (H_DLQ_REASON, reason.encode()),
        (H_DLQ_ERROR, detail[:2000].encode()),
        (H_DLQ_TOPIC, message.topic().encode()),
        (H_DLQ_PARTITION, str(message.partition()).encode()),
        (H_DLQ_OFFSET, str(message.offset()).encode()),
        (H_DLQ_SERVICE, service.encode()),
    ]


def decode(topic: Topic, message: KafkaMessage) -> Message:
    """Parse a record into the topic's message type, or raise InvalidEvent saying why not."""
    declared = header(message, H_MESSAGE_TYPE)
    expected = topic.message_type.DESCRIPTOR.full_name
    if declared is not None and declared != expected:
        raise InvalidEvent(f"wrong message type {declared!r} on {topic.base_name} (expected {expected})")
    value = message.value()
    if not value:
        raise InvalidEvent("empty message value")
    event = topic.message_type()
    try:
        event.ParseFromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"not a valid {expected} protobuf: {exc}") from exc
    meta = getattr(event, "meta", None)
    if meta is not None and not meta.event_id:
        raise InvalidEvent("event has no meta.event_id")
    return event


class EventPublisher:
    """Publishes protobuf events with the standard headers; idempotent producer, acks=all."""

    def __init__(self, settings: Settings, service: str) -> None:
        self._settings = settings
        self._service = service
        self._producer = Producer(
            kafka_config(settings)
            | {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                "client.id": f"{service}-{os.getpid()}",
            }
        )
        self._failures: list[str] = []

    def _delivered(self, err: KafkaError | None, _msg: KafkaMessage) -> None:
        if err is not None:
            self._failures.append(str(err))

    def publish(self, topic: Topic, key: str, event: Message, traceparent: str | None = None) -> None:
        value, headers = encode(event, traceparent)
        self.produce_raw(topic.name_in(self._settings.topic_prefix), key.encode(), value, headers)
        EVENTS_PRODUCED.labels(self._service, topic.base_name).inc()

    def produce_raw(self, topic_name: str, key: bytes | None, value: bytes | None, headers: list,
                    partition: int | None = None) -> None:
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic_name, value=value, key=key, headers=headers, on_delivery=self._delivered,
                                       **where)
                break
            except BufferError:  # local queue full: let deliveries drain, then try again
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every pending write; raise TransientError if any could not be delivered."""
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise TransientError(f"{remaining} writes pending and {len(failures)} failed: {failures[:3]}")


Handler = Callable[[Message], Iterable[Emit | Forward]]


@dataclass
class DeadLetterBudget:
    """Stops a consumer when dead letters are no longer the exception (cf. Arroyo's DlqLimit)."""

    max_consecutive: int = 100
    max_ratio: float = 0.5
    window: int = 1000
    _recent: collections.deque = field(init=False)
    _dead_in_recent: int = field(default=0, init=False)
    _consecutive: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._recent = collections.deque(maxlen=self.window)

    def record(self, dead_lettered: bool) -> None:
        if len(self._recent) == self.window:
            self._dead_in_recent -= self._recent[0]  # about to fall out of the window
        self._recent.append(dead_lettered)
        self._dead_in_recent += dead_lettered
        self._consecutive = self._consecutive + 1 if dead_lettered else 0
        if self._consecutive > self.max_consecutive:
            raise DeadLetterBudgetExceeded(f"{self._consecutive} consecutive messages dead-lettered")
        if len(self._recent) >= self.window // 10:
            ratio = self._dead_in_recent / len(self._recent)
            if ratio > self.max_ratio:
                raise DeadLetterBudgetExceeded(f"{ratio:.0%} of the last {len(self._recent)} messages dead-lettered")


# A broadcast loop handles every event of its topics again at each start, all of them "now": the
# time to live alone would keep a whole replay in memory, so its memory is bounded by count too.
BROADCAST_MEMORY = 50_000
# The handled-ids topics keep records a little longer than the time to live: Kafka deletes whole
# segments, and a consumer reading at the edge must still find what it asks offsets_for_times for.
HANDLED_IDS_RETENTION_MARGIN_S = 3600.0
# How long an assignment may spend reading a handled-ids topic back before it goes on without
# the rest (a warning says so).
HANDLED_IDS_READ_DEADLINE_S = 60.0
POSITIONS_COMMIT_S = 1.0  # a partition owner's loop commits its positions at most this often
FIRST_RETRY_WAIT_S = 0.1  # after a transient failure; each later wait doubles, up to 5 s


def _follow_retention(admin: AdminClient, topic: str, retention_ms: int) -> None:
    """Set an existing handled-ids topic's retention to what the time to live set now asks for.
    Kafka keeps the retention a topic was created with: after the time to live was raised, the
    topic would still delete ids within the new window, and a repeat of one would be handled again.
    A failure (no right to alter configs, say) is logged with what it costs; it stops nothing."""
    try:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        current = int(next(iter(admin.describe_configs([resource]).values())).result(timeout=10)["retention.ms"].value)
        if current == retention_ms:
            return
        change = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", str(retention_ms), incremental_operation=AlterConfigOpType.SET)])
        next(iter(admin.incremental_alter_configs([change]).values())).result(timeout=30)
    except KafkaException as exc:
        log.warning("handled-ids retention not checked or not changed: a repeat older than the topic's "
                    "retention is handled again",
                    extra={"fields": {"topic": topic, "wanted_ms": retention_ms, "error": str(exc)}})
        return
    log.info("handled-ids retention set to follow the time to live",
             extra={"fields": {"topic": topic, "was_ms": current, "now_ms": retention_ms}})


class HandledIds:
    """Event ids handled lately, each with when it was handled (epoch seconds), to skip
    redeliveries cheaply. An id is remembered for `ttl_s` after it was handled; `capacity`, when
    given, also bounds how many are kept, the oldest going first.

    Expiry pops from the oldest end, so ids should be added in order of time (a read-back sorts
    them first); one added out of order is still forgotten on time, but freed a little later."""

    def __init__(self, ttl_s: float, capacity: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self._handled_at: collections.OrderedDict[str, float] = collections.OrderedDict()  # oldest first
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock

    def __len__(self) -> int:
        return len(self._handled_at)

    def __contains__(self, event_id: str) -> bool:
        handled_at = self._handled_at.get(event_id)
        return handled_at is not None and handled_at > self._clock() - self._ttl_s

    def add(self, event_id: str, handled_at: float | None = None) -> float:
        """Remember `event_id` as handled at `handled_at` (now by default); returns that time."""
        now = self._clock()
        at = now if handled_at is None else handled_at
        previous = self._handled_at.get(event_id)
        if previous is None or at > previous:
            self._handled_at[event_id] = at
            self._handled_at.move_to_end(event_id)
        cutoff = now - self._ttl_s
        while self._handled_at:
            oldest, oldest_at = next(iter(self._handled_at.items()))
            over = self._capacity is not None and len(self._handled_at) > self._capacity
            if oldest_at > cutoff and not over:
                break
            del self._handled_at[oldest]
        return at


def handled_id_record(message: KafkaMessage) -> tuple[str, float] | None:
    """The event id and handled time (epoch seconds) of a handled-ids record, or None if the
    record is malformed."""
    try:
        event_id = message.key().decode("utf-8")
        handled_at = int(message.value()) / 1000
    except (AttributeError, TypeError, ValueError, UnicodeDecodeError):
        return None
    return (event_id, handled_at) if event_id else None


def _log_transient_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    # The consumer loop's first attempt is made before tenacity's: its attempts are one further on.
    log.warning("transient failure, retrying", extra={"fields": {"error": str(error), "attempt": state.attempt_number + 1}})


def source_of(message: KafkaMessage, sources: Mapping[str, Topic]) -> Topic:
    """The topic a record read from a log (passed on by a `Forward`) was first published on, one
    of `sources` (by base name); InvalidEvent for any other."""
    source = sources.get(header(message, H_SOURCE_TOPIC) or "")
    if source is None:
        raise InvalidEvent(f"record on {message.topic()} from {header(message, H_SOURCE_TOPIC)!r}, "
                           f"not one of {sorted(sources)}")
    return source


class PartitionOwner(Protocol):
    """State kept per partition of a log, each partition owned by one loop of a shared group at a
    time (the learner's shards): `ConsumerLoop(owner=...)` asks it where each partition it is
    given starts, tells it which it loses, and hands each record to the handlers of the partition
    the record is on."""

    sources: tuple[Topic, ...]  # the topics the log's records come from (each has a handler)

    def assigned(self, partitions: list[int], committed: Mapping[int, int]) -> dict[int, int | None]:
        """Take these partitions; the offset each starts at (None: the beginning). `committed`: the
        group's committed position of each that has one, up to which its previous holders
        applied it and published what that caused."""

    def revoked(self, partitions: list[int]) -> None:
        """These partitions are another loop's now (or nobody's)."""

    def handlers(self, partition: int, offset: int) -> Mapping[Topic, Handler] | None:
        """The handlers of the record at `offset` of `partition`, by source topic; None for a
        partition not held."""


class ConsumerLoop:
    """Consumes `handlers`' topics in one consumer group and publishes what the handlers return.

    Run it in a thread with `run(stop)`. `broadcast=True` gives this process its own group id so it
    sees every message from the beginning (for state every replica needs, such as routing
    overrides, or state rebuilt by replay). `caught_up` is set once the loop has handled everything
    that was on its partitions when they were assigned.

    `via=<log topic>` reads that one topic instead, whose records were passed on to it by a
    `Forward` from other topics: each goes to the handler of the topic its source header names
    (the learner's replicated log).

    `workers > 1` handles the messages of a batch on that many threads, one key (ticket) per
    thread at a time so one ticket's events keep their order; the batch is still published and
    acknowledged before its offsets are committed. For handlers that wait on other services (the
    drafter waits on the retriever) or release the GIL (model inference); they must be thread-safe.

    Event ids already handled within `settings.dedupe_ttl_s` are skipped (a redelivery, a sender's
    retry published again). A committing loop writes the ids of each batch it handled to its
    group's handled-ids topic once the batch's outputs are acknowledged and before it commits, and
    reads them back for its partitions at each assignment, so a repeat that arrives after a
    restart or a rebalance is skipped too, however many messages came in between.
    `remember_handled=False` opts a loop out of the topic (it still skips repeats it saw itself).

    `owner=` (with `via=`) shares the log's partitions among the loops of `group` and keeps the
    state built from each partition with its `PartitionOwner`: a partition assigned starts where the
    owner says (its snapshot's position, or the beginning), not where the group committed, and its records
    go to the owner's handlers for that partition; partitions move between loops one at a time
    (cooperative rebalancing: a partition that stays is not revoked and replayed). The loop keeps no
    memory of handled ids of its own there: the owner's handlers skip repeats, deterministically.
    `client_id` names the loop's consumer in the group (the learner: its address for the panel).
    `after_batch` is called on the loop's thread after each batch, once its output is published,
    with the position after every message handled so far in each partition it holds. Such a loop
    commits those positions at most every POSITIONS_COMMIT_S (asynchronously): they say how far the
    holder of each partition has applied it and published what that caused (a warm standby follows
    no further, services/learner/standby.py), and they give the group's lag to the usual tools. A
    loop that lost its partitions cannot commit over the new holder's: Kafka refuses a commit from
    an older generation of the group. The owner is told each partition's committed position when
    it is given one; a partition the group never committed counts as published up to its end
    (`published_before`, code before these commits held it) or from its beginning.
    """

    def __init__(
        self,
        settings: Settings,
        service: str,
        handlers: dict[Topic, Handler],
        publisher: EventPublisher,
        health: Health,
        *,
        group: str | None = None,
        broadcast: bool = False,
        batch_size: int = 100,
        max_retries: int = 5,
        budget: DeadLetterBudget | None = None,
        workers: int = 1,
        after_batch: Callable[[dict[tuple[str, int], int]], None] | None = None,
        remember_handled: bool = True,
        via: Topic | None = None,
        owner: PartitionOwner | None = None,
        client_id: str | None = None,
        session_timeout_s: float = 10.0,
        published_before: bool = True,
    ) -> None:
        if owner is not None and (via is None or broadcast):
            raise ValueError("a loop with a partition owner reads one log (via=) in a shared group")
        self._settings = settings
        self._owner = owner
        self._published_before = published_before
        self._after_batch = after_batch
        self._positions: dict[tuple[str, int], int] = {}  # next offset to handle
        self._positions_committed: dict[tuple[str, int], int] = {}
        self._positions_committed_at = 0.0
        self._service = service
        self._handlers = handlers
        self._publisher = publisher
        self._health = health
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._budget = budget or DeadLetterBudget()
        self._handled = HandledIds(settings.dedupe_ttl_s, capacity=BROADCAST_MEMORY if broadcast else None)
        # (event id, input partition, handled at) of the current batch, written before its commit.
        self._batch_handled: list[tuple[str, int, float]] = []
        self._bookkeeping = threading.Lock()  # the handled ids and the dead-letter budget, across workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{service}-worker") if workers > 1 else None
        self._via = via
        self._sources = {topic.base_name: topic for topic in (owner.sources if owner is not None else handlers)}
        self._by_name = ({via.name_in(settings.topic_prefix): via} if via is not None
                         else {topic.name_in(settings.topic_prefix): topic for topic in handlers})
        group_id = group or f"{settings.topic_prefix}{service}"
        if broadcast:
            # Unique per loop (a restarted container keeps its hostname and pid), and never
            # committed: every start reads the topics from the beginning.
            group_id = f"{group_id}-{os.uname().nodename}-{uuid.uuid4().hex[:12]}"
        self._commits = not broadcast and owner is None
        self.group_id = group_id
        self.handled_ids_topic = handled_ids_in(settings.topic_prefix, group_id) if self._commits and remember_handled else None
        self._handled_ids_partitions = 0  # that topic's partition count, once it is known to exist
        self._handled_ids_read_to: dict[int, int] = {}  # per partition of it, the offset read up to
        self._consumer = Consumer(
            kafka_config(settings)
            | {
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "client.id": client_id or f"{service}-{os.getpid()}",
                "session.timeout.ms": int(session_timeout_s * 1000),
                "heartbeat.interval.ms": max(int(session_timeout_s * 100), 100),
            }
            | ({"partition.assignment.strategy": "cooperative-sticky", "on_commit": self._on_commit}
               if owner is not None else {})
        )
        self._assigned = threading.Event()
        self.caught_up = threading.Event()
        self.stopped = threading.Event()
        self._catch_up_targets: dict[tuple[str, int], int] | None = None  # high watermarks at assignment
        self._consumed_to: dict[tuple[str, int], int] = {}
        self._last_lag_report = 0.0
        self.error: BaseException | None = None

    @property
    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to handle per (physical topic, partition), as of the last batch."""
        return dict(self._positions)

    @functools.cached_property
    def _admin(self) -> AdminClient:
        """For watermarks: asked apart from the loop's consumer, whose connections hold fetches."""
        return AdminClient(kafka_config(self._settings))

    @property
    def assigned(self) -> threading.Event:
        """Set once the group has given this consumer its partitions."""
        return self._assigned

    def run(self, stop: threading.Event) -> None:
        if self._owner is not None:
            self._consumer.subscribe(list(self._by_name), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                     on_lost=self._on_lost)
        else:
            self._consumer.subscribe(list(self._by_name), on_assign=self._on_assign)
        try:
            while not stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._process_batch(batch)
                if self._owner is not None:
                    self._commit_positions()
                self._check_caught_up(batch)
                self._report_lag()
        except BaseException as exc:  # noqa: BLE001 - recorded, reported via health, then re-raised
            self.error = exc
            self._health.set_dead(f"consumer stopped: {exc}")
            log.exception("consumer stopped without committing its current batch")
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._consumer.close()
            self.stopped.set()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._owner is not None:
            starts = self._owner.assigned([tp.partition for tp in partitions],
                                          self._committed(consumer, partitions)) if partitions else {}
            for tp in partitions:
                start = starts.get(tp.partition)
                tp.offset = OFFSET_BEGINNING if start is None else start
                self._positions.pop((tp.topic, tp.partition), None)
                if start is not None:
                    self._positions[(tp.topic, tp.partition)] = start
            consumer.incremental_assign(partitions)
        elif self.handled_ids_topic is not None and partitions:
            self._recall_handled(consumer, partitions)
        self._assigned.set()

    def _committed(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """The group's committed position of each of `partitions`: up to where its holders before
        applied it and published what that caused. A partition the group never committed counts
        as published up to its end now when `published_before` (code before these commits held
        it), else from its beginning (a deployment's first start: nothing was published); that
        position is committed at once, so the next holder knows what this one starts from.
        Partitions Kafka cannot say anything about now are left out (logged)."""
        try:
            found = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=10)
        except KafkaException as exc:
            log.warning("committed positions not read", extra={"fields": {"error": str(exc)}})
            return {}
        committed = {tp.partition: tp.offset for tp in found if tp.offset >= 0}
        fresh = [(tp.topic, tp.partition) for tp in partitions if tp.partition not in committed]
        if not fresh:
            return committed
        try:
            marks = watermarks(self._admin, fresh, timeout_s=10)
            since = {key: high if self._published_before else low for key, (low, high) in marks.items()}
            consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                     for (topic, partition), offset in since.items()], asynchronous=False)
        except KafkaException as exc:
            log.warning("first positions not committed", extra={"fields": {
                "partitions": sorted(partition for _, partition in fresh), "error": str(exc)}})
            return committed
        self._positions_committed |= since
        return committed | {partition: offset for (_, partition), offset in since.items()}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A partition owner's partitions that go to another loop: their positions committed first."""
        if partitions:
            self._commit_positions(given_up=partitions)
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A partition owner's partitions that went to another loop (the session lost: no commit)."""
        if not partitions:
            return
        self._owner.revoked([tp.partition for tp in partitions])
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)
            self._positions_committed.pop((tp.topic, tp.partition), None)
        consumer.incremental_unassign(partitions)
        log.info("log partitions given up", extra={"fields": {"partitions": sorted(tp.partition for tp in partitions)}})

    def _ensure_handled_ids_topic(self) -> tuple[int, bool]:
        """Create the group's handled-ids topic if it is missing, with as many partitions as the
        largest input topic (ids of input partition p go to partition p % n); returns its
        partition count and whether it was created just now. Raises KafkaException when Kafka
        cannot say or create it."""
        if self._handled_ids_partitions:
            return self._handled_ids_partitions, False
        name = self.handled_ids_topic
        admin = AdminClient(kafka_config(self._settings))
        topics = admin.list_topics(timeout=10).topics
        retention_ms = int((self._settings.dedupe_ttl_s + HANDLED_IDS_RETENTION_MARGIN_S) * 1000)
        if name not in topics or not topics[name].partitions:
            inputs = [len(topics[t].partitions) for t in self._by_name if t in topics]
            new = NewTopic(name, max(inputs, default=self._settings.topic_partitions), self._settings.topic_replication,
                           config={"cleanup.policy": "delete", "retention.ms": str(retention_ms)})
            if create_topics(admin, [new]):
                log.info("handled-ids topic created", extra={"fields": {"topic": name, "partitions": new.num_partitions}})
                self._handled_ids_partitions = new.num_partitions
                return self._handled_ids_partitions, True
        for _ in range(20):  # another consumer of the group may have created it a moment ago
            topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
            if topic is not None and topic.partitions:
                _follow_retention(admin, name, retention_ms)
                self._handled_ids_partitions = len(topic.partitions)
                return self._handled_ids_partitions, False
            time.sleep(0.5)
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"{name} has no partitions yet"))

    def _recall_handled(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Read back the event ids the group handled within the time to live from the handled-ids
        partitions that match the assigned ones (from where this loop read up to before, if that
        is later), so a repeat that arrives after a restart or a rebalance is skipped too. A
        failure costs the memory, not the consumer; a malformed record is skipped and counted."""
        name = self.handled_ids_topic
        watch = Stopwatch()
        recalled: list[tuple[str, float]] = []
        malformed: list[int] = []

        def recall(message: KafkaMessage) -> None:
            record = handled_id_record(message)
            if record is None:
                malformed.append(message.offset())
            else:
                recalled.append(record)

        try:
            count, created = self._ensure_handled_ids_topic()
            if created:
                return  # nothing to read yet
            wanted = sorted({tp.partition % count for tp in partitions})
            since_ms = int((time.time() - self._settings.dedupe_ttl_s) * 1000)
            ranges = {}
            marks = watermarks(self._admin, [(name, p) for p in wanted], timeout_s=10)
            for tp in consumer.offsets_for_times([TopicPartition(name, p, since_ms) for p in wanted], timeout=10):
                low, high = marks[(name, tp.partition)]
                start = tp.offset if tp.offset >= 0 else high  # negative: nothing that recent
                ranges[(name, tp.partition)] = (max(start, low, self._handled_ids_read_to.get(tp.partition, 0)), high)
            unfinished = read_ranges(self._settings, ranges, recall, deadline_s=HANDLED_IDS_READ_DEADLINE_S)
        except KafkaException as exc:
            log.warning("handled event ids not read back", extra={"fields": {"topic": name, "error": str(exc)}})
            return
        recalled.sort(key=operator.itemgetter(1))
        with self._bookkeeping:
            for event_id, handled_at in recalled:
                self._handled.add(event_id, handled_at)
        for (_, partition), (_, end) in ranges.items():
            if (name, partition) not in unfinished:
                self._handled_ids_read_to[partition] = end
        if malformed:
            HANDLED_IDS_MALFORMED.labels(self._service).inc(len(malformed))
            log.warning("malformed handled-ids records skipped",
                        extra={"fields": {"topic": name, "records": len(malformed), "first_offset": malformed[0]}})
        if unfinished:
            log.warning("handled event ids only partly read back: the deadline ran out",
                        extra={"fields": {"topic": name, "partitions": sorted(p for _, p in unfinished)}})
        log.info("handled event ids read back",
                 extra={"fields": {"topic": name, "event_ids": len(recalled), "seconds": round(watch.elapsed, 3)}})

    def _write_handled(self) -> None:
        """Write the ids of the batch's handled events to the group's handled-ids topic and wait
        for them: called once the batch's outputs are acknowledged, before its offsets are
        committed. An id written whose offset is then not committed is harmless: its outputs are
        out, and its redelivery is skipped as the repeat it is."""
        with self._bookkeeping:
            handled, self._batch_handled = self._batch_handled, []
        if not handled:
            return
        count, _ = self._ensure_handled_ids_topic()
        for event_id, partition, handled_at in handled:
            self._publisher.produce_raw(self.handled_ids_topic, event_id.encode(), str(int(handled_at * 1000)).encode(),
                                        [], partition=partition % count)
        self._publisher.flush()

    def _commit_positions(self, given_up: list[TopicPartition] | None = None) -> None:
        """A partition owner's loop: commit the positions that moved, at most every
        POSITIONS_COMMIT_S and asynchronously (one Kafka refuses, the group's generation moved on
        in a rebalance, is made again the next round: `_on_commit`); or, for partitions being
        given up, at once and waited for, so that their next holder knows exactly what was
        published."""
        now = time.monotonic()
        if given_up is None and now - self._positions_committed_at < POSITIONS_COMMIT_S:
            return
        keys = self._positions if given_up is None else [(tp.topic, tp.partition) for tp in given_up]
        moved = {key: self._positions[key] for key in keys
                 if key in self._positions and self._positions_committed.get(key) != self._positions[key]}
        if not moved:
            return
        if given_up is None:
            self._positions_committed_at = now
        try:
            self._consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                           for (topic, partition), offset in moved.items()],
                                  asynchronous=given_up is None)
        except KafkaException as exc:  # no coordinator for a moment, or the session lost
            log.info("positions not committed", extra={"fields": {"error": str(exc)}})
            return
        self._positions_committed.update(moved)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """A partition owner's commit that failed (its generation moved on in a rebalance) is made
        again with the next positions: called in the loop's poll, on its thread."""
        for tp in partitions:
            if error is not None or tp.error is not None:
                self._positions_committed.pop((tp.topic, tp.partition), None)

    def _next_batch(self) -> list[KafkaMessage]:
        first = self._consumer.poll(0.2)
        if first is None:
            return []
        batch = [first]
        # Take whatever else is already here, without waiting: low latency, cheap commits.
        batch += self._consumer.consume(num_messages=self._batch_size - 1, timeout=0)
        return batch

    def _process_batch(self, batch: Sequence[KafkaMessage]) -> None:
        messages = []
        for message in batch:
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                # Informational: the client recovers by itself (a topic whose metadata has not
                # propagated yet right after it was created, a broker connection that dropped).
                log.warning("consumer error, continuing", extra={"fields": {"error": str(error)}})
        if not messages:
            return
        if self._pool is None or len(messages) < 2:
            self._process_in_order(messages)
        else:
            by_key: dict[bytes | None, list[KafkaMessage]] = collections.defaultdict(list)
            for message in messages:
                by_key[message.key()].append(message)
            for done in [self._pool.submit(self._process_in_order, same_key) for same_key in by_key.values()]:
                done.result()  # re-raises a worker's failure: the batch is not committed
        self._publisher.flush()
        if self.handled_ids_topic is not None:
            self._write_handled()
        if self._commits:
            self._consumer.commit(asynchronous=False)
        for message in messages:
            if self._owner is None or self._owner.handlers(message.partition(), message.offset()) is not None:
                self._positions[(message.topic(), message.partition())] = message.offset() + 1
        if self._after_batch is not None:
            self._after_batch(dict(self._positions))

    def _process_in_order(self, messages: Sequence[KafkaMessage]) -> None:
        for message in messages:
            self._process_with_retries(message)

    def _process_with_retries(self, message: KafkaMessage) -> None:
        """A transient failure (a peer down, a store unavailable) is retried after 0.1 s, 0.2 s, ...
        at most 5 s apart, `max_retries` times; then it propagates and the batch is not committed.
        The first attempt is a plain call, and tenacity takes over only once it failed: running every
        message through its retry state took a third of the learner's apply loop's time per event."""
        try:
            self._process(message)
            return
        except TransientError as exc:
            if self._max_retries < 1:
                raise
            log.warning("transient failure, retrying", extra={"fields": {"error": str(exc), "attempt": 1}})
        time.sleep(FIRST_RETRY_WAIT_S)
        tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_attempt(self._max_retries),
            wait=tenacity.wait_exponential(multiplier=2 * FIRST_RETRY_WAIT_S, max=5.0),
            before_sleep=_log_transient_retry,
            reraise=True,
        )(self._process, message)


    def _process(self, message: KafkaMessage) -> None:
        topic = self._by_name[message.topic()]
        handlers = self._handlers
        if self._owner is not None:
            handlers = self._owner.handlers(message.partition(), message.offset())
            if handlers is None:  # fetched before its partition went to another loop, which handles it
                return
        EVENTS_CONSUMED.labels(self._service, topic.base_name).inc()
        watch = Stopwatch()
        key = (message.key() or b"").decode("utf-8", "replace")
        with ticket_context(key):
            try:
                source = source_of(message, self._sources) if self._via is not None else topic
                event = decode(source, message)
                if self._owner is None:
                    with self._bookkeeping:
                        duplicate = event.meta.event_id in self._handled
                    if duplicate:
                        EVENTS_DUPLICATE.labels(self._service, topic.base_name).inc()
                        return
                emits = list(handlers[source](event))
            except InvalidEvent as exc:
                self._dead_letter(topic, message, "invalid_event", str(exc))
                return
            except TransientError:
                raise
            except Exception as exc:  # a handler bug: park the message, keep going within budget
                log.exception("handler failed")
                self._dead_letter(topic, message, "handler_error", f"{type(exc).__name__}: {exc}")
                return
            parent = header(message, H_TRACEPARENT)
            for index, emit in enumerate(emits):
                if isinstance(emit, Forward):
                    self._forward(message, topic, emit)
                    continue
                # Reprocessing the same input yields the same output ids, so consumers downstream
                # can drop what an interrupted batch had already published.
                emit.event.meta.event_id = derived_event_id(event.meta.event_id, emit.topic, index)
                self._publisher.publish(emit.topic, emit.key, emit.event, new_traceparent(parent))
            if self._owner is None:
                with self._bookkeeping:
                    handled_at = self._handled.add(event.meta.event_id)
                    if self.handled_ids_topic is not None:
                        self._batch_handled.append((event.meta.event_id, message.partition(), handled_at))
        with self._bookkeeping:
            self._budget.record(False)
        EVENT_PROCESSING_SECONDS.labels(self._service, topic.base_name).observe(watch.elapsed)

    def _forward(self, message: KafkaMessage, source: Topic, forward: Forward) -> None:
        headers = [(name, value) for name, value in message.headers() or [] if name != H_SOURCE_TOPIC]
        self._publisher.produce_raw(forward.to.name_in(self._settings.topic_prefix), message.key(), message.value(),
                                    headers + [(H_SOURCE_TOPIC, source.base_name.encode())], partition=forward.partition)
        EVENTS_PRODUCED.labels(self._service, forward.to.base_name).inc()

    def _dead_letter(self, topic: Topic, message: KafkaMessage, reason: str, detail: str) -> None:
        headers = dead_letter_headers(message, self._service, reason, detail)
        self._publisher.produce_raw(
            topic.dead_letter_in(self._settings.topic_prefix), message.key(), message.value(), headers
        )
        EVENTS_DEAD_LETTERED.labels(self._service, topic.base_name, reason).inc()
        log.warning("dead-lettered", extra={"fields": {"reason": reason, "detail": detail[:500], "topic": topic.base_name}})
        with self._bookkeeping:
            self._budget.record(True)

    def _check_caught_up(self, batch: Sequence[KafkaMessage]) -> None:
        if self.caught_up.is_set():
            return
        for message in batch:
            if not message.error():
                self._consumed_to[(message.topic(), message.partition())] = message.offset() + 1
        if not self._assigned.is_set():
            return
        if self._catch_up_targets is None:
            try:
                marks = watermarks(self._admin, [(tp.topic, tp.partition) for tp in self._consumer.assignment()], 10)
                targets = {key: high for key, (low, high) in marks.items() if high > low}
            except KafkaException as exc:  # e.g. a new topic whose leader is not elected yet
                log.info("watermarks not available yet", extra={"fields": {"error": str(exc)}})
                return
            self._catch_up_targets = targets
        pending = [key for key, high in self._catch_up_targets.items() if self._consumed_to.get(key, -1) < high]
        if pending:  # a group with committed offsets may start at the end without reading anything
            asked = [TopicPartition(topic, partition) for topic, partition in pending]
            found = [tp for tp in self._consumer.position(asked) if tp.offset >= 0]
            unknown = [tp for tp in asked if (tp.topic, tp.partition) not in {(f.topic, f.partition) for f in found}]
            if unknown and self._commits:
                # Nothing fetched yet has no position: where the group committed is where it starts.
                try:
                    found += [tp for tp in self._consumer.committed(unknown, timeout=10) if tp.offset >= 0]
                except KafkaException as exc:
                    log.info("committed offsets not available yet", extra={"fields": {"error": str(exc)}})
            for tp in found:
                key = (tp.topic, tp.partition)
                self._consumed_to[key] = max(self._consumed_to.get(key, -1), tp.offset)
        if all(self._consumed_to.get(key, -1) >= high for key, high in self._catch_up_targets.items()):
            self.caught_up.set()
            log.info("caught up", extra={"fields": {"partitions": len(self._catch_up_targets)}})

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_report < 10:
            return
        self._last_lag_report = now
        try:
            for tp in self._consumer.assignment():
                low, high = self._consumer.get_watermark_offsets(tp, timeout=1, cached=True)
                position = self._consumer.position([tp])[0].offset
                lag = high - position if position >= 0 else high - low
                topic = self._by_name.get(tp.topic)
                if topic:
                    CONSUMER_LAG.labels(self._service, topic.base_name, str(tp.partition)).set(max(lag, 0))
        except KafkaException:
            log.debug("lag not available yet")
