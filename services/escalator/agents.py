"""The escalator's agent and tables: Kafka events in, the pure handlers (handlers.py) called,
their events out. Thin: decode, route, call, publish.

One agent reads the four input topics (keyed by ticket id) and the escalator's own re-partition
topic (`Topic.ESCALATOR_BY_SIGNATURE`, keyed by burst signature):

- a classified or drafted ticket that can be part of an incident (it has a signature) is passed on,
  untouched, to the re-partition topic under its signature, and decided when it comes back from
  there: every ticket of a burst reaches the one replica that owns its signature's windows, so
  the windows are exact with any number of replicas. That is the only extra hop, and only those
  tickets take it;
- every other event is decided where it arrives (no incident state is needed to decide it).

State, in changelog-backed tables whose values are JSON (never pickle), each entry stamped with
the time it was written and deleted once older than its memory (`TableStore`):

- `incident-windows` (signature -> windows and open incident) and `incident-tickets` (ticket ->
  its incident), local to the re-partition topic's partitions, so only their owner writes them;
- `answered-tickets`, `action-ledger`, `action-proposals`, `action-proposals-by-ticket`: global
  (every replica holds all of it), because a ticket's answer, a customer's daily count and a
  proposal are read where a later event of that ticket or customer lands. Keyed by entity, each
  key in one changelog partition, so a replica's write never contends with another's for the
  same key except when two events of one customer are handled on two replicas at the same moment.

Handlers call gRPC synchronously (similar cases, articles, investigation, live actions), so they
run on a worker thread (`asyncio.to_thread`) while the event loop keeps fetching, heartbeating and
publishing. Events go to that thread in batches: what the stream has already read ahead, up to
`BATCH_MAX`, and a lone event at once (nothing waits for a batch to fill). The thread decodes,
routes and decides them in order and returns after `BATCH_BUDGET_S` (20 ms) with what it has
done, so a batch's first outputs do not wait for its last event's gRPC calls. Those calls are
started ahead (`lookups_ahead.py`): when the thread takes a batch it begins, on a small pool, the
lookups each event's decision is expected to make, so the waits overlap instead of adding up;
the decisions themselves stay in order on the one thread. The loop then
sends each event's outputs and applies its table writes, in order, and marks it handled. One
handoff per batch instead of two thread switches per event, and a backlog's outputs reach the
producer together (fewer, larger produce requests). Table reads from the thread are plain
lookups; writes are buffered in the `TableStore`, per event, readable by the batch's later
events, and applied on the loop with each event's own partition (faust tables must be written
from the stream's task, and a local table's changelog partition is that of the stream's current
event, which the loop sets to the event whose writes it applies).

Per event, as before batches: its OffsetBook admission (in order; a gap seeks back), its own
dead-lettering, retries of a transient error (from that event on, after the backoff), and the
failure semantics: when an event fails fatally, the events before it in its batch are finished
(outputs sent, handled, committed by the next commit) and it and the later ones are not. Events
of a batch read before a rebalance that are not handled yet when it comes are left unhandled, as
faust leaves them, and read again where their partition went.

Processing guarantee: at least once. Outputs are sent as soon as they are made. The agent commits
its input offsets itself (`OffsetBook`, every second, at a rebalance and at stop), after flushing
the producer (outputs and changelog records), up to the last event it handled in each partition:
a crash re-handles at most what came after the last commit. faust's own acking is off on the
input topics, because faust acknowledges the events it skips after a rebalance (those fetched in
the previous generation) without handling them, and its commit then steps over the first unacked
offset when the next ones are acked: five kill -9s lost 2 decisions of 200 that way. Output event ids derive from the input's, so a redelivered input yields the same
ids (downstream consumers skip them); the tables make the second handling decide the same way
(the ticket already counted in its window, its answer already remembered, its proposal already
open) and an incident update is re-emitted by the event that caused it. faust's `exactly_once`
would hold every output until a transaction commits (every commit interval): a second of latency
on each hop of the decision path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, MutableMapping

import faust
from faust.streams import _current_event  # the contextvar faust's tables take a write's partition from
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP

from supportflow.eventbus import (
    H_MESSAGE_TYPE,
    DeadLetterBudget,
    Emit,
    InvalidEvent,
    TransientError,
    dead_letter_headers,
    decode,
    derived_event_id,
    encode,
    header,
    new_traceparent,
)
from supportflow.observability import (
    CONSUMER_LAG,
    EVENT_PROCESSING_SECONDS,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_PRODUCED,
    Health,
    ticket_context,
)
from supportflow.topics import Topic

from services.escalator.actions import LEDGER_MEMORY_S
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.handlers import Escalator
from services.escalator.lookups_ahead import LookupsAhead
from services.escalator.settings import EscalatorSettings

log = logging.getLogger(__name__)

H_TRACEPARENT = "traceparent"
INPUTS = (Topic.TICKETS_CLASSIFIED, Topic.TICKETS_DRAFTED, Topic.ACTIONS_CONFIRMED, Topic.TICKETS_FEEDBACK,
          Topic.ESCALATOR_BY_SIGNATURE)
# What the re-partition topic carries, by message-type header.
_REKEYED = {t.message_type.DESCRIPTOR.full_name: t for t in (Topic.TICKETS_CLASSIFIED, Topic.TICKETS_DRAFTED)}
_DELETED = object()
_ABSENT = object()
# A partition with unread events and no progress for this long, while the agent is idle, is read
# again from its next offset (see OffsetBook.stalled).
STALL_S = 1.5
# ... and for this long while nothing at all was handled since the assignment (faust drops what it
# fetched while a group starts: the usual case at a replica's start), checked this often.
FIRST_STALL_S = 0.5
STALL_CHECK_S = 0.25
# Events handed to the worker thread at once: what the stream has ready, up to BATCH_MAX; the thread
# returns after BATCH_BUDGET_S (and at least one event), so the first event's outputs wait at most that.
BATCH_MAX = 64
BATCH_BUDGET_S = 0.02


class TableStore(MutableMapping[str, Any]):
    """A faust table seen as the plain key-value store a state holder reads and writes, with expiry.

    Reads come from the table (skipping entries older than `memory_s`); writes are buffered until
    `apply`, which writes them into the table as {"t": written at, "p": partition, "v": value}
    on the stream's task. `sweep` deletes expired entries (a local table: only those of the
    partition being handled, whose changelog the deletion goes to).

    A batch of events is handled on the worker thread before any of its writes reach the table:
    `take` closes one event's writes (returned, to be applied with that event's partition) and
    keeps them readable by the batch's later events until `settle`, so each event reads what the
    ones before it wrote, as if every write had been applied at once."""

    def __init__(self, table: faust.Table, memory_s: float, *, local: bool, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.memory_s = memory_s
        self.local = local
        self._clock = clock
        self._writes: dict[str, Any] = {}  # the event being handled
        self._pending: dict[str, Any] = {}  # earlier events of its batch, taken but not yet applied
        self._next_sweep: dict[int, float] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._writes.get(key, self._pending.get(key, _ABSENT))
        if value is not _ABSENT:
            if value is _DELETED:
                raise KeyError(key)
            return value
        entry = self.table.get(key)
        if not isinstance(entry, dict) or "t" not in entry or entry["t"] < self._clock() - self.memory_s:
            raise KeyError(key)
        return entry["v"]

    def __setitem__(self, key: str, value: Any) -> None:
        self._writes[key] = value

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError when absent, as a dict
        self._writes[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a table store is not iterated on the decision path")

    def __len__(self) -> int:
        raise TypeError("a table store is not counted on the decision path")

    def discard(self) -> None:
        """Forget the writes of the event being handled (its handler failed)."""
        self._writes.clear()

    def take(self) -> dict[str, Any]:
        """Close the writes of the event just handled: returned for `apply`, and read by the
        batch's later events until `settle`."""
        writes, self._writes = self._writes, {}
        self._pending.update(writes)
        return writes

    def settle(self) -> None:
        """The batch's taken writes are applied (or abandoned): read from the table again."""
        self._pending.clear()

    def apply(self, partition: int, writes: dict[str, Any] | None = None) -> int:
        """Write `writes` (default: the event's own, not taken) into the table, on the stream's
        task; returns how many."""
        if writes is None:
            writes, self._writes = self._writes, {}
        now = self._clock()
        for key, value in writes.items():
            if value is _DELETED:
                self.table.pop(key, None)
            else:
                self.table[key] = {"t": now, "p": partition, "v": value}
        return len(writes)

    def sweep(self, partition: int) -> int:
        """Delete the expired entries (of `partition`, for a local table), at most once per
        twentieth of the memory; returns how many."""
        now = self._clock()
        due_key = partition if self.local else -1
        if now < self._next_sweep.get(due_key, 0.0):
            return 0
        self._next_sweep[due_key] = now + max(1.0, self.memory_s / 20)
        cutoff = now - self.memory_s
        expired = [key for key, entry in list(self.table.items())
                   if isinstance(entry, dict) and "t" in entry and entry["t"] < cutoff
                   and (not self.local or entry.get("p") == partition)]
        for key in expired:
            self.table.pop(key, None)
        return len(expired)


