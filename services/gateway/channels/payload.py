"""What every channel adapter shares: its two outcomes, its authentication failure, and reading
fields out of a provider's JSON with errors that name the field.

Pure: no Kafka, no HTTP server.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.gateway.channels.text import NO_READABLE_TEXT, CustomerText, html_to_text, looks_like_html
from services.gateway.intake import MAX_FIELD_CHARS, MAX_HISTORY_TURNS, PayloadError, delivery_uuid

# Ticket id prefixes per provider (docs/channels.md, "Canonical ticket ids").
TICKET_ID_PREFIXES = {"zendesk": "zd-", "intercom": "ic-", "freshdesk": "fd-", "email": "em-"}
# A provider's own ticket or conversation id: what follows the prefix.
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


class NotJson(PayloadError):
    """The body is not a JSON object at all."""


class AuthenticationError(Exception):
    """The request does not prove it comes from the provider; the message says what is wrong."""


@dataclass(frozen=True)
class ChannelTicket:
    """A ticket read from a channel, and the provider's name for this delivery of it: every
    redelivery has the same one, so it becomes the event id (`event_id`)."""

    ticket: tk.Ticket
    delivery: str

    @property
    def event_id(self) -> str:
        return delivery_uuid(self.ticket.origin.provider, self.ticket.tenant_id, self.delivery)


@dataclass(frozen=True)
class Ignored:
    """A delivery the adapter does not act on (an agent's comment, a topic it does not handle);
    answered 200 so the provider does not retry it."""

    reason: str


def normalized_message_id(value: str) -> str:
    """A Message-ID as `<local@domain>`, however it was written ("" when there is none)."""
    value = value.strip()
    found = _MESSAGE_ID.search(value)
    if found:
        return found.group()
    return f"<{value.strip('<>')}>" if value.strip("<>").strip() else ""


def message_ids(value: str) -> list[str]:
    """Every Message-ID in a References or In-Reply-To header, in order."""
    return _MESSAGE_ID.findall(value or "")


def email_ticket_id(tenant: str, thread_root: str) -> str:
    """`em-` + the first 16 hex digits of uuid5(tenant + the thread's first Message-ID): every
    mail of one thread lands on one ticket."""
    root = normalized_message_id(thread_root)
    return "em-" + uuid.uuid5(uuid.NAMESPACE_URL, tenant + root).hex[:16]


def pipeline_ticket_id(provider: str, tenant: str, external_id: str) -> str:
    """The ticket id Supportflow gives a conversation that has `external_id` on `provider`
    (email: the thread root's Message-ID; api: the ticket's own id)."""
    if provider == "email":
        return email_ticket_id(tenant, external_id)
    if provider in TICKET_ID_PREFIXES:
        return TICKET_ID_PREFIXES[provider] + external_id
    return external_id


def parse_json(provider: str, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotJson(f"{provider} payload: body is not UTF-8 JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise NotJson(f"{provider} payload: body must be a JSON object")
    return payload


class Fields:
    """Reads dotted paths out of a provider's JSON; a PayloadError names the path that is wrong
    ("zendesk payload: ticket.id is missing")."""

    def __init__(self, provider: str, payload: Mapping[str, Any]) -> None:
        self._provider = provider
        self._payload = payload

    def error(self, path: str, problem: str) -> PayloadError:
        return PayloadError(f"{self._provider} payload: {path} {problem}")

    def value(self, path: str) -> Any:
        node: Any = self._payload
        walked: list[str] = []
        for name in path.split("."):
            if node is None:
                return None
            if not isinstance(node, Mapping):
                raise self.error(".".join(walked), "must be an object")
            node = node.get(name)
            walked.append(name)
        return node

    def text(self, path: str) -> str:
        """An optional scalar as text ("" when absent or null); providers send ids as numbers or strings."""
        value = self.value(path)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, "must be a string")
        return value.replace("\x00", "") if isinstance(value, str) else str(value)

    def required(self, path: str) -> str:
        value = self.text(path).strip()
        if not value:
            raise self.error(path, "is missing")
        return value

    def external_id(self, path: str) -> str:
        value = self.required(path)
        if not _EXTERNAL_ID.match(value):
            raise self.error(path, f"is not an id: {value[:40]!r}")
        return value

    def mapping(self, path: str, *, required: bool = False) -> Mapping[str, Any]:
        value = self.value(path)
        if value is None:
            if required:
                raise self.error(path, "is missing")
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, "must be an object")
        return value

    def items(self, path: str) -> list[Any]:
        value = self.value(path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "must be a list")
        return value

    def count(self, path: str) -> int:
        """A count that may arrive as a string (template placeholders); "" or junk is 0."""
        value = self.text(path).strip()
        return int(value) if value.isdigit() else 0


def add_history(ticket: tk.Ticket, turns: list[tuple[str, str]]) -> None:
    """Append (author, text) turns, the last MAX_HISTORY_TURNS, skipping empty texts."""
    kept = [(author, text) for author, text in turns if text.strip()]
    for author, text in kept[-MAX_HISTORY_TURNS:]:
        ticket.history.add(author=author, text=text)


def stamp(ticket: tk.Ticket, now: Timestamp | None) -> None:
    if now is not None:
        ticket.received_at.CopyFrom(now)
    else:
        ticket.received_at.GetCurrentTime()


def add_flags(origin: tk.ChannelOrigin, flags: list[str]) -> None:
    for flag in flags:
        if flag not in origin.intake_flags:
            origin.intake_flags.append(flag)


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by name, whatever the case of the mapping's keys ("" when absent)."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return (value or "").strip()


def channel_ticket(
    provider: str,
    tenant: str,
    external_id: str,
    *,
    channel: int,
    subject: str,
    body: CustomerText,
    event: str,
    customer_id: str = "",
    requester_id: str = "",
    requester_email: str = "",
    requester_name: str = "",
    attachments: int = 0,
    history: list[tuple[str, str]] | None = None,
    metadata: Mapping[str, str] | None = None,
    ticket_id: str = "",
    now: Timestamp | None = None,
) -> tk.Ticket:
    """The canonical ticket of a helpdesk conversation, its `origin` filled; a body with no
    readable text is kept (flag `no_readable_text`): a person looks at it. The customer id is what
    the CRM can look the customer up by: the CRM key when the channel carries one (`customer_id`,
    e.g. an Intercom contact's external id), else the requester's address, and only then the
    provider's own user id (meaningless outside the helpdesk, kept in `origin.requester_id`)."""
    subject_text = subject_line(subject)
    origin = tk.ChannelOrigin(
        provider=provider,
        external_id=external_id,
        requester_id=requester_id[:256],
        requester_email=requester_email.strip()[:256],
        requester_name=requester_name.strip()[:256],
        attachments=max(0, attachments),
        event=event[:128],
    )
    flags = list(body.flags)
    if not body.text.strip():
        flags.append(NO_READABLE_TEXT)
    add_flags(origin, flags)
    ticket = tk.Ticket(
        ticket_id=ticket_id or pipeline_ticket_id(provider, tenant, external_id),
        tenant_id=tenant,
        channel=channel,
        customer_id=(customer_id or requester_email.strip().lower() or requester_id)[:256],
        subject=subject_text,
        body=body.text,
        metadata={k: str(v)[:1000] for k, v in (metadata or {}).items() if str(v).strip()},
        origin=origin,
    )
    add_history(ticket, history or [])
    stamp(ticket, now)
    return ticket


def subject_line(subject: str) -> str:
    """A subject as one line of plain text."""
    subject = subject.replace("\x00", "")
    if looks_like_html(subject):
        subject = html_to_text(subject, strip_quotes=False).text
    return " ".join(subject.split())[:MAX_FIELD_CHARS]
