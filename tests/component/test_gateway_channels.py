"""Helpdesk webhooks and mail through the gateway's real servers (uvicorn, aiosmtpd) into the real
broker."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage

import pytest
from prometheus_client import REGISTRY

from supportflow.channels import ChannelsConfig
from supportflow.eventbus import EventPublisher, decode, ensure_topics
from supportflow.observability import Health
from supportflow.topics import Topic
from services.gateway.channels import freshdesk, intercom, pipeline_ticket_id, zendesk
from services.gateway.http_api import GatewayApp, serve
from services.gateway.intake import delivery_uuid
from services.gateway.main import build
from services.gateway.smtp_intake import MailIntake, serve_smtp
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.infra

TENANT, MAILBOX = "demo-bank", "support@demo-bank.example"
CHANNELS_YAML = f"""
tenants:
  {TENANT}:
    zendesk: {{base_url: "https://demobank.zendesk.com", email: sf@demo-bank.example, api_token: t, webhook_secret: zd-secret}}
    intercom: {{access_token: t, client_secret: ic-secret, admin_id: "814860"}}
    freshdesk: {{base_url: "https://demobank.freshdesk.com", api_key: k, webhook_secret: fd-secret}}
    email: {{address: {MAILBOX}, smtp_host: smtp.demo-bank.example}}
