"""The escalator as a faust app on the real Kafka, its replicas as separate processes
(`python -m services.escalator.main`, the container's command):

- two replicas make exactly one incident of a burst with one signature spread over many ticket ids,
  and decide every ticket as one replica does on the same input;
- kill -9 of a replica five times during a run loses no decision and duplicates none (one
  decision event id per ticket), and the burst's incident is announced under one id;
- a start that finds a table's changelog deleted stops with a clear message instead of starting
  empty.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, decode, ensure_topics, kafka_config, new_meta
from supportflow.service import EXIT_STATE_LOST
from supportflow.topics import Topic
from tests.process_helpers import ServiceProcess, kill_in_turn, read_records
from tooling.settings import FleetSettings


pytestmark = pytest.mark.infra

TENANT = "rho-bank"
DECIDED = (Topic.TICKETS_ESCALATED, Topic.TICKETS_REVIEW, Topic.TICKETS_FOLLOW_UP, Topic.TICKETS_RESPONDED)


def escalator_settings(settings: FleetSettings, **changes: object) -> FleetSettings:
    # Four partitions, so two replicas share the work; gRPC dependencies absent (refused at once).
    return settings.replace(topic_partitions=4, retriever_addr="127.0.0.1:1", investigator_addr="127.0.0.1:1",
                            grpc_deadline_s=0.3, investigation_deadline_s=0.3, **changes)


class Replica(ServiceProcess):
    """One escalator process with its own ops port and log."""

    def __init__(self, settings: FleetSettings, log_dir: Path, name: str) -> None:
        super().__init__("services.escalator.main", settings, log_dir, name)

    def consumed(self) -> float:
        """Events this process consumed (its metrics)."""
        return self.metric("supportflow_events_consumed_total", 'service="escalator"')


def classified(ticket_id: str, *, burst: bool, received: float, customer: str = "cust-0001") -> ev.TicketClassified:
    """An escalate-route ticket; a burst one carries the incident signature (a fault intent on one product)."""
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=TENANT, customer_id=customer, channel=tk.CHANNEL_EMAIL,
                       body="My card is not working at any terminal" if burst else "Someone took money from my account")
    ticket.received_at.FromNanoseconds(int(received * 1e9))
    event = ev.TicketClassified(
        meta=new_meta(TENANT, "classifier"), ticket=ticket,
        normalized=tk.NormalizedTicket(problem_statement=ticket.body, product="debit card", language="en"),
        classification=tk.Classification(
            intent="card_not_working" if burst else "compromised_card", confidence=0.95,
            archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC, urgency=tk.URGENCY_HIGH, tier=tk.CUSTOMER_TIER_STANDARD,
            route=tk.ROUTE_ESCALATE, segment="retail"),
    )
    event.timeline.received_at.CopyFrom(ticket.received_at)
    return event


def read_topic(settings: FleetSettings, topic: Topic) -> list:
    """Every record on the topic now, decoded."""
    return [decode(topic, record) for record in read_records(settings, topic)]


def decisions(settings: FleetSettings, expected: int, timeout_s: float) -> list[ev.TicketDecided]:
    """Every decision record published (repeats included) once `expected` distinct tickets are decided."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [decision for topic in DECIDED for decision in read_topic(settings, topic)]
        if len({d.ticket.ticket_id for d in found}) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def incidents(settings: FleetSettings) -> list[ev.IncidentDetected]:
    return read_topic(settings, Topic.INCIDENTS_DETECTED)


def publish_run(settings: FleetSettings, events: list[ev.TicketClassified], spacing_s: float) -> None:
    publisher = EventPublisher(settings, "test")
    for event in events:
        publisher.publish(Topic.TICKETS_CLASSIFIED, event.ticket.ticket_id, event)
        publisher.flush()  # one at a time, so the burst reaches its signature's owner in this order
        time.sleep(spacing_s)


def the_input(count_burst: int, count_other: int) -> list[ev.TicketClassified]:
    t0 = time.time()
    burst = [classified(f"burst-{i:03d}", burst=True, received=t0 + i) for i in range(count_burst)]
    other = [classified(f"other-{i:03d}", burst=False, received=t0 + i, customer=f"cust-{i % 7:04d}")
             for i in range(count_other)]
    mixed = []
    for i in range(max(count_burst, count_other)):
        mixed += burst[i:i + 1] + other[i:i + 1]
    return mixed


def outcome(found: list[ev.TicketDecided]) -> dict[str, tuple]:
    return {d.ticket.ticket_id: (d.decision, d.reason, d.case_type, d.target_queue, d.incident_id) for d in found}


