"""The tickets this escalator answered automatically, remembered for `answered_memory_s`. Pure.

Every automatic reply tells the customer to reply if it did not help, and promises that a colleague
reads that reply. The channel says so when it sends the conversation (`history` turns by `agent`
or `bot`); this memory covers a channel that re-posts the ticket under its id with the new message
only. A message under an answered ticket id is a customer writing back, unless it is the very
message that was answered coming round again (Kafka delivers at least once): messages are told
apart by their received time, subject and body.

Rebuilt at start from `tickets.responded` (replay.py). Bounded in time and in count: past
`max_tickets`, the earliest recorded are forgotten first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from supportflow.contracts.v1 import ticket_pb2 as tk

DEFAULT_MAX_TICKETS = 1_000_000  # ~200 bytes each


def message_fingerprint(ticket: tk.Ticket) -> bytes:
    """Tells one customer message from another under the same ticket id."""
    received = f"{ticket.received_at.seconds}.{ticket.received_at.nanos}"
    return hashlib.blake2b(
        "\x1f".join((received, ticket.subject, ticket.body)).encode("utf-8", "surrogatepass"), digest_size=12
    ).digest()


class AnsweredTickets:
    def __init__(self, memory_s: float, max_tickets: int = DEFAULT_MAX_TICKETS) -> None:
        if memory_s < 0 or max_tickets < 1:
            raise ValueError("memory_s must be >= 0 and max_tickets >= 1")
        self._memory_s = memory_s
        self._max = max_tickets
        # (tenant, ticket id) -> (answered at, fingerprint of the message answered), oldest first
        self._answered: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answered)

    def record(self, tenant_id: str, ticket: tk.Ticket, answered_at: float) -> None:
        if self._memory_s == 0:
            return
        key = (tenant_id, ticket.ticket_id)
        self._answered[key] = (answered_at, message_fingerprint(ticket))
        self._answered.move_to_end(key)
        while len(self._answered) > self._max:
            self._answered.popitem(last=False)

    def wrote_back(self, tenant_id: str, ticket: tk.Ticket, now: float) -> bool:
        """True when this ticket id was answered within the memory and `ticket` is a later message."""
        cutoff = now - self._memory_s
        self._forget_before(cutoff)
        answered = self._answered.get((tenant_id, ticket.ticket_id))
        # A replay records in partition order, so an entry behind the first may be older than it.
        return answered is not None and answered[0] >= cutoff and answered[1] != message_fingerprint(ticket)

    def _forget_before(self, cutoff: float) -> None:
        while self._answered:
            key, (answered_at, _) = next(iter(self._answered.items()))
            if answered_at >= cutoff:
                return
            del self._answered[key]
