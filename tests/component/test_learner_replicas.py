"""The learner as replicas on the real Kafka, each a separate process (`python -m
services.learner.main`, the container's command), sharing its log (learner.events) by tenant:

- two replicas serve the same GetKpis panel of every tenant, whichever is asked (one holds the
  tenant's shard, the other asks it), and it is the panel of one replica on the same input and of
  the pure handlers applied to each shard's events; both replicas' intakes and apply loops take part;
- kill -9 of a replica five times while the input streams in, and records repeated on the log (as
  an intake killed between its publish and its commit leaves them): no event lost, none counted
  twice, the panel afterwards exact on both replicas, every QA sample and resolved ticket
  published; the recovery times are printed;
- with warm standbys, a killed replica's shards are taken from the survivor's copies, twice, with
  the same panel and outputs;
- a deleted log (the learner's state), one created again under a shard's snapshot, or one of
  another partition count (the one-partition log of before the shards), stops the next start with
  a clear message.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import (
    H_EVENT_ID, EventPublisher, decode, ensure_topics, header, kafka_config, new_meta,
)
from supportflow.rpc import open_channel
from supportflow.service import EXIT_STATE_LOST
from supportflow.topics import DECISION_TOPICS, Topic
from tests.kafka_helpers import read_all
from tests.process_helpers import ROOT, ServiceProcess, kill_in_turn, read_records
from tooling.fleet import free_port
from tooling.settings import FleetSettings

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.servicer import LearnerServicer
from services.learner.shards import SHARDS, shard_handlers, shard_of, tenant_of
from services.learner.tenant_data import TenantData

pytestmark = pytest.mark.infra

TENANTS = ROOT / "tests" / "unit" / "fixtures" / "learner-tenants"  # rho-bank: at-resolution baseline 80
TENANT = "rho-bank"
# rho-bank and one tenant for each other shard: two replicas each hold some of them.
SPREAD = [TENANT] + [next(f"tenant-{j}" for j in range(1000) if shard_of(f"tenant-{j}") == shard)
                     for shard in range(SHARDS) if shard != shard_of(TENANT)]
T0 = 1_700_000_000  # Tue 14 Nov 2023
ARCHETYPES = [(tk.ARCHETYPE_FAQ_BOUNDED, "retail"), (tk.ARCHETYPE_REPETITIVE, "business"),
              (tk.ARCHETYPE_ACCOUNT_SPECIFIC, "retail")]
DECISIONS = [ev.DECISION_RESPOND, ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE, ev.DECISION_FOLLOW_UP]


def learner_settings(settings: FleetSettings, tmp_path: Path) -> FleetSettings:
    # Every decided ticket sampled for QA (rate 1): which ticket is a week's first depends on the
    # order the inputs reach the log, and the reference's figures must not. Four input partitions,
    # so two replicas' intakes share them; the broker's minimum session timeout, for quick failover.
    config = yaml.safe_load((ROOT / "services" / "learner" / "learner.yaml").read_text())
    config["qa_sampling"]["rate"] = 1.0
    path = tmp_path / "learner.yaml"
    path.write_text(yaml.safe_dump(config))
    return settings.replace(topic_partitions=4, tenants_dir=TENANTS, learner_config_path=path,
                            learner_session_timeout_s=6.0)


def tenant_of_ticket(i: int) -> str:
    return SPREAD[i % len(SPREAD)]


def workload(tickets: int) -> list[tuple[Topic, str, object]]:
    """Each ticket, of one of the SPREAD tenants in turn: received, decided, delivered, surveyed
    (never under the baseline, so no CSAT guardrail), some approved, resolved or reopened; one P0
    QA verdict (faq_bounded is pulled back once, for t-0003's tenant) and one survey out of range
    (a dead letter). A ticket's events are on several topics."""
    rng = random.Random(26)
    out: list[tuple[Topic, str, object]] = []
    for i in range(tickets):
        ticket_id = f"t-{i:04d}"
        tenant = tenant_of_ticket(i)
        new_meta_of = functools.partial(new_meta, tenant)
        archetype, segment = ARCHETYPES[i % len(ARCHETYPES)]
        received = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, customer_id=f"c-{i % 17}", channel=tk.CHANNEL_EMAIL)
        received.received_at.seconds = T0 + i * 60
        out.append((Topic.TICKETS_RECEIVED, ticket_id, ev.TicketReceived(meta=new_meta_of("gateway"), ticket=received)))
        decision = DECISIONS[i % len(DECISIONS)]
        decided = ev.TicketDecided(meta=new_meta_of("escalator"), ticket=received, decision=decision,
                                   classification=tk.Classification(archetype=archetype, segment=segment,
                                                                    intent=f"intent_{i % 4}"))
        decided.timeline.received_at.seconds = T0 + i * 60
        decided.timeline.evidence_at.seconds = T0 + i * 60 + 1 + i % 3
        decided.timeline.decided_at.seconds = T0 + i * 60 + 5
        out.append((DECISION_TOPICS[decision], ticket_id, decided))
        out.append((Topic.TICKETS_DELIVERED, ticket_id, ev.DeliveryRecorded(
            meta=new_meta_of("delivery"), ticket_id=ticket_id, status=ev.DELIVERY_STATUS_DELIVERED,
            latency_s=2.0 + rng.random() * 6)))
        out.append((Topic.TICKETS_FEEDBACK, ticket_id, ev.FeedbackReceived(
            meta=new_meta_of("gateway"), ticket_id=ticket_id,
            csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=float(rng.choice([80, 90, 100]))))))
        if decision == ev.DECISION_REVIEW:
            out.append((Topic.AGENT_ACTIONS, ticket_id, ev.AgentAction(
                meta=new_meta_of("workspace"), action_id=f"a-{i}", ticket_id=ticket_id, agent="agent:sam",
                kind=rng.choice([ev.AGENT_ACTION_KIND_APPROVE, ev.AGENT_ACTION_KIND_EDIT_AND_SEND]),
                edit_ratio=0.25, decision=decided)))
        if i % 3 == 0:
            out.append((Topic.TICKETS_FEEDBACK, ticket_id, ev.FeedbackReceived(
                meta=new_meta_of("helpdesk"), ticket_id=ticket_id,
                resolution=ev.Resolution(resolved_by_bot=decision == ev.DECISION_RESPOND, handle_time_s=60.0 + i,
                                         resolution_notes=f"fixed {i % 4}"))))
        if i % 11 == 5:
            out.append((Topic.TICKETS_FEEDBACK, ticket_id, ev.FeedbackReceived(
                meta=new_meta_of("helpdesk"), ticket_id=ticket_id,
                repeat_contact=ev.RepeatContact(days_after_resolution=3, reopened=True))))
    out.append((Topic.TICKETS_FEEDBACK, "t-0003", ev.FeedbackReceived(
        meta=new_meta(tenant_of_ticket(3), "qa"), ticket_id="t-0003",
        qa=ev.QaResult(hallucinated_policy=True, note="invented a fee"))))
    out.append((Topic.TICKETS_FEEDBACK, "t-0004", ev.FeedbackReceived(  # out of range: dead-lettered
        meta=new_meta(tenant_of_ticket(4), "gateway"), ticket_id="t-0004",
        csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=150.0))))
    return out


