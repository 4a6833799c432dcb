"""The ids of the events a shard of the learner applied last, in the order it applied them: the
learner's log (learner.events, main.py) is written at least once, so an event can be on it twice,
and its second copy must change nothing.

A shard is built from its partition of the log in the partition's one order, so this memory, and
each decision it makes, is the same on whichever replica builds the shard: it is part of the
shard's state (exported in its snapshot, in order), and its bound is a count of events, never a
time. A copy further behind its original than the bound is applied again; the intake's copies come
within one interrupted batch of their originals, far inside it. The consumer loop keeps no memory
of ids of its own for the log (eventbus.ConsumerLoop with a partition owner): this one alone
decides, so a shard restored from a snapshot decides as one that replayed its whole partition.
"""

from __future__ import annotations

import collections

from services.learner.state import StateError

APPLIED_IDS_KEPT = 100_000


class AppliedIds:
    def __init__(self, capacity: int = APPLIED_IDS_KEPT) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._capacity = capacity

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Remember `event_id` as the latest applied; forget the oldest beyond the bound."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def to_state(self) -> list[str]:
        return list(self._ids)

    def load_state(self, value: object) -> None:
        if not isinstance(value, list) or not all(isinstance(event_id, str) for event_id in value):
            raise StateError("applied event ids: a list of strings expected")
        self._ids = collections.OrderedDict.fromkeys(value[-self._capacity:])
