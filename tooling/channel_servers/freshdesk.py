"""Freshdesk stand-in: tickets, replies, notes and conversations (API v2), and the automation rules'
webhook of docs/channels.md (`ticket_created`, `customer_replied`).

Each tenant is its own helpdesk, found by its API key (basic auth `<api_key>:X`). Like Freshdesk,
a body with a field the endpoint does not take is refused (400, `invalid_field`).

A reply (`POST /api/v2/tickets/{id}/reply`) is what Supportflow delivered as "reply"; an agent's
note as "note". The requester's own reply is a public, incoming note by the requester
(`{"incoming": true, "private": false, "user_id": <requester id>}`, as an imported customer reply
is made): it fires `customer_replied`. Freshdesk does not sign webhooks: the rule sends the
tenant's secret in `X-Supportflow-Webhook-Secret`.

The outcome rules of docs/channels.md, for changes not performed by Supportflow's own API key:
a status set to pending, resolved or closed fires `status_changed`; a resolved or closed ticket
opened again (by the requester's reply or an agent) fires `ticket_reopened`; a satisfaction
survey answered fires `customer_feedback`. Each helpdesk has a human agent who acts through
`/_sim/outcomes`; the rule says who performed the change in `performed_by`.
"""

from __future__ import annotations

import json
import logging
import re
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
from tooling.channel_servers.markup import html_to_text, text_to_html
from tooling.channel_servers.store import FaultPlan, IdSequence, TrafficLog, iso_seconds, whole_seconds
from tooling.channel_servers.webhooks import FRESHDESK_SECRET_HEADER, Webhook, WebhookSender

log = logging.getLogger("channel_servers.freshdesk")

