"""The ids of the events a shard of the learner applied last, in the order it applied them: the
learner's log (learner.events, main.py) is written at least once, so an event can be on it twice,
and its second copy must change nothing.

A shard is built from its partition of the log in the partition's one order, so this memory, and
each decision it makes, is the same on whichever replica builds the shard: it is part of the
shard's state (entries of the snapshot, numbered in order), and its bound is a count of events, never a
time. A copy further behind its original than the bound is applied again; the intake's copies come
within one interrupted batch of their originals, far inside it. The consumer loop keeps no memory
of ids of its own for the log (eventbus.ConsumerLoop with a partition owner): this one alone
decides, so a shard restored from a snapshot decides as one that replayed its whole partition.
"""

from __future__ import annotations

from services.learner.entries import EntryMap

APPLIED_IDS_KEPT = 100_000


class AppliedIds:
    def __init__(self, capacity: int = APPLIED_IDS_KEPT) -> None:
        self.ids: EntryMap[str, int] = EntryMap("applied", int, int)  # value: unused
        self._capacity = capacity

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, event_id: str) -> None:
        """Remember `event_id` as the latest applied; forget the oldest beyond the bound."""
        if event_id in self.ids:
            self.ids.move_to_end(event_id)
        else:
            self.ids[event_id] = 0
        while len(self.ids) > self._capacity:
            self.ids.popitem(last=False)

    def latest(self) -> list[str]:
        """The ids remembered, the oldest first."""
        return list(self.ids)
