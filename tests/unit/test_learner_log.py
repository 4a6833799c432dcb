"""The learner's log without a broker: the memory of applied event ids, a handler applied once per
event id, the log's envelope (a record passed on untouched with its source topic to its tenant's
partition, and handed to that partition's shard's handler of that topic when read back), and output
ids that do not depend on the replica."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import (
    H_DLQ_REASON, H_EVENT_ID, H_SOURCE_TOPIC, ConsumerLoop, derived_event_id, encode, header,
)
from supportflow.observability import Health
from supportflow.topics import DECISION_TOPICS, Topic
from tooling.settings import FleetSettings

from services.learner.applied_ids import AppliedIds
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.state import StateError
from services.learner.main import forward_to_log
from services.learner.shards import SHARDS, shard_of, tenant_of
from tests.unit.test_learner_handlers import TENANTS, csat, decided, make_learner


def test_applied_ids_forget_the_oldest_beyond_the_bound_and_come_back_in_order():
    ids = AppliedIds(capacity=3)
    for event_id in "abcd":
        ids.add(event_id)
    assert "a" not in ids and all(e in ids for e in "bcd")
    ids.add("b")  # applied again: now the latest, so "c" goes first
    ids.add("e")
    assert ids.latest() == ["d", "b", "e"]
    again = AppliedIds(capacity=3)
    again.ids.load(reversed(ids.ids.rows()))  # in any order
    assert again.latest() == ["d", "b", "e"]
    again.add("f")
    assert again.latest() == ["b", "e", "f"]
    with pytest.raises(StateError):
        again.ids.load([[["g"], "not numbered", 0]])


def test_an_event_applied_twice_counts_once_and_emits_nothing_the_second_time():
    learner = make_learner()
    on_decided, on_feedback = learner.applied_once(learner.on_decided), learner.applied_once(learner.on_feedback)
    decision, survey = decided("t1"), csat("t1", 90.0)
    first = on_decided(decision) + on_feedback(survey)
    assert on_decided(decision) == [] and on_feedback(survey) == []
    [row] = learner.kpi_rows("rho-bank", "faq_bounded", "retail", "all")
    assert row.tickets == 1 and row.values["csat_at_resolution_mean"] == 90.0
    assert [e.topic for e in first] == [Topic.QA_SAMPLES]  # the week's first ticket of the archetype


def test_replicas_fed_the_same_log_with_repeats_hold_the_same_state_and_a_restored_one_decides_alike():
    log = []
    for i in range(30):
        log += [decided(f"t{i}"), csat(f"t{i}", 70.0 + i % 3 * 10)]
    with_repeats = log[:20] + log[15:20] + log[20:] + log[:3]  # an interrupted batch passed on again, and an old one

    def apply(learner: Learner, events) -> Learner:
        handlers = {ev.TicketDecided: learner.applied_once(learner.on_decided),
                    ev.FeedbackReceived: learner.applied_once(learner.on_feedback)}
        for event in events:
            handlers[type(event)](event)
        return learner

    once, twice = apply(make_learner(), log), apply(make_learner(), with_repeats)
    assert twice.kpi_rows("rho-bank") == once.kpi_rows("rho-bank")
    # A replica restored from a snapshot taken mid-log decides each repeat as one that read it all.
    restored = Learner.from_state(apply(make_learner(), with_repeats[:22]).export_state(), LearnerConfig.load(), TENANTS)
    restored.finish_replay()
    assert apply(restored, with_repeats[22:]).kpi_rows("rho-bank") == once.kpi_rows("rho-bank")
    assert restored.applied_count() == twice.applied_count() == len(log)


def test_a_held_qa_sample_has_the_event_id_a_live_replica_gives_it():
    decision = decided("t1")
    live = make_learner().on_decided(decision)
    assert live[0].topic is Topic.QA_SAMPLES  # the consumer loop derives its id with index 0
    replaying = make_learner(replaying=True)
    assert replaying.on_decided(decision) == []
    [held] = replaying.finish_replay()
    assert held.event.meta.event_id == derived_event_id(decision.meta.event_id, Topic.QA_SAMPLES, 0)


class Record:
    """A consumed record: the accessors the consumer loop reads."""

    def __init__(self, topic: str, value: bytes, headers: list, key: bytes = b"t1", offset: int = 0,
                 partition: int = 0) -> None:
        self._topic, self._value, self._headers, self._key, self._offset = topic, value, headers, key, offset
        self._partition = partition

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def key(self):
        return self._key

    def value(self):
        return self._value

    def headers(self):
        return self._headers

    def error(self):
        return None


class Publisher:
    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes, bytes, list]] = []
        self.partitions: list[int | None] = []
        self.events: list = []

    def produce_raw(self, topic_name, key, value, headers, partition=None) -> None:
        self.raw.append((topic_name, key, value, headers))
        self.partitions.append(partition)

    def publish(self, topic, key, event, traceparent=None) -> None:
        self.events.append((topic, key, event))

    def flush(self) -> None:
        pass


class NoConsumer:
    def __init__(self, *_args, **_kwargs) -> None:
        pass


@pytest.fixture
def loop(monkeypatch):
    monkeypatch.setattr("supportflow.eventbus.Consumer", NoConsumer)
    settings = FleetSettings(topic_prefix="p.")

    def make(handlers, **kwargs) -> tuple[ConsumerLoop, Publisher]:
        publisher = Publisher()
        return ConsumerLoop(settings, "learner", handlers, publisher, Health("learner"), **kwargs), publisher
    return make


def test_the_intake_passes_a_record_on_untouched_to_its_tenants_partition_with_the_topic_it_came_from(loop):
    intake, publisher = loop({topic: forward_to_log for topic in DECISION_TOPICS.values()})
    decision = decided("t1", ev.DECISION_ESCALATE)
    value, headers = encode(decision)
    intake._process(Record("p.tickets.escalated", value, headers))
    [(name, key, forwarded, forwarded_headers)] = publisher.raw
    assert (name, key, forwarded) == ("p.learner.events", b"t1", value)
    assert forwarded_headers == headers + [(H_SOURCE_TOPIC, b"tickets.escalated")]
    assert dict(forwarded_headers)[H_EVENT_ID] == decision.meta.event_id.encode()  # the same event, the same id
    assert publisher.partitions == [shard_of("rho-bank")]


def test_every_tenant_of_an_event_is_the_one_its_handler_attaches_it_to():
    action = ev.AgentAction(ticket_id="t1", kind=ev.AGENT_ACTION_KIND_APPROVE)
    action.decision.ticket.tenant_id = "acme"  # an action without a tenant of its own: its decision's
    assert tenant_of(action) == "acme"
    received = ev.TicketReceived(meta=ev.EventMeta(tenant_id="meta-tenant"))
    received.ticket.tenant_id = "acme"
    assert tenant_of(received) == "acme" and tenant_of(csat("t1", 90.0)) == "rho-bank"
    assert len({shard_of(f"tenant-{i}") for i in range(200)}) == SHARDS  # tenants spread over every shard


class Shards:
    """A partition owner holding partition 0 only, each handler recording what it applied."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.sources = (Topic.TICKETS_ESCALATED, Topic.TICKETS_FEEDBACK)
        self._handlers = {Topic.TICKETS_ESCALATED: lambda event: self.seen.append(("decided", event.ticket.ticket_id)) or [],
                          Topic.TICKETS_FEEDBACK: lambda event: self.seen.append(("feedback", event.ticket_id)) or []}

    def handlers(self, partition, offset):
        return self._handlers if partition == 0 else None


