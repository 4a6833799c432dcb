"""What the redelivery memory costs a ConsumerLoop on the real Kafka (`supportflow dev up`): the
time from a loop's start to its partitions being ready (assigned, and the group's handled event ids
read back) with N ids in the group's handled-ids topic, against a group that keeps none; the extra
time each batch spends writing its ids (in bulk, and one event per batch as when traffic is light);
and the memory N ids take. Runs in a namespace of its own, deleted afterwards.

    python benchmarks/dedupe_ttl.py [--ids 100000] [--partitions 3] [--single 200] [--json]

Figures, not a test: they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402

from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.eventbus import (  # noqa: E402
    ConsumerLoop,
    EventPublisher,
    HandledIds,
    delete_namespace_topics,
    encode,
    ensure_topics,
    kafka_config,
    new_meta,
)
from supportflow.observability import Health  # noqa: E402
from supportflow.topics import Topic  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402


def received(ticket_id: str) -> ev.TicketReceived:
    return ev.TicketReceived(meta=new_meta("acme", "bench"), ticket=tk.Ticket(ticket_id=ticket_id, body="card declined"))


class TimedLoop:
    """A ConsumerLoop of `group` that counts the events it handles whose ticket id starts with
    `counting` and times its handled-ids writes."""

    def __init__(self, settings: FleetSettings, group: str, remember: bool, counting: str, batch_size: int = 100) -> None:
        self.handled = 0
        self.first_at = 0.0
        self.counting = counting
        self.write_seconds: list[float] = []
        self.loop = ConsumerLoop(settings, "bench", {Topic.TICKETS_RECEIVED: self._count}, EventPublisher(settings, "bench"),
                                 Health("bench"), group=group, remember_handled=remember, batch_size=batch_size)
        write = self.loop._write_handled

        def timed_write() -> None:
            started = time.perf_counter()
            write()
            self.write_seconds.append(time.perf_counter() - started)

        self.loop._write_handled = timed_write
        self.batch_seconds: list[float] = []
        process_batch = self.loop._process_batch

        def counted_batch(batch) -> None:  # noqa: ANN001
            started = time.perf_counter()
            process_batch(batch)
            self.batch_seconds.append(time.perf_counter() - started)

        self.loop._process_batch = counted_batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.loop.run, args=(self._stop,), daemon=True)

    def _count(self, event: ev.TicketReceived) -> list:
        if event.ticket.ticket_id.startswith(self.counting):
            if not self.handled:
                self.first_at = time.perf_counter()
            self.handled += 1
        return []

    def start(self) -> float:
        """Start the loop; returns the seconds until its partitions were ready."""
        started = time.perf_counter()
        self._thread.start()
        if not self.loop.assigned.wait(120):
            raise SystemExit("the loop never got its partitions")
        return time.perf_counter() - started

    def wait_for(self, count: int, timeout_s: float = 600) -> float:
        """Wait until `count` events were handled; returns the seconds from the first to the last."""
        deadline = time.monotonic() + timeout_s
        while self.handled < count:
            if self.loop.error is not None or time.monotonic() > deadline:
                raise SystemExit(f"stuck at {self.handled} of {count}: {self.loop.error}")
            time.sleep(0.001)
        return time.perf_counter() - self.first_at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def produce_backlog(settings: FleetSettings, count: int) -> None:
    producer = Producer(kafka_config(settings) | {"linger.ms": 20, "compression.type": "lz4"})
    source = Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix)
    for index in range(count):
        value, headers = encode(received(f"b-{index}"))
        producer.produce(source, key=f"b-{index}".encode(), value=value, headers=headers)
        producer.poll(0)
    producer.flush(60)


def memory_per_id(count: int) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    memory = HandledIds(ttl_s=3600)
    now = time.time()
    for index in range(count):
        memory.add(uuid.uuid4().hex, now)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100_000, help="events handled, so ids in the table")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--single", type=int, default=200, help="events sent one at a time, for the per-batch cost")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    settings = FleetSettings.from_env().replace(topic_prefix=f"bench-dedupe-{uuid.uuid4().hex[:8]}.",
                                           topic_partitions=args.partitions)
    figures: dict[str, float] = {"ids": args.ids, "partitions": args.partitions}
    try:
        ensure_topics(settings)
        produce_backlog(settings, args.ids)
        for name, remember in (("with", True), ("without", False)):
            group = f"{settings.topic_prefix}{name}"
            # The first run handles the backlog (and, with the memory, writes its ids).
            bulk = TimedLoop(settings, group, remember, "b-")
            bulk.start()
            bulk.wait_for(args.ids)
            bulk.stop()
            # Time inside batches (decode, handle, flush, ids write, commit), not waiting on fetches.
            figures[f"bulk_events_per_s_{name}"] = args.ids / sum(bulk.batch_seconds)
            figures[f"bulk_batch_ms_p50_{name}"] = statistics.median(bulk.batch_seconds) * 1000
            if remember:
                figures["bulk_write_ms_per_batch_p50"] = statistics.median(bulk.write_seconds) * 1000
                figures["bulk_batches"] = len(bulk.write_seconds)
            # A restart: time to ready (the read-back of every id of the last TTL), then events
            # one at a time, each waited for, as when traffic is light (one event per batch).
            restarted = TimedLoop(settings, group, remember, f"s-{name}-")
            figures[f"ready_s_{name}"] = restarted.start()
            figures[f"ids_in_memory_when_ready_{name}"] = len(restarted.loop._handled)
            publisher = EventPublisher(settings, "bench")
            latencies = []
            for index in range(args.single):
                started = time.perf_counter()
                publisher.publish(Topic.TICKETS_RECEIVED, f"s-{name}-{index}", received(f"s-{name}-{index}"))
                publisher.flush()
                restarted.wait_for(index + 1)
                latencies.append(time.perf_counter() - started)
            restarted.stop()
            figures[f"single_handled_ms_p50_{name}"] = statistics.median(latencies) * 1000
            if remember:
                writes = sorted(restarted.write_seconds)
                figures["single_write_ms_p50"] = statistics.median(writes) * 1000
                figures["single_write_ms_p95"] = writes[int(0.95 * (len(writes) - 1))] * 1000
        figures["memory_bytes_per_id"] = memory_per_id(args.ids)
    finally:
        delete_namespace_topics(settings)

    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
        return
    print(f"{args.ids:,} events handled over {args.partitions} partitions, then a restart of the same group")
    print(f"  ready after start (assigned, {int(figures['ids_in_memory_when_ready_with']):,} ids read back): "
          f"{figures['ready_s_with']:.2f} s (a group without the memory: {figures['ready_s_without']:.2f} s)")
    print(f"  bulk, batches of up to 100: {figures['bulk_events_per_s_with']:,.0f} events/s of batch time "
          f"(without: {figures['bulk_events_per_s_without']:,.0f}); a batch {figures['bulk_batch_ms_p50_with']:.2f} ms "
          f"median (without: {figures['bulk_batch_ms_p50_without']:.2f} ms), of which the ids write "
          f"{figures['bulk_write_ms_per_batch_p50']:.2f} ms (median of {int(figures['bulk_batches'])} batches)")
    print(f"  one event per batch ({args.single}): ids write {figures['single_write_ms_p50']:.2f} ms median, "
          f"{figures['single_write_ms_p95']:.2f} ms p95; publish-to-handled {figures['single_handled_ms_p50_with']:.1f} ms "
          f"median (without: {figures['single_handled_ms_p50_without']:.1f} ms)")
    print(f"  memory: {figures['memory_bytes_per_id']:.0f} bytes per remembered id")


if __name__ == "__main__":
    main()
