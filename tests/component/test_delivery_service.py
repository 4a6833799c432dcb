"""The delivery service against the real Kafka and the local provider stand-ins
(tooling/channel_servers): decisions in on the decision topics (and agents' approvals and edits on
agent.actions), replies and notes out on each ticket's own channel, a DeliveryRecorded for each on tickets.delivered, dead letters with the
provider's reason, one tenant's failing helpdesk not holding up another tenant's deliveries (its
decisions retried from tickets.delivery_retries while the other tenant's, in the same batch or a
later one, are posted), and -- the kill test -- exactly one post per decision across a SIGKILL."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import (H_DLQ_ERROR, H_DLQ_REASON, EventPublisher, derived_event_id, ensure_topics, header,
                                  kafka_config, new_meta)
from supportflow.topics import DECISION_TOPICS, Topic
from tooling.settings import FleetSettings

from services.delivery.main import RETRY_DELAY_S
from tests.kafka_helpers import read_all
from tests.service_helpers import service_running
from tooling.channel_servers import ChannelServers, ChannelServersConfig, TenantAccounts
from tooling.fleet import free_port

pytestmark = pytest.mark.infra

TENANT = "demo-bank"
ZENDESK_EMAIL = "supportflow@demo-bank.example"
ADMIN_ID = "814860"
CARDS_GROUP = 360002
CARDS_TEAM = "5501"
ACCOUNTS = TenantAccounts(
    tenant=TENANT, gateway_url="", zendesk_email=ZENDESK_EMAIL, zendesk_api_token="zd-token",
    zendesk_webhook_secret="zd-secret", intercom_access_token="ic-token", intercom_client_secret="ic-secret",
    intercom_admin_id=ADMIN_ID, freshdesk_api_key="fd-key", freshdesk_webhook_secret="fd-secret",
    mailbox="support@demo-bank.example", api_callback_secret="cb-secret",
)
# A second tenant, for what one tenant's failing channel must not do to another's.
OTHER_TENANT = "north-credit"
OTHER_ADMIN_ID = "924001"
OTHER_ACCOUNTS = TenantAccounts(
    tenant=OTHER_TENANT, gateway_url="", zendesk_email="supportflow@north-credit.example",
    zendesk_api_token="nc-zd-token", zendesk_webhook_secret="nc-zd-secret", intercom_access_token="nc-ic-token",
    intercom_client_secret="nc-ic-secret", intercom_admin_id=OTHER_ADMIN_ID, freshdesk_api_key="nc-fd-key",
    freshdesk_webhook_secret="nc-fd-secret", mailbox="support@north-credit.example", api_callback_secret="nc-cb-secret",
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChannelServers]:
    state = tmp_path_factory.mktemp("channel-servers")
    with ChannelServers(ChannelServersConfig(tenants=(ACCOUNTS, OTHER_ACCOUNTS), state_dir=str(state))) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(servers: ChannelServers) -> Iterator[None]:
    yield
    for provider in ("zendesk", "intercom", "freshdesk", "email", "api"):
        servers.set_faults(provider)


def channels_file(path: Path, servers: ChannelServers) -> Path:
    host, _, port = servers.mail_smtp.rpartition(":")
    path.write_text(yaml.safe_dump({"tenants": {TENANT: {
        "help_center_url": "https://help.demo-bank.example",
        "zendesk": {"base_url": servers.zendesk_url, "email": ZENDESK_EMAIL, "api_token": "zd-token",
                    "webhook_secret": "zd-secret", "queue_groups": {"cards": CARDS_GROUP}},
        "intercom": {"base_url": servers.intercom_url, "access_token": "ic-token", "client_secret": "ic-secret",
                     "admin_id": ADMIN_ID, "queue_teams": {"cards": CARDS_TEAM}},
        "freshdesk": {"base_url": servers.freshdesk_url, "api_key": "fd-key", "webhook_secret": "fd-secret",
                      "queue_groups": {"cards": 77}},
        "email": {"address": "support@demo-bank.example", "display_name": "Demo Bank Support", "smtp_host": host,
                  "smtp_port": int(port), "smtp_starttls": False, "notes_address": "agents@demo-bank.example"},
        "api": {"callback_url": servers.api_callback_url, "signing_secret": "cb-secret"},
    }}}))
    return path


@pytest.fixture
def delivery_settings(settings: FleetSettings, servers: ChannelServers, tmp_path: Path) -> FleetSettings:
    ensure_topics(settings)
    return settings.replace(
        channels_path=channels_file(tmp_path / "channels.yaml", servers),
        delivery_ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        delivery_timeout_s=5.0, delivery_max_attempts=4, delivery_max_retry_after_s=5.0, delivery_workers=4,
        ops_port=free_port(),
    )


@contextmanager
def delivery_running(settings: FleetSettings) -> Iterator[None]:
    """The service's consumer loops in this process, as run_service would run them."""
    with service_running("delivery", settings):
        yield


# --- decisions -------------------------------------------------------------------------------


