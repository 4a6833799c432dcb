"""The consumer loop against the real broker: outputs, dead letters with origin, commits, retries."""

from __future__ import annotations

import threading
import time
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import (
    HANDLED_IDS_RETENTION_MARGIN_S,
    ConsumerLoop,
    Emit,
    EventPublisher,
    InvalidEvent,
    TransientError,
    encode,
    ensure_topics,
    header,
    kafka_config,
    new_meta,
    read_ranges,
    watermarks,
)
from supportflow.observability import Health
from supportflow.topics import Topic
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.infra


def ticket_event(ticket_id: str) -> ev.TicketReceived:
    return ev.TicketReceived(meta=new_meta("acme", "test"), ticket=tk.Ticket(ticket_id=ticket_id, body="card declined"))


def start_loop(settings, handler, group=None):
    publisher = EventPublisher(settings, "test")
    loop = ConsumerLoop(settings, "test", {Topic.TICKETS_RECEIVED: handler}, publisher, Health("test"), group=group)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    assert loop.assigned.wait(30), "consumer never got its partitions"
    return loop, stop, thread


def classify_echo(event: ev.TicketReceived):
    if event.ticket.body == "poison":
        raise InvalidEvent("body is poison")
    out = ev.TicketClassified(meta=new_meta("acme", "test"), ticket=event.ticket)
    return [Emit(Topic.TICKETS_CLASSIFIED, event.ticket.ticket_id, out)]


def test_malformed_messages_go_to_the_dead_letter_topic_with_reason_and_origin(settings):
    ensure_topics(settings)
    source = Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix)
    producer = Producer(kafka_config(settings))
    good_a, headers_a = encode(ticket_event("good-a"))
    poison = ticket_event("poison-1")
    poison.ticket.body = "poison"
    poison_value, poison_headers = encode(poison)
    wrong_value, wrong_headers = encode(ev.KbGapDetected(meta=new_meta("acme", "test"), query="q"))
    good_b, headers_b = encode(ticket_event("good-b"))
    for key, value, headers in [
        (b"good-a", good_a, headers_a),
        (b"garbage", b"\x08\x96\x01 this is not a ticket \xff", []),
        (b"poison-1", poison_value, poison_headers),
        (b"wrong-type", wrong_value, wrong_headers),
        (b"good-b", good_b, headers_b),
    ]:
        producer.produce(source, key=key, value=value, headers=headers)
    producer.flush(10)

    loop, stop, thread = start_loop(settings, classify_echo)
    try:
        outputs = read_all(settings, Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix), expected=2)
        dead = read_all(settings, Topic.TICKETS_RECEIVED.dead_letter_in(settings.topic_prefix), expected=3)
    finally:
        stop.set()
        thread.join(15)

    assert sorted(m.key() for m in outputs) == [b"good-a", b"good-b"]
    assert loop.error is None, "the consumer must keep going after bad messages"
    by_key = {m.key(): m for m in dead}
    assert set(by_key) == {b"garbage", b"poison-1", b"wrong-type"}
    assert "not a valid" in header(by_key[b"garbage"], "sf-dlq-error")
    assert header(by_key[b"poison-1"], "sf-dlq-error") == "body is poison"
    assert "wrong message type" in header(by_key[b"wrong-type"], "sf-dlq-error")
    for key, offset in [(b"garbage", "1"), (b"poison-1", "2"), (b"wrong-type", "3")]:
        record = by_key[key]
        assert header(record, "sf-dlq-origin-topic") == source
        assert header(record, "sf-dlq-origin-partition") == "0"
        assert header(record, "sf-dlq-origin-offset") == offset
        assert header(record, "sf-dlq-reason") == "invalid_event"
    assert by_key[b"poison-1"].value() == poison_value, "the original bytes are kept for replay"


