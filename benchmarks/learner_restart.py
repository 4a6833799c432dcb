"""Restart of a learner holding many tickets, on the real Kafka (`supportflow dev up`): how long
until GetKpis serves the whole panel again, replaying the learner's log from its beginning, and
restored from a snapshot.

The log (`learner.events`, in a namespace of its own) gets N decided tickets and a CSAT survey for
each, of one tenant, as the learner's intake passes them on (to the tenant's partition, the topic
they came from in a header). Then one
replica (`python -m services.learner.main`) is started and timed until GetKpis answers with all N
tickets (GetKpis waits for its replica to apply the log up to its end, so the first full answer is
the moment it has); it is stopped (its shard's snapshot written to Kafka at shutdown), started
again with snapshots off (a full replay), and started a third time with them (restored). Then
failover: two replicas serving the panel, a fifth more tickets written (after the shard's last
snapshot), and kill -9 of the one holding the tenant's shard, timed until the other serves the
whole panel: with warm standbys (`failover_standby`), with snapshots only, and with neither.

    python benchmarks/learner_restart.py [--tickets 100000] [--inputs] [--code-dir PATH] [--json]

--inputs writes the events on the learner's input topics instead (its intake passes them on to the
log at the first start); --code-dir starts another checkout's learner on the same load (e.g. main's
before the log, which replays its input topics themselves: run it with --inputs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from benchmarks.machine import machine_speed  # noqa: E402
from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.eventbus import (  # noqa: E402
    H_SOURCE_TOPIC, EventPublisher, delete_namespace_topics, encode, ensure_topics, new_meta,
)
from supportflow.rpc import open_channel  # noqa: E402
from supportflow.topics import DECISION_TOPICS, Topic  # noqa: E402
from tooling.fleet import free_port  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

from services.learner.shards import shard_of  # noqa: E402
from services.learner.snapshots import HEADER_KEY, KafkaSnapshotLog  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000
ARCHETYPES = [tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_REPETITIVE, tk.ARCHETYPE_ACCOUNT_SPECIFIC]


def write_log(settings: FleetSettings, tickets: int, on_inputs: bool, first: int = 0) -> int:
    """N decided tickets (numbered from `first`) and a survey each, on the log as the intake writes
    them (or on the input topics); the records written."""
    publisher = EventPublisher(settings, "bench")
    log_name = Topic.LEARNER_EVENTS.name_in(settings.topic_prefix)
    written = 0

    def put(source: Topic, key: str, event) -> None:
        nonlocal written
        if on_inputs:
            publisher.publish(source, key, event)
            written += 1
            return
        value, headers = encode(event)
        publisher.produce_raw(log_name, key.encode(), value, headers + [(H_SOURCE_TOPIC, source.base_name.encode())],
                              partition=shard_of("rho-bank"))
        written += 1

    for i in range(first, first + tickets):
        ticket_id = f"b-{i:07d}"
        decision = (ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE)[i % 3]
        decided = ev.TicketDecided(meta=new_meta("rho-bank", "escalator"), decision=decision,
                                   ticket=tk.Ticket(ticket_id=ticket_id, tenant_id="rho-bank", customer_id=f"c-{i % 5000}"),
                                   classification=tk.Classification(archetype=ARCHETYPES[i % 3], segment=("uk", "eu")[i % 2]))
        decided.timeline.received_at.seconds = T0 + i
        decided.timeline.decided_at.seconds = T0 + i + 3
        put(DECISION_TOPICS[decision], ticket_id, decided)
        put(Topic.TICKETS_FEEDBACK, ticket_id, ev.FeedbackReceived(
            meta=new_meta("rho-bank", "gateway"), ticket_id=ticket_id,
            csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=float(80 + i % 21))))
    publisher.flush(120)
    return written


@dataclass
class Replica:
    process: subprocess.Popen
    grpc_port: int
    ops_port: int
    log_path: Path
    launched: float

    def holds(self, partition: int) -> bool:
        """Whether its log says it holds `partition` of the log now."""
        held: set[int] = set()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"log partitions taken"' in line:
                held |= set(json.loads(line)["partitions"])
            elif '"log partitions given up"' in line:
                held -= set(json.loads(line)["partitions"])
        return partition in held

    def metric(self, name: str) -> float:
        """The sum of a metric's series on the replica's /metrics (0 when it has none)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5) as response:
            families = text_string_to_metric_families(response.read().decode())
        return sum(sample.value for family in families for sample in family.samples if sample.name == name)


def launch(settings: FleetSettings, log_path: Path, code_dir: Path) -> Replica:
    ops, grpc_port = free_port(), free_port()
    env = os.environ | settings.to_env() | {"SUPPORTFLOW_OPS_PORT": str(ops), "SUPPORTFLOW_GRPC_PORT": str(grpc_port),
                                            "PYTHONPATH": str(code_dir)}
    with open(log_path, "ab") as log:
        launched = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "services.learner.main"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=str(code_dir))
    return Replica(process, grpc_port, ops, log_path, launched)


def full_panel_after(replica: Replica, tickets: int, since: float) -> float:
    """Seconds from `since` until `replica`'s GetKpis serves all `tickets`."""
    while True:  # a channel opened before the server listens waits out gRPC's reconnect backoff
        assert replica.process.poll() is None, replica.log_path.read_text()[-3000:]
        try:
            socket.create_connection(("127.0.0.1", replica.grpc_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.02)
    stub = services_pb2_grpc.LearnerStub(open_channel("bench", f"127.0.0.1:{replica.grpc_port}", 30.0))
    while True:
        assert replica.process.poll() is None, replica.log_path.read_text()[-3000:]
        assert time.monotonic() - since < 600, "no full panel after 600 s"
        try:
            rows = stub.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank", segment="all", channel="all"),
                                timeout=30).rows
        except Exception:  # noqa: BLE001 - not serving yet
            time.sleep(0.05)
            continue
        if sum(r.tickets for r in rows if r.archetype != "all") == tickets:
            return time.monotonic() - since


