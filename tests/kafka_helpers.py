"""Reading topics back in tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from supportflow.eventbus import kafka_config


def read_all(settings, topic_name: str, expected: int, timeout_s: float = 30.0):
    consumer = Consumer(kafka_config(settings) | {"group.id": f"check-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic_name])
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                records.append(message)
        # A little longer, to see anything beyond what was expected.
        extra_until = time.monotonic() + 1.5
        while time.monotonic() < extra_until:
            message = consumer.poll(0.3)
            if message is not None and not message.error():
                records.append(message)
    finally:
        consumer.close()
    return records
