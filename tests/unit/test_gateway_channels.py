"""The helpdesk adapters (Zendesk, Intercom, Freshdesk) and the gateway's channel endpoint, with
the payloads of docs/channels.md. No server, no Kafka: a recording publisher stands in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from prometheus_client import REGISTRY

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import TransientError
from supportflow.topics import Topic
from services.gateway.channels import WEBHOOKS, AuthenticationError, ChannelTicket, Ignored, pipeline_ticket_id
from services.gateway.channels import freshdesk, intercom, zendesk
from services.gateway.channels.text import cap, customer_text, html_to_text, strip_quoted
from services.gateway.http_api import GatewayApp
from services.gateway.intake import MAX_FIELD_CHARS, PayloadError, delivery_uuid

TENANT = "demo-bank"
ZENDESK_SECRET, INTERCOM_SECRET, FRESHDESK_SECRET = "zd-signing-secret", "ic-client-secret", "fd-shared-secret"
ADMIN_ID = "814860"

CHANNELS = ChannelsConfig.model_validate({"tenants": {
    TENANT: {
        "zendesk": {"base_url": "https://demobank.zendesk.com", "email": "sf@demo-bank.example", "api_token": "t",
                    "webhook_secret": ZENDESK_SECRET},
        "intercom": {"access_token": "t", "client_secret": INTERCOM_SECRET, "admin_id": ADMIN_ID},
        "freshdesk": {"base_url": "https://demobank.freshdesk.com", "api_key": "k", "webhook_secret": FRESHDESK_SECRET},
    },
    "mail-only": {"email": {"address": "help@mail-only.example", "smtp_host": "smtp.mail-only.example"}},
}})
ZENDESK = CHANNELS.tenants[TENANT].zendesk
INTERCOM = CHANNELS.tenants[TENANT].intercom
FRESHDESK = CHANNELS.tenants[TENANT].freshdesk


def zendesk_payload(event: str = "ticket.created", **ticket: object) -> dict:
    """The trigger's JSON of docs/channels.md as Zendesk renders it: every value a string."""
    body = {
        "id": "35436", "subject": "Card not arrived", "description": "My new card has not arrived after 10 days.",
        "latest_comment": {"id": "9001", "html_body": "<p>My new card has not arrived after 10 days.</p>",
                           "author_id": "20978392"},
        "comment_count": "1", "status": "new", "via": "Web form", "priority": "normal", "tags": "cards vip",
        "requester": {"id": "20978392", "email": "ana@example.com", "name": "Ana Lopez"},
        "attachments_count": "2",
    }
    body.update(ticket)
    return {"event": event, "ticket": body}


INTERCOM_CREATED = {
    "type": "notification_event", "app_id": "abc123", "id": "notif_5c7f0001", "topic": "conversation.user.created",
    "delivery_attempts": 1, "first_sent_at": 1733450000, "created_at": 1733450000,
    "data": {"type": "notification_event_data", "item": {
        "type": "conversation", "id": "215472364578", "created_at": 1733450000, "updated_at": 1733450000, "state": "open",
        "source": {"type": "conversation", "id": "3021", "delivered_as": "customer_initiated", "subject": "",
                   "body": "<p>My card has not arrived</p>",
                   "author": {"type": "user", "id": "6762f0b61bb69f9f2193bb7a", "name": "Ana", "email": "ana@example.com"},
                   "attachments": []},
        "contacts": {"type": "contact.list", "contacts": [
            {"type": "contact", "id": "6762f0b61bb69f9f2193bb7a", "external_id": "cust-0001"}]},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [], "total_count": 0}}},
}


def intercom_reply(parts: list[dict], notification: str = "notif_5c7f0002") -> dict:
    payload = json.loads(json.dumps(INTERCOM_CREATED))
    payload.update(id=notification, topic="conversation.user.replied")
    payload["data"]["item"]["conversation_parts"] = {"type": "conversation_part.list", "conversation_parts": parts,
                                                     "total_count": len(parts)}
    return payload