def test_the_log_hands_each_record_to_its_shards_handler_and_dead_letters_a_stranger(loop):
    shards = Shards()
    applier, publisher = loop({}, via=Topic.LEARNER_EVENTS, owner=shards)
    value, headers = encode(decided("t1", ev.DECISION_ESCALATE))
    applier._process(Record("p.learner.events", value, headers + [(H_SOURCE_TOPIC, b"tickets.escalated")]))
    applier._process(Record("p.learner.events", value, headers + [(H_SOURCE_TOPIC, b"tickets.escalated")]))
    value, headers = encode(csat("t2", 90.0))
    applier._process(Record("p.learner.events", value, headers + [(H_SOURCE_TOPIC, b"tickets.feedback")], offset=1))
    # A record of a partition that went to another replica before it was handled: that one applies it.
    applier._process(Record("p.learner.events", value, headers + [(H_SOURCE_TOPIC, b"tickets.feedback")], offset=1,
                            partition=1))
    applier._process(Record("p.learner.events", value, headers + [(H_SOURCE_TOPIC, b"kb.articles")], offset=2))
    # The repeat reaches the shard (whose applied_once skips it, the same on every replica).
    assert shards.seen == [("decided", "t1"), ("decided", "t1"), ("feedback", "t2")]
    [(name, _key, _value, dead_headers)] = publisher.raw
    assert name == "p.learner.events.dlq" and header(Record("", b"", dead_headers), H_DLQ_REASON) == "invalid_event"


