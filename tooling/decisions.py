"""Read the pipeline's outcome back from Kafka: every decision for a set of tickets, every event
of one topic (action records, KB proposals), and every event about the tickets on every topic (for tracing a ticket through the
pipeline)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Callable, Iterable

from confluent_kafka import Consumer
from google.protobuf.json_format import MessageToDict

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, decode, kafka_config, read_ranges
from supportflow.topics import DECISION_TOPICS, Topic
from tooling.settings import FleetSettings


def _consumer(settings: FleetSettings, topics: Iterable[Topic]) -> Consumer:
    consumer = Consumer(
        kafka_config(settings)
        | {"group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([t.name_in(settings.topic_prefix) for t in topics])
    return consumer


def collect_decisions(
    settings: FleetSettings, ticket_ids: set[str], timeout_s: float, on_progress=None
) -> dict[str, list[ev.TicketDecided]]:
    """Every decision event for `ticket_ids`, waiting until each has one or the time is up.

    Returns a list per ticket so a duplicate decision would be visible, not hidden.
    """
    by_topic = {t.name_in(settings.topic_prefix): t for t in DECISION_TOPICS.values()}
    consumer = _consumer(settings, by_topic.values())
    found: dict[str, list[ev.TicketDecided]] = defaultdict(list)
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                try:
                    decided = decode(by_topic[message.topic()], message)
                except InvalidEvent:
                    continue
                if decided.ticket.ticket_id in ticket_ids:
                    found[decided.ticket.ticket_id].append(decided)
                    if on_progress:
                        on_progress(len(found))
            if len(found) == len(ticket_ids):
                # Keep reading briefly so a late duplicate would still be caught.
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return dict(found)


def read_topic(
    settings: FleetSettings, topic: Topic, *, until: Callable[[list], bool] | None = None,
    idle_s: float = 2.0, timeout_s: float = 30.0,
) -> list:
    """Every event from the beginning of `topic` (the action records, the KB proposals), read
    until `until(events)` holds, or else until nothing has come for `idle_s`; at most `timeout_s`."""
    consumer = _consumer(settings, [topic])
    events: list = []
    started = last_message = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            if until is not None and until(events):
                break
            if until is None and time.monotonic() - last_message > idle_s:
                break
            message = consumer.poll(0.3)
            if message is None or message.error():
                continue
            last_message = time.monotonic()
            try:
                events.append(decode(topic, message))
            except InvalidEvent:
                continue
    finally:
        consumer.close()
    return events


def trace_tickets(settings: FleetSettings, ticket_ids: set[str], topics: Iterable[Topic], idle_s: float = 3.0) -> dict[str, dict[str, int]]:
    """For each ticket id, how many events each topic holds about it (read until idle)."""
    topics = list(topics)
    by_name = {t.name_in(settings.topic_prefix): t for t in topics}
    consumer = _consumer(settings, topics)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_message = time.monotonic()
    try:
        while time.monotonic() - last_message < idle_s:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last_message = time.monotonic()
            key = (message.key() or b"").decode()
            if key in ticket_ids:
                counts[key][by_name[message.topic()].base_name] += 1
    finally:
        consumer.close()
    return {k: dict(v) for k, v in counts.items()}


def _ms(later, earlier) -> float | None:
    if not later.seconds or not earlier.seconds:
        return None
    return round((later.ToMilliseconds() - earlier.ToMilliseconds()), 1)


def decision_record(decided: ev.TicketDecided) -> dict:
    """One ticket's outcome as a flat, JSON-ready record for reports."""
    timeline = decided.timeline
    classification = decided.classification
    record = {
        "id": decided.ticket.ticket_id,
        "tenant_id": decided.ticket.tenant_id,
        "channel": _enum_name(decided.ticket, "channel"),
        "label": decided.ticket.metadata.get("demo_label", ""),
        "message": _clipped(f"{decided.ticket.subject}\n{decided.ticket.body}".strip()),
        "intent": classification.intent,
        "confidence": round(classification.confidence, 4),
        "archetype": _enum_name(classification, "archetype"),
        "urgency": _enum_name(classification, "urgency"),
        "route": _enum_name(classification, "route"),
        "route_reason": classification.route_reason,
        "risk_flags": [tk.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in classification.risk_flags],
        "input_flags": list(classification.input_flags),
        "decision": ev.Decision.Name(decided.decision).removeprefix("DECISION_").lower(),
        "reason": decided.reason,
        "case_type": ev.CaseType.Name(decided.case_type).removeprefix("CASE_TYPE_").lower(),
        "target_queue": decided.target_queue,
        "incident_id": decided.incident_id,
        "draft": decided.draft.text if decided.HasField("draft") else "",
        "draft_status": _enum_name(decided.draft, "status") if decided.HasField("draft") else "",
        "draft_answerability": _enum_name(decided.draft, "answerability") if decided.HasField("draft") else "",
        "citations": [
            {"article_id": c.article_id, "title": c.title, "passage": c.passage, "stale": c.stale}
            for c in decided.draft.citations
        ],
        "ledger": [
            {"claim": c.claim, "kind": c.kind, "article_id": c.article_id, "verified": c.verified}
            for c in decided.draft.ledger
        ],
        "packet": MessageToDict(decided.packet, preserving_proto_field_name=True) if decided.HasField("packet") else None,
        "investigation": (MessageToDict(decided.investigation, preserving_proto_field_name=True)
                          if decided.HasField("investigation") else None),
        "timings_ms": {
            "received_to_classified": _ms(timeline.classified_at, timeline.received_at),
            "received_to_evidence": _ms(timeline.evidence_at, timeline.received_at),
            "received_to_drafted": _ms(timeline.drafted_at, timeline.received_at),
            "received_to_decided": _ms(timeline.decided_at, timeline.received_at),
        },
    }
    return record


