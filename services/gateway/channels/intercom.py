"""Intercom: an app's webhook notification (docs/channels.md, "Intercom webhook notification")
into a ticket.

Intercom signs each notification: `X-Hub-Signature` is `sha1=` + hex HMAC-SHA1(the app's client
secret, raw body). A new conversation (`conversation.user.created`) is its first message; a reply
(`conversation.user.replied`) is the user's last part, the conversation so far its history.

Outcomes (docs/channels.md, "Outcomes from the channels"): a user's reply (customer_reply, and a
reopened conversation when it had been closed), a conversation rating (`conversation.rating.added`,
1 to 5 -> 0, 25, 50, 75, 100), a close (`conversation.admin.closed`) and a reopen by an admin
(`conversation.admin.opened`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.channels import IntercomChannel
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

PROVIDER = "intercom"
SIGNATURE_HEADER = "X-Hub-Signature"
USER_CREATED, USER_REPLIED, PING = "conversation.user.created", "conversation.user.replied", "ping"
RATED, CLOSED, OPENED = "conversation.rating.added", "conversation.admin.closed", "conversation.admin.opened"
RATING_MIN, RATING_MAX = 1, 5  # Intercom's conversation rating
_CUSTOMER_AUTHORS = ("user", "lead", "contact")
_PARTS = "data.item.conversation_parts.conversation_parts"
# Internal parts an agent writes for colleagues (our own drafts and packets among them): never
# part of what the customer and the support team said to each other.
_INTERNAL_PARTS = ("note", "note_and_reopen")


def signature(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature(secret, body)}


def authenticate(channel: IntercomChannel, body: bytes, headers: Mapping[str, str], now: float) -> None:
    given = header(headers, SIGNATURE_HEADER)
    if not given.startswith("sha1="):
        raise AuthenticationError(f"missing or malformed {SIGNATURE_HEADER} (sha1=<hex>)")
    expected = signature(channel.client_secret.get_secret_value(), body)
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise AuthenticationError(f"{SIGNATURE_HEADER} does not match the body")


def author_role(author: Mapping[str, Any], admin_id: str) -> str:
    """`customer`, `agent` or `bot`: an admin part written as our own admin (Supportflow's
    replies) or by an Intercom bot is `bot`, any other admin's is `agent`."""
    kind = str(author.get("type") or "")
    if kind in _CUSTOMER_AUTHORS:
        return "customer"
    if kind == "bot" or (kind == "admin" and str(author.get("id") or "") == admin_id):
        return "bot"
    return "agent"


def ticket_from_webhook(channel: IntercomChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                        now: Timestamp | None = None) -> ChannelTicket | Ignored:
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    topic = fields.required("topic")
    if topic == PING:
        return Ignored("ping")
    if topic not in (USER_CREATED, USER_REPLIED):
        return Ignored(f"intercom topic {topic[:60]!r} is not handled")
    notification = fields.required("id")
    fields.mapping("data.item", required=True)
    conversation = fields.external_id("data.item.id")
    source = fields.mapping("data.item.source")
    author = fields.mapping("data.item.source.author")
    contacts = fields.items("data.item.contacts.contacts")
    contact = contacts[0] if contacts and isinstance(contacts[0], Mapping) else {}

    if topic == USER_CREATED:
        if not source:
            raise fields.error("data.item.source", "is missing")
        text = customer_text(fields.required("data.item.source.body"), html=True)
        attachments = len(fields.items("data.item.source.attachments"))
        history: list[tuple[str, str]] = []
    else:
        parts = [part for part in fields.items(_PARTS) if isinstance(part, Mapping)]
        latest = _latest_customer_part(parts, channel.admin_id)
        if latest is None:
            raise fields.error(_PARTS, "has no part written by the user")
        text = customer_text(str(parts[latest].get("body") or ""), html=True)
        attachments = len(parts[latest].get("attachments") or [])
        history = []
        if source.get("body"):
            history.append((author_role(author, channel.admin_id), customer_text(str(source["body"]), html=True).text))
        for part in parts[:latest]:
            if str(part.get("part_type") or "comment") in _INTERNAL_PARTS or not part.get("body"):
                continue
            history.append((author_role(part.get("author") or {}, channel.admin_id),
                            customer_text(str(part["body"]), html=True).text))

    requester = author if str(author.get("type") or "") in _CUSTOMER_AUTHORS else contact
    requester_id = str(requester.get("id") or contact.get("id") or "")
    ticket = channel_ticket(
        PROVIDER,
        tenant,
        conversation,
        channel=tk.CHANNEL_EMAIL if source.get("type") == "email" else tk.CHANNEL_CHAT,
        subject=str(source.get("subject") or ""),
        body=text,
        event=topic,
        # The contact's external_id is the customer's id in the company's own systems (the CRM's key).
        customer_id=str(contact.get("external_id") or ""),
        requester_id=requester_id,
        requester_email=str(requester.get("email") or ""),
        requester_name=str(requester.get("name") or ""),
        attachments=attachments,
        history=history,
        metadata={"intercom_state": fields.text("data.item.state"),
                  "intercom_delivered_as": str(source.get("delivered_as") or "")},
        now=now,
    )
    return ChannelTicket(ticket, notification)


