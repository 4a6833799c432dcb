"""The connectors over HTTP (httpx), against the API of docs/account-system.md.

Each tenant's each system is one `HttpSystem`: every call bounded by the caller's deadline and the
system's own `timeout_s`, retried (tenacity) only on transient failures (a 5xx or 429, a time-out,
a connection that failed) while the deadline leaves room, and guarded by a circuit breaker
(pybreaker) of its own, so a failing system of one tenant answers "circuit open" at once instead
of costing every investigation its deadline. A 4xx is an answer, never retried and never counted
against the breaker.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pybreaker
import tenacity

from supportflow.systems import BreakerSettings, SystemEndpoint, TenantSystems

from services.investigator import metrics
from services.investigator.connectors import ActionAnswer, LookupFailed, Record, TenantConnectors

log = logging.getLogger(__name__)

# Below this much time left, a call is not started: it could not finish.
MIN_CALL_S = 0.005
BREAKER_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


def seconds(value: float) -> str:
    """1.5 -> "1.5", 0.8000001 -> "0.8": a duration as a person reads it in a finding."""
    return f"{round(value, 2):g}"


class _Transient(Exception):
    """Worth another try, and counted by the breaker."""

    def __init__(self, reason: str, outcome: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome


class _BreakerGauge(pybreaker.CircuitBreakerListener):
    def __init__(self, tenant: str, system: str) -> None:
        self._labels = (tenant, system)

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = new_state.name if new_state is not None else pybreaker.STATE_CLOSED
        metrics.BREAKER_STATE.labels(*self._labels).set(BREAKER_STATES.get(name, 0))
        log.warning("circuit breaker %s", name, extra={"fields": {"tenant": self._labels[0], "system": self._labels[1]}})


class HttpSystem:
    """One tenant's one system of record."""

    def __init__(self, tenant: str, system: str, endpoint: SystemEndpoint, breaker: BreakerSettings,
                 *, transport: httpx.BaseTransport | None = None) -> None:
        self.tenant = tenant
        self.system = system
        self._endpoint = endpoint
        headers = {"Accept": "application/json", "User-Agent": "supportflow-investigator"}
        key = endpoint.api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=endpoint.base_url.rstrip("/"), headers=headers, transport=transport)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=breaker.failures, reset_timeout=breaker.reset_s, name=f"{tenant}/{system}",
            listeners=[_BreakerGauge(tenant, system)], throw_new_error_on_trip=False,
        )
        metrics.BREAKER_STATE.labels(tenant, system).set(0)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, deadline: float, params: Any = None, json: Any = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
        """The system's answer (any status below 500 but 429), or LookupFailed."""
        started = time.monotonic()
        outcome = "ok"
        try:
            # `calling()`, not `call()`: pybreaker's call() holds the breaker's lock for the whole
            # call, which would let one tenant's system serve one lookup at a time. calling() checks
            # the state under the lock and records the outcome after, so calls run side by side (and
            # a half-open breaker may let a few trial calls through at once).
            with self.breaker.calling():
                response = self._with_retries(method, path, deadline, params, json, headers)
            outcome = "not_found" if response.status_code == 404 else ("refused" if response.status_code >= 400 else "ok")
            return response
        except pybreaker.CircuitBreakerError as exc:
            outcome = "circuit_open"
            raise LookupFailed("circuit open", outcome=outcome) from exc
        except _Transient as exc:
            outcome = exc.outcome
            raise LookupFailed(exc.reason, outcome=outcome) from exc
        finally:
            metrics.LOOKUPS.labels(self.system, outcome).inc()
            metrics.LOOKUP_SECONDS.labels(self.system).observe(time.monotonic() - started)

    def _with_retries(self, method: str, path: str, deadline: float, params: Any, json: Any,
                      headers: dict[str, str] | None) -> httpx.Response:
        budget = max(0.0, deadline - time.monotonic())
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self._endpoint.attempts) | tenacity.stop_before_delay(budget),
            wait=tenacity.wait_exponential(multiplier=0.05, max=0.2),
            reraise=True,
        )
        return retrying(self._attempt, method, path, deadline, params, json, headers)

    def _attempt(self, method: str, path: str, deadline: float, params: Any, json: Any,
                 headers: dict[str, str] | None) -> httpx.Response:
        left = deadline - time.monotonic()
        if left < MIN_CALL_S:
            raise _Transient("no time left before the deadline", "timeout")
        timeout = min(self._endpoint.timeout_s, left)
        try:
            response = self._client.request(method, path, params=params, json=json, headers=headers,
                                            timeout=httpx.Timeout(timeout))
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {seconds(timeout)} s", "timeout") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"unreachable ({type(exc).__name__})", "error") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise _Transient(f"HTTP {response.status_code}", "error")
        return response


