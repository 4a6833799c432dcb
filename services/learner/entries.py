"""The learner's state as entries keyed below the shard: one entry per ticket record, per customer's
contacts, per guardrail (tenant and archetype), per knowledge group, per applied event id, and so on,
each a JSON value under a string key. A shard's state is the set of its entries, whatever order
they come in; the changes one record of the log makes are the entries it wrote or deleted. That is
the shape of a changelog-backed table (a faust table's changelog holds one record per key written),
and what the shard's snapshot holds (snapshots.py).

`EntryMap` is the ordered map each state holder keeps its state in. Each entry written out carries
a number, so that an order that matters (the oldest ticket is forgotten first) comes back from
entries that carry no order of their own. Once its changes are tracked (`track_changes`, for a
caller that writes them to a table), a map also remembers which keys changed since the changes
were last taken; a value changed in place is marked with `touch`.
"""

from __future__ import annotations

import collections
import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from services.learner.state import StateError

K = TypeVar("K", str, tuple)
V = TypeVar("V")

Entries = dict[str, object]  # entry key -> JSON value
Changes = dict[str, object | None]  # entry key -> JSON value, or None for an entry deleted


def entry_key(kind: str, key: str | tuple) -> str:
    """The key of an entry: a JSON list of strings, `kind` first, then the key's parts."""
    if isinstance(key, str):
        return "[" + encode_basestring(kind) + "," + encode_basestring(key) + "]"
    return "[" + ",".join(map(encode_basestring, (kind, *key))) + "]"


def entry_parts(key: str) -> tuple[str, tuple[str, ...]]:
    """(kind, parts) of an entry key; StateError for a key `entry_key` did not write."""
    try:
        values = json.loads(key)
    except (ValueError, TypeError) as exc:
        raise StateError(f"an unreadable entry key {key[:80]!r}") from exc
    if not isinstance(values, list) or not values or not all(isinstance(value, str) for value in values):
        raise StateError(f"an entry key that is not a list of strings: {key[:80]!r}")
    return values[0], tuple(values[1:])


# The OrderedDict's methods are called directly: a super object per write would be one more
# container for the garbage collector to count, on every event applied.
_odict = collections.OrderedDict