STATUS_NAMES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
STATUS_CHANGED, REOPENED, FEEDBACK = "status_changed", "ticket_reopened", "customer_feedback"
PRIORITY_NAMES = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}
SOURCE_NAMES = {1: "Email", 2: "Portal", 3: "Phone", 7: "Chat", 9: "Feedback Widget", 10: "Outbound Email"}
UNAUTHORIZED = {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}
NOT_FOUND = {"code": "not_found", "message": "Requested resource not available"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TICKET_FIELDS = {
    "name", "requester_id", "email", "facebook_id", "phone", "twitter_id", "unique_external_id", "subject", "type",
    "status", "priority", "description", "responder_id", "attachments", "cc_emails", "custom_fields", "due_by",
    "email_config_id", "fr_due_by", "group_id", "parent_id", "product_id", "source", "tags", "company_id",
    "internal_agent_id", "internal_group_id", "lookup_parameter",
}
_REPLY_FIELDS = {"body", "attachments", "from_email", "user_id", "cc_emails", "bcc_emails"}
_NOTE_FIELDS = {"body", "attachments", "incoming", "notify_emails", "private", "user_id"}


@dataclass
class FreshdeskContact:
    id: int
    name: str
    email: str


@dataclass
class FreshdeskConversation:
    id: int
    ticket_id: int
    body: str
    incoming: bool
    private: bool
    user_id: int
    source: int  # 0 reply, 2 note
    created_at: datetime
    to_emails: list[str]
    from_email: str | None
    support_email: str | None


@dataclass
class FreshdeskTicket:
    id: int
    subject: str
    description: str
    status: int
    priority: int
    source: int
    requester_id: int
    group_id: int | None
    responder_id: int | None
    type: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    conversations: list[FreshdeskConversation] = field(default_factory=list)
    satisfaction: object = None  # the survey's answer (the API's ratings.default_question), as given

    def touch(self) -> None:
        self.updated_at = whole_seconds()


class FreshdeskHelpdesk:
    def __init__(self, accounts: TenantAccounts, agent_id: int) -> None:
        self.accounts = accounts
        self.agent_id = agent_id
        self.contacts: dict[int, FreshdeskContact] = {}
        self.tickets: dict[int, FreshdeskTicket] = {}

    def contact_by_email(self, email: str) -> FreshdeskContact | None:
        return next((c for c in self.contacts.values() if c.email.lower() == email.lower()), None)


class FreshdeskServer:
    provider = "freshdesk"

    def __init__(self, tenants: tuple[TenantAccounts, ...], base_url: str, state_dir: Path) -> None:
        self.base_url = base_url
        self.traffic = TrafficLog(self.provider, state_dir)
        self.faults = FaultPlan()
        self.webhooks = WebhookSender(self.provider)
        self._ticket_ids = IdSequence(1)
        self._contact_ids = IdSequence(43_000_000_001)
        self._conversation_ids = IdSequence(43_100_000_001)
        agent_ids = IdSequence(43_900_000_001)
        self.helpdesks = {t.tenant: FreshdeskHelpdesk(t, agent_ids()) for t in tenants}

    def app(self) -> ASGIApp:
        routes = [
            Route("/api/v2/tickets", self.create_ticket, methods=["POST"]),
            Route("/api/v2/tickets/{ticket_id:int}", self.show_ticket, methods=["GET"]),
            Route("/api/v2/tickets/{ticket_id:int}", self.update_ticket, methods=["PUT"]),
            Route("/api/v2/tickets/{ticket_id:int}/reply", self.reply, methods=["POST"]),
            Route("/api/v2/tickets/{ticket_id:int}/notes", self.add_note, methods=["POST"]),
            Route("/api/v2/tickets/{ticket_id:int}/conversations", self.list_conversations, methods=["GET"]),
            Route("/api/v2/contacts/{contact_id:int}", self.show_contact, methods=["GET"]),
        ] + control_routes(provider=self.provider, traffic=self.traffic, faults=self.faults, webhooks=self.webhooks,
                           ticket_id=strip_prefix("fd"), outcomes=self.sim_outcome)
        app = Starlette(routes=routes, exception_handlers={404: _not_found_handler})
        return ProviderTraffic(app, traffic=self.traffic, faults=self.faults, fault_body=_fault_body)

    def _helpdesk(self, request: Request) -> FreshdeskHelpdesk | Response:
        credentials = basic_credentials(request)
        helpdesk = None
        if credentials is not None and credentials[0]:
            helpdesk = next((h for h in self.helpdesks.values()
                             if secrets.compare_digest(credentials[0], h.accounts.freshdesk_api_key)), None)
        if helpdesk is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        set_tenant(request, helpdesk.accounts.tenant)
        return helpdesk

    def _ticket(self, request: Request) -> tuple[FreshdeskHelpdesk, FreshdeskTicket] | Response:
        helpdesk = self._helpdesk(request)
        if isinstance(helpdesk, Response):
            return helpdesk
        ticket = helpdesk.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return helpdesk, ticket

    # ---- tickets

    async def create_ticket(self, request: Request) -> Response:
        helpdesk = self._helpdesk(request)
        if isinstance(helpdesk, Response):
            return helpdesk
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _validation_failed([{"field": "body", "message": str(exc), "code": "invalid_json"}])
        errors = _unexpected(body, _TICKET_FIELDS) + _ticket_errors(body, creating=True)
        requester = None
        if "requester_id" in body:
            requester = helpdesk.contacts.get(body["requester_id"]) if isinstance(body["requester_id"], int) else None
            if requester is None:
                errors.append({"field": "requester_id", "message": "There is no contact matching the given "
                                                                   "requester_id", "code": "invalid_value"})
        elif isinstance(body.get("email"), str) and _EMAIL.match(body["email"]):
            requester = helpdesk.contact_by_email(body["email"])
        elif "email" in body:
            errors.append({"field": "email", "message": "It is not a valid email address", "code": "invalid_value"})
        else:
            errors.append({"field": "requester_id", "message": "Please fill at least 1 of requester_id, phone, email, "
                           "twitter_id, facebook_id, unique_external_id fields", "code": "missing_field"})
        if errors:
            return _validation_failed(errors)
        if requester is None:
            requester = FreshdeskContact(self._contact_ids(), str(body.get("name") or body["email"].split("@")[0]),
                                         body["email"])
            helpdesk.contacts[requester.id] = requester
        now = whole_seconds()
        ticket = FreshdeskTicket(
            id=self._ticket_ids(), subject=body["subject"], description=text_to_html(body["description"]),
            status=body.get("status", 2), priority=body.get("priority", 1), source=body.get("source", 2),
            requester_id=requester.id, group_id=body.get("group_id"), responder_id=body.get("responder_id"),
            type=body.get("type"), tags=list(body.get("tags", [])), created_at=now, updated_at=now)
        helpdesk.tickets[ticket.id] = ticket
        log.info("%s: ticket %d created for %s", helpdesk.accounts.tenant, ticket.id, requester.email)
        self._fire(helpdesk, ticket, "ticket_created")
        return JSONResponse(self._ticket_json(ticket), status_code=201)

    async def show_ticket(self, request: Request) -> Response:
        found = self._ticket(request)
        if isinstance(found, Response):
            return found
        answer = self._ticket_json(found[1])
        if "conversations" in request.query_params.get("include", "").split(","):
            answer["conversations"] = [self._conversation_json(found[0], found[1], c) for c in found[1].conversations]
        return JSONResponse(answer)

    async def update_ticket(self, request: Request) -> Response:
        found = self._ticket(request)
        if isinstance(found, Response):
            return found
        helpdesk, ticket = found
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _validation_failed([{"field": "body", "message": str(exc), "code": "invalid_json"}])
        errors = _unexpected(body, _TICKET_FIELDS) + _ticket_errors(body, creating=False)
        if errors:
            return _validation_failed(errors)
        for name in ("subject", "status", "priority", "source", "group_id", "responder_id", "type"):
            if name in body:
                setattr(ticket, name, body[name])
        if "description" in body:
            ticket.description = text_to_html(body["description"])
        if "tags" in body:
            ticket.tags = list(body["tags"])
        ticket.touch()
        return JSONResponse(self._ticket_json(ticket))

    async def reply(self, request: Request) -> Response:
        found = self._ticket(request)
        if isinstance(found, Response):
            return found
        helpdesk, ticket = found
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _validation_failed([{"field": "body", "message": str(exc), "code": "invalid_json"}])
        errors = _unexpected(body, _REPLY_FIELDS) + _body_errors(body)
        if errors:
            return _validation_failed(errors)
        requester = helpdesk.contacts[ticket.requester_id]
        conversation = self._add(ticket, body["body"], incoming=False, private=False,
                                 user_id=body.get("user_id") or helpdesk.agent_id, source=0,
                                 to_emails=[requester.email], from_email=helpdesk.accounts.mailbox or None)
        self.traffic.record_delivery(tenant=helpdesk.accounts.tenant, kind="reply", external_id=conversation.id,
                                     ticket=ticket.id, html=conversation.body, text=html_to_text(conversation.body),
                                     public=True)
        return JSONResponse(self._conversation_json(helpdesk, ticket, conversation), status_code=201)

    async def add_note(self, request: Request) -> Response:
        found = self._ticket(request)
        if isinstance(found, Response):
            return found
        helpdesk, ticket = found
        try:
            body = await json_object(request)
        except BodyError as exc:
            return _validation_failed([{"field": "body", "message": str(exc), "code": "invalid_json"}])
        errors = _unexpected(body, _NOTE_FIELDS) + _body_errors(body)
        for name in ("private", "incoming"):
            if name in body and not isinstance(body[name], bool):
                errors.append({"field": name, "message": "It should be a/an Boolean", "code": "datatype_mismatch"})
        user_id = body.get("user_id", helpdesk.agent_id)
        if user_id != helpdesk.agent_id and user_id not in helpdesk.contacts:
            errors.append({"field": "user_id", "message": "There is no contact or agent matching the given user_id",
                           "code": "invalid_value"})
        if errors:
            return _validation_failed(errors)
        private, incoming = body.get("private", True), body.get("incoming", False)
        by_requester = user_id == ticket.requester_id
        if by_requester and not private:
            conversation = self._customer_reply(helpdesk, ticket, body["body"])[0]
        else:
            conversation = self._add(ticket, body["body"], incoming=incoming, private=private, user_id=user_id,
                                     source=2, to_emails=list(body.get("notify_emails") or []), from_email=None)
        if not by_requester:
            self.traffic.record_delivery(tenant=helpdesk.accounts.tenant, kind="note", external_id=conversation.id,
                                         ticket=ticket.id, html=conversation.body,
                                         text=html_to_text(conversation.body), public=not private)
        return JSONResponse(self._conversation_json(helpdesk, ticket, conversation), status_code=201)

    async def list_conversations(self, request: Request) -> Response:
        found = self._ticket(request)
        if isinstance(found, Response):
            return found
        helpdesk, ticket = found
        return JSONResponse([self._conversation_json(helpdesk, ticket, c) for c in ticket.conversations])

    async def show_contact(self, request: Request) -> Response:
        helpdesk = self._helpdesk(request)
        if isinstance(helpdesk, Response):
            return helpdesk
        contact = helpdesk.contacts.get(request.path_params["contact_id"])
        if contact is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return JSONResponse({"id": contact.id, "name": contact.name, "email": contact.email, "active": False,
                             "created_at": None, "updated_at": None})

    def _customer_reply(self, helpdesk: FreshdeskHelpdesk, ticket: FreshdeskTicket,
                        html: str) -> tuple[FreshdeskConversation, list[Fired]]:
        """The requester's public reply (an incoming note by the requester)."""
        conversation = self._add(ticket, html, incoming=True, private=False, user_id=ticket.requester_id, source=2,
                                 to_emails=[], from_email=None)
        previous = ticket.status
        if ticket.status in (3, 4, 5):
            ticket.status = 2  # the requester's reply opens a pending, resolved or closed ticket again
        done = [self._fire(helpdesk, ticket, "customer_replied")]
        return conversation, done + self._status_rules(helpdesk, ticket, previous, "requester")

    def _status_rules(self, helpdesk: FreshdeskHelpdesk, ticket: FreshdeskTicket, previous: int,
                      performed_by: str) -> list[Fired]:
        """The outcome rules of a status change someone other than Supportflow's API key made."""
        if ticket.status == previous:
            return []
        if previous in (4, 5) and ticket.status in (2, 3):
            return [self._fire(helpdesk, ticket, REOPENED, performed_by)]
        if ticket.status in (3, 4, 5):
            return [self._fire(helpdesk, ticket, STATUS_CHANGED, performed_by)]
        return []

    async def sim_outcome(self, body: dict) -> list[Fired]:
        """/_sim/outcomes: the requester replies or answers the satisfaction survey, or a support agent
        sets a status (2 open, 3 pending, 4 resolved, 5 closed)."""
        found = next(((h, h.tickets[int(body["ticket"])]) for h in self.helpdesks.values()
                      if body["ticket"].isdigit() and int(body["ticket"]) in h.tickets), None)
        if found is None:
            raise SimError(404, f"no Freshdesk ticket {body['ticket']!r}")
        helpdesk, ticket = found
        if body["action"] == "reply":
            if not str(body.get("text") or "").strip():
                raise SimError(400, "a reply needs text")
            return self._customer_reply(helpdesk, ticket, text_to_html(str(body["text"])))[1]
        if body["action"] == "rate":
            if "score" not in body:
                raise SimError(400, "a rating needs score (a survey answer: 103 ... -103, as Freshdesk has them)")
            ticket.satisfaction = body["score"]
            ticket.touch()
            return [self._fire(helpdesk, ticket, FEEDBACK, "requester")]
        status = body.get("status")
        if not _is_int(status) or status not in STATUS_NAMES:
            raise SimError(400, f"status must be one of {', '.join(map(str, STATUS_NAMES))}")
        previous, ticket.status = ticket.status, status
        ticket.touch()
        return self._status_rules(helpdesk, ticket, previous, "agent")

    def _add(self, ticket: FreshdeskTicket, body: str, *, incoming: bool, private: bool, user_id: int, source: int,
             to_emails: list[str], from_email: str | None) -> FreshdeskConversation:
        ticket.touch()
        conversation = FreshdeskConversation(self._conversation_ids(), ticket.id, text_to_html(body), incoming,
                                             private, user_id, source, ticket.updated_at, to_emails, from_email,
                                             from_email)
        ticket.conversations.append(conversation)
        return conversation

    # ---- webhooks, JSON

    def _fire(self, helpdesk: FreshdeskHelpdesk, ticket: FreshdeskTicket, event: str, performed_by: str = "") -> Fired:
        requester = helpdesk.contacts[ticket.requester_id]
        public = [c for c in ticket.conversations if not c.private]
        outcome_fields = {"performed_by": performed_by} if performed_by else {}
        if event == FEEDBACK:
            outcome_fields["satisfaction_rating"] = ticket.satisfaction
        body = json.dumps({"freshdesk_webhook": outcome_fields | {
            "event": event,
            "ticket_id": str(ticket.id),
            "ticket_subject": ticket.subject,
            "ticket_description": ticket.description,
            "ticket_latest_public_comment": public[-1].body if public else "",
            "ticket_status": STATUS_NAMES.get(ticket.status, str(ticket.status)),
            "ticket_priority": PRIORITY_NAMES.get(ticket.priority, str(ticket.priority)),
            "ticket_source": SOURCE_NAMES.get(ticket.source, str(ticket.source)),
            "ticket_updated_at": iso_seconds(ticket.updated_at),
            "ticket_contact_email": requester.email,
            "ticket_contact_name": requester.name,
            "ticket_contact_id": str(requester.id),
        }}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Freshdesk",
                   FRESHDESK_SECRET_HEADER: helpdesk.accounts.freshdesk_webhook_secret}
        delivery_id = f"{ticket.id}:{event}:{iso_seconds(ticket.updated_at)}"
        webhook = Webhook(self.provider, helpdesk.accounts.tenant, str(ticket.id), event, delivery_id,
                          helpdesk.accounts.webhook_url(self.provider), lambda attempt: (body, headers))
        return fired(webhook, self.webhooks.fire(webhook))

    def _ticket_json(self, ticket: FreshdeskTicket) -> dict:
        return {
            "id": ticket.id, "subject": ticket.subject, "description": ticket.description,
            "description_text": html_to_text(ticket.description), "status": ticket.status,
            "priority": ticket.priority, "source": ticket.source, "requester_id": ticket.requester_id,
            "responder_id": ticket.responder_id, "group_id": ticket.group_id, "company_id": None,
            "type": ticket.type, "tags": list(ticket.tags), "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [],
            "fr_escalated": False, "is_escalated": False, "spam": False, "email_config_id": None,
            "product_id": None, "due_by": None, "fr_due_by": None, "custom_fields": {}, "attachments": [],
            "created_at": iso_seconds(ticket.created_at), "updated_at": iso_seconds(ticket.updated_at),
        }

    def _conversation_json(self, helpdesk: FreshdeskHelpdesk, ticket: FreshdeskTicket,
                           conversation: FreshdeskConversation) -> dict:
        return {
            "id": conversation.id, "body": conversation.body, "body_text": html_to_text(conversation.body),
            "incoming": conversation.incoming, "private": conversation.private, "user_id": conversation.user_id,
            "support_email": conversation.support_email, "source": conversation.source,
            "category": 2 if conversation.source == 2 else 3, "ticket_id": ticket.id,
            "to_emails": conversation.to_emails, "from_email": conversation.from_email, "cc_emails": [],
            "bcc_emails": [], "attachments": [], "created_at": iso_seconds(conversation.created_at),
            "updated_at": iso_seconds(conversation.created_at),
        }


def _unexpected(body: dict, allowed: set[str]) -> list[dict]:
    return [{"field": name, "message": "Unexpected/invalid field in request", "code": "invalid_field"}
            for name in body if name not in allowed]


def _ticket_errors(body: dict, *, creating: bool) -> list[dict]:
    errors = []
    for name in ("subject", "description"):
        if (creating or name in body) and not (isinstance(body.get(name), str) and body[name].strip()):
            errors.append({"field": name, "message": "It should be a/an String", "code": "missing_field"})
    choices = {"status": STATUS_NAMES, "priority": PRIORITY_NAMES, "source": SOURCE_NAMES}
    for name, allowed in choices.items():
        if name in body and (not _is_int(body[name]) or body[name] not in allowed):
            values = ",".join(map(str, allowed))
            errors.append({"field": name, "message": f"It should be one of these values: '{values}'",
                           "code": "invalid_value"})
    for name in ("group_id", "responder_id"):
        if name in body and body[name] is not None and not _is_int(body[name]):
            errors.append({"field": name, "message": "It should be a/an Positive Integer", "code": "datatype_mismatch"})
    if "tags" in body and not (isinstance(body["tags"], list) and all(isinstance(t, str) for t in body["tags"])):
        errors.append({"field": "tags", "message": "It should be a/an Array", "code": "datatype_mismatch"})
    return errors


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _body_errors(body: dict) -> list[dict]:
    if isinstance(body.get("body"), str) and body["body"].strip():
        return []
    return [{"field": "body", "message": "It should be a/an String", "code": "missing_field"}]


def _validation_failed(errors: list[dict]) -> JSONResponse:
    return JSONResponse({"description": "Validation failed", "errors": errors}, status_code=400)


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    return JSONResponse(NOT_FOUND, status_code=404)


def _fault_body(status: int) -> dict:
    if status == 429:
        return {"code": "rate_limit_exceeded", "message": "You have exceeded the limit of requests per minute"}
    return {"code": "service_unavailable" if status == 503 else "internal_error",
            "message": f"HTTP {status} (fault set with /_sim/faults)"}
