"""Webhooks to Supportflow's gateway: each provider's signature, and firing in the background with
retries the way the providers retry.

A webhook is built once per event (one invocation / notification id) and rendered again for each
attempt, because a retry carries a fresh signature timestamp (Zendesk) or a higher
`delivery_attempts` (Intercom) while keeping its id: that is how the gateway recognises a retry.
An attempt is retried when the gateway answers 5xx or 429 or cannot be reached, at most
MAX_ATTEMPTS times with exponential backoff (a Retry-After is honoured up to MAX_RETRY_AFTER_S);
any other answer ends it. Every attempt is logged and kept for GET /_sim/webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Callable

import httpx

from tooling.channel_servers.store import iso_ms

log = logging.getLogger("channel_servers.webhooks")

MAX_ATTEMPTS = 5
BACKOFF_S = 0.5  # first wait; doubled after each failed attempt
MAX_RETRY_AFTER_S = 30.0
TIMEOUT_S = 10.0

ZENDESK_SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
ZENDESK_WEBHOOK_ID_HEADER = "X-Zendesk-Webhook-Id"
ZENDESK_INVOCATION_ID_HEADER = "X-Zendesk-Webhook-Invocation-Id"
INTERCOM_SIGNATURE_HEADER = "X-Hub-Signature"
FRESHDESK_SECRET_HEADER = "X-Supportflow-Webhook-Secret"


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(signing secret, timestamp + raw body))."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def intercom_signature(client_secret: str, body: bytes) -> str:
    """sha1=<hex HMAC-SHA1(client secret, raw body)>."""
    return "sha1=" + hmac.new(client_secret.encode(), body, hashlib.sha1).hexdigest()


# attempt number over the webhook's whole life (1 = first send) -> (raw body, headers)
Renderer = Callable[[int], tuple[bytes, dict[str, str]]]


@dataclass
class Webhook:
    provider: str
    tenant: str
    ticket: str  # the provider's ticket / conversation id
    event: str  # ticket.created, conversation.user.replied, ...
    delivery_id: str  # invocation id / notification id: the same on every retry
    url: str
    render: Renderer
    sends: int = 0  # attempts made so far, redeliveries included
    attempts: list[dict] = field(default_factory=list)


class WebhookSender:
    """Fires one provider's webhooks on the running event loop; never blocks the API call."""

    def __init__(self, provider: str, *, max_attempts: int = MAX_ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self.provider = provider
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.history: list[dict] = []  # every attempt, oldest first
        self._last: dict[str, Webhook] = {}  # by ticket id
        self._tasks: set[asyncio.Task] = set()
        self._client: httpx.AsyncClient | None = None

    def fire(self, webhook: Webhook) -> asyncio.Task:
        self._last[webhook.ticket] = webhook
        log.info("%s %s for tenant %s ticket %s (id %s) -> %s", self.provider, webhook.event, webhook.tenant,
                 webhook.ticket, webhook.delivery_id, webhook.url or "(no gateway_url: not sent)")
        task = asyncio.get_running_loop().create_task(self._deliver(webhook))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def last_for(self, ticket: str) -> Webhook | None:
        return self._last.get(ticket)

    def redeliver(self, ticket: str) -> asyncio.Task | None:
        """Send the ticket's last webhook again with the same id, as the provider's retry would."""
        webhook = self._last.get(ticket)
        if webhook is None:
            return None
        log.info("%s redelivering %s for ticket %s (id %s)", self.provider, webhook.event, ticket, webhook.delivery_id)
        return self.fire(webhook)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _deliver(self, webhook: Webhook) -> dict:
        record: dict = {}
        if not webhook.url:
            return self._remember(webhook, {"attempt": 0, "status": 0, "error": "no gateway_url configured"})
        for attempt in range(1, self.max_attempts + 1):
            webhook.sends += 1
            body, headers = webhook.render(webhook.sends)
            status, error, retry_after = 0, "", None
            try:
                response = await self._http().post(webhook.url, content=body, headers=headers)
                status = response.status_code
                retry_after = _seconds(response.headers.get("Retry-After"))
                if status >= 400:
                    error = response.text[:300]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            record = self._remember(webhook, {"attempt": attempt, "status": status, "error": error})
            retryable = status == 0 or status == 429 or status >= 500
            if not retryable:
                level = logging.INFO if status < 400 else logging.WARNING
                log.log(level, "%s %s ticket %s attempt %d/%d -> %s %s", self.provider, webhook.event,
                        webhook.ticket, attempt, self.max_attempts, status, error)
                return record
            log.warning("%s %s ticket %s attempt %d/%d -> %s %s", self.provider, webhook.event, webhook.ticket,
                        attempt, self.max_attempts, status or "unreachable", error)
            if attempt < self.max_attempts:
                wait = self.backoff_s * 2 ** (attempt - 1)
                if retry_after is not None:
                    wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
                await asyncio.sleep(wait)
        log.error("%s %s ticket %s: gave up after %d attempts", self.provider, webhook.event, webhook.ticket,
                  self.max_attempts)
        return record

    def _remember(self, webhook: Webhook, outcome: dict) -> dict:
        record = {"at": iso_ms(), "provider": self.provider, "tenant": webhook.tenant, "ticket": webhook.ticket,
                  "event": webhook.event, "delivery_id": webhook.delivery_id, "url": webhook.url} | outcome
        webhook.attempts.append(record)
        self.history.append(record)
        return record

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False)
        return self._client


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
