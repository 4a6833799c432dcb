"""The gateway's HTTP intake: a thin adapter from HTTP requests to TicketReceived, FeedbackReceived
and ActionConfirmed.

A 202 is returned only after the broker has acknowledged the event, so an accepted ticket is never
lost; a rejected one gets a 4xx with the reason.

With a webhook secret every request must carry its HMAC signature, over the time it was signed and
the body; one signed more than five minutes before it arrives is refused, so a captured request
cannot be replayed later. An action confirmation can run
an action on a customer's account, so it is refused outright by a gateway without a secret: only
the channel integration that verified the customer, holding the secret, may send one.

Senders retry: a helpdesk that got no answer in time posts the same webhook again. A request that
names its delivery (an `Idempotency-Key` header, or a ticket's `message_id`) becomes an event whose
id is derived from that name, so every retry publishes the same event id and the first consumer
skips the repeats; a ticket without an id also gets one derived from it. A request that names no
delivery is a new event each time: two identical posts cannot otherwise be told from a customer
writing the same words twice.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import EventPublisher, TransientError, new_meta
from supportflow.observability import ticket_context
from supportflow.topics import Topic

from services.gateway import metrics
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


class GatewayApp:
    """Request handling, independent of the HTTP server so tests can call it directly."""

    def __init__(self, publisher: EventPublisher, *, default_tenant: str, webhook_secret: str, max_body_bytes: int):
        self._publisher = publisher
        self._default_tenant = default_tenant
        self._secret = webhook_secret
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()  # one flush at a time keeps acknowledgements per request exact

    def handle(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict]:
        """Answer one POST: `headers` are the request's (a case-insensitive mapping, as http.server gives)."""
        routes: dict[str, Callable[[object, str], tuple[int, dict]]] = {
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
        problem = self._secret and signature_problem(self._secret, body, headers.get(SIGNATURE_HEADER),
                                                     headers.get(TIMESTAMP_HEADER))
        if problem:
            metrics.REJECTED.labels("bad_signature").inc()
            return 401, {"error": problem}
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            metrics.REJECTED.labels("bad_json").inc()
            return 400, {"error": f"body is not UTF-8 JSON: {exc}"}
        try:
            return route(payload, delivery_id(headers.get(IDEMPOTENCY_HEADER), IDEMPOTENCY_HEADER))
        except PayloadError as exc:
            metrics.REJECTED.labels("invalid_payload").inc()
            return 422, {"error": str(exc)}
        except TransientError as exc:
            metrics.REJECTED.labels("broker_unavailable").inc()
            log.error("could not publish", extra={"fields": {"error": str(exc)}})
            return 503, {"error": "event bus unavailable, retry later"}

    def _accept_ticket(self, payload: object, delivery: str) -> tuple[int, dict]:
        if isinstance(payload, dict):
            delivery = delivery or delivery_id(payload.get("message_id"), "message_id")
            if delivery and not (payload.get("id") or payload.get("ticket_id")):
                payload = payload | {"id": f"tkt-{delivery_uuid('ticket-id', self._tenant_of(payload), delivery)[:16]}"}
        ticket = ticket_from_payload(payload, default_tenant=self._default_tenant)
        event = ev.TicketReceived(meta=self._meta(ticket.tenant_id, "ticket", delivery), ticket=ticket)
        with ticket_context(ticket.ticket_id), self._lock:
            self._publisher.publish(Topic.TICKETS_RECEIVED, ticket.ticket_id, event)
            self._publisher.flush(10)
        metrics.ACCEPTED.labels("ticket").inc()
        return 202, {"ticket_id": ticket.ticket_id, "tenant_id": ticket.tenant_id}

    def _accept_feedback(self, payload: object, delivery: str) -> tuple[int, dict]:
        ticket_id, fields = feedback_from_payload(payload)
        tenant = self._tenant_of(payload)
        event = ev.FeedbackReceived(meta=self._meta(tenant, "feedback", delivery), ticket_id=ticket_id, **fields)
        with ticket_context(ticket_id), self._lock:
            self._publisher.publish(Topic.TICKETS_FEEDBACK, ticket_id, event)
            self._publisher.flush(10)
        metrics.ACCEPTED.labels("feedback").inc()
        return 202, {"ticket_id": ticket_id}

    def _accept_confirmation(self, payload: object, delivery: str) -> tuple[int, dict]:
        fields = confirmation_from_payload(payload)
        tenant = self._tenant_of(payload)
        event = ev.ActionConfirmed(meta=self._meta(tenant, "action-confirmation", delivery), **fields)
        with ticket_context(event.ticket_id), self._lock:
            self._publisher.publish(Topic.ACTIONS_CONFIRMED, event.ticket_id, event)
            self._publisher.flush(10)
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


# A client that stops sending (or never sends the body it announced) is cut off after this long,
# instead of holding one of the server's threads for good.
CLIENT_TIMEOUT_S = 30.0


def serve(app: GatewayApp, port: int, host: str = "0.0.0.0", *, client_timeout_s: float = CLIENT_TIMEOUT_S) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = client_timeout_s  # applied to the connection's socket

        def do_POST(self) -> None:  # noqa: N802
            declared = self.headers.get("Content-Length") or "0"
            if not declared.isdigit():
                metrics.REJECTED.labels("bad_length").inc()
                self._reply(400, {"error": f"Content-Length must be a whole number of bytes, not {declared[:40]!r}"})
                return
            length = int(declared)
            if length > app.max_body_bytes:
                metrics.REJECTED.labels("too_large").inc()
                self._reply(413, {"error": f"body larger than {app.max_body_bytes} bytes"})
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                metrics.REJECTED.labels("client_timeout").inc()
                self.close_connection = True
                return
            if len(body) < length:  # the client closed the connection early
                metrics.REJECTED.labels("truncated_body").inc()
                self.close_connection = True
                return
            status, reply = app.handle(self.path.split("?")[0], body, self.headers)
            self._reply(status, reply)

        def _reply(self, status: int, reply: dict) -> None:
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="gateway-http", daemon=True).start()
    return server
