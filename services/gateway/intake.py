"""Turn the JSON API's payloads (tickets, feedback, action confirmations) into contract messages;
the helpdesks' webhooks and mail have their adapters in `services/gateway/channels/`.

Pure: no Kafka, no HTTP. Anything a customer can type is accepted as text; what makes a payload
unusable (no text at all, wrong types, unknown channel) is rejected with a reason the caller can
show to the sender.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

MAX_FIELD_CHARS = 100_000  # longer text is cut here; the classifier flags what it truncates further
MAX_HISTORY_TURNS = 50

CHANNELS = {
    "email": tk.CHANNEL_EMAIL,
    "chat": tk.CHANNEL_CHAT,
    "web_form": tk.CHANNEL_WEB_FORM,
    "web": tk.CHANNEL_WEB_FORM,
    "api": tk.CHANNEL_API,
    "phone": tk.CHANNEL_PHONE,
    "social": tk.CHANNEL_SOCIAL,
}

VERDICTS = {"accepted": ev.AGENT_VERDICT_ACCEPTED, "edited": ev.AGENT_VERDICT_EDITED, "rejected": ev.AGENT_VERDICT_REJECTED}
CSAT_LATENCIES = {
    "at_resolution": ev.CSAT_LATENCY_AT_RESOLUTION,
    "delayed": ev.CSAT_LATENCY_DELAYED,
    "model_scored": ev.CSAT_LATENCY_MODEL_SCORED,
}


class PayloadError(ValueError):
    """The payload cannot become an event; the message says why."""


SIGNATURE_HEADER = "X-Supportflow-Signature"
# When the sender signed (Unix seconds): part of what is signed, so a captured request cannot be
# replayed once SIGNATURE_TOLERANCE_S has passed.
TIMESTAMP_HEADER = "X-Supportflow-Timestamp"
SIGNATURE_TOLERANCE_S = 300
# A sender's id for one delivery, so that its retries are recognised: the header on any request,
# or a ticket payload's `message_id` (an email's Message-ID, a chat message's id).
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_DELIVERY_ID_CHARS = 255


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Supportflow-Signature` value of a body sent at `timestamp` (the
    `X-Supportflow-Timestamp` value): `sha256=<hex HMAC of "<timestamp>." + body>`."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers a sender adds to sign `body` now."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def signature_problem(secret: str, body: bytes, signature_header: str | None, timestamp_header: str | None,
                      now: float | None = None) -> str:
    """Why a request's signature does not hold ("" when it does): the HMAC of its timestamp and
    raw body, compared in constant time, and a timestamp within SIGNATURE_TOLERANCE_S of `now`."""
    if not signature_header or not signature_header.startswith("sha256="):
        return f"missing or malformed {SIGNATURE_HEADER}"
    if not timestamp_header or not timestamp_header.isdigit():
        return f"missing or malformed {TIMESTAMP_HEADER} (Unix seconds)"
    if not hmac.compare_digest(signature(secret, timestamp_header, body), signature_header):
        return f"{SIGNATURE_HEADER} does not match the body and timestamp"
    if abs((time.time() if now is None else now) - int(timestamp_header)) > SIGNATURE_TOLERANCE_S:
        return f"{TIMESTAMP_HEADER} is more than {SIGNATURE_TOLERANCE_S} s from the gateway's clock"
    return ""


def delivery_id(value: object, name: str) -> str:
    """A sender's delivery id (`Idempotency-Key`, `message_id`): "" when absent, refused when it is
    not 1 to MAX_DELIVERY_ID_CHARS printable characters."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not value.strip() or not value.isprintable() or len(value) > MAX_DELIVERY_ID_CHARS:
        raise PayloadError(f"{name} must be 1 to {MAX_DELIVERY_ID_CHARS} printable characters")
    return value.strip()


