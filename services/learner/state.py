"""The learner's state as JSON values, for its snapshots (snapshots.py): plain numbers, strings,
lists and objects, and the protobuf messages it holds as their own wire bytes (base64) under their
type's name. Restoring one reads data and builds the learner's objects from it; nothing in a
snapshot can name code to run, as a pickle could. A state that does not fit raises StateError, and
the learner replays its topics instead."""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
from typing import Mapping

from google.protobuf.message import DecodeError, Message


class StateError(ValueError):
    """A snapshot's state that this learner cannot read."""


def message_state(message: Message) -> list[str]:
    return [message.DESCRIPTOR.full_name, base64.b64encode(message.SerializeToString()).decode("ascii")]


def message_from_state(value: object, allowed: Mapping[str, type[Message]]) -> Message:
    """The message `value` holds, of one of the `allowed` types (by full name)."""
    try:
        name, data = value  # type: ignore[misc]
        kind = allowed[name]
        return kind.FromString(base64.b64decode(data, validate=True))
    except KeyError as exc:
        raise StateError(f"a message of type {exc.args[0]!r} where {', '.join(allowed)} is expected") from exc
    except (TypeError, ValueError, binascii.Error, DecodeError) as exc:
        raise StateError(f"an unreadable message in the state: {exc}") from exc


@contextlib.contextmanager
def collector_paused():
    """Build or write a whole state without the cyclic garbage collector: the hundreds of thousands
    of containers made at once would set off its full passes over the whole heap again and again
    (at 100,000 tickets, most of an export's time). The state holds no reference cycles to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def listed(value: object) -> list:
    """`value`, which must be a JSON list."""
    if not isinstance(value, list):
        raise StateError(f"a list expected in the state, not {type(value).__name__}")
    return value


def types_by_name(*kinds: type[Message]) -> dict[str, type[Message]]:
    return {kind.DESCRIPTOR.full_name: kind for kind in kinds}
