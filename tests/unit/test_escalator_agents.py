"""The faust escalator's adapters, without Kafka: a table seen as a store (buffered writes, expiry,
sweeps by partition) and the offset book (in-order handling, gaps sought back, commits after a
flush and only for partitions still assigned)."""

from __future__ import annotations

import asyncio
import json

from services.escalator.agents import OffsetBook, TableStore
from services.escalator.answered import AnsweredTickets
from services.escalator.config import IncidentConfig
from services.escalator.incidents import IncidentSignature, IncidentTracker
from supportflow.contracts.v1 import ticket_pb2 as tk

T0 = 1_700_000_000.0


class FakeTable(dict):
    """What TableStore uses of a faust table, with JSON round trips as the changelog would make."""

    def __setitem__(self, key, value):
        super().__setitem__(key, json.loads(json.dumps(value)))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_writes_wait_for_apply_and_are_stamped_with_time_and_partition() -> None:
    table, clock = FakeTable(), Clock(T0)
    store = TableStore(table, memory_s=60, local=True, clock=clock)
    store["a"] = {"n": 1}
    assert store["a"] == {"n": 1} and "a" not in table  # the handler reads its own write
    assert store.apply(partition=2) == 1
    assert table["a"] == {"t": T0, "p": 2, "v": {"n": 1}}
    store["b"] = 1
    store.discard()  # a handler that failed leaves nothing behind
    store.apply(partition=2)
    assert "b" not in table
    del store["a"]
    assert store.get("a") is None
    store.apply(partition=2)
    assert "a" not in table


def test_entries_past_their_memory_are_not_read_and_are_swept_by_their_own_partition() -> None:
    table, clock = FakeTable(), Clock(T0)
    store = TableStore(table, memory_s=60, local=True, clock=clock)
    store["p0"] = 1
    store.apply(partition=0)
    store["p1"] = 1
    store.apply(partition=1)
    table["__marker__"] = {"created_at": T0}  # what changelogs.py writes: never swept, never read
    clock.now = T0 + 61
    assert store.get("p0") is None and store.get("p1") is None
    assert store.sweep(partition=0) == 1
    assert set(table) == {"p1", "__marker__"}  # the other partition's changelog is not ours to write
    assert store.sweep(partition=1) == 1
    assert store.sweep(partition=1) == 0  # at most once per twentieth of the memory


def test_state_holders_on_table_stores_keep_their_state_across_a_restart() -> None:
    windows, tickets, answered = FakeTable(), FakeTable(), FakeTable()
    clock = Clock(T0)
    config = IncidentConfig(window_s=600, min_tickets=3)
    signature = IncidentSignature("rho", "app", "ERR-1")

    def tracker() -> tuple[IncidentTracker, list[TableStore]]:
        stores = [TableStore(windows, 1200, local=True, clock=clock), TableStore(tickets, 3600, local=True, clock=clock)]
        return IncidentTracker(config, *stores), stores

    first, stores = tracker()
    for i in range(2):
        assert first.observe(f"t{i}", signature, T0 + i, cause=f"e{i}") is None
        for store in stores:
            store.apply(0)
    restarted, stores = tracker()  # a new process on the same tables
    created = restarted.observe("t2", signature, T0 + 2, cause="e2")
    assert created is not None and created.ticket_ids == ("t0", "t1", "t2")
    for store in stores:
        store.apply(0)
    again, _ = tracker()
    assert again.observe("t2", signature, T0 + 2, cause="e2") == created  # the same event: the same update
    assert again.observe("t2", signature, T0 + 2, cause="e-drafted") is None  # the ticket's next event: none
    assert again.incident_of("t0") == created.incident_id

    memory = AnsweredTickets(3600, store=TableStore(answered, 3600, local=False, clock=clock))
    ticket = tk.Ticket(ticket_id="t9", body="hello")
    memory.record("rho", ticket, T0)
    memory._answered.apply(0)  # type: ignore[attr-defined]
    later = tk.Ticket(ticket_id="t9", body="it did not help")
    assert AnsweredTickets(3600, store=TableStore(answered, 3600, local=False, clock=clock)).wrote_back("rho", later, T0 + 5)


def test_the_offset_book_handles_in_order_and_seeks_back_over_a_gap() -> None:
    book = OffsetBook()
    book.assigned({"p0": 10, "p1": None}, 0.0)
    assert book.admit("p0", 10) is True
    book.handled("p0", 10)
    assert book.admit("p0", 10) is False  # handled already
    assert book.admit("p0", 14) == 11  # 11-13 were skipped: seek back to 11
    assert book.admit("p0", 15) is False  # the seek is under way: nothing after the gap is handled
    assert book.admit("p0", 11) is True
    assert book.admit("p1", 7) is True  # no committed offset: the first read is the start


