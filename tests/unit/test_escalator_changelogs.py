"""The changelog check's record count waits out a topic's missing leader (a replica starting beside
another that has just created the changelog) and gives up on anything else at once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.escalator.changelogs import _record_counts


class Answer:
    def __init__(self, offset: int, error: int | None) -> None:
        self.offset, self.error = offset, error

    def result(self):  # noqa: ANN201 - a future's
        if self.error is not None:
            raise KafkaException(KafkaError(self.error))
        return SimpleNamespace(offset=self.offset)


class FlakyAdmin:
    """Each partition holds offsets 2-7 (5 records); the first questions fail as told."""

    def __init__(self, failures: list[int]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def list_offsets(self, requests, request_timeout):  # noqa: ANN001, ANN201 - confluent-kafka's signature
        self.calls += 1
        error = self.failures.pop(0) if self.failures else None
        return {tp: Answer(2 if type(spec).__name__ == "EarliestSpec" else 7, error) for tp, spec in requests.items()}


TOPICS = [SimpleNamespace(topic="escalator-incident-windows-changelog", partitions={0: None, 1: None}),
          SimpleNamespace(topic="escalator-answered-tickets-changelog", partitions={0: None})]


def test_a_partition_without_a_leader_yet_is_asked_again():
    admin = FlakyAdmin([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert _record_counts(admin, TOPICS, 1.0) == {"escalator-incident-windows-changelog": 10,
                                                   "escalator-answered-tickets-changelog": 5}
    assert admin.calls == 4  # two failed, then the low and the high watermarks


def test_other_errors_are_not_retried():
    admin = FlakyAdmin([KafkaError._TRANSPORT])
    with pytest.raises(KafkaException):
        _record_counts(admin, TOPICS, 1.0)
    assert admin.calls == 1