def publish(settings: FleetSettings, events: list, spacing_s: float = 0.0) -> None:
    publisher = EventPublisher(settings, "test")
    for topic, key, event in events:
        publisher.publish(topic, key, event)
        if spacing_s:
            publisher.flush()
            time.sleep(spacing_s)
    publisher.flush()


Panel = list[tuple]


def panel_of(response: services_pb2.GetKpisResponse) -> Panel:
    return [(r.archetype, r.segment, r.channel, r.tickets, sorted(r.values.items())) for r in response.rows]


def reference_run(settings: FleetSettings, events: list) -> tuple[dict[str, Panel], dict[Topic, set[str]]]:
    """Each tenant's panel from the pure handlers of its shard applied to the shard's events once
    each, in the order they were published, served by the same servicer code; and the tickets
    they sampled for QA and sent for indexing as resolved."""
    config = LearnerConfig.load(settings.learner_config_path)
    learners = {shard: Learner(config, TenantData(TENANTS)) for shard in range(SHARDS)}
    handlers = {shard: shard_handlers(learner) for shard, learner in learners.items()}
    outputs: dict[Topic, set[str]] = {Topic.QA_SAMPLES: set(), Topic.TICKETS_RESOLVED: set()}
    for topic, _, event in events:
        try:
            emits = handlers[shard_of(tenant_of(event))][topic](event)
        except Exception:  # noqa: BLE001 - the out-of-range survey, dead-lettered by the service
            continue
        for emit in emits:
            if emit.topic in outputs:
                outputs[emit.topic].add(emit.event.ticket_id)
    servicer = LearnerServicer(lambda tenant: learners[shard_of(tenant)], TENANT)
    panels = {tenant: panel_of(servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id=tenant), None))
              for tenant in SPREAD}
    return panels, outputs


