"""Intercom stand-in: contacts, conversations, replies and parts (API version 2.x), and the app's
webhook topics `conversation.user.created` and `conversation.user.replied`.

Each tenant is its own workspace, found by its access token (`Authorization: Bearer`). Every API
call must carry `Intercom-Version` (any value; it is echoed back): Supportflow's client pins the
version so a workspace's default cannot change the shapes it reads.

A conversation is started by a contact (`POST /conversations` from a user). An admin reply by the
tenant's admin is what Supportflow delivered: `comment` -> "reply", `note` -> "note"; a user reply
fires `conversation.user.replied`. Outcomes: an admin closing or reopening a conversation (through
the API, or the workspace's human admin through `/_sim/outcomes`) fires `conversation.admin.closed`
/ `conversation.admin.opened`; a contact's rating fires `conversation.rating.added`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tooling.channel_servers.config import TenantAccounts
from tooling.channel_servers.control_api import (
    BodyError, Fired, ProviderTraffic, SimError, control_routes, fired, json_object, set_tenant, strip_prefix,
)
from tooling.channel_servers.markup import html_to_text, text_to_html
from tooling.channel_servers.store import FaultPlan, IdSequence, TrafficLog
from tooling.channel_servers.webhooks import INTERCOM_SIGNATURE_HEADER, Webhook, WebhookSender, intercom_signature

log = logging.getLogger("channel_servers.intercom")

VERSION_HEADER = "Intercom-Version"
PART_MESSAGE_TYPES = ("assignment", "open", "close", "snoozed")
USER_REPLIED, RATED = "conversation.user.replied", "conversation.rating.added"
STATE_TOPICS = {"close": "conversation.admin.closed", "open": "conversation.admin.opened"}


@dataclass
class IntercomContact:
    id: str
    role: str
    external_id: str | None
    email: str | None
    name: str | None
    created_at: int


@dataclass
class IntercomPart:
    id: str
    part_type: str  # comment, note, assignment, open, close, snoozed
    body: str | None
    author: dict
    created_at: int
    assigned_to: dict | None = None


@dataclass
class IntercomConversation:
    id: str
    source_id: str
    contact_id: str
    body: str
    created_at: int
    updated_at: int
    state: str = "open"
    admin_assignee_id: str | None = None
    team_assignee_id: str | None = None
    snoozed_until: int | None = None
    parts: list[IntercomPart] = field(default_factory=list)
    rating: dict | None = None  # conversation_rating, as the contact gave it


class IntercomWorkspace:
    def __init__(self, accounts: TenantAccounts) -> None:
        self.accounts = accounts
        self.app_id = hashlib.sha1(accounts.tenant.encode()).hexdigest()[:8]
        self.admin = {"type": "admin", "id": accounts.intercom_admin_id, "name": "Supportflow",
                      "email": f"supportflow@{accounts.mail_domain or 'example.com'}"}
        # A person on the support team: closes and reopens conversations (/_sim/outcomes).
        self.human_admin = {"type": "admin", "id": f"{accounts.intercom_admin_id}1", "name": "Support agent",
                            "email": f"agent@{accounts.mail_domain or 'example.com'}"}
        self.contacts: dict[str, IntercomContact] = {}
        self.conversations: dict[str, IntercomConversation] = {}

    def find_contact(self, *, contact_id: str | None = None, external_id: str | None = None,
                     email: str | None = None) -> IntercomContact | None:
        for contact in self.contacts.values():
            if (contact_id and contact.id == contact_id) or (external_id and contact.external_id == external_id) or (
                    email and contact.email and contact.email.lower() == email.lower()):
                return contact
        return None


class IntercomServer:
    provider = "intercom"

    def __init__(self, tenants: tuple[TenantAccounts, ...], base_url: str, state_dir: Path) -> None:
        self.base_url = base_url
        self.traffic = TrafficLog(self.provider, state_dir)
        self.faults = FaultPlan()
        self.webhooks = WebhookSender(self.provider)
        self._conversation_ids = IdSequence(215_470_000_001)
        self._source_ids = IdSequence(3_001)
        self._part_ids = IdSequence(25_000_000_001)
        self.workspaces = {t.tenant: IntercomWorkspace(t) for t in tenants}

    def app(self) -> ASGIApp:
        routes = [
            Route("/me", self.show_me, methods=["GET"]),
            Route("/contacts", self.create_contact, methods=["POST"]),
            Route("/contacts/search", self.search_contacts, methods=["POST"]),
            Route("/contacts/{contact_id}", self.show_contact, methods=["GET"]),
            Route("/conversations", self.create_conversation, methods=["POST"]),
            Route("/conversations/{conversation_id}", self.show_conversation, methods=["GET"]),
            Route("/conversations/{conversation_id}/reply", self.reply, methods=["POST"]),
            Route("/conversations/{conversation_id}/parts", self.add_part, methods=["POST"]),
        ] + control_routes(provider=self.provider, traffic=self.traffic, faults=self.faults, webhooks=self.webhooks,
                           ticket_id=strip_prefix("ic"), outcomes=self.sim_outcome)
        app = Starlette(routes=routes, exception_handlers={404: _not_found_handler})
        return ProviderTraffic(app, traffic=self.traffic, faults=self.faults, fault_body=_fault_body)

    # ---- auth

    def _workspace(self, request: Request) -> IntercomWorkspace | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        workspace = None
        if scheme.lower() == "bearer" and token.strip():
            workspace = next((w for w in self.workspaces.values()
                              if secrets.compare_digest(token.strip(), w.accounts.intercom_access_token)), None)
        if workspace is None:
            return _error(401, "unauthorized", "Access Token Invalid")
        set_tenant(request, workspace.accounts.tenant)
        if not request.headers.get(VERSION_HEADER, "").strip():
            return _error(400, "intercom_version_missing",
                          f"Send the {VERSION_HEADER} header (Supportflow pins the API version)")
        return workspace

    def _answer(self, request: Request, body: dict, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={VERSION_HEADER: request.headers[VERSION_HEADER]})

    async def show_me(self, request: Request) -> Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        return self._answer(request, workspace.admin | {"app": {"type": "app", "id_code": workspace.app_id}})

    # ---- contacts

    async def create_contact(self, request: Request) -> Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _error(400, "parameter_invalid", str(exc))
        role = body.get("role", "user")
        if role not in ("user", "lead"):
            return _error(400, "parameter_invalid", "role must be user or lead")
        external_id, email = body.get("external_id"), body.get("email")
        if role == "user" and not (external_id or email):
            return _error(400, "parameter_not_found", "email or external_id is required for a user")
        existing = workspace.find_contact(external_id=external_id, email=email)
        if existing is not None:
            return _error(409, "conflict", f"A contact matching those details already exists with id={existing.id}")
        contact = IntercomContact(uuid.uuid4().hex[:24], role, external_id, email, body.get("name"), int(time.time()))
        workspace.contacts[contact.id] = contact
        return self._answer(request, self._contact_json(workspace, contact))

    async def search_contacts(self, request: Request) -> Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        try:
            query = (await json_object(request)).get("query")
            matches = [c for c in workspace.contacts.values() if _matches(c, query)]
        except (BodyError, ValueError) as exc:
            return _error(400, "parameter_invalid", f"query: {exc}")
        return self._answer(request, {
            "type": "list", "data": [self._contact_json(workspace, c) for c in matches], "total_count": len(matches),
            "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1}})

    async def show_contact(self, request: Request) -> Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        contact = workspace.contacts.get(request.path_params["contact_id"])
        if contact is None:
            return _error(404, "not_found", "User Not Found")
        return self._answer(request, self._contact_json(workspace, contact))

    # ---- conversations

    async def create_conversation(self, request: Request) -> Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _error(400, "parameter_invalid", str(exc))
        sender = body.get("from")
        if not isinstance(sender, dict) or not sender.get("id"):
            return _error(400, "parameter_not_found", "from is required (type and id of the contact)")
        if sender.get("type") not in ("user", "lead", "contact"):
            return _error(400, "parameter_invalid", "from.type must be user, lead or contact")
        if not str(body.get("body") or "").strip():
            return _error(400, "parameter_not_found", "Body is required")
        contact = workspace.contacts.get(str(sender["id"]))
        if contact is None:
            return _error(404, "not_found", "User Not Found")
        now = int(time.time())
        conversation = IntercomConversation(
            id=str(self._conversation_ids()), source_id=str(self._source_ids()), contact_id=contact.id,
            body=text_to_html(str(body["body"])), created_at=int(body.get("created_at") or now), updated_at=now)
        workspace.conversations[conversation.id] = conversation
        log.info("%s: conversation %s started by contact %s", workspace.accounts.tenant, conversation.id, contact.id)
        self._fire(workspace, conversation, "conversation.user.created")
        return self._answer(request, {"type": "user_message", "id": conversation.source_id,
                                      "created_at": conversation.created_at, "body": conversation.body,
                                      "message_type": "inapp", "conversation_id": conversation.id})

    async def show_conversation(self, request: Request) -> Response:
        found = self._conversation(request)
        if isinstance(found, Response):
            return found
        workspace, conversation = found
        return self._answer(request, self._conversation_json(workspace, conversation))

    async def reply(self, request: Request) -> Response:
        found = self._conversation(request)
        if isinstance(found, Response):
            return found
        workspace, conversation = found
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _error(400, "parameter_invalid", str(exc))
        message_type, kind = body.get("message_type"), body.get("type")
        text = str(body.get("body") or "")
        if kind == "admin":
            if message_type not in ("comment", "note"):
                return _error(400, "parameter_invalid", "message_type must be comment or note for an admin reply")
            if str(body.get("admin_id") or "") != workspace.accounts.intercom_admin_id:
                return _error(400, "parameter_invalid", f"Admin not found: {body.get('admin_id')!r}")
            if not text.strip():
                return _error(400, "parameter_not_found", "Body is required")
            part = self._add_part(conversation, message_type, text_to_html(text), workspace.admin)
            self.traffic.record_delivery(
                tenant=workspace.accounts.tenant, kind="reply" if message_type == "comment" else "note",
                external_id=part.id, ticket=conversation.id, html=part.body, text=html_to_text(part.body),
                public=message_type == "comment")
        elif kind == "user":
            if message_type != "comment":
                return _error(400, "parameter_invalid", "message_type must be comment for a user reply")
            if not text.strip():
                return _error(400, "parameter_not_found", "Body is required")
            contact = workspace.find_contact(contact_id=body.get("intercom_user_id"),
                                             external_id=body.get("user_id"), email=body.get("email"))
            if contact is None or contact.id != conversation.contact_id:
                return _error(404, "not_found", "User Not Found")
            self._user_reply(workspace, conversation, contact, text)
        else:
            return _error(400, "parameter_invalid", "type must be admin or user")
        return self._answer(request, self._conversation_json(workspace, conversation))

    async def add_part(self, request: Request) -> Response:
        found = self._conversation(request)
        if isinstance(found, Response):
            return found
        workspace, conversation = found
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _error(400, "parameter_invalid", str(exc))
        message_type = body.get("message_type")
        if message_type not in PART_MESSAGE_TYPES:
            return _error(400, "parameter_invalid", f"message_type must be one of {', '.join(PART_MESSAGE_TYPES)}")
        if body.get("type") != "admin" or str(body.get("admin_id") or "") != workspace.accounts.intercom_admin_id:
            return _error(400, "parameter_invalid", f"Admin not found: {body.get('admin_id')!r}")
        html = text_to_html(str(body["body"])) if body.get("body") else None
        assigned_to = None
        if message_type == "assignment":
            assignee = str(body.get("assignee_id") or "")
            if not assignee:
                return _error(400, "parameter_not_found", "assignee_id is required for an assignment")
            if assignee == workspace.accounts.intercom_admin_id:
                conversation.admin_assignee_id, assigned_to = assignee, {"type": "admin", "id": assignee}
            else:
                conversation.team_assignee_id, assigned_to = assignee, {"type": "team", "id": assignee}
        elif message_type == "snoozed":
            try:
                conversation.snoozed_until = int(body["snoozed_until"])
            except (KeyError, TypeError, ValueError):
                return _error(400, "parameter_not_found", "snoozed_until (Unix seconds) is required to snooze")
            conversation.state = "snoozed"
        else:
            self._change_state(workspace, conversation, message_type, workspace.admin, html)
            return self._answer(request, self._conversation_json(workspace, conversation))
        part = self._add_part(conversation, message_type, html, workspace.admin)
        part.assigned_to = assigned_to
        return self._answer(request, self._conversation_json(workspace, conversation))

    def _user_reply(self, workspace: IntercomWorkspace, conversation: IntercomConversation, contact: IntercomContact,
                    text: str) -> Fired:
        self._add_part(conversation, "comment", text_to_html(text), self._user_author(contact))
        conversation.state, conversation.snoozed_until = "open", None  # a reply reopens a closed conversation
        return self._fire(workspace, conversation, USER_REPLIED)

    def _change_state(self, workspace: IntercomWorkspace, conversation: IntercomConversation, message_type: str,
                      admin: dict, html: str | None = None) -> Fired:
        """An admin closes or opens the conversation: a part of that type, and its webhook topic."""
        conversation.state = "open" if message_type == "open" else "closed"
        conversation.snoozed_until = None
        self._add_part(conversation, message_type, html, admin)
        return self._fire(workspace, conversation, STATE_TOPICS[message_type])

    async def sim_outcome(self, body: dict) -> list[Fired]:
        """/_sim/outcomes: the contact replies or rates, or the human admin closes / reopens."""
        found = next(((w, w.conversations[body["ticket"]]) for w in self.workspaces.values()
                      if body["ticket"] in w.conversations), None)
        if found is None:
            raise SimError(404, f"no Intercom conversation {body['ticket']!r}")
        workspace, conversation = found
        contact = workspace.contacts[conversation.contact_id]
        if body["action"] == "reply":
            if not str(body.get("text") or "").strip():
                raise SimError(400, "a reply needs text")
            return [self._user_reply(workspace, conversation, contact, str(body["text"]))]
        if body["action"] == "rate":
            if "score" not in body:
                raise SimError(400, "a rating needs score (1 to 5, as Intercom has them)")
            now = int(time.time())
            conversation.rating = {"rating": body["score"], "remark": str(body.get("comment") or "") or None,
                                   "created_at": now, "updated_at": now,
                                   "contact": {"type": "contact", "id": contact.id},
                                   "teammate": {"type": "admin", "id": workspace.human_admin["id"]}}
            conversation.updated_at = now
            return [self._fire(workspace, conversation, RATED)]
        states = {"closed": "close", "open": "open"}
        if body.get("status") not in states:
            raise SimError(400, "status must be closed or open")
        return [self._change_state(workspace, conversation, states[body["status"]], workspace.human_admin)]

    def _conversation(self, request: Request) -> tuple[IntercomWorkspace, IntercomConversation] | Response:
        workspace = self._workspace(request)
        if isinstance(workspace, Response):
            return workspace
        conversation = workspace.conversations.get(request.path_params["conversation_id"])
        if conversation is None:
            return _error(404, "not_found", "Resource Not Found")
        return workspace, conversation

    def _add_part(self, conversation: IntercomConversation, part_type: str, body: str | None,
                  author: dict) -> IntercomPart:
        part = IntercomPart(str(self._part_ids()), part_type, body, author, int(time.time()))
        conversation.parts.append(part)
        conversation.updated_at = part.created_at
        return part

    # ---- webhooks, JSON

    def _fire(self, workspace: IntercomWorkspace, conversation: IntercomConversation, topic: str) -> Fired:
        item = self._conversation_json(workspace, conversation)  # as it was when the event happened
        notification_id = f"notif_{uuid.uuid4()}"
        first_sent = int(time.time())
        secret = workspace.accounts.intercom_client_secret

        def render(attempt: int) -> tuple[bytes, dict[str, str]]:
            body = json.dumps({
                "type": "notification_event", "app_id": workspace.app_id, "id": notification_id, "topic": topic,
                "delivery_status": "pending", "delivery_attempts": attempt, "delivered_at": 0,
                "first_sent_at": first_sent, "created_at": first_sent, "self": None, "links": {},
                "data": {"type": "notification_event_data", "item": item},
            }).encode()
            return body, {"Content-Type": "application/json", "User-Agent": "intercom-parrot-service-rb",
                          INTERCOM_SIGNATURE_HEADER: intercom_signature(secret, body)}

        webhook = Webhook(self.provider, workspace.accounts.tenant, conversation.id, topic, notification_id,
                          workspace.accounts.webhook_url(self.provider), render)
        return fired(webhook, self.webhooks.fire(webhook))

    @staticmethod
    def _user_author(contact: IntercomContact) -> dict:
        return {"type": "user" if contact.role == "user" else "lead", "id": contact.id, "name": contact.name,
                "email": contact.email}

    def _contact_json(self, workspace: IntercomWorkspace, contact: IntercomContact) -> dict:
        return {"type": "contact", "id": contact.id, "workspace_id": workspace.app_id,
                "external_id": contact.external_id, "role": contact.role, "email": contact.email, "phone": None,
                "name": contact.name, "avatar": None,
                "owner_id": None, "has_hard_bounced": False, "marked_email_as_spam": False,
                "unsubscribed_from_emails": False, "created_at": contact.created_at,
                "updated_at": contact.created_at, "signed_up_at": contact.created_at, "last_seen_at": None,
                "custom_attributes": {}, "tags": {"type": "list", "data": []}}

    def _conversation_json(self, workspace: IntercomWorkspace, conversation: IntercomConversation) -> dict:
        contact = workspace.contacts[conversation.contact_id]
        parts = [{"type": "conversation_part", "id": p.id, "part_type": p.part_type, "body": p.body,
                  "created_at": p.created_at, "updated_at": p.created_at, "notified_at": p.created_at,
                  "assigned_to": p.assigned_to, "author": p.author, "attachments": [], "external_id": None,
                  "redacted": False} for p in conversation.parts]
        return {
            "type": "conversation", "id": conversation.id, "title": None, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "waiting_since": None, "snoozed_until": conversation.snoozed_until,
            "open": conversation.state != "closed", "state": conversation.state, "read": False,
            "priority": "not_priority", "admin_assignee_id": conversation.admin_assignee_id,
            "team_assignee_id": conversation.team_assignee_id, "tags": {"type": "tag.list", "tags": []},
            "conversation_rating": conversation.rating,
            "source": {"type": "conversation", "id": conversation.source_id, "delivered_as": "customer_initiated",
                       "subject": "", "body": conversation.body, "author": self._user_author(contact),
                       "attachments": [], "url": None, "redacted": False},
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": contact.id, "external_id": contact.external_id}]},
            "teammates": {"type": "admin.list", "admins": []},
            "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts,
                                   "total_count": len(parts)},
        }


def _matches(contact: IntercomContact, query: object) -> bool:
    """Intercom's search query, the part of it a client needs here: {"field", "operator": "=", "value"},
    or {"operator": "AND"|"OR", "value": [queries]}."""
    if not isinstance(query, dict):
        raise ValueError("query must be an object")
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        results = [_matches(contact, q) for q in query.get("value") or []]
        return all(results) if operator == "AND" else any(results)
    if operator not in ("=", "!="):
        raise ValueError(f"operator {operator!r} is not supported here")
    name = query.get("field")
    if name not in ("id", "external_id", "email", "role", "name"):
        raise ValueError(f"field {name!r} is not supported here")
    equal = getattr(contact, name) == query.get("value")
    return equal if operator == "=" else not equal


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error.list", "request_id": uuid.uuid4().hex[:20],
                         "errors": [{"code": code, "message": message}]}, status_code=status)


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    return _error(404, "not_found", "Resource Not Found")


def _fault_body(status: int) -> dict:
    code = {429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable"}.get(status, "server_error")
    return {"type": "error.list", "request_id": uuid.uuid4().hex[:20],
            "errors": [{"code": code, "message": f"HTTP {status} (fault set with /_sim/faults)"}]}
