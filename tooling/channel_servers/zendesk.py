"""Zendesk Support stand-in: the Tickets, Requests and Users API subset Supportflow uses, the Help
Center (help_center.py), and the two triggers of docs/channels.md calling the gateway's webhook.

Each tenant is its own Zendesk account. API token auth, `<email>/token:<api_token>`: the tenant's
API user (an agent) with its `zendesk_email`, or, as Zendesk allows with an API token, any end user
of the account by their email (that is how the requester's own reply is made:
`PUT /api/v2/requests/{id}.json`). End users get 403 on the agent endpoints.

Triggers: "Ticket is Created" fires `ticket.created` for every new ticket; "Ticket is Updated and
current user is (end-user)" fires `ticket.requester_updated` when an end user comments. A comment
an agent adds with `PUT /api/v2/tickets/{id}.json` fires nothing and is what Supportflow delivered:
public -> "reply", private -> "note" (a follow-up cannot be told from a reply).

The outcome triggers of docs/channels.md, for updates made by anyone but the tenant's API user
(Supportflow itself): "Status changed" to pending, on-hold, solved or closed fires
`ticket.status_changed`; "Status changed from Solved" fires `ticket.reopened` (a requester's reply
to a solved ticket reopens it); "Satisfaction changed" fires `ticket.satisfaction_rated`. Each
account has a human agent (`agent@<mail domain>`) who acts through `/_sim/outcomes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tooling.channel_servers.basic_auth import basic_credentials
from tooling.channel_servers.config import TenantAccounts
from tooling.channel_servers.control_api import (
    BodyError, Fired, ProviderTraffic, SimError, control_routes, fired, json_object, set_tenant, strip_prefix,
)
from tooling.channel_servers.help_center import HelpCenter, help_center_routes
from tooling.channel_servers.markup import html_to_text, text_to_html
from tooling.channel_servers.store import FaultPlan, IdSequence, TrafficLog, iso_seconds, utc_now, whole_seconds
from tooling.channel_servers.webhooks import (
    ZENDESK_INVOCATION_ID_HEADER, ZENDESK_SIGNATURE_HEADER, ZENDESK_TIMESTAMP_HEADER, ZENDESK_WEBHOOK_ID_HEADER,
    Webhook, WebhookSender, zendesk_signature,
)

log = logging.getLogger("channel_servers.zendesk")

STATUSES = ("new", "open", "pending", "hold", "solved")
# Statuses whose change fires the status trigger (closed: set by Zendesk's own automation only).
_STATUS_TRIGGERED = ("pending", "hold", "solved", "closed")
STATUS_CHANGED, REOPENED, RATED = "ticket.status_changed", "ticket.reopened", "ticket.satisfaction_rated"
PRIORITIES = ("urgent", "high", "normal", "low")
# How the {{ticket.status}} / {{ticket.priority}} placeholders render (unset priority renders "-").
_STATUS_TITLES = {"new": "New", "open": "Open", "pending": "Pending", "hold": "On-hold", "solved": "Solved",
                  "closed": "Closed"}
_VIA_TITLE = "Web Service"  # {{ticket.via}} of a ticket made through the API
UNAUTHORIZED = {"error": "Couldn't authenticate you"}
FORBIDDEN = {"error": "Forbidden", "description": "You do not have access to this page. Please contact the account "
                                                  "owner of this help desk for further help."}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class ZendeskUser:
    id: int
    name: str
    email: str
    role: str  # "admin" (the API user) or "end-user"
    created_at: datetime

    @property
    def is_end_user(self) -> bool:
        return self.role == "end-user"


@dataclass
class ZendeskComment:
    id: int
    author_id: int
    body: str  # plain text
    html_body: str
    public: bool
    created_at: datetime
    audit_id: int


@dataclass
class ZendeskTicket:
    id: int
    subject: str
    status: str
    priority: str | None
    requester_id: int
    submitter_id: int
    group_id: int | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    comments: list[ZendeskComment] = field(default_factory=list)
    satisfaction: dict | None = None  # {"score", "comment"}: the requester's rating, as given

    @property
    def description(self) -> str:
        return self.comments[0].body if self.comments else ""

    def public_comments(self) -> list[ZendeskComment]:
        return [c for c in self.comments if c.public]


class ZendeskAccount:
    """One tenant's Zendesk: its users, tickets and creation idempotency keys."""

    def __init__(self, accounts: TenantAccounts, user_ids: IdSequence) -> None:
        self.accounts = accounts
        self._user_ids = user_ids
        self.users: dict[int, ZendeskUser] = {}
        self.api_user = self.add_user("Supportflow", accounts.zendesk_email, "admin")
        # A person on the support team: solves tickets in the agent interface (/_sim/outcomes).
        self.human_agent = self.add_user("Support agent", f"agent@{accounts.mail_domain or 'example.com'}", "agent")
        self.tickets: dict[int, ZendeskTicket] = {}
        self.idempotent: dict[str, tuple[str, dict]] = {}  # key -> (body fingerprint, response)
        digest = hashlib.sha256(accounts.tenant.encode()).hexdigest()
        self.account_id = str(int(digest[:8], 16))
        self.webhook_id = "01" + digest[8:32].upper()

    def add_user(self, name: str, email: str, role: str) -> ZendeskUser:
        user = ZendeskUser(self._user_ids(), name, email, role, whole_seconds())
        self.users[user.id] = user
        return user

    def user_by_email(self, email: str) -> ZendeskUser | None:
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if u.email.lower() == wanted), None)


