"""The receiver of the API channel's callback (docs/channels.md, "The API channel's callback"): what
a tenant's own system would run to hear what Supportflow answered a ticket posted to /v1/tickets.

`POST /callbacks` (or `/callbacks/{tenant}`) takes the delivery JSON (`ticket_id`,
`decision_event_id`, `kind`, `decision`, `text`, `html`, `citations`) signed with
`X-Supportflow-Timestamp` and `X-Supportflow-Signature` = `sha256=` + hex HMAC-SHA256(the tenant's
`api_callback_secret`, `<timestamp>.` + body); the tenant is the one whose secret verifies. A
repeated `Idempotency-Key` is acknowledged and dropped, as a receiver should.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tooling.channel_servers.config import TenantAccounts
from tooling.channel_servers.control_api import BodyError, ProviderTraffic, control_routes, json_object, set_tenant
from tooling.channel_servers.store import DELIVERY_KINDS, FaultPlan, TrafficLog

log = logging.getLogger("channel_servers.api_callback")

TIMESTAMP_HEADER = "X-Supportflow-Timestamp"
SIGNATURE_HEADER = "X-Supportflow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


def callback_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class ApiCallbackServer:
    provider = "api"

    def __init__(self, tenants: tuple[TenantAccounts, ...], state_dir: Path) -> None:
        self.traffic = TrafficLog(self.provider, state_dir)
        self.faults = FaultPlan()
        self.secrets = {t.tenant: t.api_callback_secret for t in tenants if t.api_callback_secret}
        self.seen_keys: set[tuple[str, str]] = set()

    def app(self) -> ASGIApp:
        routes = [
            Route("/callbacks", self.callback, methods=["POST"]),
            Route("/callbacks/{tenant}", self.callback, methods=["POST"]),
        ] + control_routes(provider=self.provider, traffic=self.traffic, faults=self.faults)
        return ProviderTraffic(Starlette(routes=routes), traffic=self.traffic, faults=self.faults,
                               fault_body=lambda status: {"error": f"HTTP {status} (fault set with /_sim/faults)"})

    async def callback(self, request: Request) -> Response:
        raw = await request.body()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        named = request.path_params.get("tenant")
        tenant = next((name for name, secret in self.secrets.items() if named in (None, name)
                       and hmac.compare_digest(callback_signature(secret, timestamp, raw), signature)), None)
        if tenant is None:
            return JSONResponse({"error": f"{SIGNATURE_HEADER} does not verify with any tenant's callback secret"},
                                status_code=401)
        set_tenant(request, tenant)
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return JSONResponse({"error": f"{TIMESTAMP_HEADER} is not within {TOLERANCE_S} s of now"}, status_code=401)
        try:
            body = await json_object(request)
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        missing = [name for name in ("ticket_id", "decision_event_id", "kind") if not body.get(name)]
        if missing:
            return JSONResponse({"error": f"missing: {', '.join(missing)}"}, status_code=400)
        if body["kind"] not in DELIVERY_KINDS:
            return JSONResponse({"error": f"kind must be one of {', '.join(DELIVERY_KINDS)}"}, status_code=400)
        key = (tenant, request.headers.get(IDEMPOTENCY_HEADER) or str(body["decision_event_id"]))
        if key in self.seen_keys:
            log.info("callback for %s repeated (Idempotency-Key %s): dropped", body["ticket_id"], key[1])
            return JSONResponse({"received": True, "duplicate": True})
        self.seen_keys.add(key)
        self.traffic.record_delivery(
            tenant=tenant, kind=body["kind"], external_id=body["decision_event_id"], ticket=body["ticket_id"],
            html=str(body.get("html") or ""), text=str(body.get("text") or ""), public=body["kind"] != "note",
            decision=body.get("decision", ""), citations=body.get("citations") or [])
        return JSONResponse({"received": True, "duplicate": False})