def tickets_on(settings: FleetSettings, topic: Topic) -> set[str]:
    """The tickets of the outputs on `topic` (QA samples, resolved tickets)."""
    return {decode(topic, record).ticket_id for record in read_records(settings, topic)}


def wait_for_outputs(settings: FleetSettings, expected: dict[Topic, set[str]]) -> None:
    """Until each topic holds the reference's outputs: a shard taken publishes what it held once
    its replay ends, just after its panel is served, so they follow within a few seconds."""
    for topic, tickets in expected.items():
        wait_until(lambda: tickets_on(settings, topic) == tickets, 30,
                   lambda: f"{topic.base_name}: missing {sorted(tickets - tickets_on(settings, topic))}")


def reference_panels(settings: FleetSettings, events: list) -> dict[str, Panel]:
    return reference_run(settings, events)[0]


class Replica(ServiceProcess):
    """One learner process with its own ops and gRPC ports and log."""

    def __init__(self, settings: FleetSettings, log_dir: Path, name: str) -> None:
        self.grpc_port = free_port()
        super().__init__("services.learner.main", settings, log_dir, name, {"SUPPORTFLOW_GRPC_PORT": str(self.grpc_port)})

    def start(self) -> "Replica":
        super().start()
        # A new channel each start: one to a killed server waits out its reconnect backoff.
        self.stub = services_pb2_grpc.LearnerStub(open_channel("test", f"127.0.0.1:{self.grpc_port}", 3.0))
        return self

    def panel(self, tenant: str = TENANT) -> Panel | None:
        """`tenant`'s panel as this replica serves it now (its own shard's, or asked of the
        replica holding it); None while it cannot (starting)."""
        try:
            return panel_of(self.stub.GetKpis(services_pb2.GetKpisRequest(tenant_id=tenant), timeout=6))
        except grpc.RpcError:
            return None

    def panels(self) -> dict[str, Panel | None]:
        return {tenant: self.panel(tenant) for tenant in SPREAD}

    def wait_serving(self, replicas: list["Replica"], timeout_s: float = 45.0) -> float:
        """Seconds until this replica answers GetKpis with the tenant's shard applied up to its end
        (the wait before the answer caught up, not timed out, on whichever of `replicas` holds it)."""
        def caught_up() -> float:
            return sum(r.metric("supportflow_learner_panel_waits_total", 'outcome="caught_up"') for r in replicas)
        started = time.monotonic()
        while True:
            self.assert_running()
            assert time.monotonic() - started < timeout_s, f"{self.name} not serving:\n{self.tail()}"
            before = caught_up()
            if self.panel() is not None and caught_up() > before:
                return time.monotonic() - started
            time.sleep(0.1)


