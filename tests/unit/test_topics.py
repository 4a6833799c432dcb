from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.topics import DEAD_LETTER_SUFFIX, DECISION_TOPICS, Topic, all_physical_names


def test_every_topic_has_a_unique_name_and_a_dead_letter_twin():
    names = [t.base_name for t in Topic]
    assert len(names) == len(set(names))
    physical = all_physical_names("p.")
    assert len(physical) == 2 * len(names)
    for topic in Topic:
        assert topic.name_in("p.") in physical
        assert topic.dead_letter_in("p.") == f"p.{topic.base_name}{DEAD_LETTER_SUFFIX}"


def test_every_event_carries_meta_and_every_event_message_has_a_topic():
    for topic in Topic:
        assert "meta" in topic.message_type.DESCRIPTOR.fields_by_name, topic
    carried = {t.message_type.DESCRIPTOR.full_name for t in Topic}
    events = {
        m.full_name
        for m in ev.DESCRIPTOR.message_types_by_name.values()
        if "meta" in m.fields_by_name
    }
    assert events == carried, f"event messages with no topic: {events - carried}"


def test_each_decision_has_its_own_topic():
    assert set(DECISION_TOPICS) == {ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_FOLLOW_UP, ev.DECISION_ESCALATE}
    assert len(set(DECISION_TOPICS.values())) == 4
    assert all(t.message_type is ev.TicketDecided for t in DECISION_TOPICS.values())


def test_the_deployment_namespace_is_never_deleted():
    import pytest

    from supportflow.eventbus import delete_namespace_topics
    from tooling.settings import FleetSettings

    with pytest.raises(ValueError, match="unprefixed"):
        delete_namespace_topics(FleetSettings(topic_prefix=""))


def test_the_learners_log_has_its_fixed_shard_count_and_every_other_topic_the_deployments_count():
    # Fixed: tenants are placed on the log's partitions by its count (services/learner/shards.py).
    assert {t for t in Topic if t.partitions is not None} == {Topic.LEARNER_EVENTS}
    assert Topic.LEARNER_EVENTS.partitions == 8
