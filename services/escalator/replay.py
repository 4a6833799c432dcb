"""Rebuild the escalator's memory at start by re-reading recent events, emitting nothing.

Three replays:
- `replay_recent_classified`: the incident windows, from the `tickets.classified` events its
  consumer group has already processed. Only up to the committed offsets: everything before them
  was handled and its incident updates published, so counting it again silently is right. What
  comes after is not replayed here; the consumer loop handles it as usual (a batch that was handled
  but not committed before a crash is handled again, and may publish again: at-least-once, as
  everywhere in the pipeline). Bounded by `incidents.replay_s`: an incident stays open only while
  its tickets keep coming within `window_s` of each other, so the recent past is enough to carry
  one across a restart with its id (ids derive from the signature and the first ticket's time).
  One that has been open for longer than the bound is re-detected under a new id.
- `replay_recent_output` of `tickets.responded`: the tickets answered automatically, up to the
  topic's end when the replay starts (it is the escalator's own output). Bounded by
  `answered_memory_s`.
- `replay_recent_output` of `actions.recorded`: the action gate's daily counts and open
  proposals, likewise. Bounded by the gate's memory (two days, or the proposal lifetime if longer).

None ever fails the start: after its deadline, or when Kafka cannot answer, a replay logs a
warning and the memory is partly rebuilt (possibly not at all), as it was before replays existed.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import InvalidEvent, decode, kafka_config, read_ranges
from supportflow.settings import Settings
from supportflow.topics import Topic

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 120.0


def replay_recent_classified(
    settings: Settings,
    group_id: str,
    replay_s: float,
    count: Callable[[ev.TicketClassified], None],
    *,
    now: Callable[[], float] = time.time,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> int:
    """Pass every `tickets.classified` event received in the last `replay_s` seconds and already
    committed by `group_id` to `count`, in partition order; returns how many were passed."""
    return _replay(settings, Topic.TICKETS_CLASSIFIED, group_id, replay_s, count,
                   to_committed=True, now=now, deadline_s=deadline_s)


def replay_recent_output(
    settings: Settings,
    topic: Topic,
    group_id: str,
    replay_s: float,
    count: Callable,
    *,
    now: Callable[[], float] = time.time,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> int:
    """Pass every event of `topic`, one the escalator publishes itself (`tickets.responded`,
    `actions.recorded`), of the last `replay_s` seconds, up to the topic's end when the replay
    starts, to `count`, in partition order; returns how many were passed."""
    return _replay(settings, topic, group_id, replay_s, count, to_committed=False, now=now, deadline_s=deadline_s)


def _replay(
    settings: Settings,
    topic_id: Topic,
    group_id: str,
    replay_s: float,
    count: Callable,
    *,
    to_committed: bool,
    now: Callable[[], float],
    deadline_s: float,
) -> int:
    if replay_s <= 0:
        return 0
    topic = topic_id.name_in(settings.topic_prefix)
    # The group id only reads the group's committed offsets: with assign() and no commit, this
    # consumer never joins the group or moves its offsets.
    consumer = Consumer(kafka_config(settings) | {"group.id": group_id, "enable.auto.commit": False})
    started = time.monotonic()

    def remaining() -> float:
        return deadline_s - (time.monotonic() - started)

    counted = 0
    fields = {"topic": topic}

    def count_event(message) -> None:  # type: ignore[no-untyped-def]
        nonlocal counted
        try:
            count(decode(topic_id, message))
            counted += 1
        except InvalidEvent:
            pass  # the consumer loop dead-lettered it when it first came, or never emitted it

    try:
        try:
            ranges = _ranges(consumer, topic, int((now() - replay_s) * 1000), remaining, to_committed=to_committed)
        finally:
            consumer.close()
        left = read_ranges(settings, {(topic, partition): span for partition, span in ranges.items()}, count_event,
                           deadline_s=max(remaining(), 0.0))
        if left:
            log.warning("replay stopped at its deadline", extra={"fields": fields | {
                "counted": counted, "partitions_left": len(left), "deadline_s": deadline_s}})
        else:
            log.info("replayed", extra={"fields": fields | {
                "events": counted, "seconds": round(time.monotonic() - started, 2)}})
    except KafkaException as exc:
        # Kafka could not say what to replay: start with the memory as far as it got (an empty one
        # is what every start had before the replays existed), never fail the start.
        log.warning("not replayed", extra={"fields": fields | {"error": str(exc), "counted": counted}})
    return counted


def _ranges(
    consumer: Consumer, topic: str, since_ms: int, remaining: Callable[[], float], *, to_committed: bool
) -> dict[int, tuple[int, int]]:
    """partition -> (first offset at or after `since_ms`, the group's committed offset or, without
    `to_committed`, the partition's end), for the partitions where that range holds anything.
    Retries what Kafka says is retriable (a topic just created has no partition leader for a
    moment) while time remains."""
    while True:
        try:
            timeout = max(min(10.0, remaining()), 0.1)
            info = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if info is None:
                return {}
            if info.error is not None:
                raise KafkaException(info.error)
            partitions = [TopicPartition(topic, p) for p in sorted(info.partitions)]
            if to_committed:
                ends = [p.offset for p in consumer.committed(partitions, timeout=timeout)]
            else:
                ends = [consumer.get_watermark_offsets(p, timeout=timeout)[1] for p in partitions]
            starts = consumer.offsets_for_times(
                [TopicPartition(topic, p.partition, since_ms) for p in partitions], timeout=timeout
            )
            break
        except KafkaException as exc:
            if not exc.args[0].retriable() or remaining() <= 0.5:
                raise
            time.sleep(0.5)
    ranges = {}
    for end, first in zip(ends, starts):
        # end negative: the group never committed on this partition; start negative: nothing that recent
        start = first.offset
        if start >= 0 and end > start:
            ranges[first.partition] = (start, end)
    return ranges