@dataclass
class EscalatorTables:
    windows: TableStore
    incident_tickets: TableStore
    answered: TableStore
    ledger: TableStore
    proposals: TableStore
    proposals_by_ticket: TableStore

    def all(self) -> list[TableStore]:
        return [self.windows, self.incident_tickets, self.answered, self.ledger, self.proposals,
                self.proposals_by_ticket]

    @property
    def changelog_topics(self) -> dict[str, int]:
        """Each table's changelog topic and its partition count."""
        return {store.table.changelog_topic.get_topic_name(): store.table.partitions for store in self.all()}


def declare_tables(app: faust.App, settings: EscalatorSettings, config: EscalationConfig, limits: ActionLimits) -> EscalatorTables:
    def local(name: str, memory_s: float) -> TableStore:
        table = app.Table(name, partitions=settings.topic_partitions)  # JSON keys and values: faust's default codec for plain types
        return TableStore(table, memory_s, local=True)

    def shared(name: str, memory_s: float) -> TableStore:
        # One changelog partition, as faust advises for global tables read by several replicas.
        table = app.GlobalTable(name, partitions=1, recovery_buffer_size=1, use_partitioner=True,
                                )
        return TableStore(table, memory_s, local=False)

    incidents = config.incidents
    return EscalatorTables(
        # A signature's state matters while its latest ticket is within a window of the next one.
        windows=local("incident-windows", 2 * incidents.window_s),
        incident_tickets=local("incident-tickets", incidents.links_memory_s),
        answered=shared("answered-tickets", config.answered_memory_s),
        ledger=shared("action-ledger", LEDGER_MEMORY_S),
        proposals=shared("action-proposals", limits.proposal_ttl_s),
        proposals_by_ticket=shared("action-proposals-by-ticket", limits.proposal_ttl_s),
    )


