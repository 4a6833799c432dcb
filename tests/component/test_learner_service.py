"""The learner as deployed: its consumer loops on the real broker, GetKpis over gRPC, agents'
actions counted as verdicts, a guardrail override published on routing.overrides exactly once, the
weekly QA sample on qa.samples, and an out-of-range CSAT dead-lettered with the reason."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import H_SOURCE_TOPIC, EventPublisher, decode, ensure_topics, header, new_meta
from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel
from supportflow.topics import DECISION_TOPICS, Topic
from tests.kafka_helpers import read_all

from services.learner.main import build

pytestmark = pytest.mark.infra

TENANTS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "learner-tenants"  # rho-bank's baseline


def decided(ticket_id: str, decision: int) -> ev.TicketDecided:
    event = ev.TicketDecided(
        meta=new_meta("rho-bank", "escalator"), ticket=tk.Ticket(ticket_id=ticket_id, tenant_id="rho-bank"),
        classification=tk.Classification(archetype=tk.ARCHETYPE_FAQ_BOUNDED, segment="retail"), decision=decision,
    )
    event.timeline.received_at.seconds = 1_700_000_000
    event.timeline.decided_at.seconds = 1_700_000_003
    return event


def qa(ticket_id: str) -> ev.FeedbackReceived:
    return ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id=ticket_id,
                               qa=ev.QaResult(hallucinated_policy=True, note="invented a fee"))


class RunningLearner:
    """build() as the service runner uses it: consumer threads, on_start hooks, the gRPC server."""

    def __init__(self, settings) -> None:
        settings = settings.replace(tenants_dir=TENANTS)
        self.health = Health("learner")
        self.parts = build(settings, EventPublisher(settings, "learner"), self.health)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=c.run, args=(self.stop,), daemon=True) for c in self.parts.consumers]
        self.server, port = create_server("learner", self.parts.grpc, self.health, 0, host="127.0.0.1")
        self.stub = services_pb2_grpc.LearnerStub(open_channel("test", f"127.0.0.1:{port}", 5.0))

    def __enter__(self) -> "RunningLearner":
        self.server.start()
        for thread in self.threads:
            thread.start()
        for hook in self.parts.on_start:
            hook()
        return self

    def __exit__(self, *exc) -> None:
        # In the service runner's order: the loops finish, then the stop hooks run.
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)
        for hook in self.parts.on_stop:
            hook()
        self.server.stop(0)
        assert [c.error for c in self.parts.consumers] == [None] * len(self.parts.consumers)

    def wait_for_row(self, tickets: int, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.stub.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank", archetype="faq_bounded",
                                                                 segment="retail", channel="all")).rows
            if (rows and rows[0].tickets == tickets) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


DECISIONS = [ev.DECISION_RESPOND, ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE]


def test_learner_computes_kpis_and_issues_one_override(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    # Feedback first: it must wait for its decision, then act once; the second P0 must not repeat it.
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-1", qa("t-1"))
    for index, decision in enumerate(DECISIONS):
        publisher.publish(DECISION_TOPICS[decision], f"t-{index}", decided(f"t-{index}", decision))
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-2", qa("t-2"))
    publisher.publish(Topic.TICKETS_DELIVERED, "t-0", ev.DeliveryRecorded(
        meta=new_meta("rho-bank", "delivery"), ticket_id="t-0", status=ev.DELIVERY_STATUS_DELIVERED, latency_s=3.0))
    this_week = decided("q-now", ev.DECISION_RESPOND)  # a ticket decided this week, of another archetype
    this_week.classification.archetype = tk.ARCHETYPE_REPETITIVE
    this_week.timeline.decided_at.GetCurrentTime()
    publisher.publish(DECISION_TOPICS[ev.DECISION_RESPOND], "q-now", this_week)
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-3", ev.FeedbackReceived(  # out of range: dead-lettered
        meta=new_meta("rho-bank", "gateway"), ticket_id="t-3",
        csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=150.0)))
    publisher.flush()

    with RunningLearner(settings) as learner:
        overrides = read_all(settings, Topic.ROUTING_OVERRIDES.name_in(settings.topic_prefix), expected=1, timeout_s=60)
        rows = learner.wait_for_row(4)
        dead = read_all(settings, Topic.TICKETS_FEEDBACK.dead_letter_in(settings.topic_prefix), expected=1, timeout_s=30)
        samples = read_all(settings, Topic.QA_SAMPLES.name_in(settings.topic_prefix), expected=2, timeout_s=30)

    [record] = overrides
    override = decode(Topic.ROUTING_OVERRIDES, record)
    assert record.key() == b"faq_bounded"
    assert (override.action, override.route, override.issued_by) == (
        ev.OVERRIDE_ACTION_SET_AUTOMATION, tk.ROUTE_DRAFT_FOR_REVIEW, "learner:guardrail")
    # Topics are not ordered against each other, so either P0 may be the one that acts; only one does.
    assert override.reason in {f"QA found hallucinated policy (unclassified, P0) on ticket {t}: invented a fee"
                               for t in ("t-1", "t-2")}
    [row] = rows
    assert (row.archetype, row.segment, row.channel, row.tickets) == ("faq_bounded", "retail", "all", 4)
    assert row.values["deflection_rate"] == 0.5
    assert row.values["hallucinated_policy"] == 2
    assert row.values["time_to_first_useful_response"] == 3.0
    assert "csat_at_resolution_mean" not in row.values  # the out-of-range score counted nowhere
    [letter] = dead
    assert dict(letter.headers())["sf-dlq-reason"] == b"invalid_event"
    assert b"outside 0..100" in dict(letter.headers())["sf-dlq-error"]
    # The QA samples: at least the first ticket of each archetype decided in each week, with the
    # decision the customer got. The learner never published these (its group had committed no
    # position), so its first start publishes them, this week's and the older week's alike.
    sampled = {s.ticket_id: s for s in (decode(Topic.QA_SAMPLES, record) for record in samples)}
    assert sampled["q-now"].decision.ticket.ticket_id == "q-now"
    older = {ticket: s.week for ticket, s in sampled.items() if ticket != "q-now"}
    assert older and set(older) <= {f"t-{index}" for index in range(len(DECISIONS))} and set(older.values()) == {"2023-W46"}


def test_agents_actions_from_the_workspace_are_counted_as_verdicts(settings):
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    for index, kind in enumerate([ev.AGENT_ACTION_KIND_APPROVE, ev.AGENT_ACTION_KIND_EDIT_AND_SEND]):
        ticket = f"r-{index}"
        review = decided(ticket, ev.DECISION_REVIEW)
        publisher.publish(DECISION_TOPICS[ev.DECISION_REVIEW], ticket, review)
        publisher.publish(Topic.AGENT_ACTIONS, ticket, ev.AgentAction(
            meta=new_meta("rho-bank", "workspace"), action_id=f"act-{index}", ticket_id=ticket, kind=kind,
            agent="agent:sam", edit_ratio=0.5, text="Hello", decision=review))
    publisher.flush()

    with RunningLearner(settings) as learner:
        deadline = time.monotonic() + 30
        while True:
            rows = learner.stub.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank", segment="retail",
                                                                    channel="all")).rows
            verdicts_counted = rows and rows[0].values.get("draft_acceptance_rate", 1.0) < 1.0  # both, not just the first
            if verdicts_counted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    [row] = rows
    assert row.tickets == 2 and row.values["draft_acceptance_rate"] == 0.5
    assert row.values["edit_burden"] == 0.25  # (0 for the approval + 0.5) / 2


def events_read(*topics: Topic) -> float:
    """Events the learner's loops have read from `topics` in this process (its counter is by base topic name)."""
    return sum(REGISTRY.get_sample_value("supportflow_events_consumed_total", {"service": "learner", "topic": t.base_name})
               or 0.0 for t in topics)


