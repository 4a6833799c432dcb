"""The workspace's pure side: which decisions make a queue row and what it keeps, what a delivery
row keeps, each agent action's event and new status, the refusals, and the ticket view."""

from __future__ import annotations

import difflib
import json

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent

from services.workspace.handlers import (
    REJECT_REASONS,
    ActionRefused,
    ActionRequest,
    action_record,
    agent_action,
    decision_from_json,
    delivery_row,
    edit_ratio,
    queue_row,
    ticket_view,
)

TENANT = "rho-bank"
DRAFT = "Hello,\n\nYour new card arrives within 5 working days [1].\n\nKind regards,\nRho-Bank Support"


def decided(decision: int = ev.DECISION_REVIEW, ticket_id: str = "zd-1001", draft: str | None = DRAFT,
            event_id: str = "d" * 32) -> ev.TicketDecided:
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=TENANT, channel=tk.CHANNEL_EMAIL, subject="Where is my card?",
                       body="My card has not arrived", origin=tk.ChannelOrigin(provider="zendesk", external_id="1001"))
    ticket.received_at.seconds = 1_700_000_000
    ticket.history.add(author="customer", text="I ordered it two weeks ago")
    event = ev.TicketDecided(
        meta=ev.EventMeta(event_id=event_id, tenant_id=TENANT),
        ticket=ticket,
        decision=decision,
        reason="one policy claim unverified",
        target_queue="cards",
        incident_id="inc-7" if decision == ev.DECISION_ESCALATE else "",
        classification=tk.Classification(intent="card_arrival", confidence=0.71, urgency=tk.URGENCY_HIGH,
                                          archetype=tk.ARCHETYPE_FAQ_BOUNDED, tier=tk.CUSTOMER_TIER_PREMIUM,
                                          route=tk.ROUTE_DRAFT_FOR_REVIEW, route_reason="low confidence"),
    )
    event.timeline.decided_at.seconds = 1_700_000_060
    if draft is not None:
        event.draft.CopyFrom(tk.Draft(
            text=draft,
            citations=[tk.Citation(article_id="card-delivery", title="Card delivery",
                                   passage="A new card arrives within 5 working days.")],
            ledger=[tk.PolicyClaim(claim="within 5 working days", kind="days", article_id="card-delivery", verified=True)],
            status=tk.DRAFT_STATUS_READY,
        ))
    if decision == ev.DECISION_ESCALATE:
        event.packet.CopyFrom(ev.ContextPacket(completeness=0.75, missing_information=["order_id"],
                                               unknown_fields=["account_state"]))
    return event


# --- decisions and deliveries in ------------------------------------------------------------------


@pytest.mark.parametrize("decision, queue", [
    (ev.DECISION_REVIEW, "review"), (ev.DECISION_ESCALATE, "escalated"), (ev.DECISION_FOLLOW_UP, "follow_up"),
])
def test_a_decision_that_waits_for_a_person_becomes_a_queue_row(decision: int, queue: str) -> None:
    row = queue_row(decided(decision))
    assert row is not None and row.queue == queue
    assert (row.ticket_id, row.tenant, row.intent, row.archetype, row.urgency, row.urgency_rank, row.tier, row.channel) == (
        "zd-1001", TENANT, "card_arrival", "faq_bounded", "high", tk.URGENCY_HIGH, "premium", "email")
    assert row.received_at == 1_700_000_000 and row.decided_at == 1_700_000_060
    assert row.decision_event_id == "d" * 32 and row.target_queue == "cards"
    # The whole decision is kept, for the ticket view.
    assert decision_from_json(row.decision_json) == decided(decision)


def test_an_escalation_row_names_its_incident() -> None:
    assert queue_row(decided(ev.DECISION_ESCALATE)).incident == "inc-7"


def test_a_decision_sent_without_a_person_is_not_queued() -> None:
    assert queue_row(decided(ev.DECISION_RESPOND)) is None


def test_a_decision_without_ticket_id_or_tenant_is_invalid() -> None:
    with pytest.raises(InvalidEvent):
        queue_row(decided(ticket_id=""))
    nameless = decided()
    nameless.ticket.tenant_id = ""
    nameless.meta.tenant_id = ""
    with pytest.raises(InvalidEvent):
        queue_row(nameless)