class Context:
    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def time_remaining(self):
        return self._remaining


@pytest.mark.parametrize("remaining, waited", [(None, 5.0), (30.0, 5.0), (2.0, 1.7), (0.1, 0.0)])
def test_the_panel_waits_for_the_log_at_most_its_bound_and_never_past_the_calls_deadline(remaining, waited):
    from supportflow.contracts.v1 import services_pb2

    from services.learner.servicer import LearnerServicer

    waits = []
    learner = make_learner()
    servicer = LearnerServicer(lambda _tenant: learner, "rho-bank", max_wait_s=5.0,
                               before_answer=lambda tenant, seconds: waits.append((tenant, seconds)))
    servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank"), Context(remaining))
    assert waits == [("rho-bank", pytest.approx(waited, abs=0.05))]


class CommittingConsumer:
    """What the apply loop asks of its consumer about the group's committed positions."""

    def __init__(self, committed: dict[int, int]) -> None:
        self.committed_offsets = committed
        self.commits: list[tuple[dict[int, int], bool]] = []

    def committed(self, partitions, timeout):  # noqa: ANN001, ANN201
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
                for tp in partitions]

    def commit(self, offsets, asynchronous):  # noqa: ANN001, ANN201
        self.commits.append(({tp.partition: tp.offset for tp in offsets}, asynchronous))


@pytest.mark.parametrize("published_before, since", [(True, 30), (False, 10)])
def test_a_partition_the_apply_group_never_committed_counts_as_published_to_its_end_or_from_its_beginning(
        loop, monkeypatch, published_before, since):
    """Code before the apply loop's commits published what is on the log (to its end); at a
    deployment's first start nothing was (from the partition's first record). Either is committed
    at once, so the next holder knows what this one starts from."""
    monkeypatch.setattr("supportflow.eventbus.watermarks",
                        lambda admin, partitions, timeout_s: {key: (10, 30) for key in partitions})
    applier, _ = loop({}, via=Topic.LEARNER_EVENTS, owner=Shards(), published_before=published_before)
    consumer = CommittingConsumer({0: 25})
    log_name = Topic.LEARNER_EVENTS.name_in("p.")
    assert applier._committed(consumer, [TopicPartition(log_name, 0), TopicPartition(log_name, 1)]) == {0: 25, 1: since}
    assert consumer.commits == [({1: since}, False)]  # waited for: before the partition is read


def test_a_failed_commit_of_the_positions_is_made_again(loop):
    applier, _ = loop({}, via=Topic.LEARNER_EVENTS, owner=Shards())
    applier._consumer = consumer = CommittingConsumer({})
    log_name = Topic.LEARNER_EVENTS.name_in("p.")
    applier._positions = {(log_name, 0): 7}
    applier._commit_positions()
    applier._positions_committed_at = 0.0  # the next round is due
    applier._commit_positions()
    assert consumer.commits == [({0: 7}, True)]  # not again while it stands
    # Refused: the group's generation moved on in a rebalance (the callback, in the loop's poll).
    applier._on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [TopicPartition(log_name, 0, 7)])
    applier._positions_committed_at = 0.0
    applier._commit_positions()
    assert consumer.commits == [({0: 7}, True), ({0: 7}, True)]


def test_positions_read_are_kept_when_the_first_commit_of_another_partition_is_refused(loop, monkeypatch):
    monkeypatch.setattr("supportflow.eventbus.watermarks",
                        lambda admin, partitions, timeout_s: {key: (10, 30) for key in partitions})

    class Refusing(CommittingConsumer):
        def commit(self, offsets, asynchronous):  # noqa: ANN001, ANN201
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

    applier, _ = loop({}, via=Topic.LEARNER_EVENTS, owner=Shards())
    log_name = Topic.LEARNER_EVENTS.name_in("p.")
    # Partition 1's position is not known then: its shard holds its outputs until its replay ends.
    assert applier._committed(Refusing({0: 25}), [TopicPartition(log_name, 0), TopicPartition(log_name, 1)]) == {0: 25}