def part(author_type: str, author_id: str, body: str, part_type: str = "comment", attachments: int = 0) -> dict:
    return {"type": "conversation_part", "id": f"p-{author_id}-{len(body)}", "part_type": part_type, "body": body,
            "author": {"type": author_type, "id": author_id}, "attachments": [{"type": "upload"}] * attachments}


def freshdesk_payload(event: str = "ticket_created", **fields: str) -> dict:
    body = {
        "event": event, "ticket_id": "1042", "ticket_subject": "Refund for a double charge",
        "ticket_description": "<div>I was charged twice for order 7731.<br>Please refund one.</div>",
        "ticket_latest_public_comment": "", "ticket_status": "Open", "ticket_priority": "Medium",
        "ticket_source": "Portal", "ticket_updated_at": "2026-03-02T10:15:00Z",
        "ticket_contact_email": "bo@example.com", "ticket_contact_name": "Bo Chen", "ticket_contact_id": "77001",
    }
    body.update(fields)
    return {"freshdesk_webhook": body}


def raw(payload: dict) -> bytes:
    return json.dumps(payload).encode()


# --- Zendesk --------------------------------------------------------------------------------------


def test_a_zendesk_signature_is_base64_hmac_sha256_of_timestamp_and_body():
    body, now = raw(zendesk_payload()), 1_800_000_000
    headers = zendesk.signed_headers(ZENDESK_SECRET, body, now=now)
    stamp = headers[zendesk.TIMESTAMP_HEADER]
    assert stamp == "2027-01-15T08:00:00Z"
    expected = base64.b64encode(hmac.new(ZENDESK_SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest())
    assert headers[zendesk.SIGNATURE_HEADER] == expected.decode()
    zendesk.authenticate(ZENDESK, body, headers, now + 299)
    zendesk.authenticate(ZENDESK, body, {k.lower(): v for k, v in headers.items()}, now)  # header case does not matter


@pytest.mark.parametrize("tamper, message", [
    (lambda body, headers: (body + b" ", headers), "does not match"),
    (lambda body, headers: (body, zendesk.signed_headers("not-the-secret", body, now=1_800_000_000)), "does not match"),
    (lambda body, headers: (body, headers | {zendesk.TIMESTAMP_HEADER: "2027-01-15T08:00:01Z"}), "does not match"),
    (lambda body, headers: (body, {zendesk.TIMESTAMP_HEADER: headers[zendesk.TIMESTAMP_HEADER]}), "missing X-Zendesk-Webhook-Signature"),
    (lambda body, headers: (body, {zendesk.SIGNATURE_HEADER: headers[zendesk.SIGNATURE_HEADER]}), "missing X-Zendesk-Webhook-Signature-Timestamp"),
])
def test_a_forged_zendesk_webhook_fails(tamper, message):
    body = raw(zendesk_payload())
    forged_body, forged_headers = tamper(body, zendesk.signed_headers(ZENDESK_SECRET, body, now=1_800_000_000))
    with pytest.raises(AuthenticationError, match=message):
        zendesk.authenticate(ZENDESK, forged_body, forged_headers, 1_800_000_000)


@pytest.mark.parametrize("age_s", [301, -301, 3600])
def test_a_stale_zendesk_timestamp_fails_even_when_signed(age_s):
    body = raw(zendesk_payload())
    headers = zendesk.signed_headers(ZENDESK_SECRET, body, now=1_800_000_000)
    with pytest.raises(AuthenticationError, match="more than 300 s"):
        zendesk.authenticate(ZENDESK, body, headers, 1_800_000_000 + age_s)


def test_a_new_zendesk_ticket_maps_to_the_canonical_ticket():
    outcome = zendesk.ticket_from_webhook(ZENDESK, TENANT, raw(zendesk_payload()),
                                          {zendesk.INVOCATION_HEADER: "01HQ-invocation-1"})
    assert isinstance(outcome, ChannelTicket)
    ticket = outcome.ticket
    assert (ticket.ticket_id, ticket.tenant_id, ticket.channel) == ("zd-35436", TENANT, tk.CHANNEL_WEB_FORM)
    assert (ticket.subject, ticket.body) == ("Card not arrived", "My new card has not arrived after 10 days.")
    assert ticket.customer_id == "ana@example.com" and not ticket.history  # the address the CRM knows, not Zendesk's user id
    assert ticket.origin.requester_id == "20978392"
    origin = ticket.origin
    assert (origin.provider, origin.external_id, origin.event) == ("zendesk", "35436", "ticket.created")
    assert (origin.requester_id, origin.requester_email, origin.requester_name) == ("20978392", "ana@example.com", "Ana Lopez")
    assert origin.attachments == 2 and list(origin.intake_flags) == []
    assert ticket.metadata["priority"] == "normal" and ticket.metadata["zendesk_tags"] == "cards vip"
    assert ticket.received_at.seconds > 0
    assert outcome.delivery == "01HQ-invocation-1"
    assert outcome.event_id == delivery_uuid("zendesk", TENANT, "01HQ-invocation-1")


def test_a_requester_update_is_the_latest_comment_after_the_description():
    payload = zendesk_payload("ticket.requester_updated", via="Mail", latest_comment={
        "id": "9002", "author_id": "20978392",
        "html_body": "<div>Still nothing.&nbsp;Can you <b>block</b> it?<br>Ana</div>"
                     "<div class=\"gmail_quote\">On Mon, 2 Mar 2026 at 10:00, Demo Bank wrote:<blockquote>We are on it</blockquote></div>"})
    outcome = zendesk.ticket_from_webhook(ZENDESK, TENANT, raw(payload), {})
    ticket = outcome.ticket
    assert ticket.body == "Still nothing. Can you block it?\nAna"
    assert [(t.author, t.text) for t in ticket.history] == [("customer", "My new card has not arrived after 10 days.")]
    assert ticket.channel == tk.CHANNEL_EMAIL
    assert list(ticket.origin.intake_flags) == ["html_converted", "quoted_text_stripped"]
    assert outcome.delivery == "35436:9002"  # no invocation id: the ticket and its latest comment


def test_a_comment_by_someone_else_than_the_requester_is_ignored():
    payload = zendesk_payload("ticket.requester_updated", latest_comment={"id": "9003", "author_id": "361", "html_body": "<p>hi</p>"})
    assert isinstance(zendesk.ticket_from_webhook(ZENDESK, TENANT, raw(payload), {}), Ignored)
    assert isinstance(zendesk.ticket_from_webhook(ZENDESK, TENANT, raw({"event": "ticket.solved", "ticket": {}}), {}), Ignored)


@pytest.mark.parametrize("payload, message", [
    (zendesk_payload(id=""), "zendesk payload: ticket.id is missing"),
    ({"event": "ticket.created"}, "zendesk payload: ticket is missing"),
    ({"ticket": {"id": "1"}}, "zendesk payload: event is missing"),
    (zendesk_payload(id="{{ticket.id}}"), "zendesk payload: ticket.id is not an id"),
    (zendesk_payload(description="", latest_comment={}), "zendesk payload: ticket.description is missing"),
    (zendesk_payload("ticket.requester_updated", latest_comment={"id": "5", "author_id": "20978392"}),
     "zendesk payload: ticket.latest_comment.html_body is missing"),
    (zendesk_payload(requester="ana"), "zendesk payload: ticket.requester must be an object"),
])
def test_a_zendesk_payload_missing_a_field_names_it(payload, message):
    with pytest.raises(PayloadError, match=message.replace(".", r"\.")):
        zendesk.ticket_from_webhook(ZENDESK, TENANT, raw(payload), {})


@pytest.mark.parametrize("via, channel", [("Mail", tk.CHANNEL_EMAIL), ("Web form", tk.CHANNEL_WEB_FORM),
                                          ("Chat", tk.CHANNEL_CHAT), ("Voice", tk.CHANNEL_PHONE),
                                          ("Twitter", tk.CHANNEL_SOCIAL), ("Web service", tk.CHANNEL_WEB_FORM)])
def test_the_zendesk_via_sets_the_channel(via, channel):
    assert zendesk.channel_of(via) == channel


# --- Intercom -------------------------------------------------------------------------------------


def test_an_intercom_signature_is_sha1_hex_hmac_of_the_body():
    body = raw(INTERCOM_CREATED)
    headers = intercom.signed_headers(INTERCOM_SECRET, body)
    assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(INTERCOM_SECRET.encode(), body, hashlib.sha1).hexdigest()
    intercom.authenticate(INTERCOM, body, headers, time.time())
    with pytest.raises(AuthenticationError, match="does not match"):
        intercom.authenticate(INTERCOM, body + b"\n", headers, time.time())
    with pytest.raises(AuthenticationError, match="does not match"):
        intercom.authenticate(INTERCOM, body, intercom.signed_headers("wrong", body), time.time())
    with pytest.raises(AuthenticationError, match="missing or malformed X-Hub-Signature"):
        intercom.authenticate(INTERCOM, body, {"X-Hub-Signature": headers["X-Hub-Signature"][5:]}, time.time())


def test_a_new_intercom_conversation_maps_to_the_canonical_ticket():
    outcome = intercom.ticket_from_webhook(INTERCOM, TENANT, raw(INTERCOM_CREATED), {})
    ticket = outcome.ticket
    assert (ticket.ticket_id, ticket.channel, ticket.body) == ("ic-215472364578", tk.CHANNEL_CHAT, "My card has not arrived")
    assert ticket.customer_id == "cust-0001"  # the contact's external_id: the customer's id in the CRM
    origin = ticket.origin
    assert (origin.provider, origin.external_id, origin.event) == ("intercom", "215472364578", "conversation.user.created")
    assert (origin.requester_id, origin.requester_email, origin.requester_name) == (
        "6762f0b61bb69f9f2193bb7a", "ana@example.com", "Ana")
    assert list(origin.intake_flags) == ["html_converted"] and origin.attachments == 0
    assert outcome.delivery == "notif_5c7f0001"


def test_an_intercom_reply_is_the_users_last_part_and_the_rest_is_history():
    parts = [
        part("admin", ADMIN_ID, "<p>Your card was posted on Monday.</p>"),  # our own reply: the bot
        part("admin", "999", "<p>Internal: check the courier</p>", part_type="note"),  # never history
        part("admin", "999", "<p>I have asked the courier.</p>"),  # a human agent
        part("admin", "999", "", part_type="assignment"),
        part("user", "6762f0b61bb69f9f2193bb7a", "<p>It is <i>still</i> not here.</p>", attachments=1),
    ]
    outcome = intercom.ticket_from_webhook(INTERCOM, TENANT, raw(intercom_reply(parts)), {})
    ticket = outcome.ticket
    assert ticket.ticket_id == "ic-215472364578" and ticket.body == "It is still not here."
    assert [(t.author, t.text) for t in ticket.history] == [
        ("customer", "My card has not arrived"), ("bot", "Your card was posted on Monday."),
        ("agent", "I have asked the courier.")]
    assert ticket.origin.attachments == 1 and ticket.origin.event == "conversation.user.replied"
    assert outcome.delivery == "notif_5c7f0002"


def test_intercom_pings_and_other_topics_are_ignored():
    assert intercom.ticket_from_webhook(INTERCOM, TENANT, raw({"topic": "ping", "id": "n"}), {}) == Ignored("ping")
    assert isinstance(intercom.ticket_from_webhook(INTERCOM, TENANT, raw(INTERCOM_CREATED | {"topic": "conversation.admin.replied"}), {}), Ignored)


@pytest.mark.parametrize("payload, message", [
    ({k: v for k, v in INTERCOM_CREATED.items() if k != "id"}, "intercom payload: id is missing"),
    ({k: v for k, v in INTERCOM_CREATED.items() if k != "topic"}, "intercom payload: topic is missing"),
    (INTERCOM_CREATED | {"data": {"item": None}}, "intercom payload: data.item is missing"),
    (INTERCOM_CREATED | {"data": {"item": {"type": "conversation", "source": {"body": "x"}}}}, "intercom payload: data.item.id is missing"),
    (INTERCOM_CREATED | {"data": {"item": {"id": "1", "source": {"body": ""}}}}, "intercom payload: data.item.source.body is missing"),
    (intercom_reply([part("admin", ADMIN_ID, "<p>hello</p>")]),
     "intercom payload: data.item.conversation_parts.conversation_parts has no part written by the user"),
])
def test_an_intercom_payload_missing_a_field_names_it(payload, message):
    with pytest.raises(PayloadError, match=message.replace(".", r"\.")):
        intercom.ticket_from_webhook(INTERCOM, TENANT, raw(payload), {})


# --- Freshdesk ------------------------------------------------------------------------------------


def test_freshdesk_accepts_the_shared_secret_header_or_basic_auth():
    body = raw(freshdesk_payload())
    freshdesk.authenticate(FRESHDESK, body, {"X-Supportflow-Webhook-Secret": FRESHDESK_SECRET}, 0)
    freshdesk.authenticate(FRESHDESK, body, freshdesk.basic_auth_headers(FRESHDESK_SECRET), 0)
    for headers, message in [
        ({"X-Supportflow-Webhook-Secret": "guess"}, "not this tenant's"),
        (freshdesk.basic_auth_headers("guess"), "not this tenant's"),
        ({"Authorization": "Basic " + base64.b64encode(f"admin:{FRESHDESK_SECRET}".encode()).decode()}, "not this tenant's"),
        ({"Authorization": "Basic !!!"}, "malformed basic auth"),
        ({}, "missing X-Supportflow-Webhook-Secret or basic auth"),
    ]:
        with pytest.raises(AuthenticationError, match=message):
            freshdesk.authenticate(FRESHDESK, body, headers, 0)


def test_a_new_freshdesk_ticket_maps_to_the_canonical_ticket():
    outcome = freshdesk.ticket_from_webhook(FRESHDESK, TENANT, raw(freshdesk_payload()), {})
    ticket = outcome.ticket
    assert (ticket.ticket_id, ticket.channel, ticket.subject) == ("fd-1042", tk.CHANNEL_WEB_FORM, "Refund for a double charge")
    assert ticket.body == "I was charged twice for order 7731.\nPlease refund one."
    assert ticket.customer_id == "bo@example.com" and ticket.origin.requester_id == "77001"
    origin = ticket.origin
    assert (origin.provider, origin.external_id, origin.requester_email, origin.event) == (
        "freshdesk", "1042", "bo@example.com", "ticket_created")
    assert list(origin.intake_flags) == ["html_converted"]
    assert outcome.delivery == "1042:ticket_created:2026-03-02T10:15:00Z"


def test_a_freshdesk_customer_reply_is_the_latest_comment_after_the_description():
    payload = freshdesk_payload("customer_replied", ticket_source="Email", ticket_updated_at="2026-03-02T11:00:00Z",
                                ticket_latest_public_comment="<p>Any news?</p><p>-- <br>Bo</p>")
    outcome = freshdesk.ticket_from_webhook(FRESHDESK, TENANT, raw(payload), {})
    assert outcome.ticket.body == "Any news?"
    assert outcome.ticket.channel == tk.CHANNEL_EMAIL
    assert [t.text for t in outcome.ticket.history] == ["I was charged twice for order 7731.\nPlease refund one."]
    assert outcome.delivery == "1042:customer_replied:2026-03-02T11:00:00Z"
    assert isinstance(freshdesk.ticket_from_webhook(FRESHDESK, TENANT, raw(freshdesk_payload("ticket_closed")), {}), Ignored)


@pytest.mark.parametrize("payload, message", [
    ({"event": "ticket_created"}, "freshdesk payload: freshdesk_webhook is missing"),
    (freshdesk_payload(ticket_id=""), "freshdesk payload: freshdesk_webhook.ticket_id is missing"),
    (freshdesk_payload(event=""), "freshdesk payload: freshdesk_webhook.event is missing"),
    (freshdesk_payload(ticket_description=""), "freshdesk payload: freshdesk_webhook.ticket_description is missing"),
    (freshdesk_payload("customer_replied", ticket_latest_public_comment="<p>hi</p>", ticket_updated_at=""),
     "freshdesk payload: freshdesk_webhook.ticket_updated_at is missing"),
    (freshdesk_payload("customer_replied"), "freshdesk payload: freshdesk_webhook.ticket_latest_public_comment is missing"),
])
def test_a_freshdesk_payload_missing_a_field_names_it(payload, message):
    with pytest.raises(PayloadError, match=message.replace(".", r"\.")):
        freshdesk.ticket_from_webhook(FRESHDESK, TENANT, raw(payload), {})


# --- text -----------------------------------------------------------------------------------------


def test_html_becomes_readable_text():
    html = ("<html><head><style>p {color: red}</style><title>x</title></head><body>"
            "<p>Hello&nbsp;team,</p><p>My card <b>ending 4411</b> was declined:</p>"
            "<ul><li>at the ATM</li><li>online</li></ul><table><tr><td>Amount</td><td>&euro;45</td></tr></table>"
            "<script>alert(1)</script><div>Thanks<br>Ana</div></body></html>")
    read = html_to_text(html)
    assert read.text == ("Hello team,\nMy card ending 4411 was declined:\n- at the ATM\n- online\n"
                         "Amount €45\nThanks\nAna")
    assert read.flags == ["html_converted"]


@pytest.mark.parametrize("text", [
    "Still not here.\n\nOn Mon, 2 Mar 2026 at 10:00, Demo Bank <support@demo-bank.example> wrote:\n> We posted it.\n> Regards",
    "Still not here.\n\nOn Mon, Mar 2, 2026 at 10:00 AM Demo Bank <\nsupport@demo-bank.example> wrote:\n\n> We posted it.",
    "Still not here.\n> We posted it.\n>> Earlier",
    "Still not here.\n\n-----Original Message-----\nFrom: Demo Bank\nSent: Monday\n\nWe posted it.",
    "Still not here.\n\n________________________________\nFrom: Demo Bank <support@demo-bank.example>\n"
    "Sent: Monday, March 2, 2026 10:00\nTo: Ana\nSubject: RE: card\n\nWe posted it.",
    "Still not here.\n\nAm Mo., 2. März 2026 um 10:00 Uhr schrieb Demo Bank <support@demo-bank.example>:\n> We posted it.",
])
def test_quoted_earlier_mail_is_stripped(text):
    read = strip_quoted(text)
    assert read.text == "Still not here." and read.flags == ["quoted_text_stripped"]


def test_a_signature_is_cut_and_an_ordinary_message_kept():
    assert strip_quoted("My card is blocked.\n-- \nAna Lopez\n+34 600 000 000").text == "My card is blocked."
    ordinary = "On Monday my card was declined twice.\nThe shop wrote: declined by issuer."
    assert strip_quoted(ordinary).text == ordinary and strip_quoted(ordinary).flags == []


def test_a_message_that_is_all_quote_is_kept_whole():
    forwarded = "-----Original Message-----\nFrom: Shop\nSent: Monday\n\nYour payment failed."
    read = strip_quoted(forwarded)
    assert read.text == forwarded and read.flags == []


def test_text_over_the_field_limit_is_cut_and_flagged():
    assert cap("x" * (MAX_FIELD_CHARS + 5)).flags == ["body_truncated"]
    read = customer_text("<p>" + "y" * (MAX_FIELD_CHARS + 5) + "</p>")
    assert len(read.text) == MAX_FIELD_CHARS and read.flags == ["html_converted", "body_truncated"]


def test_outlook_html_replies_lose_everything_from_the_reply_header_on():
    html = ('<div>Any news?</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Demo Bank'
            '</div><div>We posted it.</div>')
    assert html_to_text(html).text == "Any news?" and html_to_text(html).flags == ["html_converted", "quoted_text_stripped"]


def test_pipeline_ticket_ids_follow_the_contract():
    assert pipeline_ticket_id("zendesk", TENANT, "35436") == "zd-35436"
    assert pipeline_ticket_id("intercom", TENANT, "215472364578") == "ic-215472364578"
    assert pipeline_ticket_id("freshdesk", TENANT, "1042") == "fd-1042"
    assert pipeline_ticket_id("api", TENANT, "T-1") == "T-1"
    email = pipeline_ticket_id("email", TENANT, "<root@mail.example>")
    assert email == pipeline_ticket_id("email", TENANT, "root@mail.example") != pipeline_ticket_id("email", "other", "<root@mail.example>")
    assert email.startswith("em-") and len(email) == 19


# --- the channel endpoint -------------------------------------------------------------------------


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[Topic, str, object]] = []
        self.fail = fail

    def publish(self, topic, key, event) -> None:
        self.published.append((topic, key, event))

    def flush(self, timeout_s: float = 30.0) -> None:
        if self.fail:
            self.published.clear()
            raise TransientError("broker down")