"""
CHANNELS = ChannelsConfig.from_yaml(CHANNELS_YAML, {})

ZENDESK_WEBHOOK = {"event": "ticket.created", "ticket": {
    "id": "35436", "subject": "Card not arrived", "description": "My new card has not arrived after 10 days.",
    "latest_comment": {"id": "9001", "html_body": "<p>My new card has not arrived after 10 days.</p>", "author_id": "20978392"},
    "comment_count": "1", "status": "new", "via": "Mail", "priority": "normal", "tags": "",
    "requester": {"id": "20978392", "email": "ana@example.com", "name": "Ana Lopez"}, "attachments_count": "1"}}
INTERCOM_NOTIFICATION = {
    "type": "notification_event", "app_id": "abc123", "id": "notif_5c7f0001", "topic": "conversation.user.created",
    "delivery_attempts": 1, "first_sent_at": 1733450000, "created_at": 1733450000,
    "data": {"type": "notification_event_data", "item": {
        "type": "conversation", "id": "215472364578", "created_at": 1733450000, "updated_at": 1733450000, "state": "open",
        "source": {"type": "conversation", "id": "3021", "delivered_as": "customer_initiated", "subject": "",
                   "body": "<p>My card has not arrived</p>",
                   "author": {"type": "user", "id": "6762f0b61bb69f9f2193bb7a", "name": "Ana", "email": "ana@example.com"},
                   "attachments": []},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "6762f0b61bb69f9f2193bb7a",
                                                            "external_id": "cust-0001"}]},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [], "total_count": 0}}}}


def post(port: int, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"} | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def customer_mail(to: str = MAILBOX) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ana Lopez <ana@customer.example>"
    message["To"] = to
    message["Subject"] = "Card declined"
    message["Message-ID"] = "<first@customer.example>"
    message.set_content("My card was declined at the ATM this morning.")
    message.add_alternative("<p>My card was declined at the ATM this morning.</p>", subtype="html")
    return message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gateway(settings):
    ensure_topics(settings)
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="rho-bank", webhook_secret="",
                     max_body_bytes=64_000, channels=CHANNELS)
    server = serve(app, 0, host="127.0.0.1")
    yield app, server.server_address[1]
    server.shutdown()


def test_a_signed_zendesk_webhook_is_published_and_a_forged_one_is_not(settings, gateway):
    _, port = gateway
    body = json.dumps(ZENDESK_WEBHOOK).encode()
    signed = zendesk.signed_headers("zd-secret", body)
    assert post(port, f"/v1/channels/zendesk/{TENANT}", body, signed) == (202, {"ticket_id": "zd-35436", "tenant_id": TENANT})
    forged = json.dumps(ZENDESK_WEBHOOK | {"event": "ticket.created", "ticket": ZENDESK_WEBHOOK["ticket"] | {"id": "666"}}).encode()
    status, reply = post(port, f"/v1/channels/zendesk/{TENANT}", forged, signed)  # a signature of another body
    assert status == 401 and "does not match" in reply["error"]
    assert post(port, "/v1/channels/zendesk/nobody", body, signed)[0] == 404

    [message] = read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=1)
    event = decode(Topic.TICKETS_RECEIVED, message)
    assert message.key() == b"zd-35436" and event.meta.tenant_id == TENANT
    assert event.meta.event_id == delivery_uuid("zendesk", TENANT, "35436:9001")
    ticket = event.ticket
    assert ticket.body == "My new card has not arrived after 10 days." and ticket.customer_id == "ana@example.com"
    assert (ticket.origin.provider, ticket.origin.external_id, ticket.origin.requester_email, ticket.origin.attachments) == (
        "zendesk", "35436", "ana@example.com", 1)


def test_the_same_intercom_notification_twice_is_one_event_id(settings, gateway):
    _, port = gateway
    body = json.dumps(INTERCOM_NOTIFICATION).encode()
    for _ in range(2):  # Intercom retrying a notification it got no answer to
        assert post(port, f"/v1/channels/intercom/{TENANT}", body, intercom.signed_headers("ic-secret", body)) == (
            202, {"ticket_id": "ic-215472364578", "tenant_id": TENANT})
    received = [decode(Topic.TICKETS_RECEIVED, m)
                for m in read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=2)]
    assert len(received) == 2
    assert received[0].meta.event_id == received[1].meta.event_id == delivery_uuid("intercom", TENANT, "notif_5c7f0001")
    assert received[0].ticket.customer_id == "cust-0001" and received[0].ticket.origin.provider == "intercom"


def test_mail_sent_over_smtp_becomes_a_ticket_and_unknown_mailboxes_are_refused(settings, gateway):
    app, _ = gateway
    too_large_before = REGISTRY.get_sample_value("supportflow_gateway_channel_refused_total",
                                                 {"provider": "email", "reason": "too_large"}) or 0.0
    smtp = serve_smtp(MailIntake(CHANNELS, app.publish_ticket, app.publish_outcomes), 0, "127.0.0.1", max_mail_bytes=50_000)
    host, port = smtp.server_address
    try:
        with smtplib.SMTP(host, port, timeout=30) as client:
            assert client.send_message(customer_mail()) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.send_message(customer_mail(to="nobody@demo-bank.example"))
            assert refused.value.recipients["nobody@demo-bank.example"][0] == 550
            huge = customer_mail()
            huge.add_attachment(b"x" * 60_000, maintype="application", subtype="zip", filename="logs.zip")
            with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as too_large:
                client.send_message(huge)
            assert too_large.value.smtp_code == 552
            assert REGISTRY.get_sample_value("supportflow_gateway_channel_refused_total",
                                             {"provider": "email", "reason": "too_large"}) == too_large_before + 1
    finally:
        smtp.shutdown()

    [message] = read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=1)
    event = decode(Topic.TICKETS_RECEIVED, message)
    ticket = event.ticket
    assert ticket.ticket_id == pipeline_ticket_id("email", TENANT, "<first@customer.example>") == message.key().decode()
    assert ticket.body == "My card was declined at the ATM this morning." and ticket.subject == "Card declined"
    assert (ticket.origin.provider, ticket.origin.mailbox, ticket.origin.message_id) == (
        "email", MAILBOX, "<first@customer.example>")
    assert event.meta.event_id == delivery_uuid("email", TENANT, "<first@customer.example>")


def test_the_service_serves_webhooks_and_mail_from_its_settings(settings, tmp_path):
    ensure_topics(settings)
    channels_file = tmp_path / "channels.yaml"
    channels_file.write_text(CHANNELS_YAML, encoding="utf-8")
    http_port, smtp_port = free_port(), free_port()
    own = settings.replace(channels_path=channels_file, gateway_http_port=http_port, gateway_smtp_port=smtp_port,
                           gateway_smtp_host="127.0.0.1")
    parts = build(own, EventPublisher(own, "gateway"), Health("gateway"))
    for start in parts.on_start:
        start()
    try:
        body = json.dumps({"freshdesk_webhook": {
            "event": "ticket_created", "ticket_id": "1042", "ticket_subject": "Double charge",
            "ticket_description": "<div>I was charged twice for order 7731.</div>", "ticket_source": "Portal",
            "ticket_updated_at": "2026-03-02T10:15:00Z", "ticket_contact_email": "bo@example.com"}}).encode()
        assert post(http_port, f"/v1/channels/freshdesk/{TENANT}", body, freshdesk.signed_headers("fd-secret"))[0] == 202
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.send_message(customer_mail())
    finally:
        for stop in parts.on_stop:
            stop()
    keys = sorted(m.key() for m in read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=2))
    assert keys == sorted([b"fd-1042", pipeline_ticket_id("email", TENANT, "<first@customer.example>").encode()])
    with pytest.raises(OSError):  # both servers are gone
        socket.create_connection(("127.0.0.1", smtp_port), timeout=2).close()


# --- outcomes: fired by the real stand-ins, through the real gateway, read off the real topics --------


@pytest.fixture
def stand_ins(settings, tmp_path):
    """The provider stand-ins calling a gateway served on uvicorn and aiosmtpd, publishing to Kafka."""
    from tooling.channel_servers import ChannelServers, ChannelServersConfig, TenantAccounts

    ensure_topics(settings)
    http_port, smtp_port = free_port(), free_port()
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="rho-bank", webhook_secret="",
                     max_body_bytes=64_000, channels=CHANNELS, topic_prefix=settings.topic_prefix)
    http = serve(app, http_port, host="127.0.0.1")
    smtp = serve_smtp(MailIntake(CHANNELS, app.publish_ticket, app.publish_outcomes), smtp_port, "127.0.0.1",
                      max_mail_bytes=50_000)
    accounts = TenantAccounts(
        tenant=TENANT, gateway_url=f"http://127.0.0.1:{http_port}", zendesk_email="sf@demo-bank.example",
        zendesk_api_token="zd-token", zendesk_webhook_secret="zd-secret", intercom_access_token="ic-token",
        intercom_client_secret="ic-secret", intercom_admin_id="814860", freshdesk_api_key="fd-key",
        freshdesk_webhook_secret="fd-secret", mailbox=MAILBOX)
    servers = ChannelServers(ChannelServersConfig(tenants=(accounts,), state_dir=str(tmp_path / "stand-ins"),
                                                  gateway_smtp=f"127.0.0.1:{smtp_port}"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
        smtp.shutdown()
        http.shutdown()


def answers(fired: list[dict]) -> list[tuple[str, int]]:
    return [(item["event"], item["outcome"]["status"]) for item in fired]


def test_every_outcome_webhook_a_stand_in_fires_lands_on_the_feedback_topic_under_its_ticket_id(settings, stand_ins):
    servers = stand_ins
    zendesk_id = servers.zendesk_create_ticket(TENANT, subject="Card", body="My card has not arrived.",
                                               requester_email="ana@customer.example", requester_name="Ana")
    assert answers(servers.outcome("zendesk", zendesk_id, "status", status="solved")) == [
        ("ticket.status_changed", 202)]
    assert answers(servers.outcome("zendesk", zendesk_id, "rate", score="good")) == [
        ("ticket.satisfaction_rated", 202)]
    assert answers(servers.outcome("zendesk", zendesk_id, "reply", text="I already explained this, it is not here.")) == [
        ("ticket.requester_updated", 202), ("ticket.reopened", 202)]

    conversation = servers.intercom_start_conversation(TENANT, body="<p>Top-up pending</p>", email="bo@customer.example",
                                                       name="Bo", external_id="cust-0002")
    assert answers(servers.outcome("intercom", f"ic-{conversation}", "status", status="closed")) == [
        ("conversation.admin.closed", 202)]
    assert answers(servers.outcome("intercom", conversation, "rate", score=4)) == [("conversation.rating.added", 202)]

    freshdesk_id = servers.freshdesk_create_ticket(TENANT, subject="Refund", description_html="<p>Refund please</p>",
                                                   email="cy@customer.example", name="Cy")
    assert answers(servers.outcome("freshdesk", freshdesk_id, "status", status=4)) == [("status_changed", 202)]
    assert answers(servers.outcome("freshdesk", freshdesk_id, "rate", score=-103)) == [("customer_feedback", 202)]

    root = servers.send_customer_mail(TENANT, from_addr="di@customer.example", subject="Card declined",
                                      body="My card was declined.")
    assert answers(servers.outcome("email", root, "reply", text="Did you read my first mail?",
                                   **{"from": "di@customer.example"})) == [("email.reply", 250)]

    topic = Topic.TICKETS_FEEDBACK.name_in(settings.topic_prefix)
    found = [decode(Topic.TICKETS_FEEDBACK, m) for m in read_all(settings, topic, expected=9)]
    assert all(m.meta.tenant_id == TENANT and m.meta.producer == "gateway" for m in found)

    def detail(event) -> object:
        kind = event.WhichOneof("kind")
        value = getattr(event, kind)
        return {"csat": lambda: value.score, "status_change": lambda: (value.status, value.changed_by),
                "customer_reply": lambda: value.text}[kind]()

    email_id = pipeline_ticket_id("email", TENANT, root)
    assert sorted(((m.ticket_id, m.source, detail(m)) for m in found), key=repr) == sorted([
        (f"zd-{zendesk_id}", "zendesk", ("solved", "agent")),
        (f"zd-{zendesk_id}", "zendesk", 100.0),
        (f"zd-{zendesk_id}", "zendesk", "I already explained this, it is not here."),
        (f"zd-{zendesk_id}", "zendesk", ("reopened", "customer")),
        (f"ic-{conversation}", "intercom", ("closed", "agent")),
        (f"ic-{conversation}", "intercom", 75.0),
        (f"fd-{freshdesk_id}", "freshdesk", ("solved", "agent")),
        (f"fd-{freshdesk_id}", "freshdesk", 0.0),
        (email_id, "email", "Did you read my first mail?"),
    ], key=repr)
    # Outcomes join the tickets: the same ids the tickets got at intake.
    received = {m.key().decode() for m in read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix),
                                                   expected=6)}
    assert {m.ticket_id for m in found} <= received


def test_a_rating_out_of_range_lands_on_the_dead_letter_topic_with_its_reason(settings, stand_ins):
    servers = stand_ins
    conversation = servers.intercom_start_conversation(TENANT, body="<p>Fees?</p>", email="ed@customer.example",
                                                       name="Ed", external_id="cust-0003")
    [fired] = servers.outcome("intercom", conversation, "rate", score=9)
    assert fired["outcome"]["status"] == 400 and "conversation_rating.rating" in fired["outcome"]["error"]
    [letter] = read_all(settings, Topic.TICKETS_FEEDBACK.dead_letter_in(settings.topic_prefix), expected=1)
    assert letter.key().decode() == f"ic-{conversation}"
    headers = {name: value.decode() for name, value in letter.headers()}
    assert headers["sf-dlq-reason"] == "invalid_rating" and "from 1 to 5" in headers["sf-dlq-error"]
    assert json.loads(letter.value())["data"]["item"]["conversation_rating"]["rating"] == 9
    assert read_all(settings, Topic.TICKETS_FEEDBACK.name_in(settings.topic_prefix), expected=0, timeout_s=2) == []