def delivery_uuid(kind: str, tenant: str, delivery: str) -> str:
    """The id of what a named delivery becomes (its event, a ticket id it lacked): the same for
    every retry of that delivery, so the first consumer skips the repeats by event id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"supportflow:delivery:{kind}:{tenant}:{delivery}").hex


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"field {name!r} must be a string")
    return value.replace("\x00", "")[:MAX_FIELD_CHARS]


def ticket_from_payload(payload: Any, *, default_tenant: str, now: Timestamp | None = None) -> tk.Ticket:
    if not isinstance(payload, dict):
        raise PayloadError("a ticket must be a JSON object")
    subject, body = _text(payload, "subject"), _text(payload, "body") or _text(payload, "text")
    if not (subject.strip() or body.strip()):
        raise PayloadError("a ticket needs a subject or a body")
    channel_name = str(payload.get("channel") or "api").lower()
    if channel_name not in CHANNELS:
        raise PayloadError(f"unknown channel {channel_name!r}; expected one of {', '.join(sorted(CHANNELS))}")
    ticket_id = str(payload.get("id") or payload.get("ticket_id") or f"tkt-{uuid.uuid4().hex[:16]}")
    if len(ticket_id) > 128:
        raise PayloadError("ticket id longer than 128 characters")
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise PayloadError("metadata must be an object")
    ticket = tk.Ticket(
        ticket_id=ticket_id,
        tenant_id=str(payload.get("tenant_id") or payload.get("tenant") or default_tenant),
        channel=CHANNELS[channel_name],
        customer_id=str(payload.get("customer_id") or ""),
        subject=subject,
        body=body,
        language=str(payload.get("language") or ""),
        metadata={str(k): str(v)[:1000] for k, v in metadata.items()},
        # The API is its own channel: responses go back through the tenant's API callback.
        origin=tk.ChannelOrigin(provider="api", external_id=ticket_id),
    )
    history = payload.get("history") or []
    if not isinstance(history, list):
        raise PayloadError("history must be a list of {author, text}")
    for turn in history[-MAX_HISTORY_TURNS:]:
        if not isinstance(turn, dict):
            raise PayloadError("each history turn must be an object")
        ticket.history.add(author=str(turn.get("author") or "customer"), text=_text(turn, "text"))
    if now is not None:
        ticket.received_at.CopyFrom(now)
    else:
        ticket.received_at.GetCurrentTime()
    return ticket


def feedback_from_payload(payload: Any) -> tuple[str, dict[str, Any]]:
    """Validate a feedback payload; returns (ticket_id, fields for FeedbackReceived)."""
    if not isinstance(payload, dict):
        raise PayloadError("feedback must be a JSON object")
    ticket_id = str(payload.get("ticket_id") or "")
    if not ticket_id:
        raise PayloadError("feedback needs a ticket_id")
    kind = payload.get("kind")
    try:
        if kind == "draft_verdict":
            fields = {"draft_verdict": ev.DraftVerdict(
                verdict=VERDICTS[payload["verdict"]], edit_ratio=float(payload.get("edit_ratio", 0.0)))}
        elif kind == "csat":
            fields = {"csat": ev.CsatScore(
                latency=CSAT_LATENCIES[payload.get("latency", "at_resolution")], score=float(payload["score"]))}
        elif kind == "repeat_contact":
            fields = {"repeat_contact": ev.RepeatContact(
                days_after_resolution=int(payload["days_after_resolution"]), reopened=bool(payload.get("reopened")))}
        elif kind == "context_loss":
            fields = {"context_loss": True}
        elif kind == "misroute":
            fields = {"misroute": True}
        elif kind == "qa":
            fields = {"qa": ev.QaResult(
                hallucinated_policy=bool(payload["hallucinated_policy"]), note=str(payload.get("note", "")))}
        elif kind == "resolution":
            fields = {"resolution": ev.Resolution(
                resolved_by_bot=bool(payload.get("resolved_by_bot")),
                handle_time_s=float(payload.get("handle_time_s", 0.0)),
                resolution_notes=str(payload.get("resolution_notes", "")),
                cited_article_ids=[str(a) for a in payload.get("cited_article_ids", [])])}
        else:
            raise PayloadError(
                "feedback kind must be one of draft_verdict, csat, repeat_contact, context_loss, misroute, qa, resolution"
            )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"invalid {kind} feedback: {exc!r}") from exc
    return ticket_id, fields


MAX_ID_CHARS = 128
CONFIRMATION_FIELDS = ("proposal_id", "ticket_id", "confirmation_ref", "confirmed_by")


def confirmation_from_payload(payload: Any) -> dict[str, str]:
    """Validate an action confirmation; returns the fields for ActionConfirmed. Whether the
    proposal exists, is still open and may be carried out is the escalator's to decide."""
    if not isinstance(payload, dict):
        raise PayloadError("a confirmation must be a JSON object")
    fields: dict[str, str] = {}
    for name in CONFIRMATION_FIELDS:
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            raise PayloadError(f"a confirmation needs {name} (a non-empty string)")
        if len(value) > MAX_ID_CHARS:
            raise PayloadError(f"{name} longer than {MAX_ID_CHARS} characters")
        fields[name] = value.strip()
    return fields