def _records(response: httpx.Response, key: str, system: str) -> list[Record]:
    if response.status_code == 404:
        return []  # the system does not know the customer: nothing to show
    body = _body(response, system)
    records = body.get(key)
    if not isinstance(records, list):
        raise LookupFailed(f"{system} answered without a {key!r} list", outcome="error")
    return [record for record in records if isinstance(record, dict)]


def _body(response: httpx.Response, system: str) -> dict:
    if response.status_code >= 400:
        raise LookupFailed(f"HTTP {response.status_code}", outcome="refused")
    try:
        body = response.json()
    except ValueError as exc:
        raise LookupFailed(f"{system} answered with something other than JSON", outcome="error") from exc
    if not isinstance(body, dict):
        raise LookupFailed(f"{system} answered with something other than a JSON object", outcome="error")
    return body


def _window(kinds: tuple[str, ...], since: datetime | None) -> list[tuple[str, str]]:
    params = [("kind", kind) for kind in kinds]
    if since is not None:
        params.append(("since", since.isoformat()))
    return params


def _customer_path(customer_id: str) -> str:
    return f"/v1/customers/{quote(customer_id, safe='')}"


class HttpAccountSystem:
    """The account system: customers, cards, and the writes of the allow-listed actions."""

    # The allow-listed tools (services.proto's RunActionRequest.tool) -> (the path under the
    # customer, the parameter naming the record it changes). Anything else is refused.
    ACTIONS: dict[str, tuple[str, str]] = {
        "password_reset": ("/credentials/reset", ""),  # params: {"credential": "password" | "passcode"}
        "card_freeze": ("/cards/{id}/freeze", "card_id"),
        "card_unfreeze": ("/cards/{id}/unfreeze", "card_id"),
        "card_replacement": ("/cards/{id}/replacement", "card_id"),
        "transfer_cancel": ("/transfers/{id}/cancel", "transfer_id"),
    }

    def __init__(self, http: HttpSystem) -> None:
        self._http = http

    def customer(self, customer_id: str, *, deadline: float) -> Record | None:
        response = self._http.request("GET", _customer_path(customer_id), deadline=deadline)
        if response.status_code == 404:
            return None
        customer = _body(response, self._http.system).get("customer")
        if not isinstance(customer, dict):
            raise LookupFailed("account system answered without a customer", outcome="error")
        return customer

    def cards(self, customer_id: str, *, deadline: float) -> list[Record]:
        return _records(self._http.request("GET", _customer_path(customer_id) + "/cards", deadline=deadline),
                        "cards", self._http.system)

    def run_action(self, tool: str, customer_id: str, params: dict[str, str], *, idempotency_key: str,
                   deadline: float) -> ActionAnswer:
        if tool not in self.ACTIONS:
            return ActionAnswer(False, reason=f"{tool!r} is not an allow-listed action")
        template, id_param = self.ACTIONS[tool]
        record_id = params.get(id_param, "") if id_param else ""
        if id_param and not record_id and id_param == "card_id":
            record_id = self._only_open_card(customer_id, deadline)
            if not record_id:
                return ActionAnswer(False, reason="card_id is required: the customer has no single open card")
        if id_param and not record_id:
            return ActionAnswer(False, reason=f"{id_param} is required")
        path = _customer_path(customer_id) + template.format(id=quote(record_id, safe=""))
        body = {key: value for key, value in params.items() if key != id_param}
        try:
            response = self._http.request("POST", path, deadline=deadline, json=body,
                                          headers={"Idempotency-Key": idempotency_key})
        except LookupFailed as exc:
            return ActionAnswer(False, reason=exc.reason)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        result = {str(k): str(v) for k, v in (answer.get("result") or {}).items()} if isinstance(
            answer.get("result"), dict) else {}
        if id_param:
            result.setdefault(id_param, record_id)
        if response.status_code >= 300:
            reason = str(answer.get("error") or f"HTTP {response.status_code}")
            return ActionAnswer(False, status=str(answer.get("status", "")), reason=reason, result=result)
        status = str(answer.get("status", ""))
        if not status:
            return ActionAnswer(False, reason="the system did not confirm the change", result=result)
        return ActionAnswer(True, status=status, reference=str(answer.get("reference", "")), result=result)

    def _only_open_card(self, customer_id: str, deadline: float) -> str:
        try:
            cards = self.cards(customer_id, deadline=deadline)
        except LookupFailed:
            return ""
        open_cards = [card for card in cards if str(card.get("status", "")) != "closed"]
        return str(open_cards[0].get("id", "")) if len(open_cards) == 1 else ""