def test_two_replicas_make_one_incident_of_a_burst_and_decide_as_one_replica(settings, second_namespace, tmp_path):
    events = the_input(count_burst=24, count_other=16)
    runs = {}
    for name, namespace, replicas in (("one", second_namespace, 1), ("two", settings, 2)):
        ns = escalator_settings(namespace)
        ensure_topics(ns)
        started = [Replica(ns, tmp_path, f"{name}-{i}").start() for i in range(replicas)]
        try:
            for replica in started:
                replica.wait_ready()
            time.sleep(1.0)  # a later joiner's rebalance settles before the tickets come
            for replica in started:
                replica.wait_ready()
            publish_run(ns, events, spacing_s=0.03)
            found = decisions(ns, len(events), timeout_s=30)
            consumed = [replica.consumed() for replica in started]
        finally:
            codes = [replica.stop() for replica in started]
        assert codes == [0] * replicas, [r.tail() for r in started]
        runs[name] = (found, incidents(ns), consumed)

    one, two = runs["one"], runs["two"]
    assert len(outcome(one[0])) == len(events) == len(outcome(two[0]))
    assert all(n > 0 for n in two[2]), f"both replicas must take part: events consumed {two[2]}"
    # Exactly one incident, announced at creation and at each doubling, the same as with one replica.
    ids = {i.incident_id for i in two[1]}
    assert len(ids) == 1, ids
    assert sorted((i.incident_id, i.signature, len(i.ticket_ids)) for i in two[1]) == \
        sorted((i.incident_id, i.signature, len(i.ticket_ids)) for i in one[1])
    created = [i for i in two[1] if len(i.ticket_ids) == 5]
    assert len(created) == 1 and set(created[0].ticket_ids) == {f"burst-{i:03d}" for i in range(5)}
    in_incident = {t for t, o in outcome(two[0]).items() if o[4]}
    assert in_incident == {f"burst-{i:03d}" for i in range(4, 24)}  # decided once the burst was one
    assert outcome(two[0]) == outcome(one[0])


def test_five_kill_9s_lose_no_decision_and_duplicate_none(settings, tmp_path):
    ns = escalator_settings(settings, escalator_session_timeout_s=6.0)
    ensure_topics(ns)
    events = the_input(count_burst=60, count_other=140)
    replicas = [Replica(ns, tmp_path, f"r{i}").start() for i in range(2)]

    def recovered(kill: int, victim: Replica, killed_at: float) -> float:
        victim.wait_ready(60)
        return time.monotonic() - killed_at

    try:
        for replica in replicas:
            replica.wait_ready()
        feeder = threading.Thread(target=publish_run, args=(ns, events, 0.1), daemon=True)
        started = time.monotonic()
        feeder.start()
        recoveries = kill_in_turn(replicas, 5, 2.5, recovered)
        feeder.join(60)
        found = decisions(ns, len(events), timeout_s=45)
        elapsed = time.monotonic() - started
    finally:
        codes = [replica.stop() for replica in replicas]
    print(f"\nkill -9 x5 over {elapsed:.1f}s, {len(events)} tickets: restarted replica ready again after "
          + ", ".join(f"{r:.1f}s" for r in recoveries) + f"; {len(found)} decision records for {len(outcome(found))} tickets")
    assert codes == [0, 0], [r.tail() for r in replicas]

    decided_ids: dict[str, set[str]] = {}
    for decision in found:
        decided_ids.setdefault(decision.ticket.ticket_id, set()).add(decision.meta.event_id)
    lost = {e.ticket.ticket_id for e in events} - set(decided_ids)
    duplicated = {t: ids for t, ids in decided_ids.items() if len(ids) > 1}
    assert not lost, f"{len(lost)} tickets never decided: {sorted(lost)[:10]}"
    assert not duplicated, f"tickets decided under several event ids: {duplicated}"
    # Every decision of one ticket is the same decision (a repeat of a redelivered input).
    by_ticket = {}
    for decision in found:
        assert by_ticket.setdefault(decision.ticket.ticket_id, decision.decision) == decision.decision
    announced = incidents(ns)
    assert len({i.incident_id for i in announced}) == 1, {i.incident_id for i in announced}
    assert any(len(i.ticket_ids) == 5 for i in announced), "the incident's creation was never announced"


def test_a_deleted_changelog_stops_the_start_with_a_clear_message(settings, tmp_path):
    ns = escalator_settings(settings)
    ensure_topics(ns)
    first = Replica(ns, tmp_path, "first").start()
    try:
        first.wait_ready()
        publish_run(ns, the_input(count_burst=6, count_other=0), spacing_s=0.0)
        assert len(outcome(decisions(ns, 6, timeout_s=30))) == 6
        time.sleep(1.5)  # past a commit interval: the group has committed offsets
    finally:
        assert first.stop() == 0, first.tail()

    admin = AdminClient(kafka_config(ns))
    changelog = f"{ns.topic_prefix}escalator-incident-windows-changelog"
    assert changelog in admin.list_topics(timeout=10).topics
    admin.delete_topics([changelog], request_timeout=30)[changelog].result(30)
    deadline = time.monotonic() + 20
    while changelog in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)

    again = Replica(ns, tmp_path, "again").start()
    assert again.process is not None
    code = again.process.wait(60)
    log = again.log_path.read_text(errors="replace")
    assert code == EXIT_STATE_LOST, log[-3000:]
    assert "refusing to start" in log and changelog in log and "cannot be recovered" in log
    assert not again.ready()