class FaustRecord:
    """A faust message with confluent-kafka's accessors, for eventbus.decode and dead letters."""

    __slots__ = ("_message",)

    def __init__(self, message: Any) -> None:
        self._message = message

    def headers(self) -> list:
        headers = self._message.headers or []
        return list(headers.items()) if isinstance(headers, dict) else list(headers)

    def value(self) -> bytes | None:
        return self._message.value

    def key(self) -> bytes | None:
        return self._message.key

    def topic(self) -> str:
        return self._message.topic

    def partition(self) -> int:
        return self._message.partition

    def offset(self) -> int:
        return self._message.offset


@dataclass(slots=True)
class _Work:
    """An admitted event on its way through the worker thread."""

    event: Any
    record: FaustRecord
    arrived_on: Topic
    tp: Any
    offset: int
    ticket_id: str  # for logs: its key, or (re-keyed) the ticket id once decoded
    parsed: Any = None  # decoded once, kept for a retry
    attempts: int = 0
    looked_ahead: bool = False  # its expected lookups started (LookupsAhead)
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Outcome:
    """What the worker thread made of one event, for the loop to carry out."""

    work: _Work
    kind: str  # "decided", "rekeyed" or "dead_letter"
    emits: list = field(default_factory=list)
    writes: list = field(default_factory=list)  # per store (EscalatorTables.all order)
    key: bytes = b""  # rekeyed: its signature
    reason: str = ""  # dead_letter
    detail: str = ""


