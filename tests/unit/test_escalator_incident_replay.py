"""The incident replay at start never fails the escalator's start: with no Kafka to answer, it
gives up at its deadline and the windows start empty."""

from __future__ import annotations

import time

from supportflow.settings import Settings

from services.escalator.incident_replay import replay_recent_classified


def test_an_unreachable_kafka_leaves_the_windows_empty_instead_of_failing_the_start() -> None:
    settings = Settings.from_env().replace(kafka_bootstrap="127.0.0.1:1", topic_prefix="replay-test.")
    counted: list[object] = []
    started = time.monotonic()
    assert replay_recent_classified(settings, "replay-test.escalator", 3600, counted.append, deadline_s=2.0) == 0
    assert counted == []
    assert time.monotonic() - started < 15  # bounded by the deadline, not by Kafka's own timeouts