def test_a_delivery_row_keeps_what_the_channel_received() -> None:
    recorded = ev.DeliveryRecorded(
        meta=ev.EventMeta(event_id="e" * 32), ticket_id="zd-1001", decision_event_id="d" * 32,
        decision=ev.DECISION_REVIEW, kind=ev.DELIVERY_KIND_NOTE, provider="zendesk", external_ticket_id="1001",
        external_id="c-55", status=ev.DELIVERY_STATUS_DELIVERED, attempts=2, text="Draft for review",
        citations=[tk.Citation(article_id="card-delivery", title="Card delivery", passage="within 5 days")],
    )
    recorded.delivered_at.seconds = 1_700_000_100
    row = delivery_row(recorded)
    assert (row.event_id, row.ticket_id, row.kind, row.status, row.provider, row.decision, row.attempts) == (
        "e" * 32, "zd-1001", "note", "delivered", "zendesk", "review", 2)
    assert row.delivered_at == 1_700_000_100
    assert json.loads(row.citations_json)[0]["passage"] == "within 5 days"
    with pytest.raises(InvalidEvent):
        delivery_row(ev.DeliveryRecorded(meta=ev.EventMeta(event_id="x")))


# --- actions out ----------------------------------------------------------------------------------


def test_approve_sends_the_draft_as_written_with_the_decision() -> None:
    outcome = agent_action(ActionRequest("approve"), decided(), "open", "ana")
    action = outcome.event
    assert outcome.new_status == "sent"
    assert action.kind == ev.AGENT_ACTION_KIND_APPROVE and action.text == DRAFT
    assert action.agent == "agent:ana" and action.ticket_id == "zd-1001"
    assert len(action.action_id) == 32 and action.meta.event_id and action.meta.tenant_id == TENANT
    assert action.meta.producer == "workspace"
    assert action.decision == decided()


def test_a_second_approval_or_an_edit_of_a_sent_ticket_is_refused_with_409() -> None:
    for request in (ActionRequest("approve"), ActionRequest("edit", text="Hi"), ActionRequest("reject", reason="tone"),
                    ActionRequest("escalate", target_queue="cards")):
        with pytest.raises(ActionRefused) as refused:
            agent_action(request, decided(), "sent", "ana")
        assert refused.value.status == 409


def test_approving_a_ticket_without_a_draft_is_refused_with_422() -> None:
    with pytest.raises(ActionRefused) as refused:
        agent_action(ActionRequest("approve"), decided(draft=None), "open", "ana")
    assert refused.value.status == 422


def test_an_edit_sends_the_edited_text_and_how_much_of_the_draft_changed() -> None:
    edited = DRAFT.replace("5 working days", "3 working days") + "\nP.S. Track it in the app."
    outcome = agent_action(ActionRequest("edit", text=edited.replace("\n", "\r\n")), decided(), "open", "ana")
    action = outcome.event
    assert outcome.new_status == "sent" and action.kind == ev.AGENT_ACTION_KIND_EDIT_AND_SEND
    assert action.text == edited  # CRLF from the browser back to LF
    expected = round(1 - difflib.SequenceMatcher(None, DRAFT, edited).ratio(), 3)
    assert action.edit_ratio == pytest.approx(expected) and 0 < action.edit_ratio < 0.5
    assert edit_ratio(DRAFT, DRAFT) == 0.0
    assert edit_ratio("abc", "xyz") == 1.0


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_an_edit_to_an_empty_text_is_refused_with_422(text: str) -> None:
    with pytest.raises(ActionRefused) as refused:
        agent_action(ActionRequest("edit", text=text), decided(), "open", "ana")
    assert refused.value.status == 422


def test_an_edit_of_a_ticket_without_a_draft_changes_everything() -> None:
    outcome = agent_action(ActionRequest("edit", text="Written by hand"), decided(draft=None), "open", "ana")
    assert outcome.event.edit_ratio == 1.0


def test_reject_takes_a_reason_from_the_fixed_list_and_a_note() -> None:
    assert REJECT_REASONS == ("wrong_intent", "wrong_or_outdated_policy", "incomplete", "tone", "not_needed", "other")
    outcome = agent_action(ActionRequest("reject", reason="wrong_or_outdated_policy", note="fee changed in May"),
                           decided(), "open", "ana")
    assert outcome.new_status == "rejected"
    assert (outcome.event.kind, outcome.event.reason, outcome.event.note, outcome.event.text) == (
        ev.AGENT_ACTION_KIND_REJECT, "wrong_or_outdated_policy", "fee changed in May", "")
    with pytest.raises(ActionRefused) as refused:
        agent_action(ActionRequest("reject", reason="because"), decided(), "open", "ana")
    assert refused.value.status == 422