@dataclass
class AgentState:
    """What the runner watches: the first fatal error, the events handled, and how to commit."""

    failure: BaseException | None = None
    handled: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    commit: Callable[[], Any] | None = None  # coroutine function: commit what was handled
    busy: bool = False  # an event is being handled


class OffsetBook:
    """The next offset to handle and commit per partition: one past the last event handled there
    (events of one partition are handled in order, one at a time), starting from the group's
    committed offset at each assignment.

    An event past that offset means faust skipped the ones between (it drops events fetched before
    a rebalance, sometimes after having moved the fetch position past them): `admit` says where
    to seek back to, and nothing after the gap is handled or committed until they come again."""

    def __init__(self) -> None:
        self._next: dict[Any, int] = {}
        self._ahead: dict[Any, int] = {}  # past the last event admitted and not yet handled (a batch)
        self._committed: dict[Any, int] = {}
        self._seeking: set[Any] = set()
        self._progress: dict[Any, float] = {}  # when each partition last moved (monotonic)
        self._last_progress = 0.0  # when any partition last moved
        self._behind_since: dict[Any, float] = {}  # since when each partition was seen with unread events
        self._handled_since_assigned = False
        self._lock = asyncio.Lock()

    def assigned(self, start: dict[Any, int | None], now: float) -> None:
        """A new assignment: each partition starts from the group's committed offset, or where a
        group without one starts reading (the partition's earliest offset)."""
        self._next = {tp: offset for tp, offset in start.items() if offset is not None and offset >= 0}
        self._ahead = {}
        self._committed = {}
        self._seeking.clear()
        self._progress = {tp: now for tp in self._next}
        self._last_progress = now
        self._behind_since = {}
        self._handled_since_assigned = False

    def stalled(self, ends: dict[Any, int], now: float, after_s: float, *,
                first_after_s: float | None = None) -> dict[Any, int]:
        """When nothing at all was handled for `after_s`: the partitions with events past their
        next offset (faust dropped what it had fetched, and nothing later came to show the gap),
        and where to seek each back to. Their clocks restart, so each is sought at most once per
        `after_s`. Until the first event is handled after an assignment, `first_after_s` (when
        given) is the period instead: faust drops the first fetch of a starting group."""
        if first_after_s is not None and not self._handled_since_assigned:
            after_s = first_after_s
        found: dict[Any, int] = {}
        for tp, end in ends.items():
            expected = self._next.get(tp)
            if expected is None or end <= expected:
                self._behind_since.pop(tp, None)
                continue
            # Unread events seen for the whole period, and nothing at all handled meanwhile: a
            # partition waiting its turn in a backlog, or an event just arriving, is not stuck.
            since = self._behind_since.setdefault(tp, now)
            if now - since > after_s and now - self._last_progress > after_s:
                found[tp] = expected
                self._behind_since[tp] = now
        return found

    def admit(self, tp: Any, offset: int) -> bool | int:
        """True: handle the event. False: skip it (handled already). An int: skip it and seek the
        partition back to that offset (a gap before it), unless a seek there is under way.
        Events of one partition may be admitted several at a time (a batch), each right after the
        one before; they are then handled in that order."""
        expected = self._ahead.get(tp)
        if expected is None:
            expected = self._next.get(tp, offset)
        if offset == expected:
            self._seeking.discard(tp)
            self._ahead[tp] = offset + 1
            return True
        if offset < expected:
            return False
        if tp in self._seeking:
            return False
        self._seeking.add(tp)
        return expected

    def release(self, tps: Any) -> None:
        """Events admitted on `tps` will not be handled after all (a rebalance came first): the
        next admitted must follow the last handled."""
        for tp in tps:
            self._ahead.pop(tp, None)

    def handled(self, tp: Any, offset: int, now: float = 0.0) -> None:
        self._next[tp] = offset + 1
        if self._ahead.get(tp, 0) <= offset + 1:
            self._ahead.pop(tp, None)
        self._progress[tp] = self._last_progress = now or time.monotonic()
        self._behind_since.pop(tp, None)
        self._handled_since_assigned = True

    def ends(self, app: faust.App, topics: Any) -> dict[Any, int]:
        """Each assigned partition of `topics` and its end as the consumer last saw it (from its
        fetch responses: asking the broker, `highwaters`, queues behind a fetch the broker holds
        for up to 1.5 s on the same connection)."""
        found = {}
        for tp in app.consumer.assignment():
            if tp.topic in topics:
                try:
                    end = app.consumer.highwater(tp)
                except Exception:  # noqa: BLE001 - not fetched yet
                    continue
                if end is not None and end >= 0:
                    found[tp] = end
        return found

    def lag(self, app: faust.App) -> dict[Any, int]:
        """Events not yet handled per assigned partition, as far as the consumer knows its end."""
        found = {}
        for tp in app.consumer.assignment():
            if tp in self._next:
                end = app.consumer.highwater(tp)
                if end is not None and end >= 0:
                    found[tp] = max(end - self._next[tp], 0)
        return found

    async def commit(self, app: faust.App) -> int:
        """Flush the producer, then commit what was handled on the partitions still assigned;
        returns how many partitions were committed."""
        async with self._lock:
            pending = {tp: offset for tp, offset in self._next.items()
                       if self._committed.get(tp) != offset and tp not in self._seeking}
            if not pending:
                return 0
            await app.producer.flush()  # outputs and changelog records first: at least once
            assigned = app.consumer.assignment()
            offsets = {tp: offset for tp, offset in pending.items() if tp in assigned}
            for tp in set(pending) - set(offsets):  # moved to another replica: it commits from now on
                self._next.pop(tp, None)
                self._committed.pop(tp, None)
            # faust's driver-level commit (its public `commit` commits faust's own acks, off here).
            if offsets and await app.consumer._commit(offsets):
                self._committed.update(offsets)
            return len(offsets)


