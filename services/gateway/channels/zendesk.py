"""Zendesk: a trigger's webhook (docs/channels.md, "Zendesk trigger webhook body") into a ticket,
and the outcomes it carries (docs/channels.md, "Outcomes from the channels").

Zendesk signs each webhook: `X-Zendesk-Webhook-Signature` is base64(HMAC-SHA256(signing secret,
`X-Zendesk-Webhook-Signature-Timestamp` + raw body)). A timestamp more than five minutes from the
gateway's clock is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.channels import ZendeskChannel
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

PROVIDER = "zendesk"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"
TOLERANCE_S = 300
CREATED, REQUESTER_UPDATED = "ticket.created", "ticket.requester_updated"
# The outcome triggers: a status change by anyone but Supportflow's API user, a solved ticket
# reopened, a satisfaction rating given.
STATUS_CHANGED, REOPENED, RATED = "ticket.status_changed", "ticket.reopened", "ticket.satisfaction_rated"
# {{ticket.status}} as it renders, lower-cased -> StatusChange.status
STATUSES = {"new": oc.NEW, "open": oc.OPEN, "pending": oc.PENDING, "on-hold": oc.ON_HOLD, "hold": oc.ON_HOLD,
            "solved": oc.SOLVED, "closed": oc.CLOSED}
# The satisfaction rating's score (Zendesk's Satisfaction Ratings API: good, bad, offered, unoffered;
# the {{satisfaction.current_rating}} placeholder renders it as a phrase starting with the same word).
RATING_SCORES = {"good": 100.0, "bad": 0.0}
RATING_NOT_GIVEN = ("offered", "unoffered")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers Zendesk adds to a webhook it sends at `now` (ISO 8601 timestamp, UTC)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    timestamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def authenticate(channel: ZendeskChannel, body: bytes, headers: Mapping[str, str], now: float) -> None:
    given, timestamp = header(headers, SIGNATURE_HEADER), header(headers, TIMESTAMP_HEADER)
    if not given:
        raise AuthenticationError(f"missing {SIGNATURE_HEADER}")
    if not timestamp:
        raise AuthenticationError(f"missing {TIMESTAMP_HEADER}")
    expected = signature(channel.webhook_secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthenticationError(f"{SIGNATURE_HEADER} does not match the body and timestamp")
    signed_at = _seconds(timestamp)
    if signed_at is None:
        raise AuthenticationError(f"{TIMESTAMP_HEADER} is not an ISO 8601 time")
    if abs(now - signed_at) > TOLERANCE_S:
        raise AuthenticationError(f"{TIMESTAMP_HEADER} is more than {TOLERANCE_S} s from the gateway's clock")


def _seconds(timestamp: str) -> float | None:
    if timestamp.isdigit():
        return float(timestamp)
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def channel_of(via: str) -> int:
    """Zendesk's `ticket.via` ("Mail", "Web form", "Chat", "Messaging", "Voice", "Twitter", ...)."""
    via = via.lower()
    if "mail" in via:
        return tk.CHANNEL_EMAIL
    if any(word in via for word in ("twitter", "facebook", "instagram", "social")):
        return tk.CHANNEL_SOCIAL
    if any(word in via for word in ("chat", "messaging", "whatsapp", "sms")):
        return tk.CHANNEL_CHAT
    if any(word in via for word in ("voice", "phone")):
        return tk.CHANNEL_PHONE
    return tk.CHANNEL_WEB_FORM


def ticket_from_webhook(channel: ZendeskChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                        now: Timestamp | None = None) -> ChannelTicket | Ignored:
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    event = fields.required("event")
    if event not in (CREATED, REQUESTER_UPDATED):
        return Ignored(f"zendesk event {event[:60]!r} is not handled")
    fields.mapping("ticket", required=True)
    zendesk_id = fields.external_id("ticket.id")
    requester_id = fields.text("ticket.requester.id").strip()
    comment_id = fields.text("ticket.latest_comment.id").strip()
    description = fields.text("ticket.description")
    history: list[tuple[str, str]] = []
    if event == REQUESTER_UPDATED:
        author = fields.text("ticket.latest_comment.author_id").strip()
        if author and requester_id and author != requester_id:
            return Ignored("the latest comment is not the requester's")
        comment_id = fields.required("ticket.latest_comment.id")
        text = customer_text(fields.required("ticket.latest_comment.html_body"), html=True)
        # The description is the ticket's first comment: the conversation so far starts there.
        first = customer_text(description).text
        if first and first != text.text:
            history.append(("customer", first))
    else:
        if description.strip():
            text = customer_text(description)
        elif fields.text("ticket.latest_comment.html_body").strip():
            text = customer_text(fields.text("ticket.latest_comment.html_body"), html=True)
        else:
            raise fields.error("ticket.description", "is missing")
    via = fields.text("ticket.via").strip()
    ticket = channel_ticket(
        PROVIDER,
        tenant,
        zendesk_id,
        channel=channel_of(via),
        subject=fields.text("ticket.subject"),
        body=text,
        event=event,
        requester_id=requester_id,
        requester_email=fields.text("ticket.requester.email"),
        requester_name=fields.text("ticket.requester.name"),
        attachments=fields.count("ticket.attachments_count"),
        history=history,
        metadata={
            "zendesk_status": fields.text("ticket.status"),
            "priority": fields.text("ticket.priority"),
            "zendesk_tags": fields.text("ticket.tags"),
            "zendesk_via": via,
        },
        now=now,
    )
    delivery = header(headers, INVOCATION_HEADER) or f"{zendesk_id}:{comment_id}"
    return ChannelTicket(ticket, delivery)