def decision(kind: int, provider: str, external_id: str, **origin: object) -> ev.TicketDecided:
    prefix = {"zendesk": "zd", "intercom": "ic", "freshdesk": "fd", "email": "em", "api": "api"}[provider]
    ticket = tk.Ticket(ticket_id=f"{prefix}-{external_id}-{uuid.uuid4().hex[:6]}", tenant_id=TENANT,
                       subject="Where is my card?", body="I ordered a card two weeks ago and it has not arrived.",
                       origin=tk.ChannelOrigin(provider=provider, external_id=external_id, **origin))
    ticket.received_at.GetCurrentTime()
    event = ev.TicketDecided(
        meta=new_meta(TENANT, "escalator"), ticket=ticket, decision=kind,
        classification=tk.Classification(intent="card_arrival", confidence=0.93, urgency=tk.URGENCY_HIGH,
                                          route=tk.ROUTE_AUTO_RESPOND),
        draft=tk.Draft(
            text=("Hello,\n\nA new card usually arrives within 7 working days [1]. You can follow it in the app [2].\n\n"
                  "Sources:\n[1] Card delivery\n[2] Tracking a card\n\nKind regards,\nDemo Bank Support"),
            citations=[tk.Citation(article_id="card-delivery", title="Card delivery", passage="arrives within 7 working days"),
                       tk.Citation(article_id="tracking", title="Tracking a card", url="https://help.demo-bank.example/t")],
            ledger=[tk.PolicyClaim(claim="within 7 working days", kind="days", article_id="card-delivery", verified=True)],
            status=tk.DRAFT_STATUS_READY,
        ),
        reason={ev.DECISION_RESPOND: "ready draft", ev.DECISION_REVIEW: "agent review: confidence 0.55 < 0.70",
                ev.DECISION_ESCALATE: "risk flags security need a human",
                ev.DECISION_FOLLOW_UP: "ask the customer for card_last4"}[kind],
    )
    if kind in (ev.DECISION_REVIEW, ev.DECISION_ESCALATE):
        event.target_queue = "cards"
        event.packet.CopyFrom(ev.ContextPacket(
            intent="card_arrival", urgency=tk.URGENCY_HIGH, conversation_summary="Card not arrived after two weeks.",
            suggested_next_step="Check the card's dispatch status.", target_queue="cards", completeness=0.8))
    return event


def publish(settings: FleetSettings, events: list[ev.TicketDecided]) -> None:
    publisher = EventPublisher(settings, "test")
    for event in events:
        publisher.publish(DECISION_TOPICS[event.decision], event.ticket.ticket_id, event)
    publisher.flush()


