"""Protobuf timestamps and Unix seconds, both ways: events carry Timestamps, handlers compute in
seconds. An unset Timestamp is "unknown", never the epoch."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp


def seconds_of(ts: Timestamp) -> float | None:
    """Unix seconds of `ts`, or None when it is unset."""
    return ts.seconds + ts.nanos / 1e9 if (ts.seconds or ts.nanos) else None


def timestamp_at(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(round(seconds * 1e9)))
    return ts