def refused(provider: str, reason: str) -> float:
    return REGISTRY.get_sample_value("supportflow_gateway_channel_refused_total",
                                     {"provider": provider, "reason": reason}) or 0.0


def accepted(provider: str) -> float:
    return REGISTRY.get_sample_value("supportflow_gateway_channel_accepted_total", {"provider": provider}) or 0.0


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def app(publisher):
    return GatewayApp(publisher, default_tenant="rho-bank", webhook_secret="api-secret", max_body_bytes=10_000,
                      channels=CHANNELS)


def test_a_signed_webhook_is_published_with_its_delivery_as_event_id(app, publisher):
    body = raw(zendesk_payload())
    before = accepted("zendesk")
    status, reply = app.handle("/v1/channels/zendesk/demo-bank", body, zendesk.signed_headers(ZENDESK_SECRET, body))
    assert (status, reply) == (202, {"ticket_id": "zd-35436", "tenant_id": TENANT})
    [(topic, key, event)] = publisher.published
    assert topic == Topic.TICKETS_RECEIVED and key == "zd-35436"
    assert event.meta.event_id == delivery_uuid("zendesk", TENANT, "35436:9001") and event.meta.tenant_id == TENANT
    assert event.ticket.origin.provider == "zendesk"
    assert accepted("zendesk") == before + 1


