"""The result of an executed action reaches the customer: a short public message on the ticket's
own channel, only for EXECUTED records, once per action id."""

from __future__ import annotations

import json

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent, new_meta
from supportflow.topics import Topic

from services.delivery.action_results import ActionMessages, ActionMessagesError
from services.delivery.ledger import DONE, DeliveryLedger
from tests.unit.test_delivery_handlers import TENANT, decided
from tests.unit.test_delivery_ledger import POSTED, ZendeskScript, deliverer, ledger  # noqa: F401

ACTION_ID = "b" * 32


def executed(tool="card_freeze", recorded=ev.ACTION_STATUS_EXECUTED, **params: str) -> ev.ActionRecorded:
    values = {"status": "frozen", "reference": "chg-81", "result.last4": "1234"} | params
    return ev.ActionRecorded(meta=new_meta(TENANT, "escalator"), ticket_id="zd-1001", action_id=ACTION_ID, tool=tool,
                             status=recorded, params=values, customer_id="cust-0001", confirmed_by="customer:zendesk")


@pytest.mark.parametrize("record, text", [
    (executed(), "Your card ending 1234 is now frozen (ref chg-81)."),
    (executed(**{"result.last4": ""}), "Your card is now frozen (ref chg-81)."),
    (executed("transfer_cancel", amount="120.00", currency="GBP", status="cancelled"),
     "Your transfer of 120.00 GBP has been cancelled (ref chg-81)."),
    (executed("loyalty_boost", reference=""), "Done: your request has been carried out (status: frozen)."),
])
def test_the_wording_uses_what_the_system_confirmed(record: ev.ActionRecorded, text: str) -> None:
    assert ActionMessages.load().text(record) == text


def test_wordings_are_validated_on_load(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("default: ['Done {reference}']\n")
    with pytest.raises(ActionMessagesError, match="at most"):
        ActionMessages.load(path)


def test_an_executed_action_is_posted_once_on_the_tickets_channel(ledger: DeliveryLedger) -> None:  # noqa: F811
    published: list[Emit] = []
    script = ZendeskScript(POSTED, POSTED)
    service = deliverer(ledger, script, published)
    service.on_decided(decided(ev.DECISION_ESCALATE))  # the ticket's escalation note: its channel is now known
    assert service.on_action_recorded(executed()) == []
    record = published[-1].event
    assert published[-1].topic is Topic.TICKETS_DELIVERED and record.decision_event_id == ACTION_ID
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.kind == ev.DELIVERY_KIND_REPLY
    assert record.text.startswith("Your card ending 1234 is now frozen (ref chg-81).")
    comment = json.loads(script.requests[-1].content)["ticket"]["comment"]
    assert comment["public"] is True and "Your card ending 1234 is now frozen (ref chg-81)." in (comment.get("body") or comment["html_body"])
    assert ledger.entry(ACTION_ID).state == DONE

    # Redelivered: recorded again from the ledger, not posted again.
    service.on_action_recorded(executed())
    assert len(script.requests) == 2 and published[-1].event.decision_event_id == ACTION_ID


@pytest.mark.parametrize("status", [ev.ACTION_STATUS_PROPOSED, ev.ACTION_STATUS_DRY_RUN, ev.ACTION_STATUS_REFUSED])
def test_nothing_is_said_of_an_action_the_system_did_not_carry_out(ledger: DeliveryLedger, status: int) -> None:  # noqa: F811
    published: list[Emit] = []
    script = ZendeskScript(POSTED)
    service = deliverer(ledger, script, published)
    service.on_decided(decided(ev.DECISION_ESCALATE))
    assert service.on_action_recorded(executed(recorded=status)) == []
    assert len(script.requests) == 1 and ledger.entry(ACTION_ID) is None


def test_an_action_on_a_ticket_never_delivered_here_is_dead_lettered(ledger: DeliveryLedger) -> None:  # noqa: F811
    with pytest.raises(InvalidEvent, match="no_channel: nothing was delivered on ticket zd-1001"):
        deliverer(ledger, ZendeskScript(), []).on_action_recorded(executed())
