"""Warm standbys (services/learner/standby.py) over an in-memory log: a copy applies its partition
only as far as the shard's holder has committed, each record once, across the apply loop taking
the copy and giving the shard back. (On the real Kafka, with processes killed:
tests/component/test_learner_replicas.py -k standby.)"""

from __future__ import annotations

import collections
import threading

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from supportflow.eventbus import H_MESSAGE_TYPE, H_SOURCE_TOPIC
from supportflow.service import StateLost
from supportflow.topics import Topic

from services.learner import metrics
from services.learner.config import LearnerConfig
from services.learner.shards import LearnerShards, Shard
from services.learner.standby import WarmStandby
from services.learner.settings import LearnerSettings
from tests.unit.test_learner_handlers import TENANTS, decided

LOG = "p.learner.events"
NO_OFFSET = -1001


class Record:
    """What the standby reads of a confluent_kafka Message."""

    def __init__(self, partition: int, offset: int, event) -> None:  # noqa: ANN001
        self._partition, self._offset, self._event = partition, offset, event
        topic = Topic.TICKETS_RESPONDED
        self._headers = [(H_SOURCE_TOPIC, topic.base_name.encode()),
                         (H_MESSAGE_TYPE, topic.message_type.DESCRIPTOR.full_name.encode())]

    def error(self):  # noqa: ANN201
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return LOG

    def key(self) -> bytes:
        return self._event.ticket.ticket_id.encode()

    def value(self) -> bytes:
        return self._event.SerializeToString()

    def headers(self) -> list:
        return self._headers


class MemoryConsumer:
    """A consumer of the log's partitions from the offsets assigned, and the group's commits."""

    def __init__(self, log: dict[int, list[Record]]) -> None:
        self.log = log
        self.commits: dict[int, int] = {}
        self.fetching: dict[int, int] = {}

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.fetching[tp.partition] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.fetching.pop(tp.partition)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.commits.get(tp.partition, NO_OFFSET)) for tp in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        out = []
        for partition, position in self.fetching.items():
            records = self.log.get(partition, [])[position:position + num_messages - len(out)]
            self.fetching[partition] = position + len(records)
            out += records
        return out


def log_of(partition: int, tickets: int) -> dict[int, list[Record]]:
    return {partition: [Record(partition, i, decided(f"t-{i}")) for i in range(tickets)]}


class Applied:
    """How many times each event was handed to a shard's handlers, on any copy or holder."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def counted(self, shard: Shard) -> Shard:
        def counting(handler):  # noqa: ANN001, ANN202
            def handle(event):  # noqa: ANN001, ANN202
                self.counts[event.meta.event_id] += 1
                return handler(event)
            return handle
        shard.handlers = {topic: counting(handler) for topic, handler in shard.handlers.items()}
        return shard


def standby_over(owner: LearnerShards, applied: Applied) -> WarmStandby:
    standby = WarmStandby(LearnerSettings(), lambda p: applied.counted(owner.open(p)), LOG, "p.learner-apply",
                          limits_every_s=0.0)
    owner.standby = standby
    return standby


def steps(standby: WarmStandby, consumer: MemoryConsumer, rounds: int = 4) -> None:
    for _ in range(rounds):
        standby.step(consumer, threading.Event())


def ids(records: list[Record]) -> list[str]:
    return [record._event.meta.event_id for record in records]


def test_a_copy_goes_only_as_far_as_its_holder_committed_then_follows_it():
    owner, applied = LearnerShards(LearnerConfig.load(), TENANTS, LOG), Applied()
    standby = standby_over(owner, applied)
    owner.assigned([0], {})  # held here: no copy of it
    consumer = MemoryConsumer(log_of(1, 10))
    steps(standby, consumer)
    assert sum(applied.counts.values()) == 0  # the holder has committed nothing yet
    consumer.commits[1] = 4
    steps(standby, consumer)
    assert applied.counts == collections.Counter(ids(consumer.log[1][:4]))
    assert 1 not in consumer.fetching  # caught up with its holder: read again once it moves on
    consumer.commits[1] = 10
    steps(standby, consumer)
    assert applied.counts == collections.Counter(ids(consumer.log[1]))
    assert metrics.STANDBY_SHARDS._value.get() == 7  # every shard not held here
    assert 0 not in consumer.fetching


def test_a_shard_taken_is_its_copy_and_given_back_it_is_followed_from_the_holders_position_each_record_once():
    owner, applied = LearnerShards(LearnerConfig.load(), TENANTS, LOG), Applied()
    standby = standby_over(owner, applied)
    owner.assigned([0], {})
    consumer = MemoryConsumer(log_of(1, 12))
    consumer.commits[1] = 6
    steps(standby, consumer)
    before = metrics.SHARDS_TAKEN.labels("standby")._value.get()
    assert owner.assigned([1], {}) == {1: 6}  # the copy, where it is: this replica now holds the shard
    assert metrics.SHARDS_TAKEN.labels("standby")._value.get() == before + 1
    consumer.commits[1] = 10
    steps(standby, consumer)  # the copy is the holder's now: the standby leaves it alone
    assert sum(applied.counts.values()) == 6
    for record in consumer.log[1][6:10]:  # the apply loop here applies 6..9
        owner.handlers(1, record.offset())[Topic.TICKETS_RESPONDED](record._event)
    owner.after_batch({(LOG, 1): 10})
    owner.revoked([1])  # given up: a copy again, from the position the holder reached
    consumer.commits[1] = 12
    steps(standby, consumer)
    assert applied.counts == collections.Counter(ids(consumer.log[1]))  # each of the 12 once
    assert owner.assigned([1], {}) == {1: 12}


def test_a_copy_of_a_shard_whose_snapshot_is_of_another_log_is_not_built():
    opened = collections.Counter()

    def open_shard(partition: int) -> Shard:
        opened[partition] += 1
        if partition == 2:
            raise StateLost("the log was created again")
        return owner.open(partition)

    owner = LearnerShards(LearnerConfig.load(), TENANTS, LOG)
    standby = WarmStandby(LearnerSettings(), open_shard, LOG, "p.learner-apply", limits_every_s=0.0)
    owner.standby = standby
    steps(standby, MemoryConsumer({}))
    assert opened[2] == 1 and standby.take(2) is None  # the apply loop opens it, and stops the replica
    assert all(standby.take(p) is not None for p in range(8) if p != 2)
