"""The delivery service against the real Kafka and the local provider stand-ins
(tooling/channel_servers): decisions in on the decision topics, replies and notes out on each
ticket's own channel, a DeliveryRecorded for each on tickets.delivered, dead letters with the
provider's reason, and -- the kill test -- exactly one post per decision across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import H_DLQ_ERROR, H_DLQ_REASON, EventPublisher, ensure_topics, header, new_meta
from supportflow.observability import Health
from supportflow.settings import Settings
from supportflow.topics import DECISION_TOPICS, Topic

from services.delivery.main import build
from tests.kafka_helpers import read_all
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


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChannelServers]:
    state = tmp_path_factory.mktemp("channel-servers")
    with ChannelServers(ChannelServersConfig(tenants=(ACCOUNTS,), state_dir=str(state))) as running:
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
def delivery_settings(settings: Settings, servers: ChannelServers, tmp_path: Path) -> Settings:
    ensure_topics(settings)
    return settings.replace(
        channels_path=channels_file(tmp_path / "channels.yaml", servers),
        delivery_ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        delivery_timeout_s=5.0, delivery_max_attempts=4, delivery_max_retry_after_s=5.0, delivery_workers=4,
        ops_port=free_port(),
    )


@contextmanager
def delivery_running(settings: Settings) -> Iterator[None]:
    """The service's consumer in this process, as run_service would run it."""
    publisher = EventPublisher(settings, "delivery")
    parts = build(settings, publisher, Health("delivery"))
    (consumer,) = parts.consumers
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    assert consumer.assigned.wait(30), "delivery consumer got no partitions"
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        for hook in parts.on_stop:
            hook()
        publisher.flush()


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


def publish(settings: Settings, events: list[ev.TicketDecided]) -> None:
    publisher = EventPublisher(settings, "test")
    for event in events:
        publisher.publish(DECISION_TOPICS[event.decision], event.ticket.ticket_id, event)
    publisher.flush()


def delivered_records(settings: Settings, expected: int, timeout_s: float = 60.0) -> dict[str, ev.DeliveryRecorded]:
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


def test_zendesk_reply_and_review_note(delivery_settings: Settings, servers: ChannelServers) -> None:
    answered, reviewed = new_zendesk_ticket(servers, 1), new_zendesk_ticket(servers, 2)
    reply = decision(ev.DECISION_RESPOND, "zendesk", answered)
    note = decision(ev.DECISION_REVIEW, "zendesk", reviewed)
    with delivery_running(delivery_settings):
        publish(delivery_settings, [reply, note])
        records = delivered_records(delivery_settings, 2)

    (posted,) = servers.deliveries("zendesk", answered)
    assert posted["kind"] == "reply" and posted["public"] is True
    assert "[1] Card delivery: https://help.demo-bank.example/articles/card-delivery" in posted["text"]
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


def test_intercom_and_freshdesk_reply_and_note(delivery_settings: Settings, servers: ChannelServers) -> None:
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


def test_an_email_reply_is_threaded_under_the_customers_mail(delivery_settings: Settings, servers: ChannelServers) -> None:
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


def test_503_twice_then_delivered_once_in_three_attempts(delivery_settings: Settings, servers: ChannelServers) -> None:
    ticket = new_zendesk_ticket(servers, 3)
    event = decision(ev.DECISION_RESPOND, "zendesk", ticket)
    servers.set_faults("zendesk", status=503, count=2)
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.attempts == 3
    assert len(servers.deliveries("zendesk", ticket)) == 1


def test_an_unknown_ticket_is_dead_lettered_with_the_providers_reason(delivery_settings: Settings, servers: ChannelServers) -> None:
    event = decision(ev.DECISION_RESPOND, "zendesk", "987654321")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
        (dead,) = read_all(delivery_settings, Topic.TICKETS_RESPONDED.dead_letter_in(delivery_settings.topic_prefix), 1)
    assert record.status == ev.DELIVERY_STATUS_FAILED and "404" in record.error and "RecordNotFound" in record.error
    assert header(dead, H_DLQ_REASON) == "invalid_event"
    assert header(dead, H_DLQ_ERROR).startswith("not_found: zendesk 404") and dead.key().decode() == event.ticket.ticket_id


def test_an_api_ticket_is_answered_by_the_signed_callback(delivery_settings: Settings, servers: ChannelServers) -> None:
    event = decision(ev.DECISION_FOLLOW_UP, "api", "")
    with delivery_running(delivery_settings):
        publish(delivery_settings, [event])
        record = delivered_records(delivery_settings, 1)[event.meta.event_id]
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.provider == "api"
    (callback,) = servers.deliveries("api", event.ticket.ticket_id)
    assert callback["kind"] == "follow_up" and "the last four digits of the card" in callback["text"]


# --- the kill test -----------------------------------------------------------------------------


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _service_command() -> list[str]:
    """`python -m tooling.cli run delivery`, or (until the CLI lists the service) the same call it makes."""
    probe = subprocess.run([sys.executable, "-m", "tooling.cli", "run", "delivery", "--help"], capture_output=True,
                           cwd=str(Path(__file__).resolve().parents[2]))
    if probe.returncode == 0:
        return [sys.executable, "-m", "tooling.cli", "run", "delivery"]
    return [sys.executable, "-c", "import sys; from supportflow.service import run_service; "
            "from supportflow.settings import Settings; sys.exit(run_service('delivery', Settings.from_env()))"]


def start_service(settings: Settings, log_path: Path) -> subprocess.Popen:
    env = os.environ | settings.to_env() | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SUPPORTFLOW_GRPC_PORT", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(_service_command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 60
    while not _ready(settings.ops_port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"delivery did not become ready:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return process


def test_a_killed_delivery_posts_every_decision_exactly_once(delivery_settings: Settings, servers: ChannelServers,
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
