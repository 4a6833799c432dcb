"""A restarted escalator rebuilds its memory on the real Kafka: its incident windows from
tickets.classified (it carries a burst in progress across the restart under the same id, without
announcing it again, and counts only what its consumer group had already committed), and the
tickets it answered automatically from tickets.responded, and its daily action limits and the
proposals awaiting confirmation from actions.recorded."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.crm import FileCrm
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, ensure_topics, kafka_config, new_meta
from supportflow.topics import DECISION_TOPICS, Topic

from services.escalator.actions import ActionGate, ActionLedger
from services.escalator.config import ActionLimits, EscalationConfig
from services.escalator.handlers import Escalator
from services.escalator.replay import replay_recent_classified, replay_recent_output
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


def test_a_restart_remembers_the_tickets_it_answered(settings) -> None:
    ensure_topics(settings)
    group = f"{settings.topic_prefix}escalator"
    now = time.time()
    answered = tk.Ticket(ticket_id="answered-1", tenant_id="rho-bank", body="Where is my new card?")
    answered.received_at.seconds = int(now) - 60
    # Drafted and answered automatically before the restart.
    before, _ = escalator()
    draft = tk.Draft(text="Cards arrive in 5 working days.", status=tk.DRAFT_STATUS_READY,
                     citations=[tk.Citation(article_id="a1", chunk_id="a1#0", passage="5 working days")],
                     ledger=[tk.PolicyClaim(claim="5 working days", verified=True)])

    def drafted(ticket: tk.Ticket) -> ev.TicketDrafted:
        return ev.TicketDrafted(
            meta=new_meta("rho-bank", "drafter"), ticket=ticket, draft=draft,
            classification=tk.Classification(intent="card_arrival", confidence=0.95, route=tk.ROUTE_AUTO_RESPOND,
                                             archetype=tk.ARCHETYPE_FAQ_BOUNDED),
            evidence=[tk.EvidencePassage(article_id="a1", chunk_id="a1#0", text="5 working days")],
        )

    [sent] = [e for e in before.on_drafted(drafted(answered)) if e.topic is Topic.TICKETS_RESPONDED]
    publisher = EventPublisher(settings, "test")
    publisher.publish(sent.topic, sent.key, sent.event)
    publisher.flush()

    restarted, _ = escalator()
    assert replay_recent_output(settings, Topic.TICKETS_RESPONDED, group, CONFIG.answered_memory_s, restarted.replay_responded) >= 1
    again = tk.Ticket(ticket_id="answered-1", tenant_id="rho-bank", body="It still has not come.")
    again.received_at.seconds = int(now)
    [decided] = [e for e in restarted.on_drafted(drafted(again)) if e.topic in DECISION_TOPICS.values()]
    assert decided.event.decision == ev.DECISION_REVIEW and "wrote back" in decided.event.reason

    # Older than the memory: not read back, and the same message is answered afresh.
    later, _ = escalator()
    assert replay_recent_output(settings, Topic.TICKETS_RESPONDED, group, 3600, later.replay_responded, now=lambda: now + 7200) == 0
    [decided] = [e for e in later.on_drafted(drafted(again)) if e.topic in DECISION_TOPICS.values()]
    assert decided.event.decision == ev.DECISION_RESPOND


def test_a_restart_keeps_the_daily_limits_and_the_proposals_awaiting_confirmation(settings) -> None:
    ensure_topics(settings)
    group = f"{settings.topic_prefix}escalator"
    before, _ = escalator()
    publisher = EventPublisher(settings, "test")

    def publish_actions(emits) -> list[ev.ActionRecorded]:
        records = [e for e in emits if e.topic is Topic.ACTIONS_RECORDED]
        for emit in records:
            publisher.publish(emit.topic, emit.key, emit.event)
        publisher.flush()
        return [emit.event for emit in records]

    def reset_requested(ticket_id: str) -> ev.TicketClassified:
        ticket = tk.Ticket(ticket_id=ticket_id, tenant_id="rho-bank", customer_id="cust-0001", body="Forgot my passcode")
        return ev.TicketClassified(
            meta=new_meta("rho-bank", "classifier"), ticket=ticket,
            classification=tk.Classification(intent="passcode_forgotten", confidence=0.95, route=tk.ROUTE_ESCALATE,
                                              tier=tk.CUSTOMER_TIER_STANDARD),
        )

    def confirmed(proposal: ev.ActionRecorded) -> ev.ActionConfirmed:
        return ev.ActionConfirmed(meta=new_meta("rho-bank", "gateway"), proposal_id=proposal.action_id,
                                  ticket_id=proposal.ticket_id, confirmation_ref=f"sms-{proposal.ticket_id}",
                                  confirmed_by="customer:sms")

    # Before the restart: four password resets proposed for one customer, three of them confirmed
    # (the daily limit is three); the fourth is still waiting for the customer.
    proposals = [publish_actions(before.on_classified(reset_requested(f"reset-{i}")))[0] for i in range(4)]
    assert {p.status for p in proposals} == {ev.ACTION_STATUS_PROPOSED}
    ran = [publish_actions(before.on_action_confirmed(confirmed(p)))[0] for p in proposals[:3]]
    assert {r.status for r in ran} == {ev.ACTION_STATUS_DRY_RUN}

    restarted, _ = escalator()
    assert replay_recent_output(settings, Topic.ACTIONS_RECORDED, group, restarted.action_memory_s, restarted.replay_action) == 7
    # The confirmation handled before the restart, delivered again, runs nothing.
    [again] = restarted.on_action_confirmed(confirmed(proposals[0]))
    assert again.event.status == ev.ACTION_STATUS_REFUSED and "already confirmed" in again.event.reason
    # The waiting proposal can still be confirmed, and today's three resets still count.
    [fourth] = restarted.on_action_confirmed(confirmed(proposals[3]))
    assert fourth.event.status == ev.ACTION_STATUS_REFUSED
    assert "daily limit reached (3 of 3 password_reset today)" in fourth.event.reason

    # Without the replay the restarted escalator would have run it.
    forgetful, _ = escalator()
    forgetful.on_classified(reset_requested("reset-3"))
    [ran_again] = forgetful.on_action_confirmed(confirmed(proposals[3]))
    assert ran_again.event.status == ev.ACTION_STATUS_DRY_RUN