class ZendeskServer:
    provider = "zendesk"

    def __init__(self, tenants: tuple[TenantAccounts, ...], base_url: str, state_dir: Path) -> None:
        self.base_url = base_url
        self.traffic = TrafficLog(self.provider, state_dir)
        self.faults = FaultPlan()
        self.webhooks = WebhookSender(self.provider)
        user_ids = IdSequence(10_000_000_001)
        self._ticket_ids = IdSequence(1)
        self._comment_ids = IdSequence(30_000_000_001)
        self._audit_ids = IdSequence(40_000_000_001)
        self._invocation_ids = IdSequence(1_000_000_000 + secrets.randbelow(8_000_000_000))
        self.accounts = {t.tenant: ZendeskAccount(t, user_ids) for t in tenants}
        self.help_centers = {name: HelpCenter(a.accounts.help_center_dir, a.api_user.id)
                             for name, a in self.accounts.items()}

    def app(self) -> ASGIApp:
        routes = []
        for suffix in (".json", ""):
            routes += [
                Route(f"/api/v2/tickets{suffix}", self.create_ticket, methods=["POST"]),
                Route(f"/api/v2/tickets/{{ticket_id:int}}{suffix}", self.show_ticket, methods=["GET"]),
                Route(f"/api/v2/tickets/{{ticket_id:int}}{suffix}", self.update_ticket, methods=["PUT"]),
                Route(f"/api/v2/tickets/{{ticket_id:int}}/comments{suffix}", self.list_comments, methods=["GET"]),
                Route(f"/api/v2/requests/{{ticket_id:int}}{suffix}", self.show_request, methods=["GET"]),
                Route(f"/api/v2/requests/{{ticket_id:int}}{suffix}", self.update_request, methods=["PUT"]),
                Route(f"/api/v2/users/me{suffix}", self.show_me, methods=["GET"]),
                Route(f"/api/v2/users/create_or_update{suffix}", self.create_or_update_user, methods=["POST"]),
                Route(f"/api/v2/users/{{user_id:int}}{suffix}", self.show_user, methods=["GET"]),
            ]
        routes += help_center_routes(self.base_url, self._authorize_help_center, self.help_centers,
                                     lambda: JSONResponse(NOT_FOUND, status_code=404))
        routes += control_routes(provider=self.provider, traffic=self.traffic, faults=self.faults,
                                 webhooks=self.webhooks, ticket_id=strip_prefix("zd"), outcomes=self.sim_outcome)
        app = Starlette(routes=routes, exception_handlers={404: _not_found_handler})
        return ProviderTraffic(app, traffic=self.traffic, faults=self.faults, fault_body=_fault_body)

    # ---- auth

    def _authenticate(self, request: Request) -> tuple[ZendeskAccount, ZendeskUser] | None:
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        user, token = credentials
        email, separator, _ = user.rpartition("/token")
        if not separator or not user.endswith("/token"):
            return None
        for account in self.accounts.values():
            if secrets.compare_digest(token, account.accounts.zendesk_api_token):
                found = account.user_by_email(email)
                if found is None:
                    return None
                set_tenant(request, account.accounts.tenant)
                return account, found
        return None

    def _agent(self, request: Request) -> tuple[ZendeskAccount, ZendeskUser] | Response:
        who = self._authenticate(request)
        if who is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        if who[1].is_end_user:
            return JSONResponse(FORBIDDEN, status_code=403)
        return who

    async def _authorize_help_center(self, request: Request) -> HelpCenter | Response:
        who = self._agent(request)
        if isinstance(who, Response):
            return who
        return self.help_centers[who[0].accounts.tenant]

    # ---- tickets

    async def create_ticket(self, request: Request) -> Response:
        who = self._agent(request)
        if isinstance(who, Response):
            return who
        account, agent = who
        raw = await request.body()
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        fingerprint = hashlib.sha256(raw).hexdigest()
        if key and key in account.idempotent:
            stored_fingerprint, stored = account.idempotent[key]
            if stored_fingerprint != fingerprint:
                return JSONResponse({"error": "IdempotentRequestError",
                                     "description": "Request parameters do not match the original request with "
                                                    "this Idempotency-Key"}, status_code=400)
            return JSONResponse(stored, status_code=201, headers={"x-idempotency-lookup": "hit"})
        try:
            fields = _ticket_fields(await json_object(request), "ticket")
        except BodyError as exc:
            return _bad_request(str(exc))
        errors = _validate(fields, creating=True)
        requester = submitter = agent
        if "requester_id" in fields:
            requester = account.users.get(fields["requester_id"]) if isinstance(fields["requester_id"], int) else None
        elif isinstance(fields.get("requester"), dict) and fields["requester"].get("email"):
            details = fields["requester"]
            requester = account.user_by_email(str(details["email"])) or account.add_user(
                str(details.get("name") or str(details["email"]).split("@")[0]), str(details["email"]), "end-user")
        elif "requester" in fields:
            requester = None
        if requester is None:
            errors["requester"] = [{"description": "Requester: is invalid", "error": "InvalidValue"}]
        if "submitter_id" in fields:
            submitter = account.users.get(fields["submitter_id"]) if isinstance(fields["submitter_id"], int) else None
            if submitter is None:
                errors["submitter"] = [{"description": "Submitter: is invalid", "error": "InvalidValue"}]
        if errors:
            return _record_invalid(errors)
        comment_fields = fields["comment"]
        author = account.users.get(comment_fields.get("author_id")) or submitter
        now = whole_seconds()
        ticket = ZendeskTicket(
            id=self._ticket_ids(), subject=str(fields.get("subject") or ""), status=fields.get("status", "new"),
            priority=fields.get("priority"), requester_id=requester.id, submitter_id=submitter.id,
            group_id=fields.get("group_id"), tags=_tags(fields.get("tags", [])), created_at=now, updated_at=now,
        )
        account.tickets[ticket.id] = ticket
        audit_id = self._audit_ids()
        comment = self._add_comment(ticket, author, comment_fields, audit_id)
        response = {"ticket": self._ticket_json(ticket),
                    "audit": self._audit_json(ticket, audit_id, author, [_comment_event(comment)])}
        if key:
            account.idempotent[key] = (fingerprint, response)
        log.info("%s: ticket %d created by %s for %s", account.accounts.tenant, ticket.id, agent.email,
                 account.users[ticket.requester_id].email)
        self._fire(account, ticket, "ticket.created", agent)
        return JSONResponse(response, status_code=201,
                            headers={"x-idempotency-lookup": "miss"} if key else None)

    async def show_ticket(self, request: Request) -> Response:
        found = self._agent_ticket(request)
        if isinstance(found, Response):
            return found
        return JSONResponse({"ticket": self._ticket_json(found[1])})

    async def update_ticket(self, request: Request) -> Response:
        found = self._agent_ticket(request)
        if isinstance(found, Response):
            return found
        account, ticket, agent = found
        try:
            fields = _ticket_fields(await json_object(request), "ticket")
        except BodyError as exc:
            return _bad_request(str(exc))
        errors = _validate(fields, creating=False)
        comment_fields = fields.get("comment")
        author = agent
        if isinstance(comment_fields, dict) and "author_id" in comment_fields:
            author = account.users.get(comment_fields["author_id"])
            if author is None:
                errors["comment"] = [{"description": "Comment: author is invalid", "error": "InvalidValue"}]
        if errors:
            return _record_invalid(errors)
        audit_id = self._audit_ids()
        events = []
        if comment_fields is not None:
            comment = self._add_comment(ticket, author, comment_fields, audit_id)
            events.append(_comment_event(comment))
            if not author.is_end_user:
                self.traffic.record_delivery(
                    tenant=account.accounts.tenant, kind="reply" if comment.public else "note",
                    external_id=comment.id, ticket=ticket.id, html=comment.html_body,
                    text=html_to_text(comment.html_body), public=comment.public)
        status = fields.get("status") or ("open" if ticket.status == "new" and comment_fields is not None else None)
        previous = ticket.status
        events += self._apply_changes(ticket, fields, status)
        ticket.updated_at = whole_seconds()
        self._status_triggers(account, ticket, previous, agent)
        return JSONResponse({"ticket": self._ticket_json(ticket),
                             "audit": self._audit_json(ticket, audit_id, agent, events)})

    async def list_comments(self, request: Request) -> Response:
        found = self._agent_ticket(request)
        if isinstance(found, Response):
            return found
        comments = [self._comment_json(c) for c in found[1].comments]
        if request.query_params.get("sort_order") == "desc":
            comments.reverse()
        return JSONResponse({"comments": comments, "next_page": None, "previous_page": None, "count": len(comments)})

    def _agent_ticket(self, request: Request) -> tuple[ZendeskAccount, ZendeskTicket, ZendeskUser] | Response:
        who = self._agent(request)
        if isinstance(who, Response):
            return who
        account, agent = who
        ticket = account.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return account, ticket, agent

    # ---- requests: the end user's side of a ticket

    async def show_request(self, request: Request) -> Response:
        found = self._requester_ticket(request)
        if isinstance(found, Response):
            return found
        return JSONResponse({"request": self._request_json(found[1])})

    async def update_request(self, request: Request) -> Response:
        found = self._requester_ticket(request)
        if isinstance(found, Response):
            return found
        account, ticket, user = found
        try:
            fields = _ticket_fields(await json_object(request), "request")
        except BodyError as exc:
            return _bad_request(str(exc))
        comment_fields = fields.get("comment")
        if not isinstance(comment_fields, dict) or not (comment_fields.get("body") or comment_fields.get("html_body")):
            return _record_invalid({"comment": [{"description": "Comment: cannot be blank", "error": "BlankValue"}]})
        self._requester_comment(account, ticket, user, comment_fields)
        return JSONResponse({"request": self._request_json(ticket)})

    def _requester_comment(self, account: ZendeskAccount, ticket: ZendeskTicket, user: ZendeskUser,
                           comment_fields: dict) -> list[Fired]:
        self._add_comment(ticket, user, {**comment_fields, "public": True}, self._audit_ids())
        previous = ticket.status
        if user.is_end_user and ticket.status in ("pending", "hold", "solved"):
            ticket.status = "open"  # a requester's reply reopens the ticket
        ticket.updated_at = whole_seconds()
        if not user.is_end_user:
            return []
        return [self._fire(account, ticket, "ticket.requester_updated", user),
                *self._status_triggers(account, ticket, previous, user)]

    def _status_triggers(self, account: ZendeskAccount, ticket: ZendeskTicket, previous: str,
                         user: ZendeskUser | None) -> list[Fired]:
        """The outcome triggers of a status change made by `user` (None: Zendesk's automation)."""
        if ticket.status == previous or (user is not None and user.id == account.api_user.id):
            return []
        if previous == "solved" and ticket.status != "closed":
            return [self._fire(account, ticket, REOPENED, user)]
        if ticket.status in _STATUS_TRIGGERED:
            return [self._fire(account, ticket, STATUS_CHANGED, user)]
        return []

    async def sim_outcome(self, body: dict) -> list[Fired]:
        """/_sim/outcomes: the requester replies or rates, or a support agent sets a status."""
        account, ticket = next(((a, a.tickets[int(body["ticket"])]) for a in self.accounts.values()
                                if body["ticket"].isdigit() and int(body["ticket"]) in a.tickets), (None, None))
        if account is None:
            raise SimError(404, f"no Zendesk ticket {body['ticket']!r}")
        requester = account.users[ticket.requester_id]
        if body["action"] == "reply":
            if not str(body.get("text") or "").strip():
                raise SimError(400, "a reply needs text")
            return self._requester_comment(account, ticket, requester, {"body": str(body["text"])})
        if body["action"] == "rate":
            if "score" not in body:
                raise SimError(400, "a rating needs score (good or bad, as Zendesk has them)")
            ticket.satisfaction = {"score": body["score"], "comment": str(body.get("comment") or "")}
            ticket.updated_at = whole_seconds()
            return [self._fire(account, ticket, RATED, requester)]
        status = str(body.get("status") or "")
        if status not in (*STATUSES, "closed"):
            raise SimError(400, f"status must be one of {', '.join((*STATUSES, 'closed'))}")
        previous, ticket.status = ticket.status, status
        ticket.updated_at = whole_seconds()
        # Closing is Zendesk's automation's (no current user); any other change is the agent's.
        return self._status_triggers(account, ticket, previous, None if status == "closed" else account.human_agent)

    def _requester_ticket(self, request: Request) -> tuple[ZendeskAccount, ZendeskTicket, ZendeskUser] | Response:
        who = self._authenticate(request)
        if who is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        account, user = who
        ticket = account.tickets.get(request.path_params["ticket_id"])
        if ticket is None or (user.is_end_user and ticket.requester_id != user.id):
            return JSONResponse(NOT_FOUND, status_code=404)
        return account, ticket, user

    # ---- users

    async def show_me(self, request: Request) -> Response:
        who = self._authenticate(request)
        if who is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        return JSONResponse({"user": self._user_json(who[1])})

    async def show_user(self, request: Request) -> Response:
        who = self._agent(request)
        if isinstance(who, Response):
            return who
        user = who[0].users.get(request.path_params["user_id"])
        if user is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return JSONResponse({"user": self._user_json(user)})

    async def create_or_update_user(self, request: Request) -> Response:
        who = self._agent(request)
        if isinstance(who, Response):
            return who
        account = who[0]
        try:
            fields = _ticket_fields(await json_object(request), "user")
        except BodyError as exc:
            return _bad_request(str(exc))
        email, name = str(fields.get("email") or "").strip(), str(fields.get("name") or "").strip()
        if "@" not in email:
            return _record_invalid({"email": [{"description": "Email: is invalid", "error": "InvalidValue"}]})
        user = account.user_by_email(email)
        if user is not None:
            if name:
                user.name = name
            return JSONResponse({"user": self._user_json(user)})
        role = str(fields.get("role") or "end-user")
        if role not in ("end-user", "agent", "admin"):
            return _record_invalid({"role": [{"description": "Role: is invalid", "error": "InvalidValue"}]})
        user = account.add_user(name or email.split("@")[0], email, role)
        return JSONResponse({"user": self._user_json(user)}, status_code=201)

    # ---- changes, webhooks, JSON

    def _add_comment(self, ticket: ZendeskTicket, author: ZendeskUser, fields: dict, audit_id: int) -> ZendeskComment:
        if fields.get("html_body"):
            html_body = str(fields["html_body"])
            body = html_to_text(html_body)
        else:
            body = str(fields.get("body") or "")
            html_body = f'<div class="zd-comment" dir="auto">{text_to_html(body)}</div>'
        comment = ZendeskComment(self._comment_ids(), author.id, body, html_body, bool(fields.get("public", True)),
                                 utc_now(), audit_id)
        ticket.comments.append(comment)
        return comment

    def _apply_changes(self, ticket: ZendeskTicket, fields: dict, status: str | None) -> list[dict]:
        events = []

        def change(name: str, value: object) -> None:
            previous = getattr(ticket, name)
            if previous != value:
                setattr(ticket, name, value)
                events.append({"id": self._audit_ids(), "type": "Change", "field_name": name,
                               "value": value, "previous_value": previous})

        if status:
            change("status", status)
        if "priority" in fields:
            change("priority", fields["priority"])
        if "group_id" in fields:
            change("group_id", fields["group_id"])
        if "subject" in fields:
            change("subject", str(fields["subject"]))
        tags = _tags(fields["tags"]) if "tags" in fields else list(ticket.tags)
        tags += [t for t in _tags(fields.get("additional_tags", [])) if t not in tags]
        removed = set(_tags(fields.get("remove_tags", [])))
        change("tags", [t for t in tags if t not in removed])
        return events

    def _fire(self, account: ZendeskAccount, ticket: ZendeskTicket, event: str, user: ZendeskUser | None) -> Fired:
        body = json.dumps(self._trigger_payload(account, ticket, event, user)).encode()
        secret = account.accounts.zendesk_webhook_secret
        invocation_id = str(self._invocation_ids())

        def render(attempt: int) -> tuple[bytes, dict[str, str]]:
            timestamp = iso_seconds(utc_now())
            return body, {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Zendesk Webhook",
                "X-Zendesk-Account-Id": account.account_id,
                ZENDESK_WEBHOOK_ID_HEADER: account.webhook_id,
                ZENDESK_INVOCATION_ID_HEADER: invocation_id,
                ZENDESK_TIMESTAMP_HEADER: timestamp,
                ZENDESK_SIGNATURE_HEADER: zendesk_signature(secret, timestamp, body),
            }

        webhook = Webhook(self.provider, account.accounts.tenant, str(ticket.id), event, invocation_id,
                          account.accounts.webhook_url(self.provider), render)
        return fired(webhook, self.webhooks.fire(webhook))

    @staticmethod
    def _trigger_payload(account: ZendeskAccount, ticket: ZendeskTicket, event: str, user: ZendeskUser | None) -> dict:
        """The trigger's JSON body of docs/channels.md, placeholders rendered (all strings);
        `user` is {{current_user}}, the one whose update fired it (None: an automation)."""
        requester = account.users[ticket.requester_id]
        public = ticket.public_comments()
        latest = public[-1] if public else None
        rating = ticket.satisfaction or {"score": "unoffered", "comment": ""}
        return {"event": event, "current_user": {"id": str(user.id) if user else "", "email": user.email if user else ""},
                "ticket": {
            "id": str(ticket.id),
            "subject": ticket.subject,
            "description": ticket.description,
            "latest_comment": {"id": str(latest.id) if latest else "", "html_body": latest.html_body if latest else "",
                               "author_id": str(latest.author_id) if latest else ""},
            "comment_count": str(len(public)),
            "status": _STATUS_TITLES[ticket.status],
            "via": _VIA_TITLE,
            "priority": ticket.priority.title() if ticket.priority else "-",
            "tags": " ".join(ticket.tags),
            "requester": {"id": str(requester.id), "email": requester.email, "name": requester.name},
            "attachments_count": "0",
            "updated_at": iso_seconds(ticket.updated_at),
            "satisfaction_rating": {"score": str(rating["score"]), "comment": rating["comment"]},
            "public_comment_authors": " ".join(str(c.author_id) for c in public),
        }}

    def _ticket_json(self, ticket: ZendeskTicket) -> dict:
        return {
            "id": ticket.id, "url": f"{self.base_url}/api/v2/tickets/{ticket.id}.json", "external_id": None,
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": iso_seconds(ticket.created_at), "updated_at": iso_seconds(ticket.updated_at),
            "type": None, "subject": ticket.subject, "raw_subject": ticket.subject, "description": ticket.description,
            "priority": ticket.priority, "status": ticket.status, "recipient": None,
            "requester_id": ticket.requester_id, "submitter_id": ticket.submitter_id, "assignee_id": None,
            "organization_id": None, "group_id": ticket.group_id, "collaborator_ids": [], "follower_ids": [],
            "email_cc_ids": [], "has_incidents": False, "is_public": bool(ticket.public_comments()), "due_at": None,
            "tags": list(ticket.tags), "custom_fields": [], "satisfaction_rating": ticket.satisfaction,
            "allow_attachments": True,
        }

    def _request_json(self, ticket: ZendeskTicket) -> dict:
        return {
            "id": ticket.id, "url": f"{self.base_url}/api/v2/requests/{ticket.id}.json", "subject": ticket.subject,
            "description": ticket.description, "status": ticket.status, "priority": ticket.priority,
            "requester_id": ticket.requester_id, "created_at": iso_seconds(ticket.created_at),
            "updated_at": iso_seconds(ticket.updated_at), "via": {"channel": "api"}, "is_public": True,
            "can_be_solved_by_me": False, "solved": ticket.status == "solved",
        }

    def _comment_json(self, comment: ZendeskComment) -> dict:
        return {"id": comment.id, "type": "Comment", "author_id": comment.author_id, "body": comment.body,
                "html_body": comment.html_body, "plain_body": comment.body, "public": comment.public,
                "attachments": [], "audit_id": comment.audit_id, "via": {"channel": "api"},
                "created_at": iso_seconds(comment.created_at), "metadata": {}}

    def _audit_json(self, ticket: ZendeskTicket, audit_id: int, author: ZendeskUser, events: list[dict]) -> dict:
        return {"id": audit_id, "ticket_id": ticket.id, "created_at": iso_seconds(ticket.updated_at),
                "author_id": author.id, "metadata": {}, "events": events}

    def _user_json(self, user: ZendeskUser) -> dict:
        return {"id": user.id, "url": f"{self.base_url}/api/v2/users/{user.id}.json", "name": user.name,
                "email": user.email, "role": user.role, "created_at": iso_seconds(user.created_at),
                "updated_at": iso_seconds(user.created_at), "active": True, "verified": True, "suspended": False,
                "locale": "en-US", "time_zone": "UTC", "tags": []}