def test_escalate_names_the_queue() -> None:
    outcome = agent_action(ActionRequest("escalate", target_queue="fraud-and-security"), decided(), "open", "ana")
    assert outcome.new_status == "escalated"
    assert outcome.event.kind == ev.AGENT_ACTION_KIND_ESCALATE and outcome.event.target_queue == "fraud-and-security"
    for bad in ("", "two words", "<b>x</b>"):
        with pytest.raises(ActionRefused):
            agent_action(ActionRequest("escalate", target_queue=bad), decided(), "open", "ana")


def test_a_context_loss_flag_changes_no_status_and_is_taken_even_after_sending() -> None:
    for status in ("open", "sent"):
        outcome = agent_action(ActionRequest("flag_context_loss"), decided(), status, "ana")
        assert outcome.new_status is None and outcome.event.kind == ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS


def test_an_unknown_action_is_not_found() -> None:
    with pytest.raises(ActionRefused) as refused:
        agent_action(ActionRequest("delete"), decided(), "open", "ana")
    assert refused.value.status == 404


def test_an_action_record_keeps_what_the_actions_table_shows() -> None:
    event = agent_action(ActionRequest("edit", text="New text"), decided(), "open", "ana").event
    record = action_record(event, at=123.0)
    assert (record.action_id, record.ticket_id, record.kind, record.agent, record.text) == (
        event.action_id, "zd-1001", "edit", "agent:ana", "New text")
    assert record.edit_ratio == event.edit_ratio and record.decision_event_id == "d" * 32
    assert record.at == pytest.approx(event.meta.occurred_at.seconds + event.meta.occurred_at.nanos / 1e9)
    approve = action_record(agent_action(ActionRequest("approve"), decided(), "open", "ana").event, at=1.0)
    assert approve.edit_ratio is None
    with pytest.raises(InvalidEvent):
        action_record(ev.AgentAction(action_id="a", ticket_id="t"), at=1.0)


# --- the ticket view ------------------------------------------------------------------------------


def test_the_ticket_view_shows_the_message_classification_draft_sources_and_packet() -> None:
    view = ticket_view(decided(ev.DECISION_ESCALATE), status="open", queue="escalated", deliveries=[], actions=[])
    assert (view["subject"], view["body"], view["conversation"][0]["text"]) == (
        "Where is my card?", "My card has not arrived", "I ordered it two weeks ago")
    assert (view["classification"]["intent"], view["classification"]["route"], view["classification"]["route_reason"]) == (
        "card_arrival", "draft_for_review", "low confidence")
    assert view["draft"]["text"] == DRAFT
    assert view["citations"][0]["passage"] == "A new card arrives within 5 working days."
    assert view["ledger"][0] == {"claim": "within 5 working days", "kind": "days", "article_id": "card-delivery",
                                 "passage": "", "verified": True}
    assert view["packet"]["completeness"] == 0.75
    assert view["packet"]["missing_information"] == ["order_id"] and view["packet"]["unknown_fields"] == ["account_state"]
    assert view["decision"] == "escalate" and view["status"] == "open"
    json.dumps(view)  # JSON-ready for the API


def test_the_view_lists_deliveries_as_the_demo_report_does() -> None:
    delivery = {"kind": "reply", "provider": "zendesk", "external_id": "c-9", "text": "What is your order id?",
                "citations": "[]", "delivered_at": "2023-11-14T22:15:00Z", "status": "delivered", "error": ""}
    view = ticket_view(decided(ev.DECISION_FOLLOW_UP), status="open", queue="follow_up", deliveries=[delivery], actions=[])
    assert view["delivered"] == [{"kind": "follow_up", "channel": "zendesk", "external_id": "c-9",
                                  "text": "What is your order id?", "citations": [], "at": "2023-11-14T22:15:00Z",
                                  "status": "delivered", "error": ""}]
    review = ticket_view(decided(), status="open", queue="review", deliveries=[delivery | {"kind": "note"}], actions=[])
    assert review["delivered"][0]["kind"] == "note"
