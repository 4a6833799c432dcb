"""The learner's state as entries keyed below the shard: one entry per ticket record, per customer's
contacts, per guardrail (tenant and archetype), per knowledge group, per applied event id, and so on,
each a JSON value under a string key. A shard's state is the set of its entries, whatever order
they come in; the changes one record of the log makes are the entries it wrote or deleted. That is
the shape of a changelog-backed table (a faust table's changelog holds one record per key written),
and what the shard's snapshot holds (snapshots.py).

`EntryMap` is the ordered map each state holder keeps its state in: it remembers which keys
changed since the changes were last taken, and numbers each key as it is (re)inserted, so that an
order that matters (the oldest ticket is forgotten first) comes back from entries that carry no
order of their own. A value changed in place is marked with `touch`.
"""

from __future__ import annotations

import collections
import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Callable, Generic, Iterable, Sequence, TypeVar

from services.learner.state import StateError

K = TypeVar("K", bound=tuple)
V = TypeVar("V")

Entries = dict[str, object]  # entry key -> JSON value
Changes = dict[str, object | None]  # entry key -> JSON value, or None for an entry deleted


def entry_key(kind: str, parts: tuple) -> str:
    """The key of an entry: a JSON list of strings, `kind` first."""
    return "[" + ",".join(map(encode_basestring, (kind, *parts))) + "]"


def entry_parts(key: str) -> tuple[str, tuple[str, ...]]:
    """(kind, parts) of an entry key; StateError for a key `entry_key` did not write."""
    try:
        kind, *parts = json.loads(key)
    except (ValueError, TypeError) as exc:
        raise StateError(f"an unreadable entry key {key[:80]!r}") from exc
    if not isinstance(kind, str) or not all(isinstance(part, str) for part in parts):
        raise StateError(f"an entry key of other values than strings: {key[:80]!r}")
    return kind, tuple(parts)


class EntryMap(collections.OrderedDict, Generic[K, V]):
    """An insertion-ordered map of one kind of entry, keyed by tuples of strings. Reading is the
    OrderedDict's own; each way of writing used here marks the keys it changes (`update` and
    the like are refused rather than left unmarked)."""

    def __init__(self, kind: str, encode: Callable[[V], object], decode: Callable[[object], V]) -> None:
        super().__init__()
        self.kind = kind
        self._encode = encode
        self._decode = decode
        self._numbers: dict[K, int] = {}
        self.next_number = 0
        self._changed: set[K] | None = None  # None: changes are not tracked (`track_changes`)

    def track_changes(self) -> None:
        """Mark the keys written from now on, for `take_changes`: only for a caller that takes
        them, as the marks are kept until taken."""
        if self._changed is None:
            self._changed = set()

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._numbers[key] = self.next_number
            self.next_number += 1
        super().__setitem__(key, value)
        if self._changed is not None:
            self._changed.add(key)

    def __delitem__(self, key: K) -> None:
        super().__delitem__(key)
        del self._numbers[key]
        if self._changed is not None:
            self._changed.add(key)

    def setdefault(self, key: K, default: V) -> V:  # type: ignore[override]
        if key not in self:
            self[key] = default
            return default
        return super().__getitem__(key)

    _MISSING = object()

    def pop(self, key: K, default=_MISSING):  # noqa: ANN001, ANN201 - OrderedDict.pop's signature
        if key not in self:
            if default is EntryMap._MISSING:
                raise KeyError(key)
            return default
        value = super().pop(key)
        del self._numbers[key]
        if self._changed is not None:
            self._changed.add(key)
        return value

    def popitem(self, last: bool = True) -> tuple[K, V]:
        key, value = super().popitem(last)
        del self._numbers[key]
        if self._changed is not None:
            self._changed.add(key)
        return key, value

    def move_to_end(self, key: K, last: bool = True) -> None:
        if not last:
            raise NotImplementedError("an entry map numbers keys in the order they are moved to its end")
        super().move_to_end(key)
        self._numbers[key] = self.next_number
        self.next_number += 1
        if self._changed is not None:
            self._changed.add(key)

    def clear(self) -> None:
        if self._changed is not None:
            self._changed.update(self)
        super().clear()
        self._numbers.clear()

    def update(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise NotImplementedError("set entries one by one, so each is numbered and marked")

    def touch(self, key: K) -> None:
        """`key`'s value was changed in place."""
        if self._changed is not None and key in self:
            self._changed.add(key)

    # -- entries

    def take_changes(self, into: Changes) -> None:
        """The entries changed since the last call (or `track_changes`): their values now, None for
        a deleted one."""
        if self._changed is None:
            raise RuntimeError(f"the {self.kind} entries' changes are not tracked")
        for key in self._changed:
            into[entry_key(self.kind, key)] = self._entry(key) if key in self else None
        self._changed.clear()

    def entries(self, into: Entries) -> None:
        for key in self:
            into[entry_key(self.kind, key)] = self._entry(key)

    def rows(self) -> list[list]:
        """Every entry as [key parts, number, value]: the snapshot's form, without a key string
        to write and parse for each."""
        numbers, encode = self._numbers, self._encode
        return [[list(key), numbers[key], encode(value)] for key, value in self.items()]

    def load(self, rows: Iterable[Sequence]) -> None:
        """Replace the contents with `rows` ([key parts, number, value] of this kind), in any order."""
        numbered = []
        for row in rows:
            try:
                parts, number, encoded = row
            except (TypeError, ValueError) as exc:
                raise StateError(f"a {self.kind} entry that is not [key, number, value]") from exc
            if not isinstance(number, int) or not isinstance(parts, (list, tuple)):
                raise StateError(f"a {self.kind} entry keyed {parts!r} and numbered {number!r}")
            numbered.append((number, tuple(parts), encoded))
        numbered.sort(key=lambda item: item[0])
        super().clear()
        self._numbers.clear()
        set_item = super().__setitem__
        for number, key, encoded in numbered:
            set_item(key, self._decode(encoded))
            self._numbers[key] = number
        if self._changed is not None:
            self._changed.clear()

    def _entry(self, key: K) -> list:
        return [self._numbers[key], self._encode(super().__getitem__(key))]
