"""Intercom: replies and notes are conversation parts (`POST /conversations/{id}/reply`, as the
configured admin); an escalation then assigns the conversation to the queue's team
(`POST /conversations/{id}/parts`, message_type "assignment"). The thread is read back from
`GET /conversations/{id}` (`conversation_parts`). Authentication: `Authorization: Bearer`, with
the API version pinned in `Intercom-Version`."""

from __future__ import annotations

import time
from typing import Callable

import httpx

from supportflow.channels import IntercomChannel

from services.delivery.handlers import DeliveryPlan
from services.delivery.messages import same_text
from services.delivery.providers.base import HelpdeskClient, RetryPolicy, json_or_empty


class IntercomClient(HelpdeskClient):
    provider = "intercom"

    def __init__(
        self,
        channel: IntercomChannel,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._admin_id = channel.admin_id
        http = httpx.Client(
            base_url=channel.base_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            headers={
                "Authorization": f"Bearer {channel.access_token.get_secret_value()}",
                "Intercom-Version": channel.api_version,
                "Accept": "application/json",
                "User-Agent": "supportflow-delivery",
            },
        )
        super().__init__(http, policy, sleep=sleep)

    def post(self, plan: DeliveryPlan) -> httpx.Response:
        return self._http.post(f"/conversations/{plan.external_ticket_id}/reply", json={
            "message_type": "comment" if plan.public else "note",
            "type": "admin",
            "admin_id": self._admin_id,
            "body": plan.message.html,
        })

    def created_id(self, response: httpx.Response) -> str:
        # The reply answers with the conversation; the part just added is the last one.
        parts = _parts(json_or_empty(response))
        return str(parts[-1].get("id", "")) if parts else ""

    def find_posted(self, plan: DeliveryPlan) -> str | None:
        response = self._caller.check("read the conversation", self._http.get(f"/conversations/{plan.external_ticket_id}"))
        wanted = "comment" if plan.public else "note"
        for part in reversed(_parts(json_or_empty(response))):
            author = part.get("author") if isinstance(part.get("author"), dict) else {}
            if part.get("part_type") != wanted or (author.get("type") not in (None, "admin", "bot")):
                continue
            if part.get("body") and same_text(plan.message, str(part["body"])):
                return str(part.get("id", ""))
        return None

    def update_ticket(self, plan: DeliveryPlan) -> str:
        if not plan.assignee_team:
            return ""
        return self._caller.update("assign", lambda: self._http.post(f"/conversations/{plan.external_ticket_id}/parts", json={
            "message_type": "assignment",
            "type": "admin",
            "admin_id": self._admin_id,
            "assignee_id": plan.assignee_team,
        }))


def _parts(conversation: object) -> list[dict]:
    if not isinstance(conversation, dict):
        return []
    listing = conversation.get("conversation_parts")
    parts = listing.get("conversation_parts") if isinstance(listing, dict) else None
    return [part for part in parts or [] if isinstance(part, dict)]
