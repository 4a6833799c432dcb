"""Agents' actions from the workspace in delivery: what each AgentAction posts (the plan), once per
action_id over the ledger, and through the retry topic as a decision built from the action."""

from __future__ import annotations

import email
import email.policy
import json

import httpx
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent, derived_event_id
from supportflow.topics import Topic

from services.delivery.handlers import DeliveryPlan, decision_from_action, plan_delivery
from services.delivery.ledger import DONE, STARTED, Claim, DeliveryLedger
from services.delivery.messages import COLLEAGUE_NOTE, MAX_REPLY_CITATIONS
from services.delivery.providers.smtp_mail import build_message
from tests.unit.test_delivery_handlers import CHANNELS, TENANT, decided
from tests.unit.test_delivery_ledger import FIRST_PASS, NOW, POSTED, ZendeskScript, deliverer, ledger  # noqa: F401

ACTION_ID = "a" * 32
EDITED = "Hello Ana,\n\nYour new card is on its way and arrives within 5 working days [1].\n\nBest,\nSam"


def action(kind: int, decision: ev.TicketDecided | None = None, **fields: object) -> ev.AgentAction:
    acted_on = decision if decision is not None else decided(ev.DECISION_REVIEW)
    event = ev.AgentAction(meta=ev.EventMeta(event_id="e" * 32, tenant_id=TENANT, producer="workspace"),
                           action_id=ACTION_ID, ticket_id=acted_on.ticket.ticket_id, kind=kind, agent="agent:sam",
                           decision=acted_on, **fields)
    event.meta.occurred_at.seconds = 1_700_000_100
    return event


def approve(decision: ev.TicketDecided | None = None) -> ev.AgentAction:
    acted_on = decision if decision is not None else decided(ev.DECISION_REVIEW)
    return action(ev.AGENT_ACTION_KIND_APPROVE, acted_on, text=acted_on.draft.text)


def plan_of(event: ev.AgentAction) -> DeliveryPlan:
    decision = decision_from_action(event)
    assert decision is not None
    plan = plan_delivery(decision, CHANNELS)
    assert isinstance(plan, DeliveryPlan), plan
    return plan


# --- what each action posts --------------------------------------------------------------------


def test_an_approval_is_the_drafts_reply_without_the_sent_automatically_line() -> None:
    review = decided(ev.DECISION_REVIEW)
    plan = plan_of(approve(review))
    automatic = plan_delivery(decided(ev.DECISION_RESPOND), CHANNELS)
    assert (plan.kind, plan.public, plan.decision) == (ev.DELIVERY_KIND_REPLY, True, ev.DECISION_RESPOND)
    # The ledger's key is the action, not the decision (whose event id the review note already used).
    assert plan.decision_event_id == ACTION_ID != review.meta.event_id
    assert plan.provider == "zendesk" and plan.external_ticket_id == "1001" and plan.ticket_id == "zd-1001"
    # The automatic reply's message, but for its last line.
    assert plan.message.text == automatic.message.text.removesuffix(COLLEAGUE_NOTE).rstrip()
    assert COLLEAGUE_NOTE not in plan.message.text and "colleague" not in plan.message.html.split("Sources:")[-1]
    assert "[2] Tracking your card: https://help.rho.example/articles/tracking" in plan.message.text
    assert len(plan.citations) == MAX_REPLY_CITATIONS
    # The ticket as after an automatic reply: answered, no group or priority changed.
    assert (plan.status, plan.tags, plan.priority, plan.group_id) == ("pending", ("supportflow_answered",), "", None)
    assert not plan.automatic


def test_an_edit_sends_the_agents_text_with_the_drafts_sources_as_links() -> None:
    plan = plan_of(action(ev.AGENT_ACTION_KIND_EDIT_AND_SEND, text=EDITED, edit_ratio=0.4))
    text = plan.message.text
    assert text.startswith("Hello Ana,") and "arrives within 5 working days [1]" in text
    assert "A new card arrives" not in text  # the draft's words are gone
    # The edit kept no sources list of its own: the draft's citations are linked after its text.
    assert "Sources:\n[1] Card delivery: https://help.rho.example/articles/card-delivery" in text
    assert text.rstrip().endswith("[3] Fees: https://help.rho.example/articles/fees")
    assert '<a href="https://help.rho.example/articles/card-delivery">' in plan.message.html
    assert COLLEAGUE_NOTE not in text and plan.status == "pending"


def test_an_approval_without_text_sends_the_draft_an_edit_without_text_is_invalid() -> None:
    review = decided(ev.DECISION_REVIEW)
    assert plan_of(action(ev.AGENT_ACTION_KIND_APPROVE, review)).message.text == plan_of(approve(review)).message.text
    with pytest.raises(InvalidEvent, match="without the reply's text"):
        decision_from_action(action(ev.AGENT_ACTION_KIND_EDIT_AND_SEND, text="  "))


