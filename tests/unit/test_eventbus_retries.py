"""The consumer loop's retries of a transient failure, without a broker: a first plain attempt,
then `max_retries` more with backoff, then the failure propagates (the batch is not committed)."""

from __future__ import annotations

import pytest

from supportflow.eventbus import ConsumerLoop, TransientError
from supportflow.observability import Health
from supportflow.topics import Topic
from tooling.settings import FleetSettings


class NoConsumer:
    def __init__(self, *_args, **_kwargs) -> None:
        pass


def loop_failing(monkeypatch, failures: int, max_retries: int) -> tuple[ConsumerLoop, list[str]]:
    """A loop whose message handling fails transiently `failures` times, then succeeds."""
    monkeypatch.setattr("supportflow.eventbus.Consumer", NoConsumer)
    loop = ConsumerLoop(FleetSettings(topic_prefix="p."), "test", {Topic.TICKETS_RECEIVED: lambda _event: []}, None,
                        Health("test"), max_retries=max_retries)
    attempts: list[str] = []

    def process(message) -> None:
        attempts.append(message)
        if len(attempts) <= failures:
            raise TransientError("peer unavailable")
    monkeypatch.setattr(loop, "_process", process)
    return loop, attempts


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_a_transient_failure_is_retried_up_to_max_retries_and_the_message_handled_once(monkeypatch, failures):
    loop, attempts = loop_failing(monkeypatch, failures, max_retries=2)
    loop._process_with_retries("m")
    assert attempts == ["m"] * (failures + 1)


@pytest.mark.parametrize("max_retries", [0, 2])
def test_past_max_retries_the_failure_propagates(monkeypatch, max_retries):
    loop, attempts = loop_failing(monkeypatch, failures=10, max_retries=max_retries)
    with pytest.raises(TransientError, match="peer unavailable"):
        loop._process_with_retries("m")
    assert attempts == ["m"] * (max_retries + 1)
