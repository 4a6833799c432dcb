"""Intercom: an app's webhook notification (docs/channels.md, "Intercom webhook notification")
into a ticket.

Intercom signs each notification: `X-Hub-Signature` is `sha1=` + hex HMAC-SHA1(the app's client
secret, raw body). A new conversation (`conversation.user.created`) is its first message; a reply
(`conversation.user.replied`) is the user's last part, the conversation so far its history.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.channels import IntercomChannel
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.gateway.channels.payload import (
    AuthenticationError,
    ChannelTicket,
    Fields,
    Ignored,
    channel_ticket,
    header,
    parse_json,
)
from services.gateway.channels.text import customer_text

PROVIDER = "intercom"
SIGNATURE_HEADER = "X-Hub-Signature"
USER_CREATED, USER_REPLIED, PING = "conversation.user.created", "conversation.user.replied", "ping"
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
        latest = next((i for i in range(len(parts) - 1, -1, -1)
                       if author_role(parts[i].get("author") or {}, channel.admin_id) == "customer"
                       and str(parts[i].get("part_type") or "comment") not in _INTERNAL_PARTS), None)
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
