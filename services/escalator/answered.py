"""The tickets this escalator answered automatically, remembered for `answered_memory_s`. Pure.

Every automatic reply tells the customer to reply if it did not help, and promises that a colleague
reads that reply. The channel says so when it sends the conversation (`history` turns by `agent`
or `bot`); this memory covers a channel that re-posts the ticket under its id with the new message
only. A message under an answered ticket id is a customer writing back, unless it is the very
message that was answered coming round again (Kafka delivers at least once): messages are told
apart by their received time, subject and body.

The memory is a key-value store the caller may hand in (the service's: a faust table with expiry,
so it survives restarts and is shared by every replica); the default, a dict of its own, is bounded
in time and in count: past `max_tickets`, the earliest recorded are forgotten first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import MutableMapping

from supportflow.contracts.v1 import ticket_pb2 as tk

DEFAULT_MAX_TICKETS = 1_000_000  # ~200 bytes each


def message_fingerprint(ticket: tk.Ticket) -> bytes:
    """Tells one customer message from another under the same ticket id."""
    received = f"{ticket.received_at.seconds}.{ticket.received_at.nanos}"
    return hashlib.blake2b(
        "\x1f".join((received, ticket.subject, ticket.body)).encode("utf-8", "surrogatepass"), digest_size=12
    ).digest()


def answered_key(tenant_id: str, ticket_id: str) -> str:
    return f"{tenant_id}|{ticket_id}"


class AnsweredTickets:
    """`store`: answered_key -> [answered at, hex fingerprint of the message answered]. Given one,
    expiry is the store's (a record past `memory_s` is ignored all the same)."""

    def __init__(self, memory_s: float, max_tickets: int = DEFAULT_MAX_TICKETS,
                 store: MutableMapping[str, list] | None = None) -> None:
        if memory_s < 0 or max_tickets < 1:
            raise ValueError("memory_s must be >= 0 and max_tickets >= 1")
        self._memory_s = memory_s
        self._max = max_tickets
        self._own = store is None  # only a memory of its own is bounded and forgotten here
        self._answered: MutableMapping[str, list] = OrderedDict() if store is None else store

    @property
    def memory_s(self) -> float:
        return self._memory_s

    def __len__(self) -> int:
        return len(self._answered)

    def record(self, tenant_id: str, ticket: tk.Ticket, answered_at: float) -> None:
        if self._memory_s == 0:
            return
        key = answered_key(tenant_id, ticket.ticket_id)
        self._answered[key] = [answered_at, message_fingerprint(ticket).hex()]
        if self._own:
            self._answered.move_to_end(key)  # type: ignore[attr-defined]
            while len(self._answered) > self._max:
                self._answered.popitem(last=False)  # type: ignore[call-arg]

    def wrote_back(self, tenant_id: str, ticket: tk.Ticket, now: float) -> bool:
        """True when this ticket id was answered within the memory and `ticket` is a later message."""
        cutoff = now - self._memory_s
        if self._own:
            self._forget_before(cutoff)
        answered = self._answered.get(answered_key(tenant_id, ticket.ticket_id))
        # Records do not arrive in time order (producers' clocks), so an entry behind the first may be older than it.
        return answered is not None and answered[0] >= cutoff and answered[1] != message_fingerprint(ticket).hex()

    def _forget_before(self, cutoff: float) -> None:
        while self._answered:
            key, (answered_at, _) = next(iter(self._answered.items()))
            if answered_at >= cutoff:
                return
            del self._answered[key]
