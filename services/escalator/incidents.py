"""Incident detection: a burst of similar tickets becomes one incident. Pure: the tracker's state
lives in two key-value stores the caller hands it (plain dicts by default; in the running service,
faust tables keyed by signature and by ticket, on the partitions of the topic that carries tickets
keyed by their signature, so every ticket of a burst is counted by one owner).

Signature: (tenant, product, first error code or else intent). Only tickets that carry an error
code or whose intent is in the config's incident intents are candidates.

Rule: when `min_tickets` candidates with one signature arrive within `window_s` seconds of each
other (by the time the ticket was received, so replays and lag do not change the answer), they
become one incident whose id is derived from the signature and the first ticket's time, so the
same stream always yields the same id. Later tickets with that signature join the open incident
as long as each arrives within `window_s` of the previous one; after a quiet `window_s` the
incident is closed and a new burst makes a new incident.

Updates: one on creation (listing the tickets of the burst, including those decided before the
threshold was reached, which is how they get linked), then one each time the incident doubles in
size (2x, 4x, 8x `min_tickets`), so on-call sees growth without an event per ticket.

Redelivery: a ticket is counted once. The event that caused an update is remembered with the
ticket, so the same event handled again (after a crash, before its offset was committed) yields
the same update again instead of nothing: its announcement cannot be lost between the state being
saved and the update being published.

Stored values are JSON-shaped (dicts, lists, strings, numbers), so any store can keep them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import MutableMapping

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.case_routing import error_codes
from services.escalator.config import IncidentConfig

UNSPECIFIED_PRODUCT = "unspecified"
# An incident lists at most this many ticket ids (the first ones); `size` keeps the true count.
MAX_LISTED_TICKETS = 1000


@dataclass(frozen=True)
class IncidentSignature:
    tenant_id: str
    product: str
    key: str  # the normalised error code, or the intent when there is none

    @property
    def text(self) -> str:
        return f"{self.product}|{self.key}"

    @property
    def store_key(self) -> str:
        """The signature as one string: the key of its state, and of the tickets re-keyed by it."""
        return f"{self.tenant_id}|{self.product}|{self.key}"


def incident_signature(
    tenant_id: str, normalized: tk.NormalizedTicket, classification: tk.Classification, config: IncidentConfig
) -> IncidentSignature | None:
    """The ticket's burst signature, or None when the ticket cannot be part of an incident."""
    product = " ".join(normalized.product.lower().split()) or UNSPECIFIED_PRODUCT
    codes = error_codes(normalized)
    if codes:
        return IncidentSignature(tenant_id, product, codes[0])
    if classification.intent in config.intents:
        return IncidentSignature(tenant_id, product, classification.intent)
    return None


@dataclass(frozen=True)
class IncidentUpdate:
    incident_id: str
    signature: IncidentSignature
    ticket_ids: tuple[str, ...]  # the first MAX_LISTED_TICKETS members
    size: int
    first_seen: float  # epoch seconds
    created: bool  # False: the incident grew


def incident_id_for(signature: IncidentSignature, first_seen: float) -> str:
    digest = hashlib.sha256(
        f"{signature.tenant_id}|{signature.text}|{first_seen:.3f}".encode()
    ).hexdigest()
    return f"inc-{digest[:16]}"


class IncidentTracker:
    """Sliding windows per signature, the open incidents and each counted ticket's incident.

    `windows`: signature store key -> {"window": [[received at, ticket id], ...] (candidates not
    yet in an incident), "incident": {...} or None, "at": the latest ticket's time}.
    `tickets`: ticket id -> {"incident": id or "", "cause": the event that counted it, "update":
    the update it caused, if any}. Both default to dicts (unbounded: the service's tables expire
    their entries)."""

    def __init__(
        self,
        config: IncidentConfig,
        windows: MutableMapping[str, dict] | None = None,
        tickets: MutableMapping[str, dict] | None = None,
    ) -> None:
        self._config = config
        self._windows: MutableMapping[str, dict] = {} if windows is None else windows
        self._tickets: MutableMapping[str, dict] = {} if tickets is None else tickets

    def incident_of(self, ticket_id: str) -> str:
        """The incident the ticket belongs to, or ''."""
        counted = self._tickets.get(ticket_id)
        return counted["incident"] if counted else ""

    def observe(self, ticket_id: str, signature: IncidentSignature, at: float, cause: str = "") -> IncidentUpdate | None:
        """Count the ticket; returns an update when an incident is created or has doubled. `cause`
        (the event's id) lets the same event handled twice return its update twice."""
        counted = self._tickets.get(ticket_id)
        if counted is not None:  # a redelivery, or the same ticket's next event, must not count twice
            if cause and counted.get("cause") == cause and counted.get("update"):
                return _update_from(counted["update"], signature)
            return None
        key = signature.store_key
        state = self._windows.get(key) or {"window": [], "incident": None, "at": at}
        window_s = self._config.window_s
        state = {**state, "at": max(state["at"], at)}

        incident = state["incident"]
        if incident is not None and at - incident["last_seen"] <= window_s:
            incident = {**incident, "size": incident["size"] + 1, "last_seen": max(incident["last_seen"], at)}
            if len(incident["ticket_ids"]) < MAX_LISTED_TICKETS:
                incident["ticket_ids"] = incident["ticket_ids"] + [ticket_id]
            update = None
            if incident["size"] >= 2 * incident["announced"]:
                incident["announced"] = incident["size"]
                update = _update(incident, signature, created=False)
            self._windows[key] = {**state, "incident": incident}
            self._count(ticket_id, incident["id"], cause, update)
            return update

        window = [*state["window"], [at, ticket_id]]
        newest = max(t for t, _ in window)
        window = sorted([t, tid] for t, tid in window if t >= newest - window_s)
        if len(window) < self._config.min_tickets:
            self._windows[key] = {**state, "window": window, "incident": None}
            self._count(ticket_id, "", cause, None)
            return None
        first_seen = window[0][0]
        incident = {
            "id": incident_id_for(signature, first_seen), "first_seen": first_seen, "last_seen": newest,
            "ticket_ids": [tid for _, tid in window], "size": len(window), "announced": len(window),
        }
        self._windows[key] = {**state, "window": [], "incident": incident}
        update = _update(incident, signature, created=True)
        for member in incident["ticket_ids"]:
            if member != ticket_id:
                earlier = self._tickets.get(member) or {}
                self._tickets[member] = {**earlier, "incident": incident["id"]}
        self._count(ticket_id, incident["id"], cause, update)
        return update

    def _count(self, ticket_id: str, incident_id: str, cause: str, update: IncidentUpdate | None) -> None:
        self._tickets[ticket_id] = {"incident": incident_id, "cause": cause,
                                    "update": _update_fields(update) if update is not None else None}


def _update(incident: dict, signature: IncidentSignature, *, created: bool) -> IncidentUpdate:
    return IncidentUpdate(
        incident_id=incident["id"],
        signature=signature,
        ticket_ids=tuple(incident["ticket_ids"]),
        size=incident["size"],
        first_seen=incident["first_seen"],
        created=created,
    )


def _update_fields(update: IncidentUpdate) -> dict:
    return {"incident_id": update.incident_id, "ticket_ids": list(update.ticket_ids), "size": update.size,
            "first_seen": update.first_seen, "created": update.created}


def _update_from(fields: dict, signature: IncidentSignature) -> IncidentUpdate:
    return IncidentUpdate(incident_id=fields["incident_id"], signature=signature, ticket_ids=tuple(fields["ticket_ids"]),
                          size=fields["size"], first_seen=fields["first_seen"], created=fields["created"])