def test_the_offset_book_commits_after_flushing_and_only_what_is_still_assigned() -> None:
    calls: list = []

    class Producer:
        async def flush(self) -> None:
            calls.append("flush")

    class Consumer:
        def assignment(self):
            return {"p0"}

        async def _commit(self, offsets):
            calls.append(("commit", dict(offsets)))
            return True

    class App:
        producer, consumer = Producer(), Consumer()

    book = OffsetBook()
    book.assigned({"p0": 0, "p1": 0}, 0.0)
    book.handled("p0", 4)
    book.handled("p1", 8)
    assert asyncio.run(book.commit(App())) == 1
    assert calls == ["flush", ("commit", {"p0": 5})]
    assert asyncio.run(book.commit(App())) == 0  # nothing new
    assert book.admit("p0", 6) == 5  # a gap: no commit past it until it is read again
    book.handled("p0", 9)  # (never happens while seeking; shown to prove the commit waits)
    calls.clear()
    assert asyncio.run(book.commit(App())) == 0 and calls == []


def test_a_partition_left_unread_is_sought_back_once_it_stalls() -> None:
    book = OffsetBook()
    book.assigned({"p0": 0, "p1": 3}, now=100.0)
    book.handled("p1", 3, now=100.0)
    # An event just arrived on p0 after a quiet spell: not stuck yet, whatever the quiet before.
    assert book.stalled({"p0": 2, "p1": 4}, now=110.0, after_s=3.0) == {}
    book.handled("p1", 4, now=111.0)  # handling moves on elsewhere: p0 may just be waiting its turn
    assert book.stalled({"p0": 2, "p1": 5}, now=113.5, after_s=3.0) == {}
    # Unread for the whole period and nothing handled at all: faust dropped them.
    assert book.stalled({"p0": 2, "p1": 5}, now=114.5, after_s=3.0) == {"p0": 0}
    assert book.stalled({"p0": 2, "p1": 5}, now=115.0, after_s=3.0) == {}  # once per stall period
    book.handled("p0", 0, now=115.5)
    book.handled("p0", 1, now=115.6)
    assert book.stalled({"p0": 2, "p1": 5}, now=130.0, after_s=3.0) == {}


def test_a_batch_reads_its_earlier_events_writes_and_applies_each_with_its_own_partition() -> None:
    table, clock = FakeTable(), Clock(T0)
    store = TableStore(table, memory_s=60, local=True, clock=clock)
    store["a"] = 1  # event 1 of a batch (partition 0)
    first = store.take()
    store["a"] = store["a"] + 1  # event 2 (partition 3) reads event 1's write before it is applied
    store["b"] = 1
    second = store.take()
    store["c"] = 1  # event 3 fails: its writes are discarded, the others' stay readable
    store.discard()
    assert store["a"] == 2 and "c" not in store and not table
    assert store.apply(0, first) == 1 and store.apply(3, second) == 2
    store.settle()
    assert table == {"a": {"t": T0, "p": 3, "v": 2}, "b": {"t": T0, "p": 3, "v": 1}}
    del store["a"]  # a deletion taken in a batch hides the entry until it is applied
    deleted = store.take()
    assert store.get("a") is None and "a" in table
    store.apply(3, deleted)
    store.settle()
    assert "a" not in table


def test_the_offset_book_admits_a_batch_in_order_and_forgets_what_a_rebalance_took() -> None:
    book = OffsetBook()
    book.assigned({"p0": 10}, 0.0)
    assert [book.admit("p0", offset) for offset in (10, 11, 12)] == [True, True, True]
    assert book.admit("p0", 12) is False  # admitted already
    assert book.admit("p0", 14) == 13  # a gap after the admitted ones
    book.handled("p0", 10)
    book.handled("p0", 11)
    book.release({"p0"})  # 12 will not be handled after all: the next to admit is 12 again
    assert book.admit("p0", 12) is True
    book.handled("p0", 12)
    assert book.admit("p0", 13) is True


def test_until_the_first_event_is_handled_after_an_assignment_a_shorter_stall_is_enough() -> None:
    book = OffsetBook()
    book.assigned({"p0": 0}, now=100.0)
    # faust dropped its first fetch: unread events, nothing handled since the assignment.
    assert book.stalled({"p0": 5}, now=100.25, after_s=1.5, first_after_s=0.5) == {}
    assert book.stalled({"p0": 5}, now=100.8, after_s=1.5, first_after_s=0.5) == {"p0": 0}
    book.handled("p0", 0, now=101.0)
    # Once events are handled, the full period applies again.
    assert book.stalled({"p0": 5}, now=101.6, after_s=1.5, first_after_s=0.5) == {}
    assert book.stalled({"p0": 5}, now=102.6, after_s=1.5, first_after_s=0.5) == {}
    assert book.stalled({"p0": 5}, now=103.2, after_s=1.5, first_after_s=0.5) == {"p0": 1}