def wait_until(condition, timeout_s: float, what) -> None:
    """Wait for `condition`; past the timeout, fail saying `what` (a text, or a function making it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.3)


def valid_event_ids(events: list) -> set[str]:
    return {event.meta.event_id for _, _, event in events} - {events[-1][2].meta.event_id}  # less the dead letter


def log_event_ids(settings: FleetSettings) -> list[str]:
    """The event id of every record on the log, repeats included."""
    return [header(record, H_EVENT_ID) for record in read_records(settings, Topic.LEARNER_EVENTS)]


def inputs_on_log(settings: FleetSettings, events: list) -> int:
    """How many of the valid inputs are on the log (which carries the overrides too)."""
    return len(valid_event_ids(events) & set(log_event_ids(settings)))


def learner_overrides(settings: FleetSettings) -> list[ev.RoutingOverride]:
    overrides = [decode(Topic.ROUTING_OVERRIDES, r) for r in read_records(settings, Topic.ROUTING_OVERRIDES)]
    return [o for o in overrides if o.issued_by == "learner:guardrail"]


def test_two_replicas_serve_the_panel_of_one_replica(settings, second_namespace, tmp_path):
    events = workload(90)
    panels: dict[str, list[Panel]] = {}
    for name, namespace, count in (("one", second_namespace, 1), ("two", settings, 2)):
        ns = learner_settings(namespace, tmp_path)
        ensure_topics(ns)
        log_name = Topic.LEARNER_EVENTS.name_in(ns.topic_prefix)
        admin = AdminClient(kafka_config(ns))
        assert len(admin.list_topics(log_name, timeout=10).topics[log_name].partitions) == SHARDS  # the others: 4
        replicas = [Replica(ns, tmp_path, f"{name}-{i}").start() for i in range(count)]
        try:
            for replica in replicas:
                replica.wait_serving(replicas)
            wait_until(lambda: all(r.ready() for r in replicas), 30, f"{name}: replicas not ready")
            time.sleep(1.0)  # a later joiner's rebalance of the intake settles before the events come
            publish(ns, events)
            wait_until(lambda: inputs_on_log(ns, events) == len(valid_event_ids(events)), 60,
                       lambda: f"{name}: {inputs_on_log(ns, events)} input events on the log")
            # No wait here for the replicas: GetKpis waits for the tenant's shard to apply its partition's end.
            panels[name] = [r.panels() for r in replicas]
            passed_on = [r.metric("supportflow_events_produced_total", 'topic="learner.events"') for r in replicas]
            applied = [r.metric("supportflow_events_consumed_total", 'topic="learner.events"') for r in replicas]
            overrides = learner_overrides(ns)
            dead = read_all(ns, Topic.TICKETS_FEEDBACK.dead_letter_in(ns.topic_prefix), expected=1, timeout_s=10)
        finally:
            codes = [r.stop() for r in replicas]
        assert codes == [0] * count, "\n".join(r.tail() for r in replicas)
        assert all(n > 0 for n in passed_on), f"{name}: both intakes must take part: events passed on {passed_on}"
        assert all(n > 0 for n in applied), f"{name}: both replicas must apply shards: log records read {applied}"
        assert sum(applied) < 1.5 * sum(passed_on), f"{name}: each record applied once, by its shard's replica"
        assert {(o.override_id, o.archetype, o.route) for o in overrides} == {
            (overrides[0].override_id, tk.ARCHETYPE_FAQ_BOUNDED, tk.ROUTE_DRAFT_FOR_REVIEW)}
        assert len(dead) == 1 and b"outside 0..100" in dict(dead[0].headers())["sf-dlq-error"]  # once, by the intake
    [one] = panels["one"]
    first, second = panels["two"]
    assert all(one.values()) and first == second == one
    assert one == reference_panels(learner_settings(settings, tmp_path), events)
    pulled_back = tenant_of_ticket(3)
    rollup = {(a, s, c): (n, dict(v)) for a, s, c, n, v in one[pulled_back]}
    tickets, values = rollup[("faq_bounded", "all", "all")]
    assert tickets == sum(1 for i in range(90) if tenant_of_ticket(i) == pulled_back and i % len(ARCHETYPES) == 0)
    assert values["guardrail_override_active"] == 1.0 and values["hallucinated_policy"] == 1
    others = {(a, s, c): dict(v) for a, s, c, n, v in one[TENANT]}
    assert others[("faq_bounded", "all", "all")]["guardrail_override_active"] == 0.0  # another tenant's guardrail


REPEATED = 25


def shards_taken_from_snapshots(replicas: list[Replica]) -> int:
    """How many shards the replicas' logs say were taken from a snapshot, over all their starts."""
    taken = 0
    for replica in replicas:
        for line in replica.log_path.read_text(errors="replace").splitlines():
            if '"log partitions taken"' in line:
                taken += len(json.loads(line).get("from_snapshot", []))
    return taken


