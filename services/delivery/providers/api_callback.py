"""The API channel's callback (docs/channels.md): a ticket posted to /v1/tickets is answered by a
signed POST of the delivery as JSON to the tenant's `api.callback_url`, signed like the gateway's
own requests: `X-Supportflow-Timestamp` and `X-Supportflow-Signature` = "sha256=" + hex
HMAC-SHA256(signing_secret, "<timestamp>." + body). `Idempotency-Key` is the decision's event id,
so the receiver drops a repeat; each attempt is signed afresh (the receiver checks the timestamp).

A receiver cannot be read back: reconciliation sends again under the same Idempotency-Key, as
with mail and its Message-ID. A timeout is likewise retried as a re-send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Callable

import httpx

from supportflow.channels import ApiChannel
from supportflow.contracts.v1 import events_pb2 as ev

from services.delivery.handlers import DeliveryPlan
from services.delivery.providers.base import Posted, ProviderCaller, RetryPolicy, json_or_empty

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Supportflow-Timestamp"
SIGNATURE_HEADER = "X-Supportflow-Signature"


def callback_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def callback_body(plan: DeliveryPlan) -> bytes:
    return json.dumps({
        "ticket_id": plan.ticket_id,
        "decision_event_id": plan.decision_event_id,
        "kind": ev.DeliveryKind.Name(plan.kind).removeprefix("DELIVERY_KIND_").lower(),
        "decision": ev.Decision.Name(plan.decision).removeprefix("DECISION_").lower(),
        "text": plan.message.text,
        "html": plan.message.html,
        "citations": [{"article_id": c.article_id, "title": c.title, "url": c.url} for c in plan.citations],
    }, ensure_ascii=False).encode()


class ApiCallbackClient:
    provider = "api"

    def __init__(
        self,
        channel: ApiChannel,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = channel.callback_url
        self._secret = channel.signing_secret.get_secret_value()
        self._clock = clock
        self._http = httpx.Client(timeout=timeout_s, transport=transport,
                                  headers={"User-Agent": "supportflow-delivery", "Accept": "application/json"})
        self._caller = ProviderCaller(self.provider, policy, sleep=sleep)

    def deliver(self, plan: DeliveryPlan, *, reconcile: bool) -> Posted:
        if reconcile:
            log.info("a callback cannot be read back: sending again under the same Idempotency-Key",
                     extra={"fields": {"decision_event_id": plan.decision_event_id}})
        body = callback_body(plan)

        def post() -> httpx.Response:
            timestamp = str(int(self._clock()))
            return self._http.post(self._url, content=body, headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: callback_signature(self._secret, timestamp, body),
                "Idempotency-Key": plan.decision_event_id,
            })

        response, attempts = self._caller.call("callback", post)
        answer = json_or_empty(response)
        external_id = str(answer.get("id") or "") if isinstance(answer, dict) else ""
        return Posted(external_id or plan.decision_event_id, attempts)

    def close(self) -> None:
        self._http.close()