def test_offsets_are_committed_only_after_outputs_and_nothing_is_reprocessed(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    for index in range(5):
        publisher.publish(Topic.TICKETS_RECEIVED, f"t-{index}", ticket_event(f"t-{index}"))
    publisher.flush()
    group = f"{settings.topic_prefix}grp"

    loop, stop, thread = start_loop(settings, classify_echo, group=group)
    outputs = read_all(settings, Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix), expected=5)
    stop.set()
    thread.join(15)
    assert len(outputs) == 5

    # A restarted consumer in the same group starts after the committed batch: no duplicates.
    seen = []
    loop, stop, thread = start_loop(settings, lambda e: seen.append(e) or [], group=group)
    publisher.publish(Topic.TICKETS_RECEIVED, "t-new", ticket_event("t-new"))
    publisher.flush()
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    thread.join(15)
    assert [e.ticket.ticket_id for e in seen] == ["t-new"]


def test_a_repeat_that_arrives_after_a_restart_is_still_skipped(settings):
    """A restarted consumer reads back the event ids its group had handled: a sender's retry of an
    event handled before the restart (the same event id, published again) is skipped."""
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    earlier = [ticket_event(f"r-{index}") for index in range(4)]
    for event in earlier:
        publisher.publish(Topic.TICKETS_RECEIVED, event.ticket.ticket_id, event)
    publisher.flush()
    group = f"{settings.topic_prefix}restarted"
    handled = []
    loop, stop, thread = start_loop(settings, lambda e: handled.append(e.meta.event_id) or [], group=group)
    assert loop.caught_up.wait(30)
    stop.set()
    thread.join(15)
    assert handled == [e.meta.event_id for e in earlier]

    retried, new = earlier[1], ticket_event("r-new")
    publisher.publish(Topic.TICKETS_RECEIVED, retried.ticket.ticket_id, retried)
    publisher.publish(Topic.TICKETS_RECEIVED, new.ticket.ticket_id, new)
    publisher.flush()
    loop, stop, thread = start_loop(settings, lambda e: handled.append(e.meta.event_id) or [], group=group)
    assert loop.caught_up.wait(30)
    stop.set()
    thread.join(15)
    assert handled[len(earlier):] == [new.meta.event_id]

    # Restarted with nothing new: it starts at its committed offsets, fetches nothing, and is
    # caught up all the same (what a replica waiting for its backlog waits on).
    loop, stop, thread = start_loop(settings, lambda e: handled.append(e.meta.event_id) or [], group=group)
    try:
        assert loop.caught_up.wait(30), "a group restarted at the end of its partitions never caught up"
    finally:
        stop.set()
        thread.join(15)
    assert handled[len(earlier):] == [new.meta.event_id]


def run_until_handled(settings, group, handled, *event_ids, timeout_s=60.0):
    """Run a loop of `group` that appends each event id it handles to `handled` until it has
    handled all of `event_ids` (the last of a partition is published after what it must see first)."""
    def done():
        return set(event_ids) <= set(handled)

    loop, stop, thread = start_loop(settings, lambda e: handled.append(e.meta.event_id) or [], group=group)
    deadline = time.monotonic() + timeout_s
    try:
        while not done() and time.monotonic() < deadline and loop.error is None:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)
    assert loop.error is None
    assert done(), "the loop never got to the last event"
    return loop