class EntryMap(collections.OrderedDict, Generic[K, V]):
    """An insertion-ordered map of one kind of entry, keyed by strings (a key of one part) or tuples
    of strings.

    An entry's number says where it stands in the order, nothing else. Untracked (the default), an
    entry map is an OrderedDict whose reads and writes are the dict's own, in C: it keeps no
    numbers (its order is its own) and numbers its entries by position when they are written out.
    `track_changes` makes it a `TrackedEntryMap`, whose writers number each key as it is inserted
    or moved to its end, so that the numbers of entries taken at different times still sort in the
    map's order, and mark the keys they change for `take_changes`."""

    _changed: set | None = None  # the keys changed since last taken, while tracked
    _numbers: dict | None = None  # each key's number, while tracked

    def __init__(self, kind: str, encode: Callable[[V], object], decode: Callable[[object], V]) -> None:
        _odict.__init__(self)
        self.kind = kind
        self._encode = encode
        self._decode = decode
        self._next_number = 0

    def track_changes(self) -> None:
        """Mark the keys written from now on, for `take_changes`: only for a caller that takes
        them, as the marks (and the numbers) are kept until taken."""
        if self._changed is None:
            self._changed = set()
            self._numbers = {key: number for number, key in enumerate(self)}
            self._next_number = len(self)
            self.__class__ = TrackedEntryMap

    def touch(self, key: K) -> None:
        """`key`'s value was changed in place (marked, while tracked)."""

    def take_changes(self, into: Changes) -> None:
        """The entries changed since the last call (or `track_changes`): their values now, None for
        a deleted one."""
        raise RuntimeError(f"the {self.kind} entries' changes are not tracked")

    # -- entries

    def entries(self, into: Entries) -> None:
        for key, number, encoded in self._numbered():
            into[entry_key(self.kind, key)] = [number, encoded]

    def rows(self) -> list[list]:
        """Every entry as [key parts, number, value]: the snapshot's form, without a key string
        to write and parse for each."""
        return [[[key] if isinstance(key, str) else list(key), number, encoded]
                for key, number, encoded in self._numbered()]

    def _numbered(self) -> Iterator[tuple[K, int, object]]:
        encode = self._encode
        if self._numbers is None:
            return ((key, number, encode(value)) for number, (key, value) in enumerate(self.items()))
        numbers = self._numbers
        return ((key, numbers[key], encode(value)) for key, value in self.items())

    def load(self, rows: Iterable[Sequence]) -> None:
        """Replace the contents with `rows` ([key parts, number, value] of this kind), in any order:
        the numbers give the order."""
        numbered = []
        for row in rows:
            try:
                parts, number, encoded = row
            except (TypeError, ValueError) as exc:
                raise StateError(f"a {self.kind} entry that is not [key, number, value]") from exc
            if not isinstance(number, int) or not isinstance(parts, (list, tuple)):
                raise StateError(f"a {self.kind} entry keyed {parts!r} and numbered {number!r}")
            numbered.append((number, parts[0] if len(parts) == 1 else tuple(parts), encoded))
        numbered.sort(key=lambda item: item[0])
        _odict.clear(self)
        set_item = _odict.__setitem__
        for _, key, encoded in numbered:
            set_item(self, key, self._decode(encoded))
        if self._changed is not None:  # the entries' own numbers: the ones a table holds
            self._changed.clear()
            self._numbers = {key: number for number, key, _ in numbered}
            self._next_number = numbered[-1][0] + 1 if numbered else 0


class TrackedEntryMap(EntryMap[K, V]):
    """An entry map whose changes are tracked (`EntryMap.track_changes`): each way of writing used
    here numbers and marks the keys it changes (`update` and the like are refused rather than left
    unmarked)."""

    _changed: set
    _numbers: dict

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._number(key)
        self._changed.add(key)
        _odict.__setitem__(self, key, value)

    def __delitem__(self, key: K) -> None:
        _odict.__delitem__(self, key)
        self._forget(key)

    def setdefault(self, key: K, default: V) -> V:  # type: ignore[override]
        if key not in self:
            self[key] = default
            return default
        return _odict.__getitem__(self, key)

    _MISSING = object()

    def pop(self, key: K, default=_MISSING):  # noqa: ANN001, ANN201 - OrderedDict.pop's signature
        if key not in self:
            if default is TrackedEntryMap._MISSING:
                raise KeyError(key)
            return default
        value = _odict.pop(self, key)
        self._forget(key)
        return value

    def popitem(self, last: bool = True) -> tuple[K, V]:
        key, value = _odict.popitem(self, last)
        self._forget(key)
        return key, value

    def move_to_end(self, key: K, last: bool = True) -> None:
        if not last:
            raise NotImplementedError("an entry map numbers keys in the order they are moved to its end")
        _odict.move_to_end(self, key)
        self._number(key)
        self._changed.add(key)

    def clear(self) -> None:
        self._changed.update(self)
        self._numbers.clear()
        _odict.clear(self)

    def update(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise NotImplementedError("set entries one by one, so each is numbered and marked")

    def touch(self, key: K) -> None:
        if key in self:
            self._changed.add(key)

    def take_changes(self, into: Changes) -> None:
        numbers, encode, get = self._numbers, self._encode, self.get
        for key in self._changed:
            into[entry_key(self.kind, key)] = [numbers[key], encode(get(key))] if key in self else None
        self._changed.clear()

    def _number(self, key: K) -> None:
        self._numbers[key] = self._next_number
        self._next_number += 1

    def _forget(self, key: K) -> None:
        del self._numbers[key]
        self._changed.add(key)
