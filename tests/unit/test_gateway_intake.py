import hashlib
import hmac

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from services.gateway.intake import (
    MAX_FIELD_CHARS,
    PayloadError,
    confirmation_from_payload,
    delivery_id,
    delivery_uuid,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    feedback_from_payload,
    signature_problem,
    signed_headers,
    ticket_from_payload,
)


def test_a_payload_becomes_a_canonical_ticket():
    ticket = ticket_from_payload(
        {"id": "T-1", "channel": "email", "customer_id": "cust-0001", "subject": "Card", "body": "declined",
         "history": [{"author": "customer", "text": "earlier"}], "metadata": {"brand": "rho", "n": 3}},
        default_tenant="rho-bank",
    )
    assert ticket.ticket_id == "T-1"
    assert ticket.tenant_id == "rho-bank"
    assert ticket.channel == tk.CHANNEL_EMAIL
    assert ticket.history[0].text == "earlier"
    assert dict(ticket.metadata) == {"brand": "rho", "n": "3"}
    assert ticket.received_at.seconds > 0
    assert (ticket.origin.provider, ticket.origin.external_id) == ("api", "T-1")  # answered through the API callback


def test_ids_are_generated_when_absent_and_text_is_an_alias_of_body():
    ticket = ticket_from_payload({"text": "hello"}, default_tenant="t")
    assert ticket.ticket_id.startswith("tkt-") and ticket.body == "hello"
    assert ticket.channel == tk.CHANNEL_API


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "JSON object"),
        ({"body": "   "}, "subject or a body"),
        ({"body": 42}, "must be a string"),
        ({"body": "x", "channel": "pigeon"}, "unknown channel"),
        ({"body": "x", "history": "nope"}, "history"),
        ({"body": "x", "id": "x" * 200}, "128"),
    ],
)
def test_unusable_payloads_are_refused_with_a_reason(payload, message):
    with pytest.raises(PayloadError, match=message):
        ticket_from_payload(payload, default_tenant="t")


def test_huge_text_is_cut_and_nul_bytes_removed():
    ticket = ticket_from_payload({"body": "a\x00b" + "x" * (MAX_FIELD_CHARS * 2)}, default_tenant="t")
    assert len(ticket.body) == MAX_FIELD_CHARS
    assert ticket.body.startswith("abx")


def test_a_signature_covers_the_timestamp_and_the_raw_body():
    body, now = b'{"body": "hi"}', 1_800_000_000
    headers = signed_headers("s3cret", body, now=now)
    stamp, good = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert stamp == str(now)
    assert good == "sha256=" + hmac.new(b"s3cret", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_problem("s3cret", body, good, stamp, now=now + 299) == ""
    assert "does not match" in signature_problem("s3cret", body + b" ", good, stamp, now=now)
    assert "does not match" in signature_problem("s3cret", body, good, str(now + 1), now=now)  # a re-stamped replay
    assert "does not match" in signature_problem("other", body, good, stamp, now=now)
    assert "more than 300 s" in signature_problem("s3cret", body, good, stamp, now=now + 301)  # a late replay
    assert "more than 300 s" in signature_problem("s3cret", body, good, stamp, now=now - 301)
    assert "missing or malformed X-Supportflow-Signature" in signature_problem("s3cret", body, None, stamp, now=now)
    assert "missing or malformed X-Supportflow-Timestamp" in signature_problem("s3cret", body, good, None, now=now)
    assert "missing or malformed X-Supportflow-Timestamp" in signature_problem("s3cret", body, good, "soon", now=now)


def test_feedback_kinds_map_to_the_contract():
    ticket_id, fields = feedback_from_payload({"ticket_id": "T-1", "kind": "csat", "score": 80, "latency": "delayed"})
    event = ev.FeedbackReceived(ticket_id=ticket_id, **fields)
    assert event.WhichOneof("kind") == "csat" and event.csat.latency == ev.CSAT_LATENCY_DELAYED
    _, fields = feedback_from_payload({"ticket_id": "T-1", "kind": "draft_verdict", "verdict": "edited", "edit_ratio": 0.3})
    assert fields["draft_verdict"].verdict == ev.AGENT_VERDICT_EDITED
    with pytest.raises(PayloadError, match="kind must be"):
        feedback_from_payload({"ticket_id": "T-1", "kind": "vibes"})
    with pytest.raises(PayloadError, match="invalid csat"):
        feedback_from_payload({"ticket_id": "T-1", "kind": "csat"})


CONFIRMATION = {"proposal_id": "p-1", "ticket_id": "T-9", "confirmation_ref": "sms-4411", "confirmed_by": "customer:sms"}


def test_a_confirmation_payload_keeps_its_four_fields_only():
    assert confirmation_from_payload(CONFIRMATION | {"tool": "refund", "amount": "9999"}) == CONFIRMATION


@pytest.mark.parametrize("payload, message", [
    ([], "must be a JSON object"),
    ({k: v for k, v in CONFIRMATION.items() if k != "proposal_id"}, "needs proposal_id"),
    (CONFIRMATION | {"confirmation_ref": "  "}, "needs confirmation_ref"),
    (CONFIRMATION | {"confirmed_by": 7}, "needs confirmed_by"),
    (CONFIRMATION | {"ticket_id": "x" * 129}, "ticket_id longer than 128"),
])
def test_unusable_confirmations_are_refused_with_a_reason(payload, message):
    with pytest.raises(PayloadError, match=message):
        confirmation_from_payload(payload)


@pytest.mark.parametrize("value", [42, " ", "x" * 256, "line\nbreak"])
def test_a_delivery_id_must_be_a_short_printable_string(value):
    with pytest.raises(PayloadError, match="Idempotency-Key must be 1 to 255 printable characters"):
        delivery_id(value, "Idempotency-Key")


def test_a_named_delivery_maps_to_one_id_per_kind_and_tenant():
    assert delivery_id(None, "message_id") == delivery_id("", "message_id") == ""
    assert delivery_id(" <m1@mail> ", "message_id") == "<m1@mail>"
    first = delivery_uuid("ticket", "acme", "<m1@mail>")
    assert first == delivery_uuid("ticket", "acme", "<m1@mail>")
    assert len({first, delivery_uuid("feedback", "acme", "<m1@mail>"), delivery_uuid("ticket", "globex", "<m1@mail>"),
                delivery_uuid("ticket", "acme", "<m2@mail>")}) == 4