def test_a_repeat_after_more_than_5000_other_messages_is_skipped_and_one_older_than_the_ttl_is_handled(settings):
    """The group's handled-ids topic remembers by time, not by count: a sender's retry that comes
    after a restart and 6,000 other messages is skipped (the old read-back of the 5,000 messages
    before the committed offsets missed it), a malformed record in that topic is skipped and
    counted, and with a tiny time to live an id handled longer ago than that is handled again."""
    settings = settings.replace(topic_partitions=3)
    ensure_topics(settings)
    source = Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix)
    publisher = EventPublisher(settings, "test")
    group, handled = f"{settings.topic_prefix}dedupe", []

    def publish(*events, key="retried"):
        for event in events:
            publisher.publish(Topic.TICKETS_RECEIVED, key, event)
        publisher.flush()

    first = ticket_event("retried")
    publish(first)
    loop = run_until_handled(settings, group, handled, first.meta.event_id)
    assert handled == [first.meta.event_id]

    # 6,000 other messages pass through the group (another run of it), in bulk.
    producer = Producer(kafka_config(settings) | {"linger.ms": 20})
    others = [ticket_event(f"o-{index}") for index in range(6_000)]
    for event in others:
        value, headers = encode(event)
        producer.produce(source, key=event.ticket.ticket_id.encode(), value=value, headers=headers)
        producer.poll(0)
    producer.flush(30)
    run_until_handled(settings, group, handled, *[e.meta.event_id for e in others])
    assert sorted(handled[1:]) == sorted(e.meta.event_id for e in others)

    # The sender retries (a sentinel follows it on its partition); and someone wrote garbage into
    # the group's handled-ids topic.
    ids_topic = loop.handled_ids_topic
    producer.produce(ids_topic, key=None, value=b"not a handled id", partition=0)
    producer.flush(10)
    malformed_before = REGISTRY.get_sample_value("supportflow_handled_ids_malformed_total", {"service": "test"}) or 0
    fresh = ticket_event("fresh")
    publish(first, fresh)
    run_until_handled(settings, group, handled, fresh.meta.event_id)
    assert handled[6_001:] == [fresh.meta.event_id], "the retry after 6,000 other messages must be skipped"
    assert REGISTRY.get_sample_value("supportflow_handled_ids_malformed_total", {"service": "test"}) == malformed_before + 1

    admin = AdminClient(kafka_config(settings))
    assert len(admin.list_topics(topic=ids_topic, timeout=10).topics[ids_topic].partitions) == 3
    described = topic_config(settings, ids_topic)
    assert described["cleanup.policy"].value == "delete"
    assert int(described["retention.ms"].value) == int((settings.dedupe_ttl_s + HANDLED_IDS_RETENTION_MARGIN_S) * 1000)

    # A tiny time to live in another group: remembered within it, handled again after it.
    ttl_s = 12.0
    short = settings.replace(dedupe_ttl_s=ttl_s)
    short_group, seen = f"{settings.topic_prefix}short-ttl", []
    repeat = ticket_event("repeat")
    publish(repeat)
    run_until_handled(short, short_group, seen, *[e.meta.event_id for e in [first, *others, fresh, repeat]])
    handled_at, before = time.monotonic(), len(seen)
    sentinel = ticket_event("sentinel-1")
    publish(repeat, sentinel)
    run_until_handled(short, short_group, seen, sentinel.meta.event_id)
    assert time.monotonic() - handled_at < ttl_s - 1, "too slow to test the time to live"
    assert seen[before:] == [sentinel.meta.event_id], "within the time to live, the repeat is skipped"
    time.sleep(max(0.0, handled_at + ttl_s + 1 - time.monotonic()))
    sentinel = ticket_event("sentinel-2")
    publish(repeat, sentinel)
    run_until_handled(short, short_group, seen, sentinel.meta.event_id)
    assert seen[before + 1:] == [repeat.meta.event_id, sentinel.meta.event_id], \
        "older than the time to live, it is handled again"


def topic_config(settings, topic: str) -> dict:
    admin = AdminClient(kafka_config(settings))
    config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    return next(iter(config.values())).result(timeout=10)


def test_the_handled_ids_topic_keeps_ids_as_long_as_the_time_to_live_set_now(settings):
    """Kafka keeps the retention a topic was made with: the group's next start after the time to
    live was raised (or lowered) sets the handled-ids topic's retention to match, so the ids of the
    whole new window are still there to read back."""
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    group, handled = f"{settings.topic_prefix}retention", []

    def handle_one(settings_now, name: str) -> str:
        event = ticket_event(name)
        publisher.publish(Topic.TICKETS_RECEIVED, name, event)
        publisher.flush()
        loop = run_until_handled(settings_now, group, handled, event.meta.event_id)
        return loop.handled_ids_topic

    def retention_s(topic: str) -> float:
        return int(topic_config(settings, topic)["retention.ms"].value) / 1000 - HANDLED_IDS_RETENTION_MARGIN_S

    ids_topic = handle_one(settings.replace(dedupe_ttl_s=600.0), "made")
    assert retention_s(ids_topic) == 600.0
    handle_one(settings.replace(dedupe_ttl_s=7 * 86_400.0), "raised")
    assert retention_s(ids_topic) == 7 * 86_400.0
    handle_one(settings.replace(dedupe_ttl_s=3_600.0), "lowered")
    assert retention_s(ids_topic) == 3_600.0