class HttpTransactionSystem:
    def __init__(self, http: HttpSystem) -> None:
        self._http = http

    def transactions(self, customer_id: str, *, kinds: tuple[str, ...], since: datetime | None,
                     deadline: float) -> list[Record]:
        response = self._http.request("GET", _customer_path(customer_id) + "/transactions",
                                      params=_window(kinds, since), deadline=deadline)
        return _records(response, "transactions", self._http.system)


class HttpProductEventSystem:
    def __init__(self, http: HttpSystem) -> None:
        self._http = http

    def events(self, customer_id: str, *, kinds: tuple[str, ...], since: datetime | None,
               deadline: float) -> list[Record]:
        response = self._http.request("GET", _customer_path(customer_id) + "/events",
                                      params=_window(kinds, since), deadline=deadline)
        return _records(response, "events", self._http.system)


class HttpChangeSystem:
    def __init__(self, http: HttpSystem) -> None:
        self._http = http

    def changes(self, *, kinds: tuple[str, ...], since: datetime | None, deadline: float) -> list[Record]:
        return _records(self._http.request("GET", "/v1/changes", params=_window(kinds, since), deadline=deadline),
                        "changes", self._http.system)


class HttpIncidentSystem:
    def __init__(self, http: HttpSystem) -> None:
        self._http = http

    def open_incidents(self, *, deadline: float) -> list[Record]:
        return _records(self._http.request("GET", "/v1/incidents", params={"status": "open"}, deadline=deadline),
                        "incidents", self._http.system)


def http_connectors(tenant: str, systems: TenantSystems, *,
                    transport: httpx.BaseTransport | None = None) -> tuple[TenantConnectors, list[HttpSystem]]:
    """The tenant's connected systems over HTTP, and their clients (to close)."""
    clients: dict[str, HttpSystem] = {}
    for name in systems.connected():
        endpoint = systems.system(name)
        assert endpoint is not None
        clients[name] = HttpSystem(tenant, name, endpoint, systems.breaker, transport=transport)
    account = HttpAccountSystem(clients["account"]) if "account" in clients else None
    connectors = TenantConnectors(
        account=account,
        transactions=HttpTransactionSystem(clients["transactions"]) if "transactions" in clients else None,
        product_events=HttpProductEventSystem(clients["product_events"]) if "product_events" in clients else None,
        changes=HttpChangeSystem(clients["changes"]) if "changes" in clients else None,
        incidents=HttpIncidentSystem(clients["incidents"]) if "incidents" in clients else None,
        actions=account,
    )
    return connectors, list(clients.values())
