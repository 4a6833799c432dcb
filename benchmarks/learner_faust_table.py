"""The learner's state in a faust table, measured before the learner moves there (the issue on
stateful processing; docs/state-and-replay.md, "The state as entries"): on the real Kafka
(`supportflow dev up`), N decided tickets and a CSAT survey each, of one tenant, are written on the
learner's log (`learner.events`, in a namespace of its own) as the intake writes them. Then worker
processes, each a faust-streaming app whose one agent applies the log with the learner's handlers
(`shard_handlers`, as a shard does):

- `plain`: applies only, no table: the agent's own cost;
- `table`: and, every 100 events, writes the entries the learner changed (`Learner.take_changes`)
  into a faust table (memory store) co-partitioned with the log, so its changelog gets them;
- `recover`: a new process of the `table` app, timed until faust has recovered the table from its
  changelog, then until `Learner.from_entries` has built the shard from the table and its panel
  counts every ticket (against a snapshot's restore: `learner_restart.py`).

    python benchmarks/learner_faust_table.py [--tickets 20000] [--json]

Prints events applied per second (and per CPU second of the worker) in each mode, the changelog
records written, and the recovery times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_speed  # noqa: E402
from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.eventbus import (  # noqa: E402
    H_SOURCE_TOPIC, EventPublisher, decode, delete_namespace_topics, encode, ensure_topics, new_meta, source_of,
)
from supportflow.topics import DECISION_TOPICS, Topic  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

from services.escalator.agents import FaustRecord  # noqa: E402
from services.escalator.app import broker_url  # noqa: E402
from services.learner.config import LearnerConfig  # noqa: E402
from services.learner.handlers import Learner  # noqa: E402
from services.learner.shards import INPUTS, SHARDS, shard_handlers, shard_of  # noqa: E402

T0 = 1_700_000_000
TENANT = "rho-bank"
CHANGES_EVERY = 100  # events between two writes of the changed entries (a batch of the apply loop)
SOURCES = {topic.base_name: topic for topic in INPUTS}
DATA_DIR = "bench-faust-table"  # the workers' faust data folders, under the cache, removed at the end


def write_log(settings: FleetSettings, tickets: int) -> int:
    publisher = EventPublisher(settings, "bench")
    log_name = Topic.LEARNER_EVENTS.name_in(settings.topic_prefix)
    archetypes = (tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_REPETITIVE, tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    for i in range(tickets):
        ticket = tk.Ticket(ticket_id=f"t-{i}", tenant_id=TENANT, customer_id=f"c-{i % 5000}")
        decided = ev.TicketDecided(meta=new_meta(TENANT, "escalator"), ticket=ticket,
                                   decision=(ev.DECISION_RESPOND, ev.DECISION_REVIEW)[i % 2],
                                   classification=tk.Classification(archetype=archetypes[i % 3], segment="retail",
                                                                    intent=f"intent_{i % 7}"))
        decided.timeline.decided_at.seconds = T0 + i
        survey = ev.FeedbackReceived(meta=new_meta(TENANT, "gateway"), ticket_id=ticket.ticket_id,
                                     csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=float(80 + i % 3 * 10)))
        for source, event in ((DECISION_TOPICS[decided.decision], decided), (Topic.TICKETS_FEEDBACK, survey)):
            value, headers = encode(event)
            publisher.produce_raw(log_name, ticket.ticket_id.encode(), value,
                                  headers + [(H_SOURCE_TOPIC, source.base_name.encode())], partition=shard_of(TENANT))
    publisher.flush(120.0)
    return tickets * 2


def worker(settings: FleetSettings, mode: str, app_id: str, expected: int) -> dict:
    """One faust app applying the log (or recovering its table); the figures of `mode`."""
    import faust

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    data_dir = settings.cache_dir / DATA_DIR / uuid.uuid4().hex[:8]
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(app_id, broker=broker_url(settings), store="memory://", autodiscover=False, web_enabled=False,
                    datadir=str(data_dir), topic_partitions=settings.topic_partitions, producer_linger=0.0,
                    consumer_auto_offset_reset="earliest", key_serializer="raw", value_serializer="raw",
                    broker_session_timeout=10.0, stream_recovery_delay=0.0,
                    # as the escalator's app (services/escalator/app.py): faust's 1 MB fetches stall
                    consumer_max_fetch_size=8 * 1024 * 1024)
    log_topic = app.topic(Topic.LEARNER_EVENTS.name_in(settings.topic_prefix), key_type=bytes, value_type=bytes)
    table = app.Table("learner-state", partitions=SHARDS) if mode != "plain" else None  # co-partitioned with the log
    config = LearnerConfig.load()
    learner = Learner(config)
    learner.track_changes()
    handlers = shard_handlers(learner)
    figures: dict = {"mode": mode}
    done = asyncio.Event()
    applied = written = 0

    @app.agent(log_topic)
    async def apply(stream):  # noqa: ANN001, ANN202 - faust's agent
        try:
            await apply_log(stream)
        except BaseException as exc:  # noqa: BLE001 - the worker fails with it, rather than wait
            figures["failure"] = repr(exc)
            done.set()
            raise

    async def apply_log(stream) -> None:  # noqa: ANN001
        nonlocal applied, written
        async for event in stream.events():
            if mode == "recover":
                continue  # the recovery is timed, not the log applied again
            record = FaustRecord(event.message)
            topic = source_of(record, SOURCES)
            handlers[topic](decode(topic, record))
            applied += 1
            if table is not None and (applied % CHANGES_EVERY == 0 or applied == expected):
                for key, value in learner.take_changes().items():
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = value
                    written += 1
            if applied == 1:
                figures["first_event_at"] = time.perf_counter()
            if applied == expected:
                done.set()

    async def run() -> None:
        started = time.perf_counter()
        cpu_started = _cpu_s()
        await app.start()
        if mode == "recover":
            while not (app.tables.recovery.completed.is_set() and app.consumer.assignment()):
                await asyncio.sleep(0.02)
            figures["table_recovered_s"] = round(time.perf_counter() - started, 2)
            build_started = time.perf_counter()
            restored = Learner.from_entries(dict(table.items()), config)
            tickets = sum(row.tickets for row in restored.kpi_rows(TENANT, "", "all", "all") if row.archetype != "all")
            figures["built_from_entries_s"] = round(time.perf_counter() - build_started, 2)
            figures["panel_served_s"] = round(time.perf_counter() - started, 2)
            figures["entries_recovered"] = len(table)
            figures["tickets_in_panel"] = tickets
        else:
            await asyncio.wait_for(done.wait(), timeout=1800)
            if "failure" in figures:
                raise RuntimeError(f"the agent failed: {figures['failure']}")
            finished = time.perf_counter()
            await app.producer.flush()
            apply_s = finished - figures.pop("first_event_at")
            figures.update(events=applied, apply_s=round(apply_s, 2), events_per_s=round(applied / apply_s),
                           worker_cpu_s=round(_cpu_s() - cpu_started, 2), changelog_records=written)

    loop.run_until_complete(run())
    return figures


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(settings: FleetSettings, mode: str, app_id: str, expected: int) -> dict:
    env = {**os.environ, "SUPPORTFLOW_TOPIC_PREFIX": settings.topic_prefix}
    done = subprocess.run([sys.executable, __file__, "--worker", mode, "--app-id", app_id, "--expected", str(expected)],
                          env=env, capture_output=True, text=True, timeout=2400)
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} worker failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=("plain", "table", "recover"), help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        figures = worker(FleetSettings(), args.worker, args.app_id, args.expected)
        print(json.dumps(figures), flush=True)
        os._exit(0)  # the app's offsets are not committed: each worker of the benchmark starts from the log's beginning

    settings = FleetSettings().replace(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings)
    speed_before = machine_speed()
    try:
        events = write_log(settings, args.tickets)
        results = {"tickets": args.tickets, "events": events}
        for mode in ("plain", "table"):
            results[mode] = run_worker(settings, mode, f"{settings.topic_prefix}learner-{mode}", events)
        results["recover"] = run_worker(settings, "recover", f"{settings.topic_prefix}learner-table", events)
        results["machine_speed_rounds_per_s"] = {"before": speed_before, "after": machine_speed()}
    finally:
        delete_namespace_topics(settings)
        shutil.rmtree(settings.cache_dir / DATA_DIR, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.items():
            print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