def _changed_by(channel: ZendeskChannel, fields: Fields) -> str:
    """Who made the update that fired the trigger: `{{current_user}}` is the requester (customer),
    Supportflow's own API user or nobody (system: an automation), or anyone else (agent)."""
    user_id = fields.text("current_user.id").strip()
    email = fields.text("current_user.email").strip().lower()
    if not user_id or email == channel.email.strip().lower():
        return oc.BY_SYSTEM
    return oc.BY_CUSTOMER if user_id == fields.text("ticket.requester.id").strip() else oc.BY_AGENT


def _agent_turns_before(fields: Fields, requester_id: str) -> int:
    """Public comments on the ticket not written by the requester (the latest is the requester's own
    reply). From `public_comment_authors` (the authors of the public comments, space-separated, a
    Liquid loop in the trigger's body); without it, every public comment but the first and the
    latest (`comment_count` - 2), which counts the requester's own earlier comments too."""
    authors = fields.value("ticket.public_comment_authors")
    if isinstance(authors, str) and authors.strip():
        return sum(1 for author in authors.split() if author != requester_id)
    return max(0, fields.count("ticket.comment_count") - 2)


def outcomes_from_webhook(channel: ZendeskChannel, tenant: str, body: bytes, headers: Mapping[str, str],
                          now: Timestamp | None = None) -> oc.ChannelOutcomes:
    """The outcomes a trigger's webhook carries: a requester's comment (customer_reply), a status
    change or a reopened ticket (status_change), a satisfaction rating (csat: good 100, bad 0)."""
    fields = Fields(PROVIDER, parse_json(PROVIDER, body))
    event = fields.required("event")
    if event not in (REQUESTER_UPDATED, STATUS_CHANGED, REOPENED, RATED):
        return oc.no_outcome(PROVIDER, event)
    fields.mapping("ticket", required=True)
    zendesk_id = fields.external_id("ticket.id")
    requester_id = fields.text("ticket.requester.id").strip()
    detail = {REQUESTER_UPDATED: "ticket.latest_comment.id", RATED: "ticket.satisfaction_rating.score"}.get(
        event, "ticket.status")
    delivery = header(headers, INVOCATION_HEADER) or ":".join(
        (zendesk_id, event, fields.text(detail).strip(), fields.text("ticket.updated_at").strip()))
    found = oc.OutcomeBuilder(PROVIDER, pipeline_ticket_id(PROVIDER, tenant, zendesk_id),
                              channel_of(fields.text("ticket.via").strip()), delivery)
    if event == REQUESTER_UPDATED:
        author = fields.text("ticket.latest_comment.author_id").strip()
        if author and requester_id and author != requester_id:
            return found.result(ignored="the latest comment is not the requester's")
        text = customer_text(fields.required("ticket.latest_comment.html_body"), html=True).text
        found.customer_reply(text, _agent_turns_before(fields, requester_id))
    elif event == RATED:
        score = fields.text("ticket.satisfaction_rating.score").strip().lower()
        word = score.replace(",", " ").split()[0] if score.split() else ""
        if word in RATING_NOT_GIVEN:
            return found.result(ignored=f"a satisfaction rating {word}, not given")
        if word not in RATING_SCORES:
            found.refuse("ticket.satisfaction_rating.score", oc.INVALID_RATING,
                         f"is not a Zendesk satisfaction rating (good, bad, offered, unoffered): {score[:40]!r}")
        else:
            found.csat(RATING_SCORES[word])
    else:
        status = fields.text("ticket.status").strip().lower()
        if event == REOPENED:
            found.status(oc.REOPENED, _changed_by(channel, fields))
        elif status not in STATUSES:
            found.refuse("ticket.status", oc.INVALID_STATUS,
                         f"is not a Zendesk ticket status ({', '.join(sorted(STATUSES))}): {status[:40]!r}")
        else:
            found.status(STATUSES[status], _changed_by(channel, fields))
    return found.result()
