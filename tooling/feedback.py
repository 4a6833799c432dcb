"""`supportflow feedback FILE`: publish feedback given as JSON lines (the gateway's format)."""

from __future__ import annotations

import json
from pathlib import Path

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import EventPublisher, ensure_topics, new_meta
from supportflow.topics import Topic
from tooling.settings import FleetSettings

from services.gateway.intake import PayloadError, feedback_from_payload


def publish_feedback_file(settings: FleetSettings, path: Path) -> dict[str, int]:
    ensure_topics(settings)
    publisher = EventPublisher(settings, "cli")
    counts = {"published": 0, "rejected": 0}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
                ticket_id, fields = feedback_from_payload(payload)
            except (json.JSONDecodeError, PayloadError) as exc:
                print(f"line {number}: {exc}")
                counts["rejected"] += 1
                continue
            tenant = str(payload.get("tenant_id") or settings.default_tenant)
            event = ev.FeedbackReceived(meta=new_meta(tenant, "cli"), ticket_id=ticket_id, **fields)
            publisher.publish(Topic.TICKETS_FEEDBACK, ticket_id, event)
            counts["published"] += 1
    publisher.flush()
    return counts
