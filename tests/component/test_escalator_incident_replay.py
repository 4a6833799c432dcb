"""A restarted escalator rebuilds its incident windows from tickets.classified on the real Kafka:
it carries a burst in progress across the restart under the same id, without announcing it again,
and counts only what its consumer group had already committed."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.crm import FileCrm
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, ensure_topics, kafka_config, new_meta
from supportflow.topics import Topic

from services.escalator.actions import ActionGate, ActionLedger
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.handlers import Escalator
from services.escalator.incident_replay import replay_recent_classified
from services.escalator.incidents import IncidentTracker

pytestmark = pytest.mark.infra

CONFIG = EscalationConfig.load()
BURST = CONFIG.incidents.min_tickets + 2


def escalator() -> tuple[Escalator, IncidentTracker]:
    tracker = IncidentTracker(CONFIG.incidents)
    return Escalator(CONFIG, FileCrm(), tracker, ActionGate(ActionLimits.load(), ActionLedger())), tracker


def classified(index: int, received: int) -> ev.TicketClassified:
    ticket = tk.Ticket(ticket_id=f"burst-{index}", tenant_id="rho-bank", customer_id="cust-0001", body="Card declined")
    ticket.received_at.seconds = received
    return ev.TicketClassified(
        meta=new_meta("rho-bank", "classifier"), ticket=ticket,
        classification=tk.Classification(intent="declined_card_payment", confidence=0.95, route=tk.ROUTE_ESCALATE),
    )


def incidents_created(emits) -> list[str]:
    return [emit.event.incident_id for emit in emits if emit.topic is Topic.INCIDENTS_DETECTED]


def test_a_restart_keeps_a_burst_in_progress_under_its_id(settings) -> None:
    ensure_topics(settings)
    now = int(time.time())
    events = [classified(i, now - 120 + 10 * i) for i in range(BURST)]
    publisher = EventPublisher(settings, "test")
    for event in events:
        publisher.publish(Topic.TICKETS_CLASSIFIED, event.ticket.ticket_id, event)
    publisher.flush()

    # What an escalator that never stopped announces for this burst.
    reference, _ = escalator()
    announced = [incident for event in events for incident in incidents_created(reference.on_classified(event))]
    assert len(announced) == 1

    # The group had handled all but the last ticket when the escalator stopped.
    group = f"{settings.topic_prefix}escalator"
    topic = Topic.TICKETS_CLASSIFIED.name_in(settings.topic_prefix)
    committer = Consumer(kafka_config(settings) | {"group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, BURST - 1)], asynchronous=False)
    committer.close()

    restarted, tracker = escalator()
    assert replay_recent_classified(settings, group, CONFIG.incidents.replay_s, restarted.replay_classified) == BURST - 1
    assert tracker.incident_of("burst-0") == announced[0]
    assert tracker.incident_of(f"burst-{BURST - 1}") == ""  # after the committed offset: not replayed

    # The loop then handles the last ticket: it joins the incident, which is not announced again.
    assert incidents_created(restarted.on_classified(events[-1])) == []
    assert tracker.incident_of(f"burst-{BURST - 1}") == announced[0]

    # Without the replay, the restarted escalator would not know the burst at all.
    forgetful, forgotten = escalator()
    assert incidents_created(forgetful.on_classified(events[-1])) == [] and forgotten.incident_of("burst-0") == ""

    # Only the last `replay_s` seconds are read back.
    later, untouched = escalator()
    assert replay_recent_classified(settings, group, 3600, later.replay_classified, now=lambda: time.time() + 7200) == 0
    assert untouched.incident_of("burst-0") == ""
