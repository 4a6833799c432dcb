"""A start that cannot recover the escalator's tables stops instead of starting empty.

faust creates a missing changelog topic and starts its table empty. For the escalator that would
silently forget open incidents, answered tickets, daily action counts and pending proposals. So
before the app starts: a consumer group that has committed offsets (it ran before) must find every
table's changelog with records in it; a fresh group creates each changelog (compacted, as faust
would) and writes one marker record into it, which is what makes a later deletion visible even
for a table that had nothing else written yet.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from tenacity import Retrying, retry, retry_if_exception, stop_after_delay, wait_fixed

from supportflow.eventbus import create_topics, group_has_committed, kafka_config, watermarks
from supportflow.service import StateLost
from supportflow.settings import Settings

MARKER_KEY = json.dumps("__supportflow_changelog__").encode()


class ChangelogLost(StateLost):
    """A table's changelog is gone while its consumer group has already processed events."""


def check_changelogs(settings: Settings, group_id: str, input_topics: list[str], changelogs: dict[str, int],
                     timeout_s: float = 30.0) -> list[str]:
    """Raise ChangelogLost when the group ran before and a changelog is missing or empty; on a
    fresh group create the missing changelogs and mark them. Returns the changelogs created.
    Retries what Kafka says is retriable (a topic another replica has just created has no leader
    for a moment) for up to `timeout_s`."""
    return Retrying(retry=retry_if_exception(_retriable), stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5),
                    reraise=True)(_check, settings, group_id, input_topics, changelogs, timeout_s)


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaException) and exc.args[0].retriable()


def _check(settings: Settings, group_id: str, input_topics: list[str], changelogs: dict[str, int],
           timeout_s: float) -> list[str]:
    admin = AdminClient(kafka_config(settings))
    existing = admin.list_topics(timeout=timeout_s).topics
    ran_before = group_has_committed(settings, group_id, input_topics, timeout_s)
    counts = _record_counts(admin, [existing[name] for name in changelogs if name in existing], timeout_s)
    empty = {name for name in changelogs if counts.get(name, 0) == 0}
    if ran_before and empty:
        raise ChangelogLost(
            f"the changelog of table(s) {', '.join(sorted(empty))} is missing or empty, but consumer group {group_id!r} "
            "has already processed events: the escalator's state (incident windows, answered tickets, action ledger, "
            "proposals) cannot be recovered, and starting empty would forget it silently. Restore the topic(s), or, to "
            "start with empty state on purpose, delete the consumer group's offsets (kafka-consumer-groups "
            f"--delete-offsets --group {group_id}) so that every input is handled again.")
    created = [name for name in changelogs if name not in existing]
    create_topics(admin, [NewTopic(name, changelogs[name], settings.topic_replication,
                                   config={"cleanup.policy": "compact"}) for name in created], timeout_s)
    if empty:
        producer = Producer(kafka_config(settings) | {"acks": "all"})
        for name in sorted(empty):
            producer.produce(name, key=MARKER_KEY, value=json.dumps({"created_at": time.time()}).encode(), partition=0)
        if producer.flush(timeout_s):
            raise RuntimeError("could not write the changelog markers")
    return created


# A topic another replica created a moment ago may have no partition leader yet.
_LEADERLESS = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def _leaderless(exc: BaseException) -> bool:
    return isinstance(exc, KafkaException) and exc.args[0].code() in _LEADERLESS


@retry(retry=retry_if_exception(_leaderless), stop=stop_after_delay(15), wait=wait_fixed(0.5), reraise=True)
def _record_counts(admin: AdminClient, topics: list, timeout_s: float) -> dict[str, int]:
    """Records held by each topic (its partitions' high minus low watermarks), keyed by name."""
    counts = {metadata.topic: 0 for metadata in topics}
    marks = watermarks(admin, [(metadata.topic, p) for metadata in topics for p in metadata.partitions], timeout_s)
    for (name, _), (low, high) in marks.items():
        counts[name] += max(high - low, 0)
    return counts
