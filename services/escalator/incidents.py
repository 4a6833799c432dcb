"""Incident detection: a burst of similar tickets becomes one incident. Pure; the tracker's state
lives in the `IncidentTracker` the caller owns (in memory: it starts empty after a restart).

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
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field

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


@dataclass
class _Incident:
    incident_id: str
    first_seen: float
    last_seen: float
    ticket_ids: list[str]
    size: int
    announced_size: int


@dataclass
class _SignatureState:
    window: list[tuple[float, str]] = field(default_factory=list)  # candidates not yet in an incident
    incident: _Incident | None = None


def incident_id_for(signature: IncidentSignature, first_seen: float) -> str:
    digest = hashlib.sha256(
        f"{signature.tenant_id}|{signature.text}|{first_seen:.3f}".encode()
    ).hexdigest()
    return f"inc-{digest[:16]}"


class IncidentTracker:
    """Sliding windows per signature and the open incidents. Bounded: the least recently active
    signatures and the oldest ticket links are forgotten first."""

    def __init__(self, config: IncidentConfig, *, max_signatures: int = 10_000, max_links: int = 100_000) -> None:
        self._config = config
        self._signatures: collections.OrderedDict[IncidentSignature, _SignatureState] = collections.OrderedDict()
        self._links: collections.OrderedDict[str, str] = collections.OrderedDict()  # ticket id -> incident id
        self._observed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._max_signatures = max_signatures
        self._max_links = max_links

    def incident_of(self, ticket_id: str) -> str:
        """The incident the ticket belongs to, or ''."""
        return self._links.get(ticket_id, "")

    def observe(self, ticket_id: str, signature: IncidentSignature, at: float) -> IncidentUpdate | None:
        """Count the ticket; returns an update when an incident is created or has doubled."""
        if ticket_id in self._observed:  # a redelivery must not count twice
            return None
        self._remember(self._observed, ticket_id, None)
        state = self._signatures.get(signature)
        if state is None:
            state = self._signatures[signature] = _SignatureState()
            while len(self._signatures) > self._max_signatures:
                self._signatures.popitem(last=False)
        self._signatures.move_to_end(signature)
        window_s = self._config.window_s

        incident = state.incident
        if incident is not None and at - incident.last_seen <= window_s:
            if len(incident.ticket_ids) < MAX_LISTED_TICKETS:
                incident.ticket_ids.append(ticket_id)
            incident.size += 1
            incident.last_seen = max(incident.last_seen, at)
            self._remember(self._links, ticket_id, incident.incident_id)
            if incident.size >= 2 * incident.announced_size:
                incident.announced_size = incident.size
                return self._update(incident, signature, created=False)
            return None
        state.incident = None  # quiet for a whole window: that incident is over

        state.window.append((at, ticket_id))
        newest = max(t for t, _ in state.window)
        state.window = sorted((t, tid) for t, tid in state.window if t >= newest - window_s)
        if len(state.window) < self._config.min_tickets:
            return None
        first_seen = state.window[0][0]
        incident = _Incident(
            incident_id=incident_id_for(signature, first_seen),
            first_seen=first_seen,
            last_seen=newest,
            ticket_ids=[tid for _, tid in state.window],
            size=len(state.window),
            announced_size=len(state.window),
        )
        state.window = []
        state.incident = incident
        for member in incident.ticket_ids:
            self._remember(self._links, member, incident.incident_id)
        return self._update(incident, signature, created=True)

    def _remember(self, table: collections.OrderedDict, key: str, value: object) -> None:
        table[key] = value
        table.move_to_end(key)
        limit = self._max_links
        while len(table) > limit:
            table.popitem(last=False)

    @staticmethod
    def _update(incident: _Incident, signature: IncidentSignature, *, created: bool) -> IncidentUpdate:
        return IncidentUpdate(
            incident_id=incident.incident_id,
            signature=signature,
            ticket_ids=tuple(incident.ticket_ids),
            size=incident.size,
            first_seen=incident.first_seen,
            created=created,
        )
