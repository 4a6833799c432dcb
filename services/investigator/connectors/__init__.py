"""The connector layer: one small interface per system of record, and the errors every
implementation speaks. The investigation and the actions see only these; `http.py` implements them
against the HTTP API of docs/account-system.md.

Every call takes `deadline` (a `time.monotonic()` instant) and never runs past it. A failure is a
`LookupFailed` whose `reason` is what a person reads in the finding ("timed out after 1.5 s",
"circuit open", "HTTP 503"); an unknown customer is not a failure (None or no records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

Record = dict  # one record as its system returns it (JSON object)


class LookupFailed(Exception):
    """The system did not answer usefully; `reason` says why, in words for the packet."""

    def __init__(self, reason: str, *, outcome: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome  # metrics label: timeout, error, circuit_open, refused


class AccountSystem(Protocol):
    def customer(self, customer_id: str, *, deadline: float) -> Record | None: ...

    def cards(self, customer_id: str, *, deadline: float) -> list[Record]: ...


class TransactionSystem(Protocol):
    def transactions(self, customer_id: str, *, kinds: tuple[str, ...], since: datetime | None,
                     deadline: float) -> list[Record]: ...


class ProductEventSystem(Protocol):
    def events(self, customer_id: str, *, kinds: tuple[str, ...], since: datetime | None,
               deadline: float) -> list[Record]: ...


class ChangeSystem(Protocol):
    def changes(self, *, kinds: tuple[str, ...], since: datetime | None, deadline: float) -> list[Record]: ...


class IncidentSystem(Protocol):
    def open_incidents(self, *, deadline: float) -> list[Record]: ...


@dataclass(frozen=True)
class ActionAnswer:
    """What the account system said to a write."""

    executed: bool
    status: str = ""
    reference: str = ""
    reason: str = ""
    result: dict[str, str] = field(default_factory=dict)


class ActionSystem(Protocol):
    def run_action(self, tool: str, customer_id: str, params: dict[str, str], *, idempotency_key: str,
                   deadline: float) -> ActionAnswer: ...


@dataclass
class TenantConnectors:
    """One tenant's connected systems; None where the tenant has not connected that system."""

    account: AccountSystem | None = None
    transactions: TransactionSystem | None = None
    product_events: ProductEventSystem | None = None
    changes: ChangeSystem | None = None
    incidents: IncidentSystem | None = None
    actions: ActionSystem | None = None

    def connected(self) -> bool:
        return any(getattr(self, name) is not None
                   for name in ("account", "transactions", "product_events", "changes", "incidents"))