def test_kill_9_of_a_replica_five_times_leaves_the_panel_exact(settings, tmp_path):
    ns = learner_settings(settings, tmp_path)
    ensure_topics(ns)
    events = workload(150)
    expected, outputs = reference_run(ns, events)
    replicas = [Replica(ns, tmp_path, f"r{i}").start() for i in range(2)]

    def recovered(kill: int, victim: Replica, killed_at: float) -> str:
        serving_s = victim.wait_serving(replicas)
        wait_until(victim.ready, 30, lambda: f"{victim.name} not ready:\n{victim.tail()}")
        return (f"kill {kill + 1} ({victim.name}): panel served, log applied to its end, "
                f"{serving_s:.1f} s after the kill; ready {time.monotonic() - killed_at:.1f} s")

    try:
        for replica in replicas:
            replica.wait_serving(replicas)
        feeder = threading.Thread(target=publish, args=(ns, events, 0.02), daemon=True)
        started = time.monotonic()
        feeder.start()
        recoveries = kill_in_turn(replicas, 5, 1.0, recovered)
        feeder.join(90)
        assert not feeder.is_alive()
        # What an intake killed between its publish and its commit leaves: records on the log again.
        copier = EventPublisher(ns, "test")
        for record in read_records(ns, Topic.LEARNER_EVENTS)[-REPEATED:]:
            copier.produce_raw(record.topic(), record.key(), record.value(), record.headers(), partition=record.partition())
        copier.flush()
        fed = time.monotonic()
        wait_until(lambda: inputs_on_log(ns, events) == len(valid_event_ids(events)), 60,
                   lambda: f"{inputs_on_log(ns, events)} of {len(valid_event_ids(events))} input events on the log")
        panels = [r.panels() for r in replicas]
        settled = time.monotonic() - fed
        # Every QA sample and resolved ticket published, whatever the kills interrupted: a shard
        # taken replays what its previous holder had not published with its outputs.
        wait_for_outputs(ns, outputs)
        on_log = log_event_ids(ns)
        skipped = [r.metric("supportflow_learner_log_duplicates_total")
                   + r.metric("supportflow_events_duplicate_total", 'topic="learner.events"') for r in replicas]
        overrides = learner_overrides(ns)
    finally:
        codes = [replica.stop() for replica in replicas]
    restored = shards_taken_from_snapshots(replicas)
    print(f"\n{len(events)} events over {fed - started:.1f} s; " + "; ".join(recoveries)
          + f"\nlog: {len(on_log)} records, {len(set(on_log))} event ids; repeats skipped since the last start: "
          f"{skipped}; panel exact on both {settled:.1f} s after the last input; override records {len(overrides)}; "
          f"shards taken from a snapshot {restored}")
    assert codes == [0, 0], "\n".join(r.tail() for r in replicas)
    # None lost on the way to the log; the learner's override is on it too, read back like any input.
    assert set(on_log) == valid_event_ids(events) | {o.meta.event_id for o in overrides}
    # Each repeat is skipped by its shard, on the replica holding it (again after each restart).
    assert len(on_log) >= len(set(on_log)) + REPEATED and sum(skipped) >= REPEATED
    assert panels[0] == panels[1] == expected, "the panel after the kills is not the undisturbed run's"
    # A restarted replica takes shards back from the survivor, which snapshots them as it gives them
    # up: those are restored from the snapshots (in Kafka), and the panel is still exact.
    assert restored > 0
    # Repeated by a restarting replica or not, the override keeps its id: one override.
    assert {(o.override_id, o.archetype) for o in overrides} == {(overrides[0].override_id, tk.ARCHETYPE_FAQ_BOUNDED)}


