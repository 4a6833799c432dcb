"""The gateway's HTTP intake publishing to the real broker."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from supportflow.eventbus import ConsumerLoop, EventPublisher, decode, ensure_topics
from supportflow.observability import Health
from supportflow.topics import Topic
from services.gateway.http_api import GatewayApp, serve
from services.gateway.intake import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.infra


CONFIRMATION = {"proposal_id": "p-1", "ticket_id": "T-9", "confirmation_ref": "sms-4411", "confirmed_by": "customer:sms"}


def post(port, path, body: bytes, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_tickets_feedback_and_confirmations_are_published_only_when_valid(settings):
    ensure_topics(settings)
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="rho-bank", webhook_secret="", max_body_bytes=10_000)
    server = serve(app, 0, host="127.0.0.1")
    port = server.server_address[1]
    try:
        assert post(port, "/v1/tickets", json.dumps({"id": "T-9", "body": "my card was declined"}).encode()) == (
            202, {"ticket_id": "T-9", "tenant_id": "rho-bank"})
        assert post(port, "/v1/tickets", b"{not json")[0] == 400
        assert post(port, "/v1/tickets", json.dumps({"body": ""}).encode())[0] == 422
        assert post(port, "/v1/tickets", json.dumps({"body": "x" * 20_000}).encode())[0] == 413
        assert post(port, "/v1/nope", b"{}")[0] == 404
        assert post(port, "/v1/feedback", json.dumps({"ticket_id": "T-9", "kind": "csat", "score": 90}).encode())[0] == 202
        # A confirmation can run an action: a gateway without a webhook secret refuses it.
        status, reply = post(port, "/v1/actions/confirm", json.dumps(CONFIRMATION).encode())
        assert status == 403 and "webhook secret" in reply["error"]
    finally:
        server.shutdown()

    tickets = read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=1)
    assert [m.key() for m in tickets] == [b"T-9"]
    event = decode(Topic.TICKETS_RECEIVED, tickets[0])
    assert event.ticket.body == "my card was declined" and event.meta.producer == "gateway"
    assert event.ticket.origin.provider == "api"
    feedback = read_all(settings, Topic.TICKETS_FEEDBACK.name_in(settings.topic_prefix), expected=1)
    assert decode(Topic.TICKETS_FEEDBACK, feedback[0]).csat.score == 90
    assert read_all(settings, Topic.ACTIONS_CONFIRMED.name_in(settings.topic_prefix), expected=0, timeout_s=1) == []


def test_a_signed_gateway_publishes_signed_confirmations_only(settings):
    ensure_topics(settings)
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="rho-bank", webhook_secret="s3cret",
                     max_body_bytes=10_000)
    server = serve(app, 0, host="127.0.0.1")
    port = server.server_address[1]
    body = json.dumps(CONFIRMATION).encode()
    try:
        assert post(port, "/v1/actions/confirm", body)[0] == 401
        assert post(port, "/v1/actions/confirm", body, signed_headers("wrong", body))[0] == 401
        stale = signed_headers("s3cret", body, now=time.time() - 600)  # a captured request, replayed later
        status, reply = post(port, "/v1/actions/confirm", body, stale)
        assert status == 401 and TIMESTAMP_HEADER in reply["error"]
        assert post(port, "/v1/actions/confirm", body, signed_headers("s3cret", body)) == (
            202, {"ticket_id": "T-9", "proposal_id": "p-1"})
        incomplete = json.dumps({"proposal_id": "p-2"}).encode()
        assert post(port, "/v1/actions/confirm", incomplete, signed_headers("s3cret", incomplete))[0] == 422
    finally:
        server.shutdown()
    [confirmed] = read_all(settings, Topic.ACTIONS_CONFIRMED.name_in(settings.topic_prefix), expected=1)
    event = decode(Topic.ACTIONS_CONFIRMED, confirmed)
    assert confirmed.key() == b"T-9" and event.meta.tenant_id == "rho-bank"
    assert (event.proposal_id, event.confirmation_ref, event.confirmed_by) == ("p-1", "sms-4411", "customer:sms")


def test_a_signed_gateway_refuses_unsigned_webhooks(settings):
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="t", webhook_secret="s3cret", max_body_bytes=10_000)
    status, reply = app.handle("/v1/tickets", b'{"body": "hi"}', {})
    assert status == 401 and SIGNATURE_HEADER in reply["error"]


def test_a_retried_delivery_is_handled_once_downstream(settings):
    """A helpdesk posting the same webhook again (same Idempotency-Key, or the same message_id)
    publishes the same event id, and the first consumer skips the repeat; a new delivery of the
    same words is a new event."""
    ensure_topics(settings)
    app = GatewayApp(EventPublisher(settings, "gateway"), default_tenant="rho-bank", webhook_secret="", max_body_bytes=10_000)
    server = serve(app, 0, host="127.0.0.1")
    port = server.server_address[1]
    ticket = json.dumps({"id": "T-1", "body": "my card was declined"}).encode()
    no_id = json.dumps({"body": "where is my card?", "message_id": "<m-77@mail>"}).encode()
    try:
        for _ in range(2):
            assert post(port, "/v1/tickets", ticket, {IDEMPOTENCY_HEADER: "delivery-1"}) == (
                202, {"ticket_id": "T-1", "tenant_id": "rho-bank"})
        assert post(port, "/v1/tickets", ticket, {IDEMPOTENCY_HEADER: "delivery-2"})[0] == 202  # written again
        first, again = (post(port, "/v1/tickets", no_id)[1]["ticket_id"] for _ in range(2))
        assert first == again and first.startswith("tkt-")  # the ticket id is the delivery's too
        assert post(port, "/v1/tickets", ticket, {IDEMPOTENCY_HEADER: "x" * 300})[0] == 422
    finally:
        server.shutdown()

    received = [decode(Topic.TICKETS_RECEIVED, m) for m in
                read_all(settings, Topic.TICKETS_RECEIVED.name_in(settings.topic_prefix), expected=5)]
    ids = [event.meta.event_id for event in received]
    assert ids[0] == ids[1] and ids[3] == ids[4] and len(set(ids)) == 3

    handled = []
    loop = ConsumerLoop(settings, "dedupe", {Topic.TICKETS_RECEIVED: lambda event: handled.append(event.meta.event_id) or []},
                        EventPublisher(settings, "dedupe"), Health("dedupe"))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert loop.caught_up.wait(60), "the consumer never caught up"
    finally:
        stop.set()
        thread.join(15)
    assert sorted(handled) == sorted(set(ids))
