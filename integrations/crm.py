"""The CRM adapter: a customer's tier, segment and account state, looked up by customer id.

One adapter for every service: the classifier takes the tier from it, the escalator the account
state for the context packet. A deployment points `SUPPORTFLOW_CRM_LOCATION` at its own export or
at an HTTP service; without one no customer is known (`NoCrm`: standard tier, segment and account
state unknown), never a sample's customers. The demo and the tests point it at their synthetic
customers (`tooling/sample_data/sample_crm.json`, cust-0001..cust-0050).

The tier comes from here and only from here, never from what the message says ("I'm an enterprise
customer" changes nothing). A lookup never fails the ticket: an unknown customer is standard tier,
and a CRM that errors or times out yields standard tier too, counted in
`supportflow_crm_lookups_total{outcome="error"}` and flagged on the ticket
(`tier_fallback`) so the fallback is visible downstream.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from integrations.settings import CrmSettings
from supportflow.contracts.v1 import ticket_pb2 as tk

from prometheus_client import Counter

log = logging.getLogger(__name__)

UNKNOWN_SEGMENT = "unknown"

TIERS: dict[str, int] = {
    "standard": tk.CUSTOMER_TIER_STANDARD,
    "premium": tk.CUSTOMER_TIER_PREMIUM,
    "enterprise": tk.CUSTOMER_TIER_ENTERPRISE,
}

CRM_LOOKUPS = Counter(
    "supportflow_crm_lookups_total",
    "Customer lookups by backend (file, http, none) and outcome (found, not_found, error; error falls back to standard tier)",
    ["backend", "outcome"],
)

FOUND = "found"
NOT_FOUND = "not_found"
ERROR = "error"


class CrmRecordError(ValueError):
    """A customer record has an unknown tier or the wrong shape."""


@dataclass(frozen=True)
class CustomerRecord:
    tier: int  # tk.CustomerTier
    segment: str
    account_state: Mapping[str, str] = field(default_factory=dict)


STANDARD_CUSTOMER = CustomerRecord(tk.CUSTOMER_TIER_STANDARD, UNKNOWN_SEGMENT)


@dataclass(frozen=True)
class CustomerLookup:
    record: CustomerRecord
    outcome: str  # FOUND, NOT_FOUND or ERROR (ERROR: the record is the standard fallback)


class CustomerDirectory(Protocol):
    def lookup(self, customer_id: str) -> CustomerLookup: ...


def parse_record(customer_id: str, raw: Any) -> CustomerRecord:
    if not isinstance(raw, dict):
        raise CrmRecordError(f"customer {customer_id}: expected an object, got {type(raw).__name__}")
    tier = raw.get("tier", "standard")
    if tier not in TIERS:
        raise CrmRecordError(f"customer {customer_id}: unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    state = raw.get("account_state") or {}
    if not isinstance(state, dict):
        raise CrmRecordError(f"customer {customer_id}: account_state must be an object")
    return CustomerRecord(
        tier=TIERS[tier],
        segment=str(raw.get("segment") or UNKNOWN_SEGMENT),
        account_state={str(k): str(v) for k, v in state.items()},
    )


class FileCrm:
    """Customers from a JSON file `{customer_id: {"tier", "segment", "account_state", "emails"}}`,
    read once. A channel that knows the customer only by address (a mail, a helpdesk requester)
    finds the record by any of its `emails`, case-insensitively."""

    def __init__(self, path: Path) -> None:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise CrmRecordError(f"{path}: expected an object keyed by customer id")
        self._customers = {str(cid): parse_record(str(cid), raw) for cid, raw in document.items()}
        for cid, raw in document.items():
            emails = raw.get("emails") or []
            if not isinstance(emails, list):
                raise CrmRecordError(f"customer {cid}: emails must be a list of addresses")
            for email in emails:
                self._customers.setdefault(str(email).strip().lower(), self._customers[str(cid)])

    def lookup(self, customer_id: str) -> CustomerLookup:
        record = self._customers.get(customer_id) or self._customers.get(customer_id.strip().lower())
        outcome = FOUND if record is not None else NOT_FOUND
        CRM_LOOKUPS.labels("file", outcome).inc()
        return CustomerLookup(record or STANDARD_CUSTOMER, outcome)


class HttpCrm:
    """Customers from `GET {base_url}/customers/{id}` (JSON as in FileCrm), with a timeout. The id
    is what the channel knows the customer by: the CRM id a helpdesk carries as the requester's
    external id, or else an email address, which the service must resolve too.

    404 means an unknown customer (standard tier). Any other failure falls back to standard tier
    for this ticket and is counted; found and unknown customers are cached for `cache_ttl_s` so a
    burst of tickets from one customer costs one call.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 0.5,
        cache_ttl_s: float = 60.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._ttl = cache_ttl_s
        self._max_cached = max_cached
        self._clock = clock
        self._cache: dict[str, tuple[float, CustomerLookup]] = {}
        self._lock = threading.Lock()

    def lookup(self, customer_id: str) -> CustomerLookup:
        if not customer_id:
            CRM_LOOKUPS.labels("http", NOT_FOUND).inc()
            return CustomerLookup(STANDARD_CUSTOMER, NOT_FOUND)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(customer_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        result = self._fetch(customer_id)
        CRM_LOOKUPS.labels("http", result.outcome).inc()
        if result.outcome != ERROR:
            with self._lock:
                if len(self._cache) >= self._max_cached:
                    self._cache.clear()  # crude but bounded; a hot set refills within one TTL
                self._cache[customer_id] = (now + self._ttl, result)
        return result

    def _fetch(self, customer_id: str) -> CustomerLookup:
        url = f"{self._base_url}/customers/{urllib.parse.quote(customer_id, safe='')}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                record = parse_record(customer_id, json.loads(response.read().decode("utf-8")))
            return CustomerLookup(record, FOUND)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return CustomerLookup(STANDARD_CUSTOMER, NOT_FOUND)
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:  # ValueError: bad JSON or record
            error = f"{type(exc).__name__}: {exc}"
        log.warning("CRM lookup failed; using standard tier", extra={"fields": {"customer_id": customer_id, "error": error}})
        return CustomerLookup(STANDARD_CUSTOMER, ERROR)


def crm_from_location(location: str, *, timeout_s: float = 0.5) -> CustomerDirectory:
    """An HTTP CRM for an http(s) URL, otherwise a JSON file at that path."""
    if location.startswith(("http://", "https://")):
        return HttpCrm(location, timeout_s=timeout_s)
    return FileCrm(Path(location))


class NoCrm:
    """No CRM connected: every customer is unknown, so standard tier with nothing on the account
    (counted as backend "none", so a deployment that forgot its CRM shows it)."""

    def lookup(self, customer_id: str) -> CustomerLookup:
        CRM_LOOKUPS.labels("none", NOT_FOUND).inc()
        return CustomerLookup(STANDARD_CUSTOMER, NOT_FOUND)


def crm_from_settings(settings: CrmSettings) -> CustomerDirectory:
    """The CRM that SUPPORTFLOW_CRM_LOCATION names; none when it is unset."""
    if not settings.crm_location:
        log.info("no CRM connected (SUPPORTFLOW_CRM_LOCATION unset): every customer is standard tier")
        return NoCrm()
    return crm_from_location(settings.crm_location, timeout_s=settings.crm_timeout_s)


TIER_NAMES = {number: name for name, number in TIERS.items()}


def account_fields(directory: CustomerDirectory, customer_id: str) -> dict[str, str] | None:
    """The customer's account state with tier and segment beside it, for a context packet.

    None when the customer is unknown or the CRM could not answer (the packet marks it unknown).
    """
    if not customer_id:
        return None
    found = directory.lookup(customer_id)
    if found.outcome != FOUND:
        return None
    fields = dict(found.record.account_state)
    fields["tier"] = TIER_NAMES[found.record.tier]
    fields["segment"] = found.record.segment
    return fields
