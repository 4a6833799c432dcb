"""The redelivery memory (handled event ids with a time to live) and its topic's records, without a
broker."""

import pytest

from supportflow.eventbus import HandledIds, handled_id_record
from supportflow.settings import SettingsError
from supportflow.topics import HANDLED_IDS_SUFFIX, all_physical_names, handled_ids_in
from tooling.settings import FleetSettings


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


class Record:
    """The accessors of a consumed handled-ids record that the reader uses."""

    def __init__(self, key, value):
        self._key, self._value = key, value

    def key(self):
        return self._key

    def value(self):
        return self._value


def test_an_id_is_remembered_for_the_time_to_live_and_forgotten_after():
    clock = Clock()
    handled = HandledIds(ttl_s=60, clock=clock)
    handled.add("a")
    clock.now += 59
    assert "a" in handled
    clock.now += 2
    assert "a" not in handled, "forgotten once the time to live has passed, even before it is freed"
    handled.add("b")
    assert len(handled) == 1, "expired ids are freed as new ones come"


def test_memory_is_bounded_by_time_not_by_count():
    clock = Clock()
    handled = HandledIds(ttl_s=3600, clock=clock)
    for index in range(120_000):  # far more than the old 50,000-id memory
        handled.add(f"id-{index}")
    assert "id-0" in handled and len(handled) == 120_000
    clock.now += 3601
    handled.add("late")
    assert len(handled) == 1 and "id-0" not in handled


def test_ids_read_back_keep_the_time_they_were_handled():
    clock = Clock()
    handled = HandledIds(ttl_s=100, clock=clock)
    handled.add("old", clock.now - 150)  # handled before the time to live: not remembered
    handled.add("recent", clock.now - 90)
    assert "old" not in handled and len(handled) == 1
    assert "recent" in handled
    clock.now += 11
    assert "recent" not in handled


def test_a_repeat_keeps_the_latest_time_and_an_earlier_one_does_not_shorten_it():
    clock = Clock()
    handled = HandledIds(ttl_s=100, clock=clock)
    handled.add("a", clock.now - 90)
    handled.add("a")  # handled again now
    handled.add("a", clock.now - 95)  # an older record of it read back afterwards
    clock.now += 50
    assert "a" in handled


def test_an_id_added_out_of_order_is_still_forgotten_on_time():
    clock = Clock()
    handled = HandledIds(ttl_s=100, clock=clock)
    handled.add("newer", clock.now)
    handled.add("older", clock.now - 60)
    clock.now += 50
    assert "older" not in handled and "newer" in handled


def test_a_capacity_also_bounds_the_memory():
    handled = HandledIds(ttl_s=3600, capacity=3, clock=Clock())
    for event_id in "abcd":
        handled.add(event_id)
    assert "a" not in handled and all(e in handled for e in "bcd")


@pytest.mark.parametrize("key, value", [
    (None, b"1733450000000"),
    (b"", b"1733450000000"),
    (b"e-1", None),
    (b"e-1", b"yesterday"),
    (b"\xff\xfe", b"1733450000000"),
])
def test_a_malformed_handled_ids_record_is_refused(key, value):
    assert handled_id_record(Record(key, value)) is None


def test_a_handled_ids_record_gives_the_id_and_time_in_seconds():
    assert handled_id_record(Record(b"e-1", b"1733450000250")) == ("e-1", 1733450000.25)


def test_handled_ids_topics_are_named_in_the_registry_inside_the_namespace():
    assert handled_ids_in("p.", "p.classifier") == f"p.classifier{HANDLED_IDS_SUFFIX}"
    assert handled_ids_in("p.", "classifier") == f"p.classifier{HANDLED_IDS_SUFFIX}"
    assert handled_ids_in("", "delivery") == "delivery.handled-ids"
    assert handled_ids_in("p.", "p.classifier") not in all_physical_names("p.")


def test_the_time_to_live_is_a_validated_setting():
    assert FleetSettings.from_env({}).dedupe_ttl_s == 24 * 3600
    assert FleetSettings.from_env({"SUPPORTFLOW_DEDUPE_TTL_S": "604800"}).dedupe_ttl_s == 604800
    for bad in ("0", "-5", "a day"):
        with pytest.raises(SettingsError, match="SUPPORTFLOW_DEDUPE_TTL_S"):
            FleetSettings.from_env({"SUPPORTFLOW_DEDUPE_TTL_S": bad})


def test_committing_loops_keep_a_handled_ids_topic_unless_they_opt_out():
    from supportflow.eventbus import ConsumerLoop, EventPublisher
    from supportflow.observability import Health
    from supportflow.topics import Topic

    settings = FleetSettings.from_env({}, topic_prefix="p.", kafka_bootstrap="127.0.0.1:1")  # never connected

    def loop(**options):
        return ConsumerLoop(settings, "classifier", {Topic.TICKETS_RECEIVED: lambda e: []},
                            EventPublisher(settings, "classifier"), Health("classifier"), **options)

    assert loop().handled_ids_topic == "p.classifier.handled-ids"
    assert loop(group="p.delivery-retries").handled_ids_topic == "p.delivery-retries.handled-ids"
    assert loop(broadcast=True).handled_ids_topic is None  # it replays everything at each start
    assert loop(remember_handled=False).handled_ids_topic is None