def outcome_events_read() -> tuple[float, float]:
    """Outcome events read by the intake from their topics, and by the apply loop from the log."""
    return events_read(*DECISION_TOPICS.values(), Topic.TICKETS_FEEDBACK), events_read(Topic.LEARNER_EVENTS)


@pytest.mark.parametrize("snapshots", [False, True], ids=["replay", "snapshot"])
def test_a_restart_mid_stream_loses_nothing_counts_nothing_twice_and_repeats_no_override(settings, snapshots):
    settings = settings.replace(learner_snapshots=snapshots)
    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    for index, decision in enumerate(DECISIONS):
        publisher.publish(DECISION_TOPICS[decision], f"t-{index}", decided(f"t-{index}", decision))
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-0", qa("t-0"))
    publisher.flush()
    overrides_topic = Topic.ROUTING_OVERRIDES.name_in(settings.topic_prefix)

    log_topic = Topic.LEARNER_EVENTS.name_in(settings.topic_prefix)

    with RunningLearner(settings) as first:
        assert len(read_all(settings, overrides_topic, expected=1, timeout_s=60)) == 1
        # The override comes back through the intake onto the log, where every replica's
        # guardrails read it at the same point (five inputs, then the override).
        on_log = [header(r, H_SOURCE_TOPIC) for r in read_all(settings, log_topic, expected=6, timeout_s=30)]
        assert on_log.count(Topic.ROUTING_OVERRIDES.base_name) == 1 and len(on_log) == 6
        assert first.wait_for_row(4)[0].tickets == 4  # the panel waits until the log is applied to its end

    # While the learner is down: four more tickets (one a redelivery of t-3), another P0 in the
    # latched archetype, and a redelivered decision for t-0.
    def later(ticket: str, decision: int) -> ev.TicketDecided:  # decided after the first batch
        event = decided(ticket, decision)
        event.timeline.decided_at.seconds += 60
        return event

    for index, decision in enumerate(DECISIONS):
        ticket = f"t-{index + 3}"
        publisher.publish(DECISION_TOPICS[decision], ticket, later(ticket, decision))
    publisher.publish(DECISION_TOPICS[ev.DECISION_RESPOND], "t-0", later("t-0", ev.DECISION_RESPOND))
    publisher.publish(Topic.TICKETS_FEEDBACK, "t-5", qa("t-5"))
    publisher.flush()

    read_before = outcome_events_read()
    with RunningLearner(settings) as second:
        [row] = second.wait_for_row(7)
        time.sleep(2)  # time for a wrongly repeated override to reach the topic
        overrides = read_all(settings, overrides_topic, expected=2, timeout_s=5)
    # The intake reads only the six outcome events its group had not committed. Restored from the
    # snapshot the first learner left at shutdown, the apply loop reads only the six log events
    # that came after it; without one, all twelve (eleven inputs and the first run's override).
    (inputs_after, log_after), (inputs_before, log_before) = outcome_events_read(), read_before
    assert (inputs_after - inputs_before, log_after - log_before) == (6, 6 if snapshots else 12)

    assert (row.tickets, row.values["hallucinated_policy"]) == (7, 2)
    # Each ticket counts once, with its latest decision by time (t-3 was decided twice, on two
    # topics that a replay may read in either order).
    final = {f"t-{i}": d for i, d in enumerate(DECISIONS)} | {f"t-{i + 3}": d for i, d in enumerate(DECISIONS)}
    final["t-0"] = ev.DECISION_RESPOND
    responded = sum(d == ev.DECISION_RESPOND for d in final.values())
    assert row.values["deflection_rate"] == responded / len(final)
    assert len(overrides) == 1


