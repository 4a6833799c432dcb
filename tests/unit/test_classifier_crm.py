"""The CRM adapters: the JSON file, and the HTTP one against a local server that answers, fails and
stalls on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from supportflow.contracts.v1 import ticket_pb2 as tk

from integrations import crm as crm_module
from integrations.crm import (
    ERROR,
    FOUND,
    NOT_FOUND,
    CrmRecordError,
    FileCrm,
    HttpCrm,
    NoCrm,
    crm_from_location,
    crm_from_settings,
)
from integrations.settings import CrmSettings
from tooling.sample_data import SAMPLE_CRM_PATH
from tooling.settings import FleetSettings


def test_the_sample_crm_covers_the_demo_customers() -> None:
    crm = FileCrm(SAMPLE_CRM_PATH)
    for number in range(1, 51):
        assert crm.lookup(f"cust-{number:04d}").outcome == FOUND
    enterprise = crm.lookup("cust-0004")
    assert enterprise.record.tier == tk.CUSTOMER_TIER_ENTERPRISE
    assert enterprise.record.account_state["account_status"] == "active"


def test_an_unknown_or_missing_customer_is_standard_tier() -> None:
    for crm in (FileCrm(SAMPLE_CRM_PATH), NoCrm()):
        for customer_id in ("cust-9999", ""):
            lookup = crm.lookup(customer_id)
            assert (lookup.outcome, lookup.record.tier, lookup.record.segment) == (
                NOT_FOUND, tk.CUSTOMER_TIER_STANDARD, "unknown",
            )


def test_a_deployment_without_a_crm_knows_no_customer_and_the_tools_use_the_sample() -> None:
    unset = crm_from_settings(CrmSettings.from_env({}))
    assert unset.lookup("cust-0004").outcome == NOT_FOUND  # never the demo's customers
    sample = crm_from_settings(FleetSettings.from_env({}))
    assert sample.lookup("cust-0004").record.tier == tk.CUSTOMER_TIER_ENTERPRISE


def test_a_crm_file_with_an_unknown_tier_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crm.json"
    path.write_text(json.dumps({"c1": {"tier": "platinum"}}))
    with pytest.raises(CrmRecordError, match="unknown tier 'platinum'"):
        FileCrm(path)


class CrmServer:
    """GET /customers/<id>: c-ok answers, c-slow stalls, c-broken fails, anything else is a 404."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.path)
                customer = self.path.rsplit("/", 1)[-1]
                if customer == "c-ok":
                    self._reply(200, {"tier": "premium", "segment": "uk", "account_state": {"kyc": "verified", "cards": 2}})
                elif customer == "c-slow":
                    time.sleep(0.6)
                    self._reply(200, {"tier": "enterprise"})
                elif customer == "c-broken":
                    self._reply(500, {"error": "database down"})
                elif customer == "c-garbage":
                    self._reply(200, {"tier": "galactic"})
                else:
                    self._reply(404, {"error": "no such customer"})

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def crm_server():
    server = CrmServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_http_crm_reads_a_customer_and_caches_it(crm_server: CrmServer) -> None:
    crm = HttpCrm(crm_server.url, timeout_s=2)
    first = crm.lookup("c-ok")
    second = crm.lookup("c-ok")

    assert first == second
    assert first.outcome == FOUND
    assert (first.record.tier, first.record.segment) == (tk.CUSTOMER_TIER_PREMIUM, "uk")
    assert first.record.account_state == {"kyc": "verified", "cards": "2"}
    assert crm_server.requests == ["/customers/c-ok"]


def test_http_crm_expires_its_cache(crm_server: CrmServer) -> None:
    now = [0.0]
    crm = HttpCrm(crm_server.url, timeout_s=2, cache_ttl_s=60, clock=lambda: now[0])
    crm.lookup("c-ok")
    now[0] = 61.0
    crm.lookup("c-ok")
    assert crm_server.requests == ["/customers/c-ok", "/customers/c-ok"]


def test_http_crm_treats_404_as_an_unknown_customer(crm_server: CrmServer) -> None:
    lookup = HttpCrm(crm_server.url, timeout_s=2).lookup("c/../../admin")
    assert (lookup.outcome, lookup.record.tier) == (NOT_FOUND, tk.CUSTOMER_TIER_STANDARD)
    assert crm_server.requests == ["/customers/c%2F..%2F..%2Fadmin"]  # the id cannot escape the path


@pytest.mark.parametrize("customer_id", ["c-broken", "c-slow", "c-garbage"])
def test_http_crm_failures_fall_back_to_standard_tier_and_are_counted(crm_server: CrmServer, customer_id: str) -> None:
    errors = crm_module.CRM_LOOKUPS.labels("http", "error")
    before = errors._value.get()
    crm = HttpCrm(crm_server.url, timeout_s=0.2)

    lookup = crm.lookup(customer_id)

    assert (lookup.outcome, lookup.record.tier) == (ERROR, tk.CUSTOMER_TIER_STANDARD)
    assert errors._value.get() == before + 1
    crm.lookup(customer_id)  # failures are not cached: the next ticket tries again
    assert crm_server.requests.count(f"/customers/{customer_id}") == 2


def test_an_unreachable_crm_falls_back_too() -> None:
    lookup = HttpCrm("http://127.0.0.1:9", timeout_s=0.2).lookup("c-ok")
    assert lookup.outcome == ERROR


def test_the_location_picks_the_adapter(tmp_path: Path) -> None:
    path = tmp_path / "crm.json"
    path.write_text("{}")
    assert isinstance(crm_from_location("https://crm.internal/api"), HttpCrm)
    assert isinstance(crm_from_location(str(path)), FileCrm)


def test_a_customer_known_to_a_channel_by_address_is_found_by_it() -> None:
    crm = FileCrm(SAMPLE_CRM_PATH)
    by_id, by_address = crm.lookup("cust-0002"), crm.lookup("Cust-0002@Customers.example")
    assert by_address.outcome == FOUND and by_address.record == by_id.record
    assert crm.lookup("nobody@customers.example").outcome != FOUND