def delivered_records(settings: FleetSettings, expected: int, timeout_s: float = 60.0) -> dict[str, ev.DeliveryRecorded]:
    """The latest DeliveryRecorded per decision, once `expected` decisions have one."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, ev.DeliveryRecorded] = {}
    while time.monotonic() < deadline:
        for message in read_all(settings, Topic.TICKETS_DELIVERED.name_in(settings.topic_prefix), expected, timeout_s=5):
            record = ev.DeliveryRecorded()
            record.ParseFromString(message.value())
            found[record.decision_event_id] = record
        if len(found) >= expected:
            return found
    raise AssertionError(f"{len(found)} of {expected} decisions recorded on tickets.delivered")


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def zendesk_ticket(servers: ChannelServers, ticket_id: str) -> dict:
    response = httpx.get(f"{servers.zendesk_url}/api/v2/tickets/{ticket_id}.json", auth=(f"{ZENDESK_EMAIL}/token", "zd-token"))
    response.raise_for_status()
    return response.json()["ticket"]


def new_zendesk_ticket(servers: ChannelServers, n: int = 0) -> str:
    return servers.zendesk_create_ticket(TENANT, subject="Where is my card?", body="My card has not arrived.",
                                         requester_email=f"ana{n}@example.com", requester_name="Ana")


# --- one provider at a time --------------------------------------------------------------------


def test_zendesk_reply_and_review_note(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    answered, reviewed = new_zendesk_ticket(servers, 1), new_zendesk_ticket(servers, 2)
    reply = decision(ev.DECISION_RESPOND, "zendesk", answered)
    note = decision(ev.DECISION_REVIEW, "zendesk", reviewed)
    with delivery_running(delivery_settings):
        publish(delivery_settings, [reply, note])
        records = delivered_records(delivery_settings, 2)

    (posted,) = servers.deliveries("zendesk", answered)
    assert posted["kind"] == "reply" and posted["public"] is True
    # Zendesk shows the HTML: each source's title linked to its article ("[1] Card delivery").
    assert '[1] <a href="https://help.demo-bank.example/articles/card-delivery">Card delivery</a>' in posted["html"]
    assert "[1] Card delivery\n" in posted["text"]
    assert '<a href="https://help.demo-bank.example/t">' in posted["html"]
    assert "colleague will read" in posted["text"]
    assert zendesk_ticket(servers, answered)["status"] == "pending"
    record = records[reply.meta.event_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.kind == ev.DELIVERY_KIND_REPLY
    assert record.external_id == posted["external_id"] and record.external_ticket_id == answered
    assert record.attempts == 1 and record.latency_s > 0 and record.ticket_id == reply.ticket.ticket_id

    (held,) = servers.deliveries("zendesk", reviewed)
    assert held["kind"] == "note" and held["public"] is False and "Draft for review" in held["text"]
    assert "agent review: confidence 0.55 < 0.70" in held["text"]
    ticket = zendesk_ticket(servers, reviewed)
    assert ticket["group_id"] == CARDS_GROUP and ticket["priority"] == "high"
    assert {"supportflow_review", "intent_card_arrival"} <= set(ticket["tags"])
    assert records[note.meta.event_id].kind == ev.DELIVERY_KIND_NOTE


def test_intercom_and_freshdesk_reply_and_note(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    conversations = [servers.intercom_start_conversation(TENANT, body="<p>My card has not arrived</p>",
                                                         email=f"bo{i}@example.com", name="Bo", external_id=f"cust-{uuid.uuid4().hex[:6]}")
                     for i in range(2)]
    tickets = [servers.freshdesk_create_ticket(TENANT, subject="Card", description_html="<p>Card not arrived</p>",
                                               email=f"cy{i}@example.com", name="Cy") for i in range(2)]
    events = [decision(ev.DECISION_RESPOND, "intercom", conversations[0]),
              decision(ev.DECISION_ESCALATE, "intercom", conversations[1]),
              decision(ev.DECISION_RESPOND, "freshdesk", tickets[0]),
              decision(ev.DECISION_REVIEW, "freshdesk", tickets[1])]
    with delivery_running(delivery_settings):
        publish(delivery_settings, events)
        records = delivered_records(delivery_settings, 4)
    assert {r.status for r in records.values()} == {ev.DELIVERY_STATUS_DELIVERED}

    (reply,) = servers.deliveries("intercom", conversations[0])
    (note,) = servers.deliveries("intercom", conversations[1])
    assert (reply["kind"], reply["public"], note["kind"], note["public"]) == ("reply", True, "note", False)
    assert "Escalation packet" in note["text"] and "Check the card's dispatch status." in note["text"]
    conversation = httpx.get(f"{servers.intercom_url}/conversations/{conversations[1]}",
                             headers={"Authorization": "Bearer ic-token", "Intercom-Version": "2.11"}).json()
    assert conversation["team_assignee_id"] == CARDS_TEAM

    (fd_reply,) = servers.deliveries("freshdesk", tickets[0])
    (fd_note,) = servers.deliveries("freshdesk", tickets[1])
    assert fd_reply["kind"] == "reply" and fd_note["kind"] == "note" and fd_note["public"] is False
    noted = httpx.get(f"{servers.freshdesk_url}/api/v2/tickets/{tickets[1]}", auth=("fd-key", "X")).json()
    assert noted["group_id"] == 77 and noted["priority"] == 3 and "supportflow_review" in noted["tags"]
    answered = httpx.get(f"{servers.freshdesk_url}/api/v2/tickets/{tickets[0]}", auth=("fd-key", "X")).json()
    assert answered["status"] == 3


def test_an_email_reply_is_threaded_under_the_customers_mail(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    root, latest = f"<root-{uuid.uuid4().hex}@example.com>", f"<m2-{uuid.uuid4().hex}@example.com>"
    event = decision(ev.DECISION_RESPOND, "email", root, requester_email="ana@example.com", message_id=latest,
                     references=[root], mailbox="support@demo-bank.example")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
    (mail,) = servers.deliveries("email", root)
    assert mail["kind"] == "reply" and mail["subject"] == "Re: Where is my card?"
    assert mail["in_reply_to"] == latest and mail["references"] == [root, latest]
    assert mail["message_id"] == record.external_id == f"<sf-{event.meta.event_id}@demo-bank.example>"
    assert "Demo Bank Support" in mail["from_addr"] and "[1] Card delivery" in mail["text"]


def test_503_twice_then_delivered_once_in_three_attempts(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    ticket = new_zendesk_ticket(servers, 3)
    event = decision(ev.DECISION_RESPOND, "zendesk", ticket)
    servers.set_faults("zendesk", status=503, count=2)
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.attempts == 3
    assert len(servers.deliveries("zendesk", ticket)) == 1


def test_an_unknown_ticket_is_dead_lettered_with_the_providers_reason(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    event = decision(ev.DECISION_RESPOND, "zendesk", "987654321")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
        (dead,) = read_all(delivery_settings, Topic.TICKETS_RESPONDED.dead_letter_in(delivery_settings.topic_prefix), 1)
    assert record.status == ev.DELIVERY_STATUS_FAILED and "404" in record.error and "RecordNotFound" in record.error
    assert header(dead, H_DLQ_REASON) == "invalid_event"
    assert header(dead, H_DLQ_ERROR).startswith("not_found: zendesk 404") and dead.key().decode() == event.ticket.ticket_id


def test_an_api_ticket_is_answered_by_the_signed_callback(delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    event = decision(ev.DECISION_FOLLOW_UP, "api", "")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.provider == "api"
    (callback,) = servers.deliveries("api", event.ticket.ticket_id)
    assert callback["kind"] == "follow_up" and "the last four digits of the card" in callback["text"]


# --- agents' actions from the workspace ----------------------------------------------------------


def agent_action(kind: int, acted_on: ev.TicketDecided, **fields: object) -> ev.AgentAction:
    """An AgentAction as the workspace publishes it: its own event id, an action_id, the decision."""
    return ev.AgentAction(meta=new_meta(TENANT, "workspace"), action_id=uuid.uuid4().hex,
                          ticket_id=acted_on.ticket.ticket_id, kind=kind, agent="agent:sam", decision=acted_on, **fields)


def publish_actions(settings: FleetSettings, actions: list[ev.AgentAction]) -> None:
    publisher = EventPublisher(settings, "test")
    for action in actions:
        publisher.publish(Topic.AGENT_ACTIONS, action.ticket_id, action)
    publisher.flush()


def test_an_agents_approval_on_a_zendesk_review_ticket_is_one_public_comment(
        delivery_settings: FleetSettings, servers: ChannelServers) -> None:
    ticket = new_zendesk_ticket(servers, 400)
    review = decision(ev.DECISION_REVIEW, "zendesk", ticket)
    approval = agent_action(ev.AGENT_ACTION_KIND_APPROVE, review, text=review.draft.text)
    # The same action twice: a redelivery (the same event id, dropped by the consumer) and the
    # workspace publishing it again (a new event id, the same action_id: the ledger's key).
    republished = ev.AgentAction()
    republished.CopyFrom(approval)
    republished.meta.event_id = uuid.uuid4().hex
    rejection = agent_action(ev.AGENT_ACTION_KIND_REJECT, decision(ev.DECISION_REVIEW, "zendesk", ticket),
                             reason="wrong_policy")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [review])
        delivered_records(delivery_settings, 1)  # the review note first, as the workspace would see it
        publish_actions(delivery_settings, [approval, approval, rejection])
        records = delivered_records(delivery_settings, 2)
        publish_actions(delivery_settings, [republished])
        recorded: list[ev.DeliveryRecorded] = []

        def recorded_again() -> bool:
            recorded[:] = all_records(delivery_settings, 2)
            return sum(r.decision_event_id == approval.action_id for r in recorded) >= 2

        wait_for("the republished action's record", recorded_again, timeout_s=60)

    note, reply = sorted(servers.deliveries("zendesk", ticket), key=lambda item: item["public"])
    assert (note["kind"], note["public"]) == ("note", False) and "Draft for review" in note["text"]
    assert (reply["kind"], reply["public"]) == ("reply", True)
    assert "A new card usually arrives within 7 working days [1]" in reply["text"]
    assert '[1] <a href="https://help.demo-bank.example/articles/card-delivery">Card delivery</a>' in reply["html"]
    assert "colleague will read" not in reply["text"]
    assert zendesk_ticket(servers, ticket)["status"] == "pending"
    record = records[approval.action_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.kind == ev.DELIVERY_KIND_REPLY
    assert record.decision == ev.DECISION_RESPOND and record.external_id == reply["external_id"]
    assert record.ticket_id == review.ticket.ticket_id and record.external_ticket_id == ticket
    assert records[review.meta.event_id].kind == ev.DELIVERY_KIND_NOTE  # its own record, under the decision's id
    # Recorded again under the same record id, posted once.
    again = [r for r in recorded if r.decision_event_id == approval.action_id]
    assert len({r.meta.event_id for r in again}) == 1 and {r.external_id for r in again} == {reply["external_id"]}
    assert rejection.action_id not in {r.decision_event_id for r in recorded}  # a rejection posts nothing


def test_an_agents_edit_on_an_email_ticket_is_a_threaded_reply(delivery_settings: FleetSettings,
                                                              servers: ChannelServers) -> None:
    root, latest = f"<root-{uuid.uuid4().hex}@example.com>", f"<m2-{uuid.uuid4().hex}@example.com>"
    review = decision(ev.DECISION_REVIEW, "email", root, requester_email="ana@example.com", message_id=latest,
                      references=[root], mailbox="support@demo-bank.example")
    edited = "Hello Ana,\n\nYour replacement card was sent on Monday and arrives within 7 working days [1].\n\nSam"
    edit = agent_action(ev.AGENT_ACTION_KIND_EDIT_AND_SEND, review, text=edited, edit_ratio=0.6)
    with delivery_running(delivery_settings):
        publish_actions(delivery_settings, [edit])
        record = delivered_records(delivery_settings, 1)[edit.action_id]
    (mail,) = servers.deliveries("email", root)
    assert mail["kind"] == "reply" and mail["subject"] == "Re: Where is my card?"
    assert mail["in_reply_to"] == latest and mail["references"] == [root, latest]
    assert mail["message_id"] == record.external_id == f"<sf-{edit.action_id}@demo-bank.example>"
    assert "Your replacement card was sent on Monday" in mail["text"] and "A new card usually" not in mail["text"]
    assert "[1] Card delivery: https://help.demo-bank.example/articles/card-delivery" in mail["text"]
    assert "colleague will read" not in mail["text"]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.kind == ev.DELIVERY_KIND_REPLY


# --- one tenant's failing helpdesk and another tenant's deliveries ---------------------------------

# Tenant A (demo-bank) is on Zendesk, which answers every call 503 with a Retry-After; tenant B
# (north-credit) is on Intercom, which answers. Faults apply to a whole provider server, hence two
# providers. A first attempt does not wait RETRY_AFTER_S (longer than FIRST_PASS_MAX_RETRY_AFTER_S):
# after one call it hands the decision to the retry topic. With MAX_ATTEMPTS calls RETRY_AFTER_S
# apart, each of A's retries that calls Zendesk spends at least A_RETRIES_S retrying: a floor set by
# the Retry-After, not by the machine's speed.
MAX_ATTEMPTS = 4
RETRY_AFTER_S = 2
A_RETRIES_S = (MAX_ATTEMPTS - 1) * RETRY_AFTER_S
LANE_SLOTS = 2  # SUPPORTFLOW_DELIVERY_WORKERS: calls in flight per (tenant, provider) lane


def two_tenant_settings(delivery_settings: FleetSettings, servers: ChannelServers, tmp_path: Path) -> FleetSettings:
    path = channels_file(tmp_path / "two-tenants.yaml", servers)
    config = yaml.safe_load(path.read_text())
    config["tenants"][OTHER_TENANT] = {
        "help_center_url": "https://help.north-credit.example",
        "intercom": {"base_url": servers.intercom_url, "access_token": "nc-ic-token", "client_secret": "nc-ic-secret",
                     "admin_id": OTHER_ADMIN_ID},
    }
    path.write_text(yaml.safe_dump(config))
    return delivery_settings.replace(channels_path=path, delivery_max_attempts=MAX_ATTEMPTS,
                                     delivery_max_retry_after_s=5.0, delivery_timeout_s=2.0,
                                     delivery_workers=LANE_SLOTS)


def for_tenant(event: ev.TicketDecided, tenant: str) -> ev.TicketDecided:
    event.meta.tenant_id = tenant
    event.ticket.tenant_id = tenant
    return event


def other_tenant_decision(servers: ChannelServers, n: int) -> ev.TicketDecided:
    conversation = servers.intercom_start_conversation(OTHER_TENANT, body="<p>My card has not arrived</p>",
                                                       email=f"nia{n}@example.com", name="Nia",
                                                       external_id=f"nc-{uuid.uuid4().hex[:8]}")
    return for_tenant(decision(ev.DECISION_RESPOND, "intercom", conversation), OTHER_TENANT)


def at(item: dict) -> datetime:
    """When a stand-in received a request or a delivery (its own clock, to the millisecond)."""
    return datetime.strptime(item["at"], "%Y-%m-%dT%H:%M:%S.%fZ")


def zendesk_calls(servers: ChannelServers, ticket: str) -> list[dict]:
    """Every call about a Zendesk ticket -- posting on it, reading its comments back before a
    retry posts -- answered or not, oldest first."""
    paths = {f"/api/v2/tickets/{ticket}.json", f"/api/v2/tickets/{ticket}/comments.json"}
    return [r for r in servers.received("zendesk") if r["path"].partition("?")[0] in paths]


def posted_on(servers: ChannelServers, event: ev.TicketDecided) -> list[dict]:
    return servers.deliveries(event.ticket.origin.provider, event.ticket.origin.external_id)


def messages_on(settings: FleetSettings, topic_name: str) -> int:
    """How many messages a topic holds (its partitions' watermarks)."""
    consumer = Consumer(kafka_config(settings) | {"group.id": f"count-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic_name, timeout=10).topics[topic_name].partitions
        watermarks = [consumer.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10) for p in partitions]
        return sum(high - low for low, high in watermarks)
    finally:
        consumer.close()


def by_pass(calls: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Each decision's calls split into its first attempt's and its retry's: retries wait at least
    RETRY_DELAY_S after the first attempts, which take a moment."""
    first_call = min(at(item) for attempts in calls.values() for item in attempts)
    retries_from = first_call + timedelta(seconds=RETRY_DELAY_S / 2)
    return ({k: [r for r in v if at(r) < retries_from] for k, v in calls.items()},
            {k: [r for r in v if at(r) >= retries_from] for k, v in calls.items()})


def test_a_provider_that_keeps_failing_does_not_hold_up_another_tenants_deliveries(
        delivery_settings: FleetSettings, servers: ChannelServers, tmp_path: Path) -> None:
    settings = two_tenant_settings(delivery_settings, servers, tmp_path)
    failing = [decision(ev.DECISION_RESPOND, "zendesk", new_zendesk_ticket(servers, 200 + i)) for i in range(4)]
    answered = [other_tenant_decision(servers, i) for i in range(6)]
    interleaved = [e for pair in itertools.zip_longest(failing, answered) for e in pair if e is not None]
    later_a = decision(ev.DECISION_RESPOND, "zendesk", new_zendesk_ticket(servers, 210))
    later_b = other_tenant_decision(servers, 10)
    servers.set_faults("zendesk", status=503, retry_after=RETRY_AFTER_S)  # every call, until the test ends
    # Published before the consumer starts, so that they are one batch: within a batch every ticket
    # has its own thread and waits only for its own lane. (Across batches too:
    # test_a_decision_arriving_while_another_tenants_delivery_retries_does_not_wait_for_it.)
    publish(settings, interleaved)
    with delivery_running(settings):
        started = time.monotonic()
        wait_for("tenant B's responses", lambda: all(posted_on(servers, e) for e in answered), timeout_s=30)
        b_took_s = time.monotonic() - started
        records = delivered_records(settings, len(interleaved))

        # Once the lanes have opened, A's next decisions go through both passes without a call (for
        # 30 s) and no longer hold anything up, whichever batch they come in.
        publish(settings, [later_a, later_b])
        published = time.monotonic()
        wait_for("tenant B's later response", lambda: bool(posted_on(servers, later_b)), timeout_s=30)
        later_b_took_s = time.monotonic() - published
        records = delivered_records(settings, len(interleaved) + 2)
        dead = read_all(settings, Topic.DELIVERY_RETRIES.dead_letter_in(settings.topic_prefix), len(failing) + 1)

    calls = {e.meta.event_id: zendesk_calls(servers, e.ticket.origin.external_id) for e in failing}
    first_calls, retry_calls = by_pass(calls)
    retried = [attempts for attempts in retry_calls.values() if attempts]
    # Every one of B's responses was posted while A's deliveries were still retrying: before the final
    # call of any of them. Delivered one after another -- or with all lanes sharing LANE_SLOTS calls,
    # which A's first two would hold -- B's first post would follow an A's final call.
    b_posts = [item for e in answered for item in posted_on(servers, e)]
    assert len(b_posts) == len(answered)
    assert max(at(item) for item in b_posts) < min(at(attempts[-1]) for attempts in retried)
    assert all(at(attempts[-1]) - at(attempts[0]) >= timedelta(seconds=A_RETRIES_S - 0.5) for attempts in retried)
    assert b_took_s < A_RETRIES_S, f"tenant B's responses took {b_took_s:.1f}s"
    for event in answered:
        record = records[event.meta.event_id]
        assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.attempts == 1 and record.provider == "intercom"
        (posted,) = posted_on(servers, event)
        assert posted["tenant"] == OTHER_TENANT and posted["kind"] == "reply"

    # In each pass, A's lane ran at most LANE_SLOTS deliveries at once; when one ran out, the lane opened
    # and the others were turned away without calling Zendesk. How many called first depends on when they
    # reached the lane: a first attempt gives up after one post (the Retry-After is longer than it waits),
    # often before a second one has called; a retry after every attempt at reading the thread back, but the
    # retries may come in more than one batch, and a later batch finds the lane open.
    first_counts = [len(attempts) for attempts in first_calls.values()]
    assert set(first_counts) <= {0, 1} and 1 <= sum(first_counts) <= LANE_SLOTS, first_counts
    retry_counts = [len(attempts) for attempts in retry_calls.values()]
    assert set(retry_counts) <= {0, MAX_ATTEMPTS} and 1 <= len(retried) <= LANE_SLOTS, retry_counts
    assert all(r["status"] == 503 for attempts in calls.values() for r in attempts)
    assert {r["method"] for attempts in first_calls.values() for r in attempts} == {"PUT"}
    assert {r["method"] for attempts in retry_calls.values() for r in attempts} == {"GET"}
    for event in failing:
        record = records[event.meta.event_id]
        assert record.status == ev.DELIVERY_STATUS_FAILED and record.provider == "zendesk"
        assert record.attempts == len(calls[event.meta.event_id])  # both passes' calls
        if retry_calls[event.meta.event_id]:
            # A retry reads the thread back before it posts: the first attempt may have posted.
            assert record.error.startswith(f"zendesk unavailable after {MAX_ATTEMPTS} attempt(s): read the comments: 503"), \
                record.error
        else:
            assert record.error.startswith("zendesk unavailable after 0 attempt(s): not called for"), record.error
        assert not posted_on(servers, event)

    assert not zendesk_calls(servers, later_a.ticket.origin.external_id)
    assert records[later_a.meta.event_id].status == ev.DELIVERY_STATUS_FAILED
    assert "not called for" in records[later_a.meta.event_id].error
    assert records[later_b.meta.event_id].status == ev.DELIVERY_STATUS_DELIVERED
    assert later_b_took_s < A_RETRIES_S, f"tenant B's later response took {later_b_took_s:.1f}s"

    # Dead-lettered from the retry topic (a DeliveryRetry carrying the decision), none from the decisions'.
    assert sorted(m.key().decode() for m in dead) == sorted(e.ticket.ticket_id for e in [*failing, later_a])
    for message in dead:
        assert header(message, H_DLQ_REASON) == "invalid_event"
        assert header(message, H_DLQ_ERROR).startswith("provider_unavailable: zendesk unavailable after")
        retry = ev.DeliveryRetry()
        retry.ParseFromString(message.value())
        assert retry.decision.ticket.ticket_id == message.key().decode()
    assert messages_on(settings, Topic.TICKETS_RESPONDED.dead_letter_in(settings.topic_prefix)) == 0


def all_records(settings: FleetSettings, expected: int, timeout_s: float = 60.0) -> list[ev.DeliveryRecorded]:
    """Every DeliveryRecorded on tickets.delivered (repeats included), once `expected` decisions have one."""
    delivered_records(settings, expected, timeout_s)
    records = []
    for message in read_all(settings, Topic.TICKETS_DELIVERED.name_in(settings.topic_prefix), expected, timeout_s=5):
        record = ev.DeliveryRecorded()
        record.ParseFromString(message.value())
        records.append(record)
    return records


def test_a_decision_arriving_while_another_tenants_delivery_retries_does_not_wait_for_it(
        delivery_settings: FleetSettings, servers: ChannelServers, tmp_path: Path) -> None:
    settings = two_tenant_settings(delivery_settings, servers, tmp_path)
    failing = [decision(ev.DECISION_RESPOND, "zendesk", new_zendesk_ticket(servers, 300 + i)) for i in range(3)]
    answered = [other_tenant_decision(servers, 300 + i) for i in range(4)]
    servers.set_faults("zendesk", status=503, retry_after=RETRY_AFTER_S)  # every call, until the test ends

    def a_called() -> bool:
        return any(zendesk_calls(servers, e.ticket.origin.external_id) for e in failing)

    with delivery_running(settings):
        publish(settings, failing)
        wait_for("a first call to tenant A's Zendesk", a_called, timeout_s=30)
        # B's decisions come after A's, in a later batch, while A's deliveries are failing.
        publish(settings, answered)
        published = time.monotonic()
        wait_for("tenant B's responses", lambda: all(posted_on(servers, e) for e in answered), timeout_s=60)
        b_took_s = time.monotonic() - published
        records = all_records(settings, len(failing) + len(answered), timeout_s=90)

    calls = {e.meta.event_id: zendesk_calls(servers, e.ticket.origin.external_id) for e in failing}
    # The deliveries that went through every retry (the others found their lane open and gave up at once).
    retried = [attempts for attempts in calls.values() if len(attempts) >= MAX_ATTEMPTS]
    assert retried, {k: len(v) for k, v in calls.items()}
    assert all(at(attempts[-1]) - at(attempts[0]) >= timedelta(seconds=A_RETRIES_S - 0.5) for attempts in retried)
    b_posts = [item for e in answered for item in posted_on(servers, e)]
    assert len(b_posts) == len(answered)
    # Every B response was posted (the stand-ins' own clocks) before any of A's retries ran out.
    assert max(at(item) for item in b_posts) < min(at(attempts[-1]) for attempts in retried), (
        f"tenant B's last response at {max(at(item) for item in b_posts)}, A's retries ran out from "
        f"{min(at(attempts[-1]) for attempts in retried)}")
    assert b_took_s < A_RETRIES_S, f"tenant B's responses took {b_took_s:.1f}s"

    by_decision: dict[str, list[ev.DeliveryRecorded]] = {}
    for record in records:
        by_decision.setdefault(record.decision_event_id, []).append(record)
    for event in answered:
        (record,) = by_decision[event.meta.event_id]
        assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.attempts == 1 and record.provider == "intercom"
        (posted,) = posted_on(servers, event)
        assert posted["tenant"] == OTHER_TENANT
    for event in failing:
        # FAILED exactly once, under the one record id a decision has whichever pass recorded it.
        (record,) = by_decision[event.meta.event_id]
        assert record.status == ev.DELIVERY_STATUS_FAILED and record.provider == "zendesk"
        assert record.meta.event_id == derived_event_id(event.meta.event_id, Topic.TICKETS_DELIVERED, 0)
        assert record.attempts == len(calls[event.meta.event_id])
        assert record.error.startswith("zendesk unavailable after"), record.error
        assert not posted_on(servers, event)
    assert all(r["status"] == 503 for attempts in calls.values() for r in attempts)

    # Passed through the retry topic, then dead-lettered from it once each, with the reason.
    retries = read_all(settings, Topic.DELIVERY_RETRIES.name_in(settings.topic_prefix), len(failing))
    assert sorted(m.key().decode() for m in retries) == sorted(e.ticket.ticket_id for e in failing)
    dead = read_all(settings, Topic.DELIVERY_RETRIES.dead_letter_in(settings.topic_prefix), len(failing))
    assert sorted(m.key().decode() for m in dead) == sorted(e.ticket.ticket_id for e in failing)
    for message in dead:
        assert header(message, H_DLQ_ERROR).startswith("provider_unavailable: zendesk unavailable after")
    assert messages_on(settings, Topic.TICKETS_RESPONDED.dead_letter_in(settings.topic_prefix)) == 0


# --- the kill test -----------------------------------------------------------------------------


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_service(settings: FleetSettings, log_path: Path) -> subprocess.Popen:
    env = os.environ | settings.to_env() | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SUPPORTFLOW_GRPC_PORT", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "tooling.cli", "run", "delivery"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _ready(settings.ops_port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"delivery did not become ready:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return process


def test_a_killed_delivery_posts_every_decision_exactly_once(delivery_settings: FleetSettings, servers: ChannelServers,
                                                            tmp_path: Path) -> None:
    settings = delivery_settings.replace(delivery_workers=3)
    kinds = [ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE, ev.DECISION_FOLLOW_UP]
    events: list[ev.TicketDecided] = []
    where: dict[str, tuple[str, str]] = {}  # decision event id -> (provider, the servers' ticket id)
    for i in range(18):
        events.append(decision(kinds[i % 4], "zendesk", new_zendesk_ticket(servers, 100 + i)))
    for i in range(14):
        conversation = servers.intercom_start_conversation(TENANT, body="<p>Card?</p>", email=f"k{i}@example.com",
                                                           name="K", external_id=f"kill-{uuid.uuid4().hex[:8]}")
        events.append(decision(kinds[i % 4], "intercom", conversation))
    for i in range(14):
        ticket = servers.freshdesk_create_ticket(TENANT, subject="Card", description_html="<p>Card?</p>",
                                                 email=f"f{i}@example.com", name="F")
        events.append(decision(kinds[i % 4], "freshdesk", ticket))
    for i in range(8):
        root = f"<kill-{uuid.uuid4().hex}@example.com>"
        events.append(decision(kinds[i % 2 * 3], "email", root, requester_email=f"e{i}@example.com",
                               message_id=root, mailbox="support@demo-bank.example"))
    for i in range(6):
        events.append(decision(kinds[i % 4], "api", ""))
    for event in events:
        origin = event.ticket.origin
        ticket = origin.external_id if origin.provider != "api" else event.ticket.ticket_id
        where[event.meta.event_id] = (origin.provider, ticket)

    # Every helpdesk call and every mail takes a while, so the kill lands with posts in flight.
    for provider in ("zendesk", "intercom", "freshdesk", "api"):
        servers.set_faults(provider, delay_s=0.4)
    servers.set_faults("email", delay_s=0.4)
    already = {p: len(servers.deliveries(p)) for p in ("zendesk", "intercom", "freshdesk", "email", "api")}

    def posted_so_far() -> int:
        return sum(len(servers.deliveries(p)) - n for p, n in already.items())

    log_path = tmp_path / "delivery.log"
    first = start_service(settings, log_path)
    try:
        publish(settings, events)
        wait_for("~20 deliveries at the servers", lambda: posted_so_far() >= 20, timeout_s=120)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    at_kill = posted_so_far()
    time.sleep(1.0)  # calls the servers had accepted before the kill finish there
    for provider in already:
        servers.set_faults(provider)

    second = start_service(settings, log_path)
    try:
        records = delivered_records(settings, len(events), timeout_s=180)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)

    posts: Counter[str] = Counter()  # decision -> posts seen at its channel
    resent_mail = 0
    for event_id, (provider, ticket) in where.items():
        items = servers.deliveries(provider, ticket)
        if provider == "email":
            # A mailbox cannot be read back: a mail in flight at the kill is sent again under the same
            # Message-ID, which mail clients show once. Count messages by Message-ID.
            resent_mail += len(items) - len({item["message_id"] for item in items})
            items = list({item["message_id"]: item for item in items}.values())
        posts[event_id] = len(items)
    statuses = Counter(ev.DeliveryStatus.Name(records[event_id].status) for event_id in where)
    duplicates = sum(count - 1 for count in posts.values() if count > 1)
    missing = [event_id for event_id, count in posts.items() if count == 0]
    summary = (f"kill test: {len(events)} decisions; {at_kill} posted when killed; after the restart: "
               f"{dict(statuses)}; duplicates {duplicates}, missing {len(missing)}, mail re-sent under its "
               f"Message-ID {resent_mail}")
    print(f"\n{summary}")
    assert duplicates == 0 and not missing, summary
    assert statuses["DELIVERY_STATUS_FAILED"] == 0, summary
