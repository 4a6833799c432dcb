"""The demo bank's account system: a local stand-in for a bank's systems of record (customers,
cards, transactions, transfers, top-ups, product events, changes, incidents) with the HTTP API of
docs/account-system.md, the writes of the allow-listed actions (idempotent by Idempotency-Key),
realistic latency and a control API under /_sim/ to make it fail, slow down or recover.

    python -m tooling.demo_systems.account_system --tickets TICKETS.jsonl --port 8099 [--seed 7]

Its records are generated from the demo's tickets (records.py). The API key, if any, is read from
the variable named by --api-key-env (ACCOUNT_SYSTEM_API_KEY): requests must send it as a bearer
token. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from supportflow.http_server import HttpServer
from tooling.channel_servers.store import FaultPlan, FaultSpecError
from tooling.demo_systems.records import SCENARIOS_PATH, Bank, generate, iso, load_scenarios, read_tickets

log = logging.getLogger("account_system")

DEFAULT_LATENCY_MS = (20.0, 120.0)
TRANSFER_CANCELLABLE = ("pending", "held")


class _Faults:
    """Applies the /_sim/faults plan (tooling/channel_servers/store.FaultPlan) and the simulated
    latency to the API (/v1/), never to /_sim/ or /healthz."""

    def __init__(self, app: ASGIApp, faults: FaultPlan, latency_ms: tuple[float, float], seed: int) -> None:
        self.app = app
        self.faults = faults
        self.latency_ms = latency_ms
        self._rng = random.Random(f"{seed}:latency")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        low, high = self.latency_ms
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high) / 1000.0)
        fault = self.faults.take_http(scope["method"], scope["path"])
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status:
            response = JSONResponse({"error": f"simulated failure {fault.status}"}, status_code=fault.status)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _since(request: Request) -> str:
    raw = request.query_params.get("since", "")
    if not raw:
        return ""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return "invalid"
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


def _window(records: list[dict], request: Request) -> list[dict] | JSONResponse:
    since = _since(request)
    if since == "invalid":
        return JSONResponse({"error": "since is not an ISO 8601 time"}, status_code=400)
    kinds = set(request.query_params.getlist("kind"))
    return [r for r in records if (not kinds or r.get("kind") in kinds) and (not since or r["created_at"] >= since)]


class AccountSystem:
    def __init__(self, bank: Bank, *, api_key: str = "", latency_ms: tuple[float, float] = DEFAULT_LATENCY_MS,
                 seed: int = 7) -> None:
        self.bank = bank
        self.api_key = api_key
        self.faults = FaultPlan()
        self._answers: dict[str, tuple[str, int, dict]] = {}  # Idempotency-Key -> (request digest, status, body)
        self.writes: list[dict] = []
        self._lock = threading.Lock()
        self._rng = random.Random(f"{seed}:writes")
        routes = [
            Route("/healthz", self.healthz),
            Route("/v1/customers/{customer_id}", self.customer),
            Route("/v1/customers/{customer_id}/cards", self.cards),
            Route("/v1/customers/{customer_id}/transactions", self.transactions),
            Route("/v1/customers/{customer_id}/events", self.events),
            Route("/v1/changes", self.changes),
            Route("/v1/incidents", self.incidents),
            Route("/v1/customers/{customer_id}/cards/{card_id}/{operation:str}", self.card_write, methods=["POST"]),
            Route("/v1/customers/{customer_id}/transfers/{transaction_id}/cancel", self.transfer_cancel,
                  methods=["POST"]),
            Route("/v1/customers/{customer_id}/credentials/reset", self.credentials_reset, methods=["POST"]),
            Route("/_sim/faults", self.get_faults, methods=["GET"]),
            Route("/_sim/faults", self.post_faults, methods=["POST"]),
            Route("/_sim/truth", self.truth, methods=["GET"]),
            Route("/_sim/writes", self.list_writes, methods=["GET"]),
        ]
        self.app = _Faults(Starlette(routes=routes), self.faults, latency_ms, seed)

    # ---- reads

    def _authorised(self, request: Request) -> JSONResponse | None:
        if self.api_key and request.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        return None

    def _known(self, request: Request) -> tuple[str, JSONResponse | None]:
        refused = self._authorised(request)
        named = request.path_params["customer_id"]
        customer_id = named if named in self.bank.customers else self.bank.emails.get(named.strip().lower(), named)
        if refused is None and customer_id not in self.bank.customers:
            refused = JSONResponse({"error": f"unknown customer {customer_id}"}, status_code=404)
        return customer_id, refused

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "customers": len(self.bank.customers)})

    async def customer(self, request: Request) -> JSONResponse:
        customer_id, refused = self._known(request)
        return refused or JSONResponse({"customer": self.bank.customers[customer_id]})

    async def cards(self, request: Request) -> JSONResponse:
        customer_id, refused = self._known(request)
        return refused or JSONResponse({"cards": self.bank.cards[customer_id]})

    async def transactions(self, request: Request) -> JSONResponse:
        customer_id, refused = self._known(request)
        if refused:
            return refused
        found = _window(self.bank.transactions[customer_id], request)
        return found if isinstance(found, JSONResponse) else JSONResponse({"transactions": found})

    async def events(self, request: Request) -> JSONResponse:
        customer_id, refused = self._known(request)
        if refused:
            return refused
        found = _window(self.bank.events[customer_id], request)
        return found if isinstance(found, JSONResponse) else JSONResponse({"events": found})

    async def changes(self, request: Request) -> JSONResponse:
        refused = self._authorised(request)
        if refused:
            return refused
        found = _window(self.bank.changes, request)
        return found if isinstance(found, JSONResponse) else JSONResponse({"changes": found})

    async def incidents(self, request: Request) -> JSONResponse:
        refused = self._authorised(request)
        if refused:
            return refused
        status = request.query_params.get("status", "")
        return JSONResponse({"incidents": [i for i in self.bank.incidents if not status or i["status"] == status]})

    # ---- writes: each keyed by its Idempotency-Key; the same key again gets the first answer

    async def _idempotent(self, request: Request, change) -> JSONResponse:  # noqa: ANN001 - (body) -> (status, answer)
        customer_id, refused = self._known(request)
        if refused:
            return refused
        key = request.headers.get("idempotency-key", "")
        if not key:
            return JSONResponse({"error": "Idempotency-Key header is required"}, status_code=400)
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        digest = hashlib.sha256(request.url.path.encode() + b"\n" + raw).hexdigest()
        with self._lock:
            if key in self._answers:
                first_digest, status, answer = self._answers[key]
                if first_digest != digest:
                    return JSONResponse({"error": "Idempotency-Key reused for another request"}, status_code=422)
                return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"})
            status, answer = change(customer_id, body if isinstance(body, dict) else {})
            self._answers[key] = (digest, status, answer)
            self.writes.append({"key": key, "path": request.url.path, "status": status, "answer": answer,
                                "at": iso(datetime.now(timezone.utc))})
        return JSONResponse(answer, status_code=status)

    def _reference(self) -> str:
        return f"chg-{self._rng.randrange(16 ** 10):010x}"

    async def card_write(self, request: Request) -> JSONResponse:
        card_id, operation = request.path_params["card_id"], request.path_params["operation"]
        if operation not in ("freeze", "unfreeze", "replacement"):
            return JSONResponse({"error": f"no card operation {operation!r}"}, status_code=404)

        def change(customer_id: str, body: dict) -> tuple[int, dict]:
            card = next((c for c in self.bank.cards[customer_id] if c["id"] == card_id), None)
            if card is None:
                return 404, {"error": f"no card {card_id} for customer {customer_id}"}
            now = iso(datetime.now(timezone.utc))
            result = {"card_id": card_id, "last4": card["last4"]}
            if operation == "freeze":
                if card["status"] not in ("active", "frozen"):
                    return 409, {"error": f"the card is {card['status']}; only an active card can be frozen",
                                 "status": card["status"]}
                card["status"], card["updated_at"] = "frozen", now
                return 200, {"status": "frozen", "reference": self._reference(), "result": result}
            if operation == "unfreeze":
                if card["status"] != "frozen":
                    return 409, {"error": f"the card is {card['status']}, not frozen", "status": card["status"]}
                card["status"], card["updated_at"] = "active", now
                return 200, {"status": "active", "reference": self._reference(), "result": result}
            if card["status"] in ("closed", "replaced"):
                return 409, {"error": f"the card is already {card['status']}", "status": card["status"]}
            replacement = {"id": f"card-{self._rng.randrange(16 ** 10):010x}",
                           "last4": f"{self._rng.randrange(10000):04d}", "kind": card.get("kind", "physical"),
                           "status": "ordered", "contactless": card.get("contactless", True),
                           "created_at": now, "updated_at": now, "replaces": card_id,
                           "reason": str(body.get("reason", ""))}
            card["status"], card["updated_at"] = "replaced", now
            self.bank.cards[customer_id].append(replacement)
            return 200, {"status": "ordered", "reference": replacement["id"],
                         "result": result | {"new_card_id": replacement["id"], "new_last4": replacement["last4"]}}

        return await self._idempotent(request, change)

    async def transfer_cancel(self, request: Request) -> JSONResponse:
        transaction_id = request.path_params["transaction_id"]

        def change(customer_id: str, body: dict) -> tuple[int, dict]:
            transfer = next((t for t in self.bank.transactions[customer_id]
                             if t["id"] == transaction_id and t.get("kind") == "transfer"), None)
            if transfer is None:
                return 404, {"error": f"no transfer {transaction_id} for customer {customer_id}"}
            if not transfer.get("cancellable") or transfer.get("status") not in TRANSFER_CANCELLABLE:
                return 409, {"error": f"the transfer is {transfer.get('status')} and can no longer be cancelled",
                             "status": str(transfer.get("status", ""))}
            transfer.update(status="cancelled", cancellable=False, updated_at=iso(datetime.now(timezone.utc)))
            return 200, {"status": "cancelled", "reference": self._reference(),
                         "result": {"transfer_id": transaction_id, "amount": transfer.get("amount", ""),
                                    "currency": transfer.get("currency", "")}}

        return await self._idempotent(request, change)

    async def credentials_reset(self, request: Request) -> JSONResponse:
        def change(customer_id: str, body: dict) -> tuple[int, dict]:
            credential = str(body.get("credential") or "password")
            if credential not in ("password", "passcode"):
                return 400, {"error": "credential is password or passcode"}
            return 200, {"status": "reset_link_sent", "reference": self._reference(),
                         "result": {"credential": credential}}

        return await self._idempotent(request, change)

    # ---- control (/_sim/): not part of the documented API

    async def get_faults(self, request: Request) -> JSONResponse:
        return JSONResponse({"faults": self.faults.describe()})

    async def post_faults(self, request: Request) -> JSONResponse:
        try:
            spec = json.loads(await request.body() or b"null")
            self.faults.configure(spec)
        except (json.JSONDecodeError, FaultSpecError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": self.faults.describe()})

    async def truth(self, request: Request) -> JSONResponse:
        return JSONResponse({"tickets": self.bank.truth})

    async def list_writes(self, request: Request) -> JSONResponse:
        return JSONResponse({"writes": self.writes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.demo_systems.account_system", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=Path, help="JSON lines {id, customer_id, label}: the demo's tickets")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS_PATH)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", default=f"{DEFAULT_LATENCY_MS[0]:g},{DEFAULT_LATENCY_MS[1]:g}",
                        help="low,high: each API call waits a seeded time between them")
    parser.add_argument("--api-key-env", default="ACCOUNT_SYSTEM_API_KEY")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    low, _, high = args.latency_ms.partition(",")
    tickets = read_tickets(args.tickets) if args.tickets else []
    bank = generate(tickets, load_scenarios(args.scenarios), seed=args.seed)
    system = AccountSystem(bank, api_key=os.environ.get(args.api_key_env, ""),
                           latency_ms=(float(low), float(high or low)), seed=args.seed)
    server = HttpServer(system.app, args.host, args.port, name="account-system").start()
    port = server.server_address[1]
    if args.port_file:
        args.port_file.write_text(str(port), encoding="utf-8")
    log.info("account system on %s:%s: %d customers, %d tickets seeded", args.host, port,
             len(bank.customers), len(bank.truth))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
