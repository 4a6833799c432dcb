"""A peer's outage logs its first failure and then one a minute per error code, each line
counting what was held back; the calls' metrics count every failure (tested with the clients)."""

from __future__ import annotations

import logging
import threading

from supportflow.observability import ThrottledWarnings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logged(caplog) -> list[tuple[str, dict]]:  # noqa: ANN001
    return [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]


def test_the_first_failure_is_logged_then_one_per_interval_with_what_was_held_back(caplog) -> None:
    clock = Clock()
    warnings = ThrottledWarnings(logging.getLogger("probe"), interval_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="probe"):
        for _ in range(5):
            warnings.warning("peer unavailable", "UNAVAILABLE", {"code": "UNAVAILABLE"})
        clock.now += 59.0
        warnings.warning("peer unavailable", "UNAVAILABLE", {"code": "UNAVAILABLE"})
        clock.now += 1.0
        warnings.warning("peer unavailable", "UNAVAILABLE", {"code": "UNAVAILABLE"})
        warnings.warning("peer unavailable", "UNAVAILABLE", {"code": "UNAVAILABLE"})
    assert logged(caplog) == [("peer unavailable", {"code": "UNAVAILABLE"}),
                              ("peer unavailable", {"code": "UNAVAILABLE", "suppressed": 5})]


def test_each_message_and_key_has_its_own_interval(caplog) -> None:
    warnings = ThrottledWarnings(logging.getLogger("probe"), interval_s=60.0, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="probe"):
        for message, key in [("a", "UNAVAILABLE"), ("a", "DEADLINE_EXCEEDED"), ("b", "UNAVAILABLE"), ("a", "UNAVAILABLE")]:
            warnings.warning(message, key, {"code": key})
    assert [(message, fields["code"]) for message, fields in logged(caplog)] == [
        ("a", "UNAVAILABLE"), ("a", "DEADLINE_EXCEEDED"), ("b", "UNAVAILABLE")]


def test_many_threads_failing_at_once_log_one_line(caplog) -> None:
    warnings = ThrottledWarnings(logging.getLogger("probe"), interval_s=60.0)
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(100):
            warnings.warning("peer unavailable", "UNAVAILABLE", {})

    with caplog.at_level(logging.WARNING, logger="probe"):
        threads = [threading.Thread(target=fail) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(caplog.records) == 1
