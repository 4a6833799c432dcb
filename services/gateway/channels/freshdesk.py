"""Freshdesk: an automation rule's webhook (docs/channels.md, "Freshdesk automation webhook
body") into a ticket.

Freshdesk does not sign webhooks. The rule sends the tenant's shared secret instead, in the
`X-Supportflow-Webhook-Secret` header or as the basic-auth password of user `supportflow`; either
is compared with the configured one in constant time.

Outcomes (docs/channels.md, "Outcomes from the channels"): the requester's reply (customer_reply),
a status change (`status_changed`: 2 open, 3 pending, 4 resolved -> solved, 5 closed), a reopened
ticket (`ticket_reopened`) and a satisfaction survey's answer (`customer_feedback`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.channels import FreshdeskChannel
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.gateway.channels import outcomes as oc
from services.gateway.channels.payload import (
    AuthenticationError,
    ChannelTicket,
    Fields,
    Ignored,
    channel_ticket,
    header,
    parse_json,
    pipeline_ticket_id,
)
from services.gateway.channels.text import customer_text

PROVIDER = "freshdesk"
SECRET_HEADER = "X-Supportflow-Webhook-Secret"
BASIC_USER = "supportflow"
TICKET_CREATED, CUSTOMER_REPLIED = "ticket_created", "customer_replied"
STATUS_CHANGED, REOPENED, FEEDBACK = "status_changed", "ticket_reopened", "customer_feedback"
# Freshdesk's ticket statuses, by API number and by name (as {{ticket.status}} renders).
STATUSES = {"2": oc.OPEN, "open": oc.OPEN, "3": oc.PENDING, "pending": oc.PENDING, "4": oc.SOLVED,
            "resolved": oc.SOLVED, "5": oc.CLOSED, "closed": oc.CLOSED}
# A satisfaction survey's answer (the API's `ratings` values): 103 extremely happy ... 100 neutral
# ... -103 extremely unhappy; a 3-point survey uses 103, 100 and -103. Evenly spaced on 0..100.
SURVEY_SCALE = (-103, -102, -101, 100, 101, 102, 103)
SURVEY_SCORES = {value: index * 100.0 / (len(SURVEY_SCALE) - 1) for index, value in enumerate(SURVEY_SCALE)}
# Who the rule says made the change (its "Performed by" condition, sent as a literal).
PERFORMERS = {"agent": oc.BY_AGENT, "requester": oc.BY_CUSTOMER, "customer": oc.BY_CUSTOMER, "system": oc.BY_SYSTEM}
_ROOT = "freshdesk_webhook"

# Freshdesk's ticket sources, by name (as `{{ticket.source}}` renders) and by API number.
_SOURCES = {
    "email": tk.CHANNEL_EMAIL, "1": tk.CHANNEL_EMAIL, "outbound email": tk.CHANNEL_EMAIL, "10": tk.CHANNEL_EMAIL,
    "portal": tk.CHANNEL_WEB_FORM, "2": tk.CHANNEL_WEB_FORM, "feedback widget": tk.CHANNEL_WEB_FORM,
    "9": tk.CHANNEL_WEB_FORM, "phone": tk.CHANNEL_PHONE, "3": tk.CHANNEL_PHONE, "chat": tk.CHANNEL_CHAT,
    "7": tk.CHANNEL_CHAT, "twitter": tk.CHANNEL_SOCIAL, "5": tk.CHANNEL_SOCIAL, "facebook": tk.CHANNEL_SOCIAL,
    "6": tk.CHANNEL_SOCIAL, "whatsapp": tk.CHANNEL_CHAT,
}


def signed_headers(secret: str) -> dict[str, str]:
    return {SECRET_HEADER: secret}


def basic_auth_headers(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{BASIC_USER}:{secret}".encode()).decode()}


def authenticate(channel: FreshdeskChannel, body: bytes, headers: Mapping[str, str], now: float) -> None:
    expected = channel.webhook_secret.get_secret_value().encode()
    given = header(headers, SECRET_HEADER)
    if given:
        if not hmac.compare_digest(given.encode(), expected):
            raise AuthenticationError(f"{SECRET_HEADER} is not this tenant's Freshdesk webhook secret")
        return
    authorization = header(headers, "Authorization")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationError(f"missing {SECRET_HEADER} or basic auth ({BASIC_USER}:<secret>)")
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationError("malformed basic auth") from exc
    # Both compared, always: the time taken says nothing about which one was wrong.
    user_ok = hmac.compare_digest(user.encode(), BASIC_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), expected)
    if not (user_ok and password_ok):
        raise AuthenticationError("basic auth is not this tenant's Freshdesk webhook credentials")


def channel_of(source: str) -> int:
    return _SOURCES.get(source.strip().lower(), tk.CHANNEL_WEB_FORM)


def ticket_from_webhook(channel: FreshdeskChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                        now: Timestamp | None = None) -> ChannelTicket | Ignored:
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    fields.mapping(_ROOT, required=True)
    event = fields.required(f"{_ROOT}.event")
    if event not in (TICKET_CREATED, CUSTOMER_REPLIED):
        return Ignored(f"freshdesk event {event[:60]!r} is not handled")
    freshdesk_id = fields.external_id(f"{_ROOT}.ticket_id")
    updated_at = fields.text(f"{_ROOT}.ticket_updated_at").strip()
    description = fields.text(f"{_ROOT}.ticket_description")
    history: list[tuple[str, str]] = []
    if event == CUSTOMER_REPLIED:
        # Every reply of one ticket differs only in when it came: without it, a second reply
        # would look like a redelivery of the first and be skipped.
        updated_at = fields.required(f"{_ROOT}.ticket_updated_at")
        text = customer_text(fields.required(f"{_ROOT}.ticket_latest_public_comment"), html=True)
        first = customer_text(description, html=True).text
        if first and first != text.text:
            history.append(("customer", first))
    else:
        text = customer_text(fields.required(f"{_ROOT}.ticket_description"), html=True)
    source = fields.text(f"{_ROOT}.ticket_source")
    ticket = channel_ticket(
        PROVIDER,
        tenant,
        freshdesk_id,
        channel=channel_of(source),
        subject=fields.text(f"{_ROOT}.ticket_subject"),
        body=text,
        event=event,
        requester_id=fields.text(f"{_ROOT}.ticket_contact_id").strip(),
        requester_email=fields.text(f"{_ROOT}.ticket_contact_email"),
        requester_name=fields.text(f"{_ROOT}.ticket_contact_name"),
        history=history,
        metadata={
            "freshdesk_status": fields.text(f"{_ROOT}.ticket_status"),
            "priority": fields.text(f"{_ROOT}.ticket_priority"),
            "freshdesk_source": source,
        },
        now=now,
    )
    return ChannelTicket(ticket, f"{freshdesk_id}:{event}:{updated_at}")


def outcomes_from_webhook(channel: FreshdeskChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                          now: Timestamp | None = None) -> oc.ChannelOutcomes:
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    fields.mapping(_ROOT, required=True)
    event = fields.required(f"{_ROOT}.event")
    if event not in (CUSTOMER_REPLIED, STATUS_CHANGED, REOPENED, FEEDBACK):
        return oc.no_outcome(PROVIDER, event)
    freshdesk_id = fields.external_id(f"{_ROOT}.ticket_id")
    updated_at = fields.required(f"{_ROOT}.ticket_updated_at")
    found = oc.OutcomeBuilder(PROVIDER, pipeline_ticket_id(PROVIDER, tenant, freshdesk_id),
                              channel_of(fields.text(f"{_ROOT}.ticket_source")),
                              f"{freshdesk_id}:{event}:{updated_at}")
    changed_by = PERFORMERS.get(fields.text(f"{_ROOT}.performed_by").strip().lower(), "")
    if event == CUSTOMER_REPLIED:
        text = customer_text(fields.required(f"{_ROOT}.ticket_latest_public_comment"), html=True).text
        # Freshdesk's placeholders do not carry the conversation, so the agent turns before the
        # reply are not known here: 0 (docs/channels.md).
        found.customer_reply(text, 0)
    elif event == FEEDBACK:
        path = f"{_ROOT}.satisfaction_rating"
        value = fields.value(path)
        rating = oc.whole_number(value)
        if rating not in SURVEY_SCORES:
            found.refuse(path, oc.INVALID_RATING, "is not a Freshdesk survey answer "
                         f"({', '.join(map(str, SURVEY_SCALE))}): {str(value)[:40]!r}")
        else:
            found.csat(SURVEY_SCORES[rating])
    elif event == REOPENED:
        found.status(oc.REOPENED, changed_by)
    else:
        status = fields.text(f"{_ROOT}.ticket_status").strip().lower()
        if status not in STATUSES:
            found.refuse(f"{_ROOT}.ticket_status", oc.INVALID_STATUS,
                         f"is not a Freshdesk ticket status (2-5 or open, pending, resolved, closed): {status[:40]!r}")
        else:
            found.status(STATUSES[status], changed_by)
    return found.result()