def shards_taken(replica: Replica, source: str) -> float:
    return replica.metric("supportflow_learner_shards_taken_total", f'source="{source}"')


def test_with_warm_standbys_a_killed_replicas_shards_are_taken_from_the_survivors_copies(settings, tmp_path):
    """Two replicas with warm standbys: each keeps a copy of the shards the other holds. kill -9 of
    one, and the other serves all its shards from its copies; the killed one started again takes
    shards back (the other keeps a copy of those from then on), and a kill of the other is taken
    over from those copies. The panel afterwards is the undisturbed run's, and every ticket's QA
    sample is published (a copy holds its outputs, published once it is taken)."""
    ns = learner_settings(settings, tmp_path).replace(learner_standby=True)
    ensure_topics(ns)
    events = workload(90)
    expected, outputs = reference_run(ns, events)
    thirds = [events[:30], events[30:60], events[60:]]
    first, second = replicas = [Replica(ns, tmp_path, f"standby-{i}").start() for i in range(2)]

    def copies_caught_up(replica: Replica, holder: Replica) -> bool:
        held_elsewhere = holder.metric("supportflow_learner_shards_held")
        return (held_elsewhere > 0 and replica.metric("supportflow_learner_standby_shards") == held_elsewhere
                and replica.metric("supportflow_learner_standby_behind_records") == 0)

    def fail_over(victim: Replica, survivor: Replica, part: list) -> tuple[float, float]:
        """Publish `part`, wait until the survivor's copies have it, kill -9 the victim: the
        shards the survivor took from its copies, and seconds until it served the panel."""
        publish(ns, part)
        wanted = valid_event_ids(events) & {event.meta.event_id for _, _, event in part}
        wait_until(lambda: wanted <= set(log_event_ids(ns)), 60, "inputs not on the log")
        wait_until(lambda: copies_caught_up(survivor, victim), 60,
                   lambda: f"{survivor.name}'s copies not caught up:\n{survivor.tail()}")
        before = shards_taken(survivor, "standby")
        held = victim.metric("supportflow_learner_shards_held")
        victim.kill()
        killed = time.monotonic()
        wait_until(lambda: shards_taken(survivor, "standby") - before == held, 30,
                   lambda: f"{survivor.name} did not take {held:.0f} shards from its copies:\n{survivor.tail()}")
        survivor.wait_serving([survivor])
        return held, time.monotonic() - killed

    try:
        for replica in replicas:
            replica.wait_serving(replicas)
        wait_until(lambda: all(r.metric("supportflow_learner_shards_held") > 0 for r in replicas), 30,
                   "the shards not shared by the replicas")
        took_1, after_1 = fail_over(first, second, thirds[0])
        first.start()  # takes shards back from the survivor, which keeps copies of them from then on
        first.wait_serving(replicas)
        wait_until(lambda: all(r.metric("supportflow_learner_shards_held") > 0 for r in replicas), 30,
                   "the shards not shared again after the restart")
        took_2, after_2 = fail_over(second, first, thirds[1])
        publish(ns, thirds[2])
        wait_until(lambda: inputs_on_log(ns, events) == len(valid_event_ids(events)), 60,
                   lambda: f"{inputs_on_log(ns, events)} of {len(valid_event_ids(events))} input events on the log")
        panels = first.panels()
        wait_for_outputs(ns, outputs)
        overrides = learner_overrides(ns)
    finally:
        codes = [replica.stop() for replica in replicas]
    print(f"\nkill 1: {took_1:.0f} shards taken from copies, panel served {after_1:.1f} s after the kill; "
          f"kill 2: {took_2:.0f} shards, {after_2:.1f} s")
    assert codes[0] == 0, first.tail()
    assert took_1 > 0 and took_2 > 0
    assert panels == expected, "the panel after the failovers is not the undisturbed run's"
    assert len(outputs[Topic.QA_SAMPLES]) == 90 and len(outputs[Topic.TICKETS_RESOLVED]) == 30
    assert {(o.override_id, o.archetype) for o in overrides} == {(overrides[0].override_id, tk.ARCHETYPE_FAQ_BOUNDED)}