def test_each_provider_is_verified_with_its_own_scheme(app, publisher):
    intercom_body, freshdesk_body = raw(INTERCOM_CREATED), raw(freshdesk_payload())
    assert app.handle("/v1/channels/intercom/demo-bank", intercom_body,
                      intercom.signed_headers(INTERCOM_SECRET, intercom_body))[0] == 202
    assert app.handle("/v1/channels/freshdesk/demo-bank", freshdesk_body,
                      freshdesk.basic_auth_headers(FRESHDESK_SECRET))[0] == 202
    assert [key for _, key, _ in publisher.published] == ["ic-215472364578", "fd-1042"]


@pytest.mark.parametrize("path, reason", [
    ("/v1/channels/zendesk/nobody", "unknown_tenant"),
    ("/v1/channels/zendesk/mail-only", "unknown_tenant"),  # a tenant without Zendesk
])
def test_an_unknown_tenant_or_channel_is_404(app, publisher, path, reason):
    before = refused("zendesk", reason)
    body = raw(zendesk_payload())
    status, reply = app.handle(path, body, zendesk.signed_headers(ZENDESK_SECRET, body))
    assert status == 404 and "zendesk channel" in reply["error"]
    assert refused("zendesk", reason) == before + 1 and publisher.published == []
    assert app.handle("/v1/channels/pigeon/demo-bank", body, {})[0] == 404