def test_transient_failures_are_retried_then_processed_once(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_RECEIVED, "flaky", ticket_event("flaky"))
    publisher.flush()
    attempts = []

    def flaky(event):
        attempts.append(event.ticket.ticket_id)
        if len(attempts) < 3:
            raise TransientError("retriever unavailable")
        return classify_echo(event)

    loop, stop, thread = start_loop(settings, flaky)
    outputs = read_all(settings, Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix), expected=1)
    stop.set()
    thread.join(15)
    assert attempts == ["flaky", "flaky", "flaky"]
    assert [m.key() for m in outputs] == [b"flaky"]
    assert not read_all(settings, Topic.TICKETS_RECEIVED.dead_letter_in(settings.topic_prefix), expected=0, timeout_s=1)


def test_workers_handle_tickets_concurrently_keep_each_tickets_order_and_lose_nothing(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    for step in range(3):  # three events per ticket, published in order
        for ticket in range(8):
            event = ticket_event(f"t-{ticket}")
            event.ticket.body = f"step {step}"
            publisher.publish(Topic.TICKETS_RECEIVED, f"t-{ticket}", event)
    publisher.flush()
    lock, active, most_active, order = threading.Lock(), [0], [0], {}

    def slow_echo(event):
        with lock:
            active[0] += 1
            most_active[0] = max(most_active[0], active[0])
            order.setdefault(event.ticket.ticket_id, []).append(event.ticket.body)
        time.sleep(0.2)  # waiting on another service
        with lock:
            active[0] -= 1
        return classify_echo(event)

    loop = ConsumerLoop(settings, "test", {Topic.TICKETS_RECEIVED: slow_echo}, EventPublisher(settings, "test"),
                        Health("test"), workers=4)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    outputs = read_all(settings, Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix), expected=24, timeout_s=60)
    stop.set()
    thread.join(15)

    assert loop.error is None and len(outputs) == 24
    assert most_active[0] > 1  # tickets were handled at the same time
    assert order == {f"t-{t}": ["step 0", "step 1", "step 2"] for t in range(8)}


def test_a_consumer_started_before_its_topic_exists_waits_for_it(settings):
    publisher = EventPublisher(settings, "test")
    loop = ConsumerLoop(settings, "test", {Topic.TICKETS_RECEIVED: classify_echo}, publisher, Health("test"))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(3)  # the broker answers "unknown topic" meanwhile
    assert loop.error is None and thread.is_alive()

    ensure_topics(settings)
    publisher.publish(Topic.TICKETS_RECEIVED, "late", ticket_event("late"))
    publisher.flush()
    outputs = read_all(settings, Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix), expected=1, timeout_s=60)
    stop.set()
    thread.join(15)
    assert loop.error is None and [m.key() for m in outputs] == [b"late"]


def test_a_range_whose_last_offsets_hold_no_record_is_read_to_its_end_without_waiting(settings):
    """A compacted topic can lose the records at a partition's end (a tombstone past its
    retention); a transaction's commit marker, never delivered to a consumer, leaves the same
    shape: the high watermark one past the last record. The range is read once the reader reaches
    the partition's end, not at its deadline."""
    name = f"{settings.topic_prefix}ranges"
    admin = AdminClient(kafka_config(settings))
    admin.create_topics([NewTopic(name, 1, settings.topic_replication)])[name].result(30)
    producer = Producer(kafka_config(settings) | {"transactional.id": f"{name}-writer"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(name, f"v{i}".encode(), f"k{i}".encode())
    producer.commit_transaction(30)
    # The commit returns once the transaction is prepared; the broker writes its marker after.
    deadline = time.monotonic() + 30
    while (bounds := watermarks(admin, [(name, 0)], timeout_s=30)[(name, 0)]) != (0, 4):  # 3 records, the marker
        assert time.monotonic() < deadline, f"watermarks {bounds}"
        time.sleep(0.05)
    low, high = bounds
    read: list[bytes] = []
    started = time.monotonic()
    unfinished = read_ranges(settings, {(name, 0): (low, high)}, lambda m: read.append(m.value()), deadline_s=30)
    assert (unfinished, read) == (set(), [b"v0", b"v1", b"v2"])
    assert time.monotonic() - started < 10  # not the deadline's 30 s