def test_an_edit_on_an_email_ticket_is_a_threaded_reply_from_a_person() -> None:
    review = decided(ev.DECISION_REVIEW, provider="email", external_id="<root@mail.example>",
                     requester_email="ana@example.com", message_id="<m2@mail.example>", references=["<root@mail.example>"])
    plan = plan_of(action(ev.AGENT_ACTION_KIND_EDIT_AND_SEND, review, text=EDITED))
    envelope = plan.email
    assert envelope is not None and envelope.to == "ana@example.com" and envelope.subject == "Re: Where is my card?"
    assert envelope.in_reply_to == "<m2@mail.example>"
    assert envelope.references == ("<root@mail.example>", "<m2@mail.example>")
    assert envelope.message_id == f"<sf-{ACTION_ID}@rho.example>"  # the same on every retry of this action
    mail = email.message_from_bytes(build_message(plan).as_bytes(), policy=email.policy.default)
    assert mail["Auto-Submitted"] is None  # a person's reply, not an automatic one
    assert mail.get_body(("plain",)).get_content().startswith("Hello Ana,")


def test_an_escalation_is_a_note_naming_the_queue_the_agent_and_the_note() -> None:
    review = decided(ev.DECISION_REVIEW)
    escalate = action(ev.AGENT_ACTION_KIND_ESCALATE, review, target_queue="cards", note="Card stolen, not lost")
    plan = plan_of(escalate)
    assert (plan.kind, plan.public, plan.decision) == (ev.DELIVERY_KIND_NOTE, False, ev.DECISION_ESCALATE)
    text = plan.message.text
    assert "Escalated to cards by agent:sam" in text and "Card stolen, not lost" in text
    assert f"Reference sf-{ACTION_ID[:12]}" in text and "Escalation packet" not in text
    assert plan.group_id == 3601 and plan.priority == "high" and plan.status == "open"
    assert plan.tags == ("supportflow_escalated", "intent_card_arrival") and plan.citations == ()

    on_intercom = plan_of(action(ev.AGENT_ACTION_KIND_ESCALATE, decided(ev.DECISION_REVIEW, provider="intercom"),
                                 target_queue="cards"))
    assert on_intercom.assignee_team == "team-7" and "(no note)" in on_intercom.message.text
    on_freshdesk = plan_of(action(ev.AGENT_ACTION_KIND_ESCALATE, decided(ev.DECISION_REVIEW, provider="freshdesk"),
                                  target_queue="cards"))
    assert on_freshdesk.group_id == 42
    # A queue the provider has no group for: the note is posted, no group is set.
    assert plan_of(action(ev.AGENT_ACTION_KIND_ESCALATE, review, target_queue="fraud")).group_id is None


@pytest.mark.parametrize("kind", [
    ev.AGENT_ACTION_KIND_REJECT, ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS, ev.AGENT_ACTION_KIND_REASSIGN,
    ev.AGENT_ACTION_KIND_QA_SEVERITY, ev.AGENT_ACTION_KIND_CONFIRM_ACTION, ev.AGENT_ACTION_KIND_DECLINE_ACTION,
    ev.AGENT_ACTION_KIND_REDRAFT,
])
def test_actions_that_change_nothing_on_the_helpdesk_ticket_post_nothing(kind: int, ledger: DeliveryLedger) -> None:  # noqa: F811
    event = action(kind, reason="wrong_policy", note="n")
    assert decision_from_action(event) is None
    published: list[Emit] = []
    script = ZendeskScript()
    assert deliverer(ledger, script, published).on_action(event) == []
    assert published == [] and script.requests == [] and ledger.counts() == {}


def test_actions_that_can_never_be_delivered_are_invalid() -> None:
    with pytest.raises(InvalidEvent, match="unspecified or unknown"):
        decision_from_action(action(ev.AGENT_ACTION_KIND_UNSPECIFIED))
    no_id = approve()
    no_id.action_id = ""
    with pytest.raises(InvalidEvent, match="no action_id"):
        decision_from_action(no_id)
    no_decision = approve()
    no_decision.ClearField("decision")
    with pytest.raises(InvalidEvent, match="without the decision it acts on"):
        decision_from_action(no_decision)
    other = approve()
    other.ticket_id = "zd-9999"
    with pytest.raises(InvalidEvent, match="carries the decision of ticket zd-1001"):
        decision_from_action(other)


def test_the_decision_built_from_an_action_is_marked_as_the_agents() -> None:
    review = decided(ev.DECISION_REVIEW)
    built = decision_from_action(approve(review))
    assert built is not None and built.decision == ev.DECISION_RESPOND and built.meta.event_id == ACTION_ID
    assert built.meta.producer == "agent:sam" and built.meta.tenant_id == TENANT and built.reason == "approved by agent:sam"
    assert built.meta.occurred_at.seconds == 1_700_000_100
    assert built.ticket == review.ticket and list(built.draft.citations) == list(review.draft.citations)
    unnamed = approve(review)
    unnamed.agent = "sam"
    assert decision_from_action(unnamed).meta.producer == "agent:sam"
    # The decision acted on is left as it was.
    assert review.decision == ev.DECISION_REVIEW and review.meta.event_id == "d" * 32


