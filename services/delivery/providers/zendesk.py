"""Zendesk Support: a reply or note is a comment added by updating the ticket
(`PUT /api/v2/tickets/{id}.json`), which also sets the status, tags, priority and group in the
same call. The thread is read back from `GET /api/v2/tickets/{id}/comments.json`.
Authentication: API token, basic `<email>/token:<api_token>`."""

from __future__ import annotations

import time
from typing import Callable

import httpx

from supportflow.channels import ZendeskChannel

from services.delivery.handlers import DeliveryPlan
from services.delivery.messages import same_text
from services.delivery.providers.base import HelpdeskClient, RetryPolicy, json_or_empty

MAX_PAGES = 10  # of 100 comments: a thread longer than that is not one Supportflow just answered


class ZendeskClient(HelpdeskClient):
    provider = "zendesk"

    def __init__(
        self,
        channel: ZendeskChannel,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        http = httpx.Client(
            base_url=channel.base_url.rstrip("/"),
            auth=(f"{channel.email}/token", channel.api_token.get_secret_value()),
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "supportflow-delivery"},
        )
        super().__init__(http, policy, sleep=sleep)

    def post(self, plan: DeliveryPlan) -> httpx.Response:
        ticket: dict[str, object] = {"comment": {"html_body": plan.message.html, "public": plan.public}}
        if plan.status:
            ticket["status"] = plan.status
        if plan.tags:
            ticket["additional_tags"] = list(plan.tags)
        if plan.priority:
            ticket["priority"] = plan.priority
        if plan.group_id is not None:
            ticket["group_id"] = plan.group_id
        return self._http.put(f"/api/v2/tickets/{plan.external_ticket_id}.json", json={"ticket": ticket})

    def created_id(self, response: httpx.Response) -> str:
        body = json_or_empty(response)
        audit = body.get("audit") if isinstance(body, dict) else None
        if isinstance(audit, dict):
            for event in audit.get("events") or []:
                if isinstance(event, dict) and event.get("type") == "Comment" and event.get("id") is not None:
                    return str(event["id"])
            if audit.get("id") is not None:
                return str(audit["id"])
        return ""

    def find_posted(self, plan: DeliveryPlan) -> str | None:
        url: str | None = f"/api/v2/tickets/{plan.external_ticket_id}/comments.json"
        params: dict[str, str] | None = {"sort_order": "desc", "per_page": "100"}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page = json_or_empty(self._caller.check("read the comments", self._http.get(url, params=params)))
            if not isinstance(page, dict):
                break
            for comment in page.get("comments") or []:
                if not isinstance(comment, dict) or bool(comment.get("public", True)) != plan.public:
                    continue
                for field in ("html_body", "body", "plain_body"):
                    if comment.get(field) and same_text(plan.message, str(comment[field])):
                        return str(comment.get("id", ""))
            links = page.get("links") if isinstance(page.get("links"), dict) else {}
            meta = page.get("meta") if isinstance(page.get("meta"), dict) else {}
            url = page.get("next_page") or (links.get("next") if meta.get("has_more") else None)
            params = None  # the next page's URL carries them
        return None