def test_the_weekly_report_reads_the_period_from_the_topics(settings, tmp_path):
    import io
    import json

    from tooling.commands.learner import write_weekly_report

    ensure_topics(settings)
    publisher = EventPublisher(settings, "test")
    now = int(time.time())
    for index, decision in enumerate(DECISIONS):
        event = decided(f"w-{index}", decision)
        event.timeline.received_at.seconds, event.timeline.decided_at.seconds = now - 5, now - 2
        publisher.publish(DECISION_TOPICS[decision], f"w-{index}", event)
    publisher.publish(Topic.TICKETS_FEEDBACK, "w-0", ev.FeedbackReceived(
        meta=new_meta("rho-bank", "gateway"), ticket_id="w-0",
        csat=ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=100.0)))
    publisher.flush()

    out = io.StringIO()
    assert write_weekly_report(settings.replace(tenants_dir=TENANTS), "7d", tmp_path / "review", tenant="rho-bank", out=out) == 0
    panel = json.loads((tmp_path / "review" / "panel.json").read_text())
    [row] = [r for r in panel["totals"] if r["segment"] == "all" and r["channel"] == "all"]
    assert (row["archetype"], row["tickets"], row["deflection_rate"]) == ("faq_bounded", 4, 0.5)
    assert row["csat_protected_deflection"] == 0.5  # CSAT 100 against the baseline of 80: the win stands
    assert "5 events" in out.getvalue()
    assert (tmp_path / "review" / "index.html").read_text().count('class="plotly-graph-div"') > 0
