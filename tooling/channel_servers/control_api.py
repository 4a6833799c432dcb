"""What every HTTP stand-in shares: recording each provider API request, answering with the fault
it has been told to, and the control API under /_sim/ (not part of any provider's API):

- GET  /healthz
- GET  /_sim/received                 -> {"requests": [{"at", "method", "path", "status", "body", "tenant"}]}
- GET  /_sim/deliveries?ticket=<id>   -> {"items": [{"kind", "external_id", "ticket", "text", "html", "public",
                                                    "at", "tenant", ...}]}
- GET  /_sim/faults, POST /_sim/faults (see store.FaultPlan)
- POST /_sim/redeliver {"ticket": id, "wait"?: bool} -> send the ticket's last webhook again, same id
- GET  /_sim/webhooks                 -> {"attempts": [...]}: every webhook attempt and the gateway's answer
- POST /_sim/outcomes {"ticket": id, "action": "reply"|"rate"|"status", "text"?, "score"?, "comment"?,
                       "status"?, "wait"?: bool}
                                      -> {"fired": [{"event", "delivery_id", "outcome"?}]}: something
  happens on the ticket as the customer (reply, rate) or a support agent (status) would make it
  happen in the helpdesk, and the server fires the outcome webhooks its triggers / rules would
  (docs/channels.md, "Outcomes from the channels"). A score is passed through as given, so a test
  can send what the adapter must refuse.
"""

from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tooling.channel_servers.store import FaultPlan, FaultSpecError, TrafficLog
from tooling.channel_servers.webhooks import Webhook, WebhookSender

# Never faulted nor recorded: the control API, the health check, the help center's public pages.
_UNRECORDED_PREFIXES = ("/_sim/", "/healthz", "/hc/")


class BodyError(ValueError):
    """A request body that is not the JSON object an endpoint needs."""


async def json_object(request: Request) -> dict:
    raw = await request.body()
    try:
        value = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"the body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BodyError("the body must be a JSON object")
    return value


def set_tenant(request: Request, tenant: str) -> None:
    """Name the tenant whose credentials a request carried, for /_sim/received."""
    request.state.tenant = tenant


class ProviderTraffic:
    """ASGI wrapper around one provider app: applies the fault plan, then records the request
    (method, path with query, status, JSON or text body, tenant) whatever the answer was."""

    def __init__(self, app: ASGIApp, *, traffic: TrafficLog, faults: FaultPlan,
                 fault_body: Callable[[int], dict]) -> None:
        self.app = app
        self.traffic = traffic
        self.faults = faults
        self.fault_body = fault_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UNRECORDED_PREFIXES):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        chunks: list[bytes] = []
        status = 0

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            fault = self.faults.take_http(method, path)
            if fault is not None and fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault is not None and fault.status:
                while (await recording_receive()).get("more_body"):
                    pass
                headers = {} if fault.retry_after is None else {"Retry-After": format(fault.retry_after, "g")}
                response = JSONResponse(self.fault_body(fault.status), status_code=fault.status, headers=headers)
                await response(scope, receive, recording_send)
                return
            await self.app(scope, recording_receive, recording_send)
        finally:
            self.traffic.record_request(method=method, path=path + (f"?{query}" if query else ""),
                                        status=status or 500, body=_readable(b"".join(chunks)),
                                        tenant=scope["state"].get("tenant", ""))


def _readable(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


class SimError(Exception):
    """A /_sim/ request that cannot be carried out: the HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


OUTCOME_ACTIONS = ("reply", "rate", "status")
# (the request's JSON with "ticket" already the provider's id) -> what was fired: (event, delivery id, awaitable outcome)
Fired = tuple[str, str, "asyncio.Future[dict] | asyncio.Task"]
OutcomeAction = Callable[[dict], Awaitable[list[Fired]]]


def fired(webhook: Webhook, task: "asyncio.Task") -> Fired:
    return webhook.event, webhook.delivery_id, task


def control_routes(*, provider: str, traffic: TrafficLog, faults: FaultPlan, webhooks: WebhookSender | None = None,
                   ticket_id: Callable[[str], str] = str.strip,
                   belongs: Callable[[dict, str], bool] | None = None,
                   outcomes: OutcomeAction | None = None) -> list[Route]:
    """The /_sim/ routes and /healthz of one server. `ticket_id` turns what a caller passes (the
    provider's id, or the pipeline's `zd-`/`ic-`/`fd-` id) into the provider's id."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "provider": provider})

    async def received(request: Request) -> JSONResponse:
        return JSONResponse({"requests": traffic.requests})

    async def deliveries(request: Request) -> JSONResponse:
        wanted = request.query_params.get("ticket", "")
        return JSONResponse({"items": traffic.deliveries_for(ticket_id(wanted) if wanted else None, belongs)})

    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse({"faults": faults.describe()})

    async def post_faults(request: Request) -> JSONResponse:
        try:
            faults.configure(await json_object(request))
        except (BodyError, FaultSpecError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": faults.describe()})

    async def redeliver(request: Request) -> JSONResponse:
        if webhooks is None:
            return JSONResponse({"error": f"the {provider} server sends no webhooks"}, status_code=404)
        try:
            body = await json_object(request)
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        ticket = ticket_id(str(body.get("ticket") or ""))
        task = webhooks.redeliver(ticket)
        if task is None:
            return JSONResponse({"error": f"no webhook was sent for ticket {ticket!r}"}, status_code=404)
        webhook = webhooks.last_for(ticket)
        answer = {"redelivered": ticket, "event": webhook.event, "delivery_id": webhook.delivery_id}
        if body.get("wait"):
            return JSONResponse(answer | {"outcome": await task})
        return JSONResponse(answer, status_code=202)

    async def webhook_attempts(request: Request) -> JSONResponse:
        return JSONResponse({"attempts": webhooks.history if webhooks else []})

    async def act(request: Request) -> JSONResponse:
        if outcomes is None:
            return JSONResponse({"error": f"the {provider} server fires no outcomes"}, status_code=404)
        try:
            body = await json_object(request)
            if body.get("action") not in OUTCOME_ACTIONS:
                raise SimError(400, f"action must be one of {', '.join(OUTCOME_ACTIONS)}")
            body["ticket"] = ticket_id(str(body.get("ticket") or ""))
            if not body["ticket"]:
                raise SimError(400, "ticket is required")
            done = await outcomes(body)
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except SimError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        answer = [{"event": event, "delivery_id": delivery} for event, delivery, _ in done]
        if body.get("wait"):
            for item, (_, _, pending) in zip(answer, done):
                item["outcome"] = await pending
            return JSONResponse({"fired": answer})
        return JSONResponse({"fired": answer}, status_code=202)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_sim/received", received, methods=["GET"]),
        Route("/_sim/deliveries", deliveries, methods=["GET"]),
        Route("/_sim/faults", get_faults, methods=["GET"]),
        Route("/_sim/faults", post_faults, methods=["POST"]),
        Route("/_sim/redeliver", redeliver, methods=["POST"]),
        Route("/_sim/webhooks", webhook_attempts, methods=["GET"]),
        Route("/_sim/outcomes", act, methods=["POST"]),
    ]


def strip_prefix(prefix: str) -> Callable[[str], str]:
    """A ticket id as the provider knows it, from either its own id or the pipeline's `<prefix>-<id>`."""

    def provider_id(value: str) -> str:
        value = value.strip()
        return value[len(prefix) + 1:] if value.startswith(prefix + "-") else value

    return provider_id