# A report shows what the customer asked, not a 100,000-character paste.
REPORT_MESSAGE_CHARS = 500


def _clipped(text: str) -> str:
    return text if len(text) <= REPORT_MESSAGE_CHARS else text[: REPORT_MESSAGE_CHARS - 1] + "…"


def _enum_name(message, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    name = descriptor.values_by_number[getattr(message, field)].name
    prefix = descriptor.name
    # ROUTE_AUTO_RESPOND -> auto_respond, ARCHETYPE_FAQ_BOUNDED -> faq_bounded
    upper = "".join("_" + c if c.isupper() else c for c in prefix).lstrip("_").upper() + "_"
    return name.removeprefix(upper).lower()


def read_history(settings: FleetSettings, topics: Iterable[Topic], since_ms: int, timeout_s: float = 60.0) -> list[tuple[Topic, object]]:
    """Every valid event on `topics` with a record time at or after `since_ms`, up to what the
    topics held when the call started (in partition order; topics interleaved)."""
    from confluent_kafka import TopicPartition

    by_name = {t.name_in(settings.topic_prefix): t for t in topics}
    consumer = Consumer(kafka_config(settings) | {"group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
    ranges = {}
    try:
        partitions = []
        for name in by_name:
            metadata = consumer.list_topics(name, timeout=10).topics.get(name)
            if metadata is None or metadata.error is not None:
                continue
            partitions += [TopicPartition(name, p, since_ms) for p in metadata.partitions]
        for tp in consumer.offsets_for_times(partitions, timeout=10) if partitions else []:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            if tp.offset >= 0:  # negative: nothing that recent
                ranges[(tp.topic, tp.partition)] = (tp.offset, high)
    finally:
        consumer.close()
    events: list[tuple[Topic, object]] = []

    def keep(message) -> None:  # type: ignore[no-untyped-def]
        topic = by_name[message.topic()]
        try:
            events.append((topic, decode(topic, message)))
        except InvalidEvent:
            pass

    read_ranges(settings, ranges, keep, deadline_s=timeout_s)
    return events