# --- once per action, and the retry topic --------------------------------------------------------


def test_an_action_is_posted_once_and_recorded_under_its_action_id(ledger: DeliveryLedger) -> None:  # noqa: F811
    event = approve()
    published: list[Emit] = []
    script = ZendeskScript(POSTED)
    assert deliverer(ledger, script, published).on_action(event) == []  # published, not returned
    (emit,) = published
    record = emit.event
    assert emit.topic is Topic.TICKETS_DELIVERED and emit.key == "zd-1001"
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.external_id == "555"
    assert (record.kind, record.decision, record.decision_event_id) == (ev.DELIVERY_KIND_REPLY, ev.DECISION_RESPOND,
                                                                         ACTION_ID)
    assert record.meta.event_id == derived_event_id(ACTION_ID, Topic.TICKETS_DELIVERED, 0)
    assert COLLEAGUE_NOTE not in record.text and len(record.citations) == MAX_REPLY_CITATIONS
    (put,) = script.requests
    ticket = json.loads(put.read())["ticket"]
    assert ticket["comment"]["public"] is True and ticket["status"] == "pending"
    assert ticket["additional_tags"] == ["supportflow_answered"] and "group_id" not in ticket
    assert ledger.entry(ACTION_ID).state == DONE and ledger.entry(event.decision.meta.event_id) is None

    # The same action again (a redelivery, or the workspace publishing it twice): recorded, not posted.
    again = approve()
    again.meta.event_id = "f" * 32
    republished: list[Emit] = []
    script = ZendeskScript()
    deliverer(ledger, script, republished).on_action(again)
    assert script.requests == []
    (repeat,) = republished
    assert repeat.event.meta.event_id == record.meta.event_id and repeat.event.external_id == "555"


def test_an_actions_reply_is_retried_from_the_retry_topic_with_the_same_message(
        ledger: DeliveryLedger) -> None:  # noqa: F811
    event = action(ev.AGENT_ACTION_KIND_EDIT_AND_SEND, text=EDITED)
    published: list[Emit] = []
    (handed_on,) = deliverer(ledger, ZendeskScript(httpx.Response(503), httpx.Response(503)), published,
                             max_attempts=2, retry_later=FIRST_PASS).on_action(event)
    assert handed_on.topic is Topic.DELIVERY_RETRIES and published == []
    retry = handed_on.event
    # The retry carries the decision built from the action: RESPOND, keyed by the action_id, the agent's.
    assert retry.decision == decision_from_action(event) and retry.attempts == 2
    assert retry.decision.meta.event_id == ACTION_ID and retry.decision.meta.producer == "agent:sam"
    assert ledger.entry(ACTION_ID).state == STARTED

    first_plan = plan_of(event)
    retried_plan = plan_delivery(retry.decision, CHANNELS)
    assert retried_plan == first_plan  # the very message the first attempt tried to post
    script = ZendeskScript(httpx.Response(200, json={"comments": []}), POSTED)
    assert deliverer(ledger, script, published).on_retry(retry) == []
    assert [r.method for r in script.requests] == ["GET", "PUT"]
    (emit,) = published
    assert emit.event.decision_event_id == ACTION_ID and emit.event.attempts == 3
    assert emit.event.meta.event_id == derived_event_id(ACTION_ID, Topic.TICKETS_DELIVERED, 0)
    assert emit.event.text.startswith("Hello Ana,") and COLLEAGUE_NOTE not in emit.event.text


def test_an_escalation_found_on_the_thread_after_a_crash_is_not_posted_again(ledger: DeliveryLedger) -> None:  # noqa: F811
    event = action(ev.AGENT_ACTION_KIND_ESCALATE, target_queue="cards", note="Card stolen")
    plan = plan_of(event)
    ledger.claim(Claim(ACTION_ID, "zd-1001", TENANT, "zendesk", "note", "1001"))  # then the process died
    script = ZendeskScript(httpx.Response(200, json={"comments": [
        {"id": 777, "public": False, "html_body": plan.message.html}]}))
    published: list[Emit] = []
    deliverer(ledger, script, published).on_action(event)
    (emit,) = published
    assert emit.event.status == ev.DELIVERY_STATUS_ALREADY_DELIVERED and emit.event.external_id == "777"
    assert emit.event.kind == ev.DELIVERY_KIND_NOTE and emit.event.decision == ev.DECISION_ESCALATE
    assert [r.method for r in script.requests] == ["GET"]  # read back, not posted again