def test_a_forged_webhook_is_401_counted_and_not_published(app, publisher):
    body = raw(zendesk_payload())
    before = refused("zendesk", "bad_signature")
    status, reply = app.handle("/v1/channels/zendesk/demo-bank", body, zendesk.signed_headers("guess", body))
    assert status == 401 and "does not match" in reply["error"]
    stale = zendesk.signed_headers(ZENDESK_SECRET, body, now=time.time() - 400)
    assert app.handle("/v1/channels/zendesk/demo-bank", body, stale)[0] == 401
    assert refused("zendesk", "bad_signature") == before + 2 and publisher.published == []


def test_a_payload_missing_a_field_is_400_naming_it(app, publisher):
    body = raw(zendesk_payload(id=""))
    before = refused("zendesk", "missing_field")
    status, reply = app.handle("/v1/channels/zendesk/demo-bank", body, zendesk.signed_headers(ZENDESK_SECRET, body))
    assert (status, reply) == (400, {"error": "zendesk payload: ticket.id is missing"})
    assert refused("zendesk", "missing_field") == before + 1
    junk = b"not json"
    assert app.handle("/v1/channels/zendesk/demo-bank", junk, zendesk.signed_headers(ZENDESK_SECRET, junk))[0] == 400
    assert publisher.published == []


