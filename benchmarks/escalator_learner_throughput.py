"""Escalator and learner handler cost, without Kafka: how many events per second one process's
pure handlers take, on the demo's tickets (Banking77 held-out messages dressed as channel payloads,
including oversized and hostile ones), how long a KPI panel read takes once the learner holds many
tickets, and what a learner snapshot of that state costs to write and to restore (against handling
every event again, which a start without a snapshot does). It also applies the learner's events
with the changes to its state taken every 100 events, as a changelog-backed table would take them:
the entries and bytes such a changelog writes per event, and what taking them costs.

    python benchmarks/escalator_learner_throughput.py [--tickets N] [--json]

With --kafka it measures the escalator as it runs instead: its replicas as processes
(`python -m services.escalator.main`) on the real Kafka (`supportflow dev up`), handed a backlog
of the same tickets (classified, then drafted) in a namespace of its own, timed from the moment
every replica is ready until every decision is published: events handled per second, and per
replica; the CPU seconds the replicas used meanwhile (events per replica CPU second: if it holds
from one replica to two while the throughput does not double, the machine ran out of cores, not
the design out of scale), the share of the machine's cores busy, and the machine's speed before
and after. --code-dir runs another checkout's escalator on the same load (e.g. one before a change).
A ticket that can form an incident is decided by the replica that owns its burst signature, so how
evenly replicas share the work depends on how many signatures the tickets fall under (printed):
by default six intents drawn at random, two of which form incidents; --labelled-intents gives
each ticket its own Banking77 intent instead.

    python benchmarks/escalator_learner_throughput.py --kafka [--replicas N] [--labelled-intents] [--code-dir PATH] [--tickets N]

Routes, draft statuses, CSAT and the rest are drawn from a fixed seed: these are costs, not
quality figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import CpuMeter, machine_speed, throughput_figures  # noqa: E402
from benchmarks.replicas import start_replica, stop_replicas  # noqa: E402
from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.eventbus import new_meta  # noqa: E402
from tooling.sample_tickets import demo_tickets  # noqa: E402
from supportflow.topics import DECISION_TOPICS  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

from services.escalator.main import build_escalator  # noqa: E402
from services.learner.config import LearnerConfig  # noqa: E402
from services.learner.handlers import Learner  # noqa: E402

T0 = 1_700_000_000
ROUTES = [tk.ROUTE_AUTO_RESPOND] * 4 + [tk.ROUTE_DRAFT_FOR_REVIEW] * 3 + [tk.ROUTE_ASK_FOLLOW_UP, tk.ROUTE_ESCALATE]
CHANGES_EVERY = 100  # events between two takes of the learner's changes (a batch of the apply loop)
INTENTS = ["card_arrival", "card_not_working", "request_refund", "passcode_forgotten", "top_up_failed", "exchange_rate"]


def classified_events(count: int, rng: random.Random, labelled: bool = False) -> list[ev.TicketClassified]:
    """The demo's tickets classified: each with one of six intents drawn at random (two of them can
    form incidents, so a third of the tickets fall under two burst signatures), or, `labelled`,
    with its own Banking77 intent (as a classifier right ~95% of the time would give it)."""
    events = []
    for index, payload in enumerate(demo_tickets(count, run_id="bench")):
        ticket = tk.Ticket(ticket_id=payload["id"], tenant_id="rho-bank", customer_id=payload["customer_id"],
                           subject=payload["subject"], body=payload["body"])
        ticket.received_at.seconds = T0 + index * 2
        route = rng.choice(ROUTES)
        event = ev.TicketClassified(
            meta=new_meta("rho-bank", "classifier"), ticket=ticket,
            normalized=tk.NormalizedTicket(missing_identifiers=["transaction_id"] if route == tk.ROUTE_ASK_FOLLOW_UP else []),
            classification=tk.Classification(
                intent=payload["metadata"]["demo_label"] if labelled else rng.choice(INTENTS), confidence=rng.random(), route=route, tier=tk.CUSTOMER_TIER_STANDARD,
                archetype=rng.choice([tk.ARCHETYPE_REPETITIVE, tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_ACCOUNT_SPECIFIC]),
                urgency=tk.URGENCY_NORMAL, segment=rng.choice(["uk", "eu", "us"]),
            ),
        )
        event.timeline.received_at.CopyFrom(ticket.received_at)
        events.append(event)
    return events


def drafted(event: ev.TicketClassified, rng: random.Random) -> ev.TicketDrafted:
    status = rng.choice([tk.DRAFT_STATUS_READY] * 6 + [tk.DRAFT_STATUS_BLOCKED, tk.DRAFT_STATUS_NO_EVIDENCE])
    passages = [tk.EvidencePassage(article_id=f"a{i}", chunk_id=f"a{i}#0", text="passage " * 60) for i in range(5)]
    draft = tk.Draft(text="answer " * 60, status=status, next_step="Do this.",
                     citations=[tk.Citation(article_id="a0", chunk_id="a0#0", passage="passage")],
                     ledger=[tk.PolicyClaim(claim="5 days", verified=True)])
    return ev.TicketDrafted(meta=new_meta("rho-bank", "drafter"), ticket=event.ticket, normalized=event.normalized,
                            classification=event.classification, draft=draft, evidence=passages, timeline=event.timeline)


def run(count: int) -> dict:
    rng = random.Random(7)
    classified = classified_events(count, rng)
    drafts = [drafted(e, rng) for e in classified if e.classification.route in (tk.ROUTE_AUTO_RESPOND, tk.ROUTE_DRAFT_FOR_REVIEW)]

    escalator = build_escalator(FleetSettings())
    decisions: list[ev.TicketDecided] = []
    per_event_ms: list[float] = []
    started = time.perf_counter()
    for event in classified:
        t = time.perf_counter()
        emits = escalator.on_classified(event)
        per_event_ms.append((time.perf_counter() - t) * 1000)
        decisions += [e.event for e in emits if e.topic in DECISION_TOPICS.values()]
    for event in drafts:
        t = time.perf_counter()
        emits = escalator.on_drafted(event)
        per_event_ms.append((time.perf_counter() - t) * 1000)
        decisions += [e.event for e in emits if e.topic in DECISION_TOPICS.values()]
    escalator_s = time.perf_counter() - started
    packets = [d.packet.completeness for d in decisions if d.HasField("packet")]

    learner = Learner(LearnerConfig.load())
    feedback = [ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id=d.ticket.ticket_id,
                                    csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=rng.choice([50, 75, 100])))
                for d in decisions]
    started = time.perf_counter()
    for decision in decisions:
        learner.on_decided(decision)
    for item in feedback:
        learner.on_feedback(item)
    learner_s = time.perf_counter() - started
    # As the replicated log applies them (services/learner/main.py): each event once by its id.
    once = Learner(LearnerConfig.load())
    on_decided, on_feedback = once.applied_once(once.on_decided), once.applied_once(once.on_feedback)
    started = time.perf_counter()
    for decision in decisions:
        on_decided(decision)
    for item in feedback:
        on_feedback(item)
    once_s = time.perf_counter() - started
    # The same, with the changes a changelog-backed table would take (services/learner/entries.py):
    # taken every CHANGES_EVERY events, each entry encoded as a table's JSON serializer would.
    tracked = Learner(LearnerConfig.load())
    tracked.track_changes()
    on_decided, on_feedback = tracked.applied_once(tracked.on_decided), tracked.applied_once(tracked.on_feedback)
    entries = changelog_bytes = 0
    started = time.perf_counter()
    events = [(on_decided, d) for d in decisions] + [(on_feedback, f) for f in feedback]
    for index, (handle, event) in enumerate(events):
        handle(event)
        if index % CHANGES_EVERY == CHANGES_EVERY - 1 or index == len(events) - 1:
            for key, value in tracked.take_changes().items():
                entries += 1
                changelog_bytes += len(key) + len(json.dumps(value, separators=(",", ":")))
    tracked_s = time.perf_counter() - started
    read_started = time.perf_counter()
    rows = learner.kpi_rows("rho-bank")
    read_ms = (time.perf_counter() - read_started) * 1000
    # A snapshot (services/learner/snapshots.py) instead of handling every event again at start.
    export_started = time.perf_counter()
    state = learner.export_state()
    export_s = time.perf_counter() - export_started
    restore_started = time.perf_counter()
    Learner.from_state(state, LearnerConfig.load())
    restore_s = time.perf_counter() - restore_started
    per_event_ms.sort()
    return {
        "tickets": count,
        "decisions": len(decisions),
        "escalator_events": len(classified) + len(drafts),
        "escalator_events_per_s": round((len(classified) + len(drafts)) / escalator_s),
        "escalator_event_ms_p50": round(per_event_ms[len(per_event_ms) // 2], 3),
        "escalator_event_ms_p99": round(per_event_ms[int(len(per_event_ms) * 0.99)], 3),
        "packets": len(packets),
        "packet_completeness_mean": round(statistics.mean(packets), 3) if packets else None,
        "learner_events": len(decisions) + len(feedback),
        "learner_events_per_s": round((len(decisions) + len(feedback)) / learner_s),
        "learner_events_per_s_applied_once": round((len(decisions) + len(feedback)) / once_s),
        "learner_events_per_s_changes_taken": round((len(decisions) + len(feedback)) / tracked_s),
        "learner_changelog_entries_per_event": round(entries / (len(decisions) + len(feedback)), 2),
        "learner_changelog_bytes_per_event": round(changelog_bytes / (len(decisions) + len(feedback))),
        "kpi_rows": len(rows),
        "kpi_panel_read_ms": round(read_ms, 2),
        "learner_replay_handling_s": round(learner_s, 2),
        "learner_snapshot_bytes": len(state),
        "learner_snapshot_export_s": round(export_s, 2),
        "learner_snapshot_restore_s": round(restore_s, 2),
    }


# What the escalator's peers take to answer, from their measured p50s (docs/measurements.md): a
# similar-case or article search ~20 ms, an investigation ~106 ms.
PEER_LATENCY_S = {"Search": 0.020, "SimilarCases": 0.020, "Investigate": 0.106, "RunAction": 0.020}


def stand_in_peers(latency_s: dict[str, float]):
    """A gRPC server answering as the retriever and the investigator do, with empty answers, each
    after its latency; returns (server, address)."""
    from concurrent import futures

    import grpc

    from supportflow.contracts.v1 import services_pb2 as svc
    from supportflow.contracts.v1 import services_pb2_grpc

    def answer(method: str, response):
        def call(self, request, context):
            time.sleep(latency_s[method])
            return response
        return call

    retriever = type("Retriever", (services_pb2_grpc.RetrieverServicer,), {
        "Search": answer("Search", svc.SearchResponse()), "SimilarCases": answer("SimilarCases", svc.SimilarCasesResponse())})
    investigator = type("Investigator", (services_pb2_grpc.InvestigatorServicer,), {
        "Investigate": answer("Investigate", svc.InvestigateResponse()),
        "RunAction": answer("RunAction", svc.RunActionResponse())})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    services_pb2_grpc.add_RetrieverServicer_to_server(retriever(), server)
    services_pb2_grpc.add_InvestigatorServicer_to_server(investigator(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def run_on_kafka(count: int, replicas: int, code_dir: Path, labelled: bool = False, slow_peers: bool = False) -> dict:
    """The escalator's replicas as processes on Kafka, draining a backlog; see the module's doc."""
    import urllib.request
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    from supportflow.eventbus import EventPublisher, delete_namespace_topics, ensure_topics, kafka_config
    from supportflow.topics import Topic
    from tooling.fleet import free_port

    rng = random.Random(7)
    classified = classified_events(count, rng, labelled)
    drafts = [drafted(e, rng) for e in classified if e.classification.route in (tk.ROUTE_AUTO_RESPOND, tk.ROUTE_DRAFT_FOR_REVIEW)]
    # A ticket that can be part of an incident is decided by the replica owning its signature.
    escalator = build_escalator(FleetSettings())
    signatures = [escalator.incident_signature(e) for e in classified]
    # How many decisions to wait for: what the handlers decide on this input.
    expected = run_decisions(classified, drafts)
    peers, peer_addr = stand_in_peers(PEER_LATENCY_S) if slow_peers else (None, "127.0.0.1:1")
    settings = FleetSettings.from_env().replace(
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", topic_partitions=max(4, replicas), retriever_addr=peer_addr,
        investigator_addr=peer_addr, grpc_deadline_s=0.3, investigation_deadline_s=0.3)
    ensure_topics(settings)
    processes = []
    try:
        publisher = EventPublisher(settings, "bench")
        for event in classified:
            publisher.publish(Topic.TICKETS_CLASSIFIED, event.ticket.ticket_id, event)
        for event in drafts:
            publisher.publish(Topic.TICKETS_DRAFTED, event.ticket.ticket_id, event)
        publisher.flush()
        ports = []
        for index in range(replicas):
            ports.append(free_port())
            processes.append(start_replica("escalator", settings, index, code_dir, {
                "SUPPORTFLOW_OPS_PORT": str(ports[-1]),
                "SUPPORTFLOW_ESCALATOR_TABLE_DIR": str(settings.cache_dir / "bench-tables" / f"{settings.topic_prefix}{index}")}))

        def ready(port: int) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        deadline = time.monotonic() + 120
        while not all(ready(p) for p in ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the escalator replicas did not become ready: see {settings.cache_dir / 'bench-runs'}")
            time.sleep(0.05)
        meter = CpuMeter([p.pid for p in processes])
        meter.start()
        started = time.perf_counter()
        reader = Consumer(kafka_config(settings) | {"group.id": f"bench-{uuid.uuid4().hex}"})
        names = [t.name_in(settings.topic_prefix) for t in DECISION_TOPICS.values()]
        partitions = [TopicPartition(n, p) for n in names for p in range(settings.topic_partitions)]
        published, drain_deadline = 0, time.monotonic() + 600
        while published < expected:
            published = sum(reader.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in partitions)
            if time.monotonic() > drain_deadline:
                raise RuntimeError(f"{published} of {expected} decisions after 600 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        reader.close()
    finally:
        stop_replicas(processes)
        delete_namespace_topics(settings)
        if peers is not None:
            peers.stop(0)
    events = len(classified) + len(drafts)
    return {
        "code": str(code_dir),
        "replicas": replicas,
        "intents": "labelled" if labelled else "six at random",
        "peers": "stand-ins answering in " + ", ".join(f"{m} {v * 1000:.0f} ms" for m, v in PEER_LATENCY_S.items())
                 if slow_peers else "absent (every lookup fails at once)",
        "escalator_events": events,
        "tickets_under_a_signature": f"{sum(1 for g in signatures if g is not None) / len(signatures):.0%} "
                                     f"under {len({g.store_key for g in signatures if g is not None})} signatures",
        "decisions": published,
        "drain_s": round(elapsed, 2),
        **throughput_figures(cpu, events, elapsed, replicas, "escalator_events"),
    }


def run_decisions(classified: list[ev.TicketClassified], drafts: list[ev.TicketDrafted]) -> int:
    escalator = build_escalator(FleetSettings())
    emits = [e for event in classified for e in escalator.on_classified(event)]
    emits += [e for event in drafts for e in escalator.on_drafted(event)]
    return sum(1 for e in emits if e.topic in DECISION_TOPICS.values())


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the handlers log every decision and alert
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--kafka", action="store_true", help="measure escalator replicas on Kafka (see above)")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--labelled-intents", action="store_true",
                        help="with --kafka: each ticket's own Banking77 intent instead of six drawn at random")
    parser.add_argument("--slow-peers", action="store_true",
                        help="with --kafka: the retriever and investigator answer after their measured p50 latency "
                             "(stand-ins) instead of being absent")
    parser.add_argument("--code-dir", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose escalator --kafka runs (default: this one)")
    args = parser.parse_args()
    speed_before = machine_speed()
    figures = (run_on_kafka(args.tickets, args.replicas, args.code_dir.resolve(), args.labelled_intents,
                            args.slow_peers) if args.kafka
               else run(args.tickets))
    figures["machine_speed_rounds_per_s"] = {"before": round(speed_before), "after": round(machine_speed())}
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