def fill_then_delete_log(ns: FleetSettings, tmp_path: Path) -> str:
    """A replica run on a few events and stopped (its shards' snapshots saved), then the log
    deleted; its name."""
    ensure_topics(ns)
    events = workload(6)
    first = Replica(ns, tmp_path, "first").start()
    try:
        first.wait_serving([first])
        publish(ns, events)
        wait_until(lambda: inputs_on_log(ns, events) == len(valid_event_ids(events)), 60,
                   lambda: f"{inputs_on_log(ns, events)} input events on the log")
    finally:
        assert first.stop() == 0, first.tail()
    admin = AdminClient(kafka_config(ns))
    log_name = Topic.LEARNER_EVENTS.name_in(ns.topic_prefix)
    admin.delete_topics([log_name], request_timeout=30)[log_name].result(30)
    wait_until(lambda: log_name not in admin.list_topics(timeout=10).topics, 20, f"{log_name} not deleted")
    return log_name


def refused_start(ns: FleetSettings, tmp_path: Path) -> str:
    """The log of a replica that must refuse to start, asserted to exit with EXIT_STATE_LOST."""
    again = Replica(ns, tmp_path, "again").start()
    assert again.process is not None
    try:
        code = again.process.wait(60)
    finally:
        if again.process.poll() is None:  # it started as if nothing were lost
            again.stop()
    log = again.log_path.read_text(errors="replace")
    assert code == EXIT_STATE_LOST, log[-3000:]
    return log


def test_a_deleted_log_stops_the_start_with_a_clear_message(settings, tmp_path):
    """The log is the learner's state: deleted (and created again empty at the next start, as every
    start creates missing topics), a replica refuses to start rather than serve an empty panel."""
    ns = learner_settings(settings, tmp_path)
    log_name = fill_then_delete_log(ns, tmp_path)
    log = refused_start(ns, tmp_path)
    assert "refusing to start" in log and log_name in log and "was deleted" in log and "--delete-offsets" in log


def test_a_log_created_again_and_written_anew_stops_the_replica_taking_a_shards_snapshot(settings, tmp_path):
    """Deleted and written anew, the log is another topic (Kafka's id) than the one the shard's
    snapshot (kept in Kafka) was taken of: the replica taking the shard stops rather than apply
    new records over the old state."""
    ns = learner_settings(settings, tmp_path)
    log_name = fill_then_delete_log(ns, tmp_path)
    ensure_topics(ns)
    publisher = EventPublisher(ns, "test")
    publisher.produce_raw(log_name, b"k", b"", [], partition=shard_of(TENANT))
    publisher.flush()
    log = refused_start(ns, tmp_path)
    assert "refusing to start" in log and "--delete-offsets" in log
    assert "is not the log the shard's snapshot was taken of" in log


def test_a_log_of_another_partition_count_stops_the_start_with_how_to_rebuild_it(settings, tmp_path):
    """A deployment upgraded from the one-partition log of before the shards: its tenants would be
    read from other partitions than they were written to, so a replica refuses to start."""
    ns = learner_settings(settings, tmp_path)
    log_name = Topic.LEARNER_EVENTS.name_in(ns.topic_prefix)
    admin = AdminClient(kafka_config(ns))
    admin.create_topics([NewTopic(log_name, 1, ns.topic_replication)], request_timeout=30)[log_name].result(30)
    upgraded = Replica(ns, tmp_path, "upgraded").start()
    assert upgraded.process is not None
    try:
        code = upgraded.process.wait(60)
    finally:
        if upgraded.process.poll() is None:  # it started on the wrong layout
            upgraded.stop()
    log = upgraded.log_path.read_text(errors="replace")
    assert code == EXIT_STATE_LOST, log[-3000:]
    assert f"{log_name} has 1 partitions; this log needs exactly {SHARDS}" in log and "--delete-offsets" in log