def test_an_event_the_adapter_does_not_act_on_is_200_ignored(app, publisher):
    body = raw({"type": "notification_event", "topic": "ping", "id": "notif_1", "data": {}})
    before = refused("intercom", "ignored")
    assert app.handle("/v1/channels/intercom/demo-bank", body, intercom.signed_headers(INTERCOM_SECRET, body)) == (
        200, {"ignored": "ping"})
    assert refused("intercom", "ignored") == before + 1 and publisher.published == []


def test_a_broker_that_does_not_acknowledge_is_503():
    app = GatewayApp(RecordingPublisher(fail=True), default_tenant="t", webhook_secret="", max_body_bytes=10_000,
                     channels=CHANNELS)
    body = raw(INTERCOM_CREATED)
    before = refused("intercom", "broker_unavailable")
    assert app.handle("/v1/channels/intercom/demo-bank", body, intercom.signed_headers(INTERCOM_SECRET, body))[0] == 503
    assert refused("intercom", "broker_unavailable") == before + 1


def test_the_json_api_keeps_its_own_signature_and_marks_its_tickets(app, publisher):
    assert app.handle("/v1/tickets", b'{"id": "T-1", "body": "hi"}', {})[0] == 401
    body = b'{"id": "T-1", "body": "hi"}'
    from services.gateway.intake import signed_headers

    assert app.handle("/v1/tickets", body, signed_headers("api-secret", body)) == (202, {"ticket_id": "T-1", "tenant_id": "rho-bank"})
    assert publisher.published[-1][2].ticket.origin.provider == "api"


