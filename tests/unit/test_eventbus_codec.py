"""The codec and the dead-letter budget, without a broker."""

import random

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import (
    DeadLetterBudget,
    DeadLetterBudgetExceeded,
    InvalidEvent,
    decode,
    derived_event_id,
    encode,
    new_meta,
    new_traceparent,
)
from supportflow.topics import Topic


class Record:
    """The two accessors of a consumed record that the codec reads."""

    def __init__(self, value, headers):
        self._value, self._headers = value, headers

    def value(self):
        return self._value

    def headers(self):
        return self._headers


def received(ticket_id="t-1"):
    return ev.TicketReceived(meta=new_meta("acme", "test"), ticket=tk.Ticket(ticket_id=ticket_id, body="hi"))


def test_round_trip_keeps_the_event_and_sets_standard_headers():
    event = received()
    value, headers = encode(event)
    names = dict(headers)
    assert names["sf-message-type"] == b"supportflow.contracts.v1.TicketReceived"
    assert names["sf-event-id"] == event.meta.event_id.encode()
    assert names["traceparent"].count(b"-") == 3
    assert decode(Topic.TICKETS_RECEIVED, Record(value, headers)) == event


@pytest.mark.parametrize(
    "value, headers, reason",
    [
        (b"\xff\xfe not protobuf", [], "not a valid"),
        (b"", [], "empty"),
        (None, [], "empty"),
        (ev.TicketReceived(ticket=tk.Ticket(ticket_id="x")).SerializeToString(), [], "event_id"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(value, headers, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(Topic.TICKETS_RECEIVED, Record(value, headers))


def test_a_record_of_another_type_is_rejected_by_its_header():
    value, headers = encode(ev.KbGapDetected(meta=new_meta("acme", "test"), query="q"))
    with pytest.raises(InvalidEvent, match="wrong message type"):
        decode(Topic.TICKETS_RECEIVED, Record(value, headers))


def test_traceparent_keeps_the_trace_and_changes_the_span():
    parent = new_traceparent()
    child = new_traceparent(parent)
    assert child.split("-")[1] == parent.split("-")[1]
    assert child.split("-")[2] != parent.split("-")[2]


def test_derived_event_ids_are_stable_and_distinct():
    a = derived_event_id("e1", Topic.TICKETS_CLASSIFIED, 0)
    assert a == derived_event_id("e1", Topic.TICKETS_CLASSIFIED, 0)
    assert a != derived_event_id("e1", Topic.TICKETS_CLASSIFIED, 1)
    assert a != derived_event_id("e2", Topic.TICKETS_CLASSIFIED, 0)


def test_budget_stops_after_too_many_consecutive_dead_letters():
    budget = DeadLetterBudget(max_consecutive=3, max_ratio=1.0)
    for _ in range(3):
        budget.record(True)
    budget.record(False)  # a success resets the run
    for _ in range(3):
        budget.record(True)
    with pytest.raises(DeadLetterBudgetExceeded, match="consecutive"):
        budget.record(True)


def test_budget_stops_when_most_recent_messages_fail():
    budget = DeadLetterBudget(max_consecutive=1000, max_ratio=0.5, window=100)
    for _ in range(5):
        budget.record(False)
    with pytest.raises(DeadLetterBudgetExceeded, match="%"):
        for _ in range(10):
            budget.record(True)


def test_the_dead_letter_budget_counts_its_window_as_it_slides():
    rng = random.Random(3)
    budget = DeadLetterBudget(max_consecutive=1000, max_ratio=0.5, window=50)
    recent = []
    for _ in range(2000):
        dead = rng.random() < 0.45
        recent = (recent + [dead])[-50:]
        ratio = sum(recent) / len(recent)
        if len(recent) >= 5 and ratio > 0.5:
            try:
                budget.record(dead)
            except DeadLetterBudgetExceeded:
                return  # stopped exactly when the recount says the share went over
            raise AssertionError(f"not stopped at {ratio:.2f}")
        budget.record(dead)
    raise AssertionError("the share never went over 0.5: the sequence proves nothing")