def install(app: faust.App, settings: EscalatorSettings, escalator: Escalator, tables: EscalatorTables, *,
            service: str = "escalator", max_retries: int = 5, budget: DeadLetterBudget | None = None,
            lookups: LookupsAhead | None = None) -> AgentState:
    """Register the escalator's agent on `app`; returns the state the runner watches. `lookups`:
    the escalator's peer lookups, started ahead for each batch (none: made in turn)."""
    prefix = settings.topic_prefix
    by_name = {topic.name_in(prefix): topic for topic in INPUTS}
    rekeyed_name = Topic.ESCALATOR_BY_SIGNATURE.name_in(prefix)
    handlers: dict[Topic, Callable[[Any], list[Emit]]] = {
        Topic.TICKETS_CLASSIFIED: escalator.on_classified, Topic.TICKETS_DRAFTED: escalator.on_drafted,
        Topic.ACTIONS_CONFIRMED: escalator.on_action_confirmed, Topic.TICKETS_FEEDBACK: escalator.on_feedback,
    }
    budget = budget or DeadLetterBudget()
    state = AgentState()
    stores = tables.all()
    # acks=False: faust does not commit these topics; the OffsetBook does (see the module's doc).
    source = app.topic(*by_name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions, acks=False)
    offsets = OffsetBook()
    state.commit = lambda: offsets.commit(app)

    async def seek_back(tp: Any, offset: int) -> None:
        """faust's `Consumer.seek`, made safe: the aiokafka consumer is sought on faust's consumer
        thread, which owns it (faust's own `seek` mutates it from this thread, racing its fetcher,
        which then crashed on a KeyError); and faust's read offset is moved back first, as its
        `seek` does, or it drops every re-read event below the last it delivered."""
        app.consumer._read_offset[tp] = offset if offset else None
        thread = app.consumer._thread
        await thread.call_thread(lambda: thread._ensure_consumer().seek(ensure_aiokafka_TP(tp), offset))

    lag_reported = [0.0]

    @app.timer(interval=1.0)
    async def commit_handled() -> None:
        if not app.rebalancing and state.failure is None:
            await offsets.commit(app)
            if time.monotonic() - lag_reported[0] >= 10:
                lag_reported[0] = time.monotonic()
                for tp, lag in offsets.lag(app).items():
                    CONSUMER_LAG.labels(service, by_name[tp.topic].base_name, str(tp.partition)).set(lag)

    @app.timer(interval=STALL_CHECK_S)
    async def read_again_what_was_dropped() -> None:
        if app.rebalancing or state.failure is not None or state.busy:
            return
        ends = offsets.ends(app, by_name)
        if not ends:
            return
        # Right after an assignment, once the tables are recovered, unread events and nothing
        # handled yet is faust's dropped first fetch: no need to wait the full STALL_S.
        first = FIRST_STALL_S if app.tables.recovery.completed.is_set() else None
        for tp, offset in offsets.stalled(ends, time.monotonic(), STALL_S, first_after_s=first).items():
            log.warning("events left unread by the consumer: reading them again",
                        extra={"fields": {"partition": str(tp), "from": offset}})
            await seek_back(tp, offset)

    async def on_revoked(sender: Any, revoked: Any = None, **_: Any) -> None:
        if state.failure is None:
            await offsets.commit(app)  # hand the partitions over with their latest offsets

    app.on_partitions_revoked.connect(on_revoked)

    async def on_assigned(sender: Any, assigned: Any = None, **_: Any) -> None:
        mine = [tp for tp in assigned or () if tp.topic in by_name]
        # Asked on a worker thread with a client of its own, not faust's consumer thread: a stop
        # that lands during a rebalance must not leave that thread waiting on a cancelled call.
        starts = await asyncio.to_thread(start_offsets, settings, app.conf.id, mine) if mine else {}
        offsets.assigned(starts, time.monotonic())

    app.on_partitions_assigned.connect(on_assigned)

    async def send(topic_name: str, key: bytes | None, value: bytes | None, headers: list) -> None:
        await app.producer.send(topic_name, key, value, partition=None, timestamp=None, headers=headers)

    consumed = {topic: EVENTS_CONSUMED.labels(service, topic.base_name) for topic in INPUTS}
    produced: dict[Topic, Any] = {}
    processing = {topic: EVENT_PROCESSING_SECONDS.labels(service, topic.base_name) for topic in INPUTS}

    def produced_on(topic: Topic) -> Any:
        counter = produced.get(topic)
        if counter is None:
            counter = produced[topic] = EVENTS_PRODUCED.labels(service, topic.base_name)
        return counter

    async def dead_letter(topic: Topic, record: FaustRecord, reason: str, detail: str) -> None:
        await send(topic.dead_letter_in(prefix), record.key(), record.value(),
                   dead_letter_headers(record, service, reason, detail))
        EVENTS_DEAD_LETTERED.labels(service, topic.base_name, reason).inc()
        log.warning("dead-lettered", extra={"fields": {"reason": reason, "detail": detail[:500], "topic": topic.base_name}})
        budget.record(True)

    # On the worker thread: decode, route and decide each event of a batch, in order.

    def event_topic(work: _Work) -> Topic:
        """The topic whose event type `work` holds (a re-keyed one says which in a header)."""
        if work.arrived_on is Topic.ESCALATOR_BY_SIGNATURE:
            return _REKEYED.get(header(work.record, H_MESSAGE_TYPE) or "", Topic.TICKETS_CLASSIFIED)
        return work.arrived_on

    def rekeyed_to(work: _Work) -> bytes | None:
        """The signature a decoded ticket goes to be decided under, or None: decided here."""
        if work.arrived_on not in (Topic.TICKETS_CLASSIFIED, Topic.TICKETS_DRAFTED):
            return None
        signature = escalator.incident_signature(work.parsed)
        return None if signature is None else signature.store_key.encode()

    def look_ahead(batch: list[_Work]) -> None:
        """Start the peer lookups the batch's decisions are expected to make."""
        for work in batch:
            if work.looked_ahead:
                continue
            work.looked_ahead = True
            topic = event_topic(work)
            if topic not in (Topic.TICKETS_CLASSIFIED, Topic.TICKETS_DRAFTED):
                continue
            try:
                if work.parsed is None:
                    work.parsed = decode(topic, work.record)
                expected = None if rekeyed_to(work) is not None else escalator.lookups_for(work.parsed)
            except Exception:  # noqa: BLE001 - only a guess: the event's own step meets the error
                continue
            if expected is not None:
                lookups.start(expected)

    def step(work: _Work) -> _Outcome:
        """One event: what to do with it (dead-letter it, pass it on re-keyed, or send what its
        handler decided, with the table writes the handler made). Raises TransientError (retried
        from the loop) and whatever is fatal."""
        topic = event_topic(work)
        if work.parsed is None:  # decoded once, kept for a retry
            try:
                work.parsed = decode(topic, work.record)
            except InvalidEvent as exc:
                return _Outcome(work, "dead_letter", reason="invalid_event", detail=str(exc))
        parsed = work.parsed
        if work.arrived_on is Topic.ESCALATOR_BY_SIGNATURE:
            work.ticket_id = parsed.ticket.ticket_id  # its key is its signature
        else:
            signature_key = rekeyed_to(work)
            if signature_key is not None:  # decided by the owner of its signature's windows
                return _Outcome(work, "rekeyed", key=signature_key)
        with ticket_context(work.ticket_id):
            try:
                emits = handlers[topic](parsed)
            except InvalidEvent as exc:
                _discard()
                return _Outcome(work, "dead_letter", reason="invalid_event", detail=str(exc))
            except TransientError:
                _discard()
                raise
            except Exception as exc:  # a handler bug: park the message, keep going within budget
                _discard()
                log.exception("handler failed")
                return _Outcome(work, "dead_letter", reason="handler_error", detail=f"{type(exc).__name__}: {exc}")
        return _Outcome(work, "decided", emits=emits, writes=[store.take() for store in stores])

    def _discard() -> None:
        for store in stores:
            store.discard()

    def work_through(batch: list[_Work]) -> tuple[list[_Outcome], BaseException | None]:
        """The batch's events in order, for at most BATCH_BUDGET_S (at least one event): their
        outcomes, and the error that stopped it (the event after the last outcome), if any."""
        outcomes: list[_Outcome] = []
        started = time.perf_counter()
        if lookups is not None:
            look_ahead(batch)
        for work in batch:
            if outcomes and time.perf_counter() - started > BATCH_BUDGET_S:
                break
            try:
                outcomes.append(step(work))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, which decides
                return outcomes, exc
        return outcomes, None

    # On the loop (the stream's task): outputs, table writes, offsets.

    async def finish(outcome: _Outcome) -> None:
        work = outcome.work
        record, arrived_on = work.record, work.arrived_on
        with ticket_context(work.ticket_id):
            if outcome.kind == "dead_letter":
                await dead_letter(arrived_on, record, outcome.reason, outcome.detail)
            elif outcome.kind == "rekeyed":
                await send(rekeyed_name, outcome.key, record.value(), record.headers())
                produced_on(Topic.ESCALATOR_BY_SIGNATURE).inc()
            else:
                partition = record.partition()
                # faust writes a local table's changelog to the partition of the stream's current
                # event: this event's, while its writes and sweeps are applied.
                token = _current_event.set(weakref.ref(work.event))
                try:
                    for store, writes in zip(stores, outcome.writes):
                        store.apply(partition, writes)
                    parent = header(record, H_TRACEPARENT)
                    source_id = work.parsed.meta.event_id
                    for index, emit in enumerate(outcome.emits):
                        # The same input yields the same output ids, so consumers downstream skip a repeat.
                        emit.event.meta.event_id = derived_event_id(source_id, emit.topic, index)
                        value, headers = encode(emit.event, new_traceparent(parent))
                        await send(emit.topic.name_in(prefix), emit.key.encode(), value, headers)
                        produced_on(emit.topic).inc()
                    budget.record(False)
                    processing[arrived_on].observe(time.perf_counter() - work.started)
                    rekeyed = arrived_on is Topic.ESCALATOR_BY_SIGNATURE
                    for store in stores:
                        if not store.local or rekeyed:
                            store.sweep(partition)
                finally:
                    _current_event.reset(token)
        offsets.handled(work.tp, work.offset)
        state.handled += 1

    def current(generation: int) -> bool:
        return app.flow_control.is_active() and app.consumer_generation_id == generation

    async def handle_batch(events: list) -> None:
        """Admit the events in order (OffsetBook), hand them to the worker thread, and finish
        each outcome in order. A transient error is retried from its event after a backoff; a
        fatal one is raised once the events before it are finished (sent and handled)."""
        generation = app.consumer_generation_id
        batch: list[_Work] = []
        for event in events:
            message = event.message
            if message.generation_id != generation:
                continue  # read before a rebalance: faust skips those; read again where it belongs
            tp, offset = message.tp, message.offset
            admitted = offsets.admit(tp, offset)
            if admitted is not True:
                if admitted is not False:
                    log.warning("events skipped by the consumer: reading them again",
                                extra={"fields": {"partition": str(tp), "from": admitted, "at": offset}})
                    await seek_back(tp, admitted)
                continue
            arrived_on = by_name[message.topic]
            consumed[arrived_on].inc()
            key = "" if arrived_on is Topic.ESCALATOR_BY_SIGNATURE else (message.key or b"").decode("utf-8", "replace")
            batch.append(_Work(event, FaustRecord(message), arrived_on, tp, offset, key))
        try:
            await work_through_all(batch, generation)
        finally:
            if lookups is not None:
                lookups.forget()

    async def work_through_all(batch: list[_Work], generation: int) -> None:
        """Hand the batch to the worker thread until every event is finished, retried or failed."""
        while batch:
            try:
                outcomes, error = await asyncio.to_thread(work_through, batch)
                for outcome in outcomes:
                    await finish(outcome)
            finally:
                for store in stores:
                    store.settle()
            batch = batch[len(outcomes):]
            if error is not None:
                work = batch[0]
                if not isinstance(error, TransientError) or work.attempts >= max_retries:
                    with ticket_context(work.ticket_id):
                        raise error
                work.attempts += 1
                with ticket_context(work.ticket_id):
                    log.warning("transient failure, retrying", extra={"fields": {"error": str(error), "attempt": work.attempts}})
                await asyncio.sleep(min(0.1 * 2 ** (work.attempts - 1), 5.0))
            if batch and not current(generation):  # a rebalance meanwhile: the rest is read again
                offsets.release({work.tp for work in batch})
                return

    @app.agent(source, name=f"{service}-decide", concurrency=1)
    async def decide(stream: faust.StreamT) -> None:
        # What the stream has read ahead: while more is ready, it joins the batch (at most
        # BATCH_MAX); a lone event is handled at once.
        ready = getattr(stream.channel, "queue", None)
        events: list = []
        async for event in stream.events():
            if state.failure is not None:  # stopping: nothing after the failed event is handled or committed
                continue
            events.append(event)
            if (ready is not None and len(events) < BATCH_MAX and not ready.empty()
                    and current(event.message.generation_id)):
                continue
            batch, events = events, []
            state.busy = True
            try:
                await handle_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - the runner stops the process, uncommitted
                if state.failure is None:
                    state.failure = exc
                    log.exception("the escalator's agent stopped; this event's offset is not committed")
                state.stopped.set()
                raise
            finally:
                state.busy = False

    return state


def start_offsets(settings: EscalatorSettings, group_id: str, partitions: list) -> dict:
    """Where each partition's handling starts: the group's committed offset, or for a partition
    the group never committed, its earliest offset (where `auto.offset.reset` starts)."""
    from confluent_kafka import Consumer, TopicPartition

    from supportflow.eventbus import kafka_config

    client = Consumer(kafka_config(settings) | {"group.id": group_id, "enable.auto.commit": False})
    try:
        asked = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        committed = {(c.topic, c.partition): c.offset for c in client.committed(asked, timeout=10)}
        starts = {}
        for tp in partitions:
            offset = committed.get((tp.topic, tp.partition), -1)
            if offset < 0:
                offset = client.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[0]
            starts[tp] = offset
        return starts
    finally:
        client.close()


def ready(app: faust.App) -> bool:
    """Partitions assigned and every table recovered."""
    try:
        return (not app.rebalancing and bool(app.consumer.assignment())
                and app.tables.recovery.completed.is_set())
    except Exception:  # noqa: BLE001 - not started yet
        return False


def health_reporter(app: faust.App, health: Health) -> Callable[[], None]:
    def report() -> None:
        health.set_ready(ready(app), "" if ready(app) else "recovering tables or rebalancing")
    return report
