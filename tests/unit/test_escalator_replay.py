"""The replays at start never fail the escalator's start: with no Kafka to answer, they give up at
their deadline and the memory starts empty."""

from __future__ import annotations

import time

from supportflow.settings import Settings
from supportflow.topics import Topic

from services.escalator.replay import replay_recent_classified, replay_recent_output


def test_an_unreachable_kafka_leaves_the_memory_empty_instead_of_failing_the_start() -> None:
    settings = Settings.from_env().replace(kafka_bootstrap="127.0.0.1:1", topic_prefix="replay-test.")
    counted: list[object] = []
    started = time.monotonic()
    assert replay_recent_classified(settings, "replay-test.escalator", 3600, counted.append, deadline_s=2.0) == 0
    assert counted == []
    assert replay_recent_output(settings, Topic.TICKETS_RESPONDED, "replay-test.escalator", 3600, counted.append, deadline_s=2.0) == 0
    assert counted == []
    assert time.monotonic() - started < 30  # bounded by the deadlines, not by Kafka's own timeouts
