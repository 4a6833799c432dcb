"""Freshdesk: a reply (`POST /api/v2/tickets/{id}/reply`) or a private note
(`POST /api/v2/tickets/{id}/notes`), then the ticket's status, priority, group and tags
(`PUT /api/v2/tickets/{id}`). Freshdesk's update replaces the tag list, so the ticket's tags are
read first and ours added to them. The thread is read back from
`GET /api/v2/tickets/{id}/conversations`. Authentication: basic `<api_key>:X`."""

from __future__ import annotations

import time
from typing import Callable

import httpx

from supportflow.channels import FreshdeskChannel

from services.delivery.handlers import DeliveryPlan
from services.delivery.messages import same_text
from services.delivery.providers.base import HelpdeskClient, PermanentDeliveryError, ProviderUnavailable, RetryPolicy, json_or_empty

PRIORITY = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
MAX_PAGES = 10


class FreshdeskClient(HelpdeskClient):
    provider = "freshdesk"

    def __init__(
        self,
        channel: FreshdeskChannel,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        http = httpx.Client(
            base_url=channel.base_url.rstrip("/"),
            auth=(channel.api_key.get_secret_value(), "X"),
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "supportflow-delivery"},
        )
        super().__init__(http, policy, sleep=sleep)

    def post(self, plan: DeliveryPlan) -> httpx.Response:
        ticket = plan.external_ticket_id
        if plan.public:
            return self._http.post(f"/api/v2/tickets/{ticket}/reply", json={"body": plan.message.html})
        return self._http.post(f"/api/v2/tickets/{ticket}/notes", json={"body": plan.message.html, "private": True})

    def created_id(self, response: httpx.Response) -> str:
        body = json_or_empty(response)
        return str(body.get("id", "")) if isinstance(body, dict) else ""

    def find_posted(self, plan: DeliveryPlan) -> str | None:
        url: str | None = f"/api/v2/tickets/{plan.external_ticket_id}/conversations"
        params: dict[str, str] | None = {"per_page": "100"}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            response = self._caller.check("read the conversations", self._http.get(url, params=params))
            page = json_or_empty(response)
            for item in page if isinstance(page, list) else []:
                if not isinstance(item, dict) or item.get("incoming") or bool(item.get("private")) == plan.public:
                    continue
                for field in ("body", "body_text"):
                    if item.get(field) and same_text(plan.message, str(item[field])):
                        return str(item.get("id", ""))
            url = response.links.get("next", {}).get("url")
            params = None
        return None

    def update_ticket(self, plan: DeliveryPlan) -> str:
        fields: dict[str, object] = {}
        if plan.status is not None:
            fields["status"] = plan.status
        if plan.priority in PRIORITY:
            fields["priority"] = PRIORITY[plan.priority]
        if plan.group_id is not None:
            fields["group_id"] = plan.group_id
        problems = []
        if plan.tags:
            try:
                current = self._caller.read("read the ticket", lambda: json_or_empty(self._caller.check(
                    "read the ticket", self._http.get(f"/api/v2/tickets/{plan.external_ticket_id}"))))
                tags = current.get("tags") if isinstance(current, dict) else None
                fields["tags"] = list(dict.fromkeys([*(str(t) for t in tags or []), *plan.tags]))
            except (PermanentDeliveryError, ProviderUnavailable) as exc:
                problems.append(f"tags not set (the ticket's own could not be read): {exc}")
        if fields:
            failed = self._caller.update("update the ticket", lambda: self._http.put(
                f"/api/v2/tickets/{plan.external_ticket_id}", json=fields))
            if failed:
                problems.append(failed)
        return "; ".join(problems)