def timed_start(settings: FleetSettings, tickets: int, log_path: Path, code_dir: Path) -> tuple[dict, subprocess.Popen]:
    """Start one learner; seconds until GetKpis serves all `tickets`, and until it is ready."""
    replica = launch(settings, log_path, code_dir)
    # Readiness is watched on its own thread: a GetKpis call may wait up to 5 s for the log.
    ready_at: list[float] = []
    watching = threading.Event()

    def watch_ready() -> None:
        while not watching.is_set() and time.monotonic() - replica.launched < 600:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{replica.ops_port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        ready_at.append(time.monotonic() - replica.launched)
                        return
            except OSError:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    served_s = full_panel_after(replica, tickets, replica.launched)
    watcher.join(60)
    watching.set()
    ready_s = ready_at[0] if ready_at else None
    return {"panel_served_s": round(served_s, 2),
            "ready_s": round(ready_s, 2) if ready_s is not None else None}, replica.process


def failover(settings: FleetSettings, tickets: int, fresh: int, work: Path, code_dir: Path) -> dict:
    """Two replicas serving the panel, then `fresh` more tickets on the log (after the shard's
    last snapshot, as a crash between two snapshots finds them); kill -9 of the replica holding
    the tenant's shard: seconds until the other serves the whole panel (it takes the shard after
    the session timeout: from its warm copy with standbys, else from the shard's snapshot and the
    log after it, else from the log's beginning)."""
    replicas = [launch(settings, work / f"failover-{i}.log", code_dir) for i in range(2)]
    try:
        for replica in replicas:
            full_panel_after(replica, tickets, replica.launched)
        time.sleep(3)  # the second replica's join settled
        shard = shard_of("rho-bank")
        holder = next(r for r in replicas if r.holds(shard))
        survivor = next(r for r in replicas if r is not holder)
        write_log(settings, fresh, on_inputs=False, first=tickets)
        full_panel_after(holder, tickets + fresh, time.monotonic())
        if settings.learner_standby:
            deadline = time.monotonic() + 300
            while not (survivor.metric("supportflow_learner_standby_shards") > 0
                       and survivor.metric("supportflow_learner_standby_behind_records") == 0):
                assert time.monotonic() < deadline, "the survivor's copy did not catch up"
                time.sleep(0.2)
        killed = time.monotonic()
        holder.process.kill()
        holder.process.wait(30)
        figures = {"panel_served_s": round(full_panel_after(survivor, tickets + fresh, killed), 2)}
        if settings.learner_standby:
            figures["taken_from_copy"] = any(
                shard in json.loads(line).get("from_standby", [])
                for line in survivor.log_path.read_text(errors="replace").splitlines() if '"log partitions taken"' in line)
        return figures
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                stop(replica.process)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(120)


def snapshot_bytes(settings: FleetSettings) -> int:
    """The size of the state in the tenant's shard's snapshot (in Kafka), uncompressed."""
    records = {r.key: r.value for r in KafkaSnapshotLog(settings).read(shard_of("rho-bank"))}
    return int(json.loads(records[HEADER_KEY])["state_bytes"]) if records.get(HEADER_KEY) else 0


def run(tickets: int, on_inputs: bool, code_dir: Path, keep: bool = False) -> dict:
    settings = FleetSettings().replace(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", topic_partitions=4)
    work = Path(tempfile.mkdtemp(prefix="learner-restart-"))
    ensure_topics(settings)
    figures: dict = {"tickets": tickets, "written_on": "inputs" if on_inputs else "log", "code_dir": str(code_dir)}
    try:
        started = time.perf_counter()
        figures["records"] = write_log(settings, tickets, on_inputs)
        figures["written_s"] = round(time.perf_counter() - started, 1)
        # The first start saves the shard's snapshot at its stop; the second runs without
        # snapshots (a full replay), the third restores the first's.
        without = settings.replace(learner_snapshots=False)
        for name, chosen in (("first_start_replay", settings), ("restart_replay", without),
                             ("restart_snapshot", settings)):
            figures[name], process = timed_start(chosen, tickets, work / f"{name}.log", code_dir)
            stopped = time.monotonic()
            stop(process)
            figures[name]["stop_s"] = round(time.monotonic() - stopped, 2)
        figures["snapshot_bytes"] = snapshot_bytes(settings)
        # Failover with a fifth more tickets written after the shard's last snapshot.
        fresh = tickets // 5
        figures["failover_fresh_tickets"] = fresh
        figures["failover_standby"] = failover(settings.replace(learner_standby=True), tickets, fresh, work, code_dir)
        tickets += fresh
        figures["failover_snapshot"] = failover(settings, tickets, fresh, work, code_dir)
        tickets += fresh
        figures["failover_replay"] = failover(without, tickets, fresh, work, code_dir)
    finally:
        delete_namespace_topics(settings)
        if keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--inputs", action="store_true", help="write the events on the input topics")
    parser.add_argument("--code-dir", type=Path, default=ROOT, help="the checkout whose learner is started")
    parser.add_argument("--keep", action="store_true", help="keep the learners' logs (and the snapshot)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    speed_before = machine_speed()
    figures = run(args.tickets, args.inputs, args.code_dir.resolve(), args.keep)
    figures["machine_speed_rounds_per_s"] = {"before": round(speed_before), "after": round(machine_speed())}
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
