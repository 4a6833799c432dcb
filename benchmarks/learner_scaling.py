"""The learner's apply throughput on the real Kafka (`supportflow dev up`), with one replica or
several sharing the log's shards: how many log events per second the replicas apply, per replica,
and per replica CPU second.

N decided tickets and a CSAT survey each, spread over T tenants in turn (by default one tenant per
shard of the log, so that replicas can share them), are written on the learner's log as its
intake writes them (each to its tenant's partition, the topic it came from in a header) while R
replicas (`python -m services.learner.main`) are running, ready and done rebalancing. Timed from
the first record written until the replicas have applied every record (their
`supportflow_events_consumed_total{topic="learner.events"}`, read every 0.5 s: so the figures are
up to 0.5 s long); then every tenant's panel is read
from the first replica (which asks the others for their shards) and checked to count all its
tickets.

    python benchmarks/learner_scaling.py [--tickets 60000] [--tenants 8] [--replicas 1] [--json]

With fewer tenants than shards, or tenants whose shards one replica holds, the replicas share less:
a tenant's events are applied by one replica (printed: the shards each replica holds).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.admin import AdminClient  # noqa: E402

from benchmarks.machine import CpuMeter, machine_speed, throughput_figures  # noqa: E402
from benchmarks.replicas import start_replica, stop_replicas  # noqa: E402
from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.eventbus import (  # noqa: E402
    H_SOURCE_TOPIC, EventPublisher, delete_namespace_topics, encode, ensure_topics, kafka_config, new_meta,
)
from supportflow.rpc import open_channel  # noqa: E402
from supportflow.topics import DECISION_TOPICS, Topic  # noqa: E402
from tooling.fleet import free_port  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

from services.learner.shards import SHARDS, shard_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000
ARCHETYPES = [tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_REPETITIVE, tk.ARCHETYPE_ACCOUNT_SPECIFIC]
POLL_S = 0.5
APPLIED = re.compile(r'^supportflow_events_consumed_total\{[^}]*topic="learner\.events"[^}]*\} (\S+)$', re.M)


def tenants_over_shards(count: int) -> list[str]:
    """`count` tenant ids, one per shard in turn (the first for shard 0, ...)."""
    names, taken = [], set()
    for shard in (i % SHARDS for i in range(count)):
        name = next(f"tenant-{j}" for j in range(100_000) if shard_of(f"tenant-{j}") == shard and f"tenant-{j}" not in taken)
        taken.add(name)
        names.append(name)
    return names


def log_records(tickets: int, tenants: list[str]) -> list[tuple[int, bytes, bytes, list]]:
    """(partition, key, value, headers) of each record, as the intake writes them: encoded ahead,
    so that writing them costs the benchmark little CPU while the replicas apply them."""
    records = []
    for i in range(tickets):
        tenant, ticket_id = tenants[i % len(tenants)], f"b-{i:07d}"
        decision = (ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE)[i % 3]
        decided = ev.TicketDecided(meta=new_meta(tenant, "escalator"), decision=decision,
                                   ticket=tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, customer_id=f"c-{i % 5000}"),
                                   classification=tk.Classification(archetype=ARCHETYPES[i % 3], segment=("uk", "eu")[i % 2]))
        decided.timeline.received_at.seconds = T0 + i
        decided.timeline.decided_at.seconds = T0 + i + 3
        survey = ev.FeedbackReceived(meta=new_meta(tenant, "gateway"), ticket_id=ticket_id,
                                     csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=float(80 + i % 21)))
        for source, event in ((DECISION_TOPICS[decision], decided), (Topic.TICKETS_FEEDBACK, survey)):
            value, headers = encode(event)
            records.append((shard_of(tenant), ticket_id.encode(), value,
                            headers + [(H_SOURCE_TOPIC, source.base_name.encode())]))
    return records


def write_log(publisher: EventPublisher, log_name: str, records: list[tuple[int, bytes, bytes, list]]) -> None:
    for partition, key, value, headers in records:
        publisher.produce_raw(log_name, key, value, headers, partition=partition)
    publisher.flush(120)


def ops_text(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def applied(port: int) -> float:
    return sum(float(value) for value in APPLIED.findall(ops_text(port, "/metrics") or ""))


def shards_held(admin, settings: FleetSettings) -> list[list[int]]:  # noqa: ANN001 - an AdminClient
    """The log partitions each member of the apply group holds."""
    group = f"{settings.topic_prefix}learner-apply"
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return sorted(sorted(tp.partition for tp in member.assignment.topic_partitions) for member in described.members)


def run(tickets: int, tenant_count: int, replicas: int) -> dict:
    settings = FleetSettings.from_env().replace(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", topic_partitions=4)
    tenants = tenants_over_shards(tenant_count)
    ensure_topics(settings)
    processes, ops_ports, grpc_ports = [], [], []
    try:
        for index in range(replicas):
            ops_ports.append(free_port())
            grpc_ports.append(free_port())
            processes.append(start_replica("learner", settings, index, ROOT, {
                "SUPPORTFLOW_OPS_PORT": str(ops_ports[-1]), "SUPPORTFLOW_GRPC_PORT": str(grpc_ports[-1]),
                "SUPPORTFLOW_LEARNER_ADVERTISED_HOST": "127.0.0.1"}))
        admin = AdminClient(kafka_config(settings))
        deadline = time.monotonic() + 120
        while not (all(ops_text(port, "/readyz") is not None for port in ops_ports)
                   and [sum(len(h) for h in held) for held in [shards_held(admin, settings)]] == [SHARDS]
                   and len(shards_held(admin, settings)) == replicas):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the learner replicas did not become ready: see {settings.cache_dir / 'bench-runs'}")
            time.sleep(0.2)
        held = shards_held(admin, settings)
        encoded = log_records(tickets, tenants)
        records = len(encoded)
        publisher = EventPublisher(settings, "bench")
        meter = CpuMeter([p.pid for p in processes])
        meter.start()
        started = time.perf_counter()
        write_log(publisher, Topic.LEARNER_EVENTS.name_in(settings.topic_prefix), encoded)
        written_s = time.perf_counter() - started
        deadline = time.monotonic() + 600
        while sum(applied(port) for port in ops_ports) < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(applied(port) for port in ops_ports)} of {records} applied after 600 s")
            # Not more often: each scrape computes the panels of the replica's tenants (as Prometheus's
            # do, every 15-30 s), which would weigh on what is measured.
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        stub = services_pb2_grpc.LearnerStub(open_channel("bench", f"127.0.0.1:{grpc_ports[0]}", 30.0))
        counted = {}
        for tenant in tenants:
            rows = stub.GetKpis(services_pb2.GetKpisRequest(tenant_id=tenant, segment="all", channel="all"), timeout=30).rows
            counted[tenant] = sum(r.tickets for r in rows if r.archetype != "all")
        expected = {tenant: sum(1 for i in range(tickets) if tenants[i % len(tenants)] == tenant) for tenant in tenants}
        if counted != expected:
            raise RuntimeError(f"panels count {counted}, expected {expected}")
    finally:
        stop_replicas(processes)
        delete_namespace_topics(settings)
    return {
        "replicas": replicas,
        "tenants": len(tenants),
        "shards_held": held,
        "records": records,
        "written_s": round(written_s, 2),
        "applied_s": round(elapsed, 2),
        **throughput_figures(cpu, records, elapsed, replicas),
        "panels": "every tenant's panel counts all its tickets",
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=60_000)
    parser.add_argument("--tenants", type=int, default=SHARDS, help="tenants, one per shard in turn")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before = machine_speed()
    figures = run(args.tickets, args.tenants, args.replicas)
    figures["machine_speed_before_after"] = [before, machine_speed()]
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
