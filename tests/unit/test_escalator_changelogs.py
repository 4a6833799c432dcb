"""The changelog check's record count waits out a topic's missing leader (a replica starting beside
another that has just created the changelog) and gives up on anything else at once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.escalator.changelogs import _record_count


class FlakyWatermarks:
    def __init__(self, failures: list[int]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def get_watermark_offsets(self, partition, timeout):  # noqa: ANN001 - confluent-kafka's signature
        self.calls += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return (2, 7)


METADATA = SimpleNamespace(topic="escalator-incident-windows-changelog", partitions={0: None, 1: None})


def test_a_partition_without_a_leader_yet_is_asked_again():
    consumer = FlakyWatermarks([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert _record_count(consumer, METADATA, 1.0) == 10
    assert consumer.calls == 4


def test_other_errors_are_not_retried():
    consumer = FlakyWatermarks([KafkaError._TRANSPORT])
    with pytest.raises(KafkaException):
        _record_count(consumer, METADATA, 1.0)
    assert consumer.calls == 1