def rating_score(rating: int) -> float:
    """An Intercom rating (1..5) on the 0..100 scale, evenly spaced: 1 -> 0, 3 -> 50, 5 -> 100."""
    return (rating - RATING_MIN) * 100.0 / (RATING_MAX - RATING_MIN)


def _latest_customer_part(parts: list[Mapping[str, Any]], admin_id: str) -> int | None:
    return next((i for i in range(len(parts) - 1, -1, -1)
                 if author_role(parts[i].get("author") or {}, admin_id) == "customer"
                 and str(parts[i].get("part_type") or "comment") not in _INTERNAL_PARTS), None)


def outcomes_from_webhook(channel: IntercomChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                          now: Timestamp | None = None) -> oc.ChannelOutcomes:
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    topic = fields.required("topic")
    if topic not in (USER_REPLIED, RATED, CLOSED, OPENED):
        return oc.no_outcome(PROVIDER, topic)
    notification = fields.required("id")
    fields.mapping("data.item", required=True)
    conversation = fields.external_id("data.item.id")
    source = fields.mapping("data.item.source")
    found = oc.OutcomeBuilder(PROVIDER, pipeline_ticket_id(PROVIDER, tenant, conversation),
                              tk.CHANNEL_EMAIL if source.get("type") == "email" else tk.CHANNEL_CHAT, notification)
    parts = [part for part in fields.items(_PARTS) if isinstance(part, Mapping)]
    if topic == USER_REPLIED:
        latest = _latest_customer_part(parts, channel.admin_id)
        if latest is None:
            raise fields.error(_PARTS, "has no part written by the user")
        # Everything the support side said in public before it: our own replies, agents', bots'.
        answered = [part for part in parts[:latest] if str(part.get("part_type") or "comment") == "comment"
                    and author_role(part.get("author") or {}, channel.admin_id) != "customer"]
        opening = 1 if author_role(fields.mapping("data.item.source.author"), channel.admin_id) != "customer" else 0
        found.customer_reply(customer_text(str(parts[latest].get("body") or ""), html=True).text,
                             len(answered) + opening)
        # A reply to a closed conversation reopens it: the last state change before it was a close.
        changes = [str(part.get("part_type")) for part in parts[:latest] if part.get("part_type") in ("open", "close")]
        if changes and changes[-1] == "close":
            found.status(oc.REOPENED, oc.BY_CUSTOMER)
    elif topic == RATED:
        fields.mapping("data.item.conversation_rating", required=True)
        value = fields.value("data.item.conversation_rating.rating")
        rating = oc.whole_number(value)
        if rating is None or not RATING_MIN <= rating <= RATING_MAX:
            found.refuse("data.item.conversation_rating.rating", oc.INVALID_RATING,
                         f"must be a whole number from {RATING_MIN} to {RATING_MAX}, not {str(value)[:40]!r}")
        else:
            found.csat(rating_score(rating))
    else:
        wanted = "close" if topic == CLOSED else "open"
        part = next((p for p in reversed(parts) if p.get("part_type") == wanted), None)
        author = (part or {}).get("author") or {}
        role = author_role(author, channel.admin_id) if author else "bot"
        changed_by = {"customer": oc.BY_CUSTOMER, "agent": oc.BY_AGENT}.get(role, oc.BY_SYSTEM)
        found.status(oc.CLOSED if topic == CLOSED else oc.REOPENED, changed_by)
    return found.result()