def test_every_webhook_provider_is_registered():
    assert sorted(WEBHOOKS) == ["freshdesk", "intercom", "zendesk"]


def test_a_long_helpdesk_ticket_is_cut_and_flagged_not_refused(publisher):
    """A webhook over the JSON API's body limit, within the webhook limit, becomes a ticket whose
    text is cut at the field limit and flagged; one over the webhook limit is refused with 413."""
    from services.gateway.intake import MAX_FIELD_CHARS

    app = GatewayApp(publisher, default_tenant="rho-bank", webhook_secret="", max_body_bytes=10_000,
                     max_webhook_bytes=1_000_000, channels=CHANNELS)
    long_text = "My card has not arrived. " * 8_000  # 200,000 characters, twice in the payload
    body = raw(zendesk_payload(description=long_text,
                               latest_comment={"id": "9001", "html_body": f"<p>{long_text}</p>", "author_id": "20978392"}))
    assert 10_000 < len(body) < 1_000_000
    status, _ = app.handle("/v1/channels/zendesk/demo-bank", body, zendesk.signed_headers(ZENDESK_SECRET, body))
    assert status == 202
    [(_, _, event)] = publisher.published
    assert len(event.ticket.body) <= MAX_FIELD_CHARS and "body_truncated" in event.ticket.origin.intake_flags
    assert app.body_limit("/v1/channels/zendesk/demo-bank") == 1_000_000 and app.body_limit("/v1/tickets") == 10_000
    assert app.too_large("/v1/channels/zendesk/demo-bank")[0] == 413
