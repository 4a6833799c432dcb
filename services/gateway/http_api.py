"""The gateway's HTTP intake: the signed JSON API (`/v1/tickets`, `/v1/feedback`,
`/v1/actions/confirm`) and the helpdesks' webhooks (`/v1/channels/{provider}/{tenant}`), into
TicketReceived, FeedbackReceived and ActionConfirmed.

`GatewayApp` answers one request from its path, raw body and headers, with no server involved, so
tests call it directly; `asgi_app` is the thin Starlette adapter around it that reads the body
within limits, and `serve` runs that under uvicorn on a thread of its own.

A 202 is returned only after the broker has acknowledged the event, so an accepted ticket is never
lost; a rejected one gets a 4xx with the reason.

With a webhook secret every JSON API request must carry its HMAC signature, over the time it was
signed and the body; one signed more than five minutes before it arrives is refused, so a captured
request cannot be replayed later. An action confirmation can run an action on a customer's
account, so it is refused outright by a gateway without a secret: only the channel integration
that verified the customer, holding the secret, may send one. A helpdesk webhook is verified the
way its provider signs (services/gateway/channels/), with the tenant's own secret.

A helpdesk webhook may carry outcomes as well as (or instead of) a ticket: a status change, a
satisfaction rating, a customer's reply, each published to `tickets.feedback` keyed by the
pipeline's ticket id. An outcome the adapter cannot read (a rating out of range or of an unknown
form) is dead-lettered: the webhook's raw body goes to `tickets.feedback.dlq` with the reason in
`sf-dlq-reason` and the field in `sf-dlq-error`, it is counted, and the answer is 400 naming the
field (whatever else the webhook carried is still published).

Senders retry: a helpdesk that got no answer in time posts the same webhook again. A request that
names its delivery (an `Idempotency-Key` header, a ticket's `message_id`, a helpdesk's delivery id
of docs/channels.md) becomes an event whose id is derived from that name, so every retry publishes
the same event id and the first consumer skips the repeats; a ticket without an id also gets one
derived from it. A request that names no delivery is a new event each time: two identical posts
cannot otherwise be told from a customer writing the same words twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import h11
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import (
    H_CONTENT_TYPE,
    H_DLQ_ERROR,
    H_DLQ_REASON,
    H_DLQ_SERVICE,
    H_DLQ_TOPIC,
    EventPublisher,
    TransientError,
    new_meta,
)
from supportflow.http_server import HttpServer
from supportflow.observability import EVENTS_DEAD_LETTERED, ticket_context
from supportflow.topics import Topic

from services.gateway import metrics
from services.gateway.channels import WEBHOOKS, AuthenticationError, ChannelOutcome, ChannelTicket, RefusedOutcome
from services.gateway.channels.payload import NotJson
from services.gateway.intake import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    PayloadError,
    confirmation_from_payload,
    delivery_id,
    delivery_uuid,
    feedback_from_payload,
    signature_problem,
    ticket_from_payload,
)

log = logging.getLogger(__name__)
SERVICE = "gateway"
CONFIRM_PATH = "/v1/actions/confirm"
CHANNEL_PATH = re.compile(r"^/v1/channels/(?P<provider>[^/]+)/(?P<tenant>[^/]+)/?$")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
PUBLISH_TIMEOUT_S = 10.0

Reply = tuple[int, dict]


class GatewayApp:
    """Request handling, independent of the HTTP server so tests can call it directly."""

    def __init__(self, publisher: EventPublisher, *, default_tenant: str, webhook_secret: str, max_body_bytes: int,
                 channels: ChannelsConfig | None = None, clock: Callable[[], float] = time.time,
                 max_webhook_bytes: int | None = None, topic_prefix: str = ""):
        self._publisher = publisher
        self._topic_prefix = topic_prefix  # the deployment's (settings.topic_prefix): dead letters are written by name
        self._default_tenant = default_tenant
        self._secret = webhook_secret
        self._channels = channels or ChannelsConfig()
        self._clock = clock
        self.max_body_bytes = max_body_bytes
        self.max_webhook_bytes = max_body_bytes if max_webhook_bytes is None else max_webhook_bytes
        self._lock = threading.Lock()  # one flush at a time keeps acknowledgements per request exact

    def handle(self, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """Answer one POST; header names are matched whatever their case."""
        headers = {str(name).lower(): value for name, value in headers.items()}
        channel = CHANNEL_PATH.match(path)
        if channel:
            return self._accept_channel(channel["provider"], channel["tenant"], body, headers)
        routes: dict[str, Callable[[object, str], Reply]] = {
            "/v1/tickets": self._accept_ticket,
            "/v1/feedback": self._accept_feedback,
            CONFIRM_PATH: self._accept_confirmation,
        }
        route = routes.get(path)
        if route is None:
            return 404, {"error": f"no such endpoint {path}"}
        if path == CONFIRM_PATH and not self._secret:
            metrics.REJECTED.labels("confirmation_unsigned").inc()
            return 403, {"error": "this gateway has no webhook secret (SUPPORTFLOW_GATEWAY_WEBHOOK_SECRET), and "
                                  "an action confirmation must come signed from the channel that verified the customer"}
        problem = self._secret and signature_problem(self._secret, body, headers.get(SIGNATURE_HEADER.lower()),
                                                     headers.get(TIMESTAMP_HEADER.lower()))
        if problem:
            metrics.REJECTED.labels("bad_signature").inc()
            return 401, {"error": problem}
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            metrics.REJECTED.labels("bad_json").inc()
            return 400, {"error": f"body is not UTF-8 JSON: {exc}"}
        try:
            return route(payload, delivery_id(headers.get(IDEMPOTENCY_HEADER.lower()), IDEMPOTENCY_HEADER))
        except PayloadError as exc:
            metrics.REJECTED.labels("invalid_payload").inc()
            return 422, {"error": str(exc)}
        except TransientError as exc:
            metrics.REJECTED.labels("broker_unavailable").inc()
            log.error("could not publish", extra={"fields": {"error": str(exc)}})
            return 503, {"error": "event bus unavailable, retry later"}

    def body_limit(self, path: str) -> int:
        """The largest body taken on `path`: helpdesk webhooks have their own, larger limit."""
        return self.max_webhook_bytes if CHANNEL_PATH.match(path) else self.max_body_bytes

    def too_large(self, path: str) -> Reply:
        """The answer to a body over `body_limit(path)`, counted against its channel when it has one."""
        channel = CHANNEL_PATH.match(path)
        if channel and channel["provider"] in WEBHOOKS:
            metrics.channel_refused(channel["provider"], "too_large")
        else:
            metrics.REJECTED.labels("too_large").inc()
        return 413, {"error": f"body larger than {self.body_limit(path)} bytes"}

    def publish_ticket(self, ticket: tk.Ticket, event_id: str = "") -> None:
        """Publish a TicketReceived and wait for the broker's acknowledgement (TransientError if
        none comes); `event_id` names a delivery whose retries must publish the same event id."""
        meta = new_meta(ticket.tenant_id, SERVICE)
        if event_id:
            meta.event_id = event_id
        self._publish(Topic.TICKETS_RECEIVED, ticket.ticket_id, ev.TicketReceived(meta=meta, ticket=ticket))

    def publish_outcomes(self, tenant: str, outcomes: Sequence[ChannelOutcome]) -> None:
        """Publish FeedbackReceived events read from a channel, each with the event id of its
        delivery, and wait for the broker's acknowledgement (TransientError if none comes)."""
        self._publish_all([(Topic.TICKETS_FEEDBACK, outcome.ticket_id, self._outcome_event(tenant, outcome))
                           for outcome in outcomes])
        for outcome in outcomes:
            metrics.outcome_published(outcome.feedback.source, outcome.kind)

    @staticmethod
    def _outcome_event(tenant: str, outcome: ChannelOutcome) -> ev.FeedbackReceived:
        event = ev.FeedbackReceived()
        event.CopyFrom(outcome.feedback)
        event.meta.CopyFrom(new_meta(tenant, SERVICE))
        event.meta.event_id = outcome.event_id(tenant)
        return event

    def _publish(self, topic: Topic, key: str, event: Message) -> None:
        self._publish_all([(topic, key, event)])

    def _publish_all(self, events: Sequence[tuple[Topic, str, Message]],
                     dead_letters: Sequence[tuple[str, bytes, list[tuple[str, bytes]]]] = ()) -> None:
        """Publish events and dead letters (key, raw value, headers) with one acknowledgement."""
        if not (events or dead_letters):
            return
        with ticket_context(events[0][1] if events else dead_letters[0][0]), self._lock:
            for topic, key, event in events:
                self._publisher.publish(topic, key, event)
            for key, value, headers in dead_letters:
                self._publisher.produce_raw(Topic.TICKETS_FEEDBACK.dead_letter_in(self._topic_prefix),
                                            key.encode() or None, value, headers)
            self._publisher.flush(PUBLISH_TIMEOUT_S)

    # --- the helpdesks' webhooks --------------------------------------------------------------

    def _accept_channel(self, provider: str, tenant: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        adapter = WEBHOOKS.get(provider)
        if adapter is None:
            return 404, {"error": f"no channel {provider[:40]!r}; expected one of {', '.join(sorted(WEBHOOKS))}"}
        tenant_channels = self._channels.tenant(tenant) if _TENANT.match(tenant) else None
        settings = tenant_channels.provider(provider) if tenant_channels is not None else None
        if settings is None:
            metrics.channel_refused(provider, "unknown_tenant")
            return 404, {"error": f"no tenant {tenant[:128]!r} with a {provider} channel"}
        try:
            adapter.authenticate(settings, body, headers, self._clock())
        except AuthenticationError as exc:
            metrics.channel_refused(provider, "bad_signature")
            # The metric has no tenant label (tenants are unbounded); the log says whose secret failed.
            log.warning("webhook refused", extra={"fields": {"provider": provider, "tenant": tenant, "reason": str(exc)}})
            return 401, {"error": str(exc)}
        try:
            reading = adapter.read(settings, tenant, body, headers, None)
            found = adapter.outcomes(settings, tenant, body, headers, None)
            if isinstance(reading, ChannelTicket):
                delivery_id(reading.delivery, f"{provider} delivery id")
        except NotJson as exc:
            metrics.channel_refused(provider, "bad_json")
            return 400, {"error": str(exc)}
        except PayloadError as exc:
            metrics.channel_refused(provider, "missing_field")
            return 400, {"error": str(exc)}
        ticket = reading.ticket if isinstance(reading, ChannelTicket) else None
        if ticket is None and not found.outcomes and not found.refused:
            metrics.channel_refused(provider, "ignored")
            # The outcome adapter's reason when the event was one of its own ("a rating offered, not given").
            return 200, {"ignored": found.ignored if found.handled and found.ignored else reading.reason}
        events: list[tuple[Topic, str, Message]] = []
        if ticket is not None:
            meta = new_meta(ticket.tenant_id, SERVICE)
            meta.event_id = reading.event_id
            events.append((Topic.TICKETS_RECEIVED, ticket.ticket_id, ev.TicketReceived(meta=meta, ticket=ticket)))
        events += [(Topic.TICKETS_FEEDBACK, outcome.ticket_id, self._outcome_event(tenant, outcome))
                   for outcome in found.outcomes]
        dead_letters = [self._dead_letter(provider, tenant, refusal, body) for refusal in found.refused]
        try:
            self._publish_all(events, dead_letters)
        except TransientError as exc:
            metrics.channel_refused(provider, "broker_unavailable")
            log.error("could not publish", extra={"fields": {"error": str(exc), "provider": provider}})
            return 503, {"error": "event bus unavailable, retry later"}
        reply: dict = {}
        if ticket is not None:
            metrics.channel_accepted(provider)
            metrics.ACCEPTED.labels("ticket").inc()
            reply = {"ticket_id": ticket.ticket_id, "tenant_id": ticket.tenant_id}
        for outcome in found.outcomes:
            metrics.outcome_published(provider, outcome.kind)
        if found.outcomes:
            reply |= {"ticket_id": found.outcomes[0].ticket_id, "tenant_id": tenant,
                      "outcomes": [outcome.kind for outcome in found.outcomes]}
        if found.refused:
            for refusal in found.refused:
                metrics.outcome_dead_lettered(provider, refusal.reason)
                EVENTS_DEAD_LETTERED.labels(SERVICE, Topic.TICKETS_FEEDBACK.base_name, refusal.reason).inc()
                log.warning("outcome dead-lettered", extra={"fields": {
                    "provider": provider, "tenant": tenant, "reason": refusal.reason, "error": refusal.message}})
            metrics.channel_refused(provider, "invalid_outcome")
            return 400, reply | {"error": "; ".join(refusal.message for refusal in found.refused),
                                 "fields": [refusal.path for refusal in found.refused], "dead_lettered": True}
        return 202, reply

    @staticmethod
    def _dead_letter(provider: str, tenant: str, refusal: RefusedOutcome,
                     body: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
        """The webhook's raw body as it came, with why it could not be read: (key, value, headers)."""
        headers = [
            (H_CONTENT_TYPE, b"application/json"),
            (H_DLQ_REASON, refusal.reason.encode()),
            (H_DLQ_ERROR, refusal.message[:2000].encode()),
            (H_DLQ_TOPIC, f"POST /v1/channels/{provider}/{tenant}".encode()),
            (H_DLQ_SERVICE, SERVICE.encode()),
        ]
        return refusal.ticket_id, body, headers

    # --- the JSON API -------------------------------------------------------------------------

    def _accept_ticket(self, payload: object, delivery: str) -> Reply:
        if isinstance(payload, dict):
            delivery = delivery or delivery_id(payload.get("message_id"), "message_id")
            if delivery and not (payload.get("id") or payload.get("ticket_id")):
                payload = payload | {"id": f"tkt-{delivery_uuid('ticket-id', self._tenant_of(payload), delivery)[:16]}"}
        ticket = ticket_from_payload(payload, default_tenant=self._default_tenant)
        self.publish_ticket(ticket, delivery_uuid("ticket", ticket.tenant_id, delivery) if delivery else "")
        metrics.ACCEPTED.labels("ticket").inc()
        return 202, {"ticket_id": ticket.ticket_id, "tenant_id": ticket.tenant_id}

    def _accept_feedback(self, payload: object, delivery: str) -> Reply:
        ticket_id, fields = feedback_from_payload(payload)
        tenant = self._tenant_of(payload)
        event = ev.FeedbackReceived(meta=self._meta(tenant, "feedback", delivery), ticket_id=ticket_id, **fields)
        self._publish(Topic.TICKETS_FEEDBACK, ticket_id, event)
        metrics.ACCEPTED.labels("feedback").inc()
        return 202, {"ticket_id": ticket_id}

    def _accept_confirmation(self, payload: object, delivery: str) -> Reply:
        fields = confirmation_from_payload(payload)
        tenant = self._tenant_of(payload)
        event = ev.ActionConfirmed(meta=self._meta(tenant, "action-confirmation", delivery), **fields)
        self._publish(Topic.ACTIONS_CONFIRMED, event.ticket_id, event)
        metrics.ACCEPTED.labels("action_confirmation").inc()
        return 202, {"ticket_id": event.ticket_id, "proposal_id": event.proposal_id}

    def _tenant_of(self, payload: dict) -> str:
        return str(payload.get("tenant_id") or payload.get("tenant") or self._default_tenant)

    @staticmethod
    def _meta(tenant: str, kind: str, delivery: str) -> ev.EventMeta:
        meta = new_meta(tenant, SERVICE)
        if delivery:
            meta.event_id = delivery_uuid(kind, tenant, delivery)
        return meta


# --- HTTP: Starlette around GatewayApp, uvicorn around Starlette ----------------------------------

# A client that stops sending (or never sends the body it announced) is cut off after this long,
# instead of holding a connection for good.
CLIENT_TIMEOUT_S = 30.0


class _BodyTooLarge(Exception):
    pass


class _ClientStalled(Exception):
    pass


class _ClientGone(Exception):
    pass


async def _read_body(receive: Callable[[], Awaitable[dict]], limit: int, timeout_s: float) -> bytes:
    """The request body, refused past `limit` bytes or when it has not all come within `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError as exc:
            raise _ClientStalled() from exc
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _json(status: int, reply: dict, *, close: bool = False) -> JSONResponse:
    return JSONResponse(reply, status_code=status, headers={"connection": "close"} if close else None)


def asgi_app(app: GatewayApp, *, client_timeout_s: float = CLIENT_TIMEOUT_S) -> Starlette:
    """The Starlette application serving `app`: every POST path goes to `GatewayApp.handle`."""

    async def post(request: Request) -> Response:
        path = request.url.path
        declared = request.headers.get("content-length", "")
        # uvicorn's parser has already refused a Content-Length that is not a whole number.
        limit = app.body_limit(path)
        if declared.isdigit() and int(declared) > limit:
            return _json(*app.too_large(path), close=True)
        try:
            body = await _read_body(request.receive, limit, client_timeout_s)
        except _BodyTooLarge:
            return _json(*app.too_large(path), close=True)
        except _ClientStalled:
            metrics.REJECTED.labels("client_timeout").inc()
            return _json(408, {"error": f"the body did not arrive within {client_timeout_s:g} s"}, close=True)
        except _ClientGone:  # the client closed the connection early: nobody reads an answer
            metrics.REJECTED.labels("truncated_body").inc()
            return Response(status_code=400)
        # Publishing waits for the broker: on a worker thread, never on the event loop.
        status, reply = await run_in_threadpool(app.handle, path, body, request.headers)
        return _json(status, reply)

    return Starlette(routes=[Route("/{path:path}", post, methods=["POST"])])


class _GatewayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with two additions: a connection that does not complete a
    request's head within the client timeout is closed (uvicorn itself waits for ever), and a
    request its parser refuses (a Content-Length that is not a number...) gets a JSON 400."""

    client_timeout_s = CLIENT_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._await_head(None)

    def on_response_complete(self) -> None:
        finished = self.cycle
        super().on_response_complete()
        self._await_head(finished)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _await_head(self, previous: object) -> None:
        """Close the connection unless a request after `previous` starts within the timeout."""
        if self._head_deadline is not None:
            self._head_deadline.cancel()

        def expire() -> None:
            if self.cycle is previous and not self.transport.is_closing():
                metrics.REJECTED.labels("client_timeout").inc()
                self.transport.close()

        self._head_deadline = self.loop.call_later(self.client_timeout_s, expire)

    def send_400_response(self, msg: str) -> None:
        # Called while uvicorn handles h11's RemoteProtocolError: it says what was wrong.
        problem = sys.exc_info()[1]
        detail = str(problem) if problem is not None else msg
        if "content-length" in detail.lower():
            metrics.REJECTED.labels("bad_length").inc()
            error = "Content-Length must be a whole number of bytes"
        else:
            metrics.REJECTED.labels("bad_request").inc()
            error = f"malformed HTTP request: {detail or msg}"
        data = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=data),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def serve(app: GatewayApp, port: int, host: str = "0.0.0.0", *, client_timeout_s: float = CLIENT_TIMEOUT_S) -> HttpServer:
    """Start serving `app` (port 0: any free port, see `server_address`); `shutdown()` stops it."""
    protocol = type("GatewayH11Protocol", (_GatewayH11Protocol,), {"client_timeout_s": client_timeout_s})
    return HttpServer(asgi_app(app, client_timeout_s=client_timeout_s), host, port, name="gateway",
                      protocol=protocol).start()