def _comment_event(comment: ZendeskComment) -> dict:
    return {"id": comment.id, "type": "Comment", "author_id": comment.author_id, "body": comment.body,
            "html_body": comment.html_body, "plain_body": comment.body, "public": comment.public,
            "attachments": [], "audit_id": comment.audit_id}


def _ticket_fields(body: dict, root: str) -> dict:
    fields = body.get(root)
    if not isinstance(fields, dict):
        raise BodyError(f"Parameter missing: {root}")
    return fields


def _validate(fields: dict, *, creating: bool) -> dict:
    """Zendesk's RecordInvalid details for what the fields get wrong (empty when nothing)."""
    errors: dict[str, list[dict]] = {}
    comment = fields.get("comment")
    if creating or comment is not None:
        if not isinstance(comment, dict) or not str(comment.get("body") or comment.get("html_body") or "").strip():
            errors["base"] = [{"description": "Description: cannot be blank" if creating else
                               "Comment: body or html_body is required", "error": "BlankValue"}]
        elif "public" in comment and not isinstance(comment["public"], bool):
            errors["comment"] = [{"description": "Comment: public must be true or false", "error": "InvalidValue"}]
    if "status" in fields and fields["status"] not in STATUSES:
        errors["status"] = [{"description": f"Status: {fields['status']} is not valid", "error": "InvalidValue"}]
    if "priority" in fields and fields["priority"] is not None and fields["priority"] not in PRIORITIES:
        errors["priority"] = [{"description": f"Priority: {fields['priority']} is not valid", "error": "InvalidValue"}]
    if "group_id" in fields and fields["group_id"] is not None and (
            not isinstance(fields["group_id"], int) or isinstance(fields["group_id"], bool)):
        errors["group_id"] = [{"description": "Group: is invalid", "error": "InvalidValue"}]
    for name in ("tags", "additional_tags", "remove_tags"):
        if name in fields and not (isinstance(fields[name], str) or (
                isinstance(fields[name], list) and all(isinstance(t, str) for t in fields[name]))):
            errors[name] = [{"description": f"{name}: must be a list of tags", "error": "InvalidValue"}]
    return errors


def _tags(value: list[str] | str) -> list[str]:
    words = value.split() if isinstance(value, str) else [w for tag in value for w in tag.split()]
    seen: list[str] = []
    for word in words:
        tag = word.strip().lower()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def _record_invalid(details: dict) -> JSONResponse:
    return JSONResponse({"error": "RecordInvalid", "description": "Record validation errors", "details": details},
                        status_code=422)


def _bad_request(description: str) -> JSONResponse:
    return JSONResponse({"error": "InvalidParameter", "description": description}, status_code=400)


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "InvalidEndpoint", "description": "Not found"}, status_code=404)


def _fault_body(status: int) -> dict:
    if status == 429:
        return {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}
    if status == 503:
        return {"error": "ServiceUnavailable", "description": "Zendesk is temporarily unavailable"}
    return {"error": "SimulatedFault", "description": f"HTTP {status} (fault set with /_sim/faults)"}
