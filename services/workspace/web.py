"""The workspace's web side (Starlette): the pages agents use, the JSON API, /healthz.

Pages (server-rendered Jinja2, autoescaped: a ticket's text is always shown as text):
  GET  /login, POST /login, POST /logout
  GET  /queue               the queue, filtered by the query string
  GET  /queue/rows          the queue's rows and counts as JSON, for /static/queue.js
  GET  /tickets/{id}        one ticket, its draft and the action forms
  POST /tickets/{id}/{approve|edit|reject|escalate|flag-context-loss}
API (Authorization: Bearer <token>):
  GET  /api/v1/queue, GET /api/v1/tickets/{id}, POST /api/v1/tickets/{id}/{action}

Refusals: a POST form without the session's CSRF token 403; another tenant's ticket 404 (as if it
did not exist); no session: pages redirect to /login, /queue/rows and the API answer 401; a second
approval 409; an empty edit 422. None of them changes anything.

Database work, password hashing and publishing run on worker threads, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.workspace import metrics
from services.workspace.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Authenticator,
    LoginLimiter,
    User,
    csrf_ok,
    csrf_token,
)
from services.workspace.desk import ActionDesk, PublishFailed, TicketNotFound
from services.workspace.handlers import (
    QUEUES,
    REJECT_REASONS,
    STATUSES,
    URGENCIES,
    ActionRefused,
    ActionRequest,
    decision_from_json,
    ticket_view,
)
from services.workspace.store import FILTERS, WorkspaceStore

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 256 * 1024
QUEUE_PAGE_ROWS = 200
API_MAX_ROWS = 1000
REFRESH_MS = 5000
# URL segment -> action name (handlers.ACTION_KINDS).
ACTION_PATHS = {"approve": "approve", "edit": "edit", "reject": "reject", "escalate": "escalate",
                "flag-context-loss": "flag_context_loss"}
DONE_NOTICES = {
    "approve": "Approved: the draft is on its way to the customer.",
    "edit": "Sent: your edited reply is on its way to the customer.",
    "reject": "Rejected: the draft will not be sent.",
    "escalate": "Escalated.",
    "flag_context_loss": "Flagged: the customer had to restate their problem.",
}
_MAX_FILTER_CHARS = 200


def create_app(store: WorkspaceStore, publisher, *, session_secret: str,  # noqa: ANN001 - EventPublisher-like
               session_max_age_s: int = SESSION_MAX_AGE_S, https_only: bool = False,
               limiter: LoginLimiter | None = None) -> Starlette:
    """The workspace application. `publisher` has publish(topic, key, event) and flush()."""
    if not session_secret:
        raise ValueError("the session secret is empty")
    auth = Authenticator(store, limiter)
    desk = ActionDesk(store, publisher)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["when"] = _when
    environment.filters["segment"] = lambda value: quote(str(value), safe="")
    environment.filters["percent"] = lambda value: f"{float(value) * 100:.0f}%"
    templates = Jinja2Templates(env=environment)

    # --- who is asking ---------------------------------------------------------------------------

    async def session_user(request: Request) -> User | None:
        user_id = request.session.get("uid")
        if user_id is None:
            return None
        user = await run_in_threadpool(auth.user, user_id)
        if user is None:  # the user is gone: the session is worth nothing
            request.session.clear()
        return user

    async def bearer_user(request: Request) -> User | None:
        header = request.headers.get("authorization", "")
        return await run_in_threadpool(auth.bearer, header) if header else None

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    def page(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
        context = {"csrf_token": csrf_token(request.session), "user": None} | context
        response = templates.TemplateResponse(request, name, context, status_code=status_code)
        response.headers["cache-control"] = "no-store"
        return response

    def address(request: Request) -> str:
        return request.client.host if request.client else ""

    # --- login -----------------------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if await session_user(request) is not None:
            return RedirectResponse(_local(request.query_params.get("next")), status_code=303)
        return page(request, "login.html", {"error": "", "username": "", "next": _local(request.query_params.get("next"))})

    async def login(request: Request) -> Response:
        form = await request.form()
        username = str(form.get("username", ""))[:150]
        target = _local(str(form.get("next", "")))
        context = {"username": username, "next": target}
        if not csrf_ok(request.session, form.get(CSRF_FIELD)):
            metrics.LOGINS.labels("csrf_refused").inc()
            await run_in_threadpool(store.audit, username, "login_refused", detail="missing or forged CSRF token",
                                    address=address(request))
            return page(request, "login.html", context | {"error": "The form expired. Please sign in again."}, 403)
        result = await run_in_threadpool(auth.login, username, str(form.get("password", "")), address(request))
        if result.outcome == "rate_limited":
            return page(request, "login.html",
                        context | {"error": "Too many failed sign-ins. Wait a minute, then try again."}, 429)
        if result.user is None:
            return page(request, "login.html", context | {"error": "Wrong username or password."}, 401)
        request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
        request.session["uid"] = result.user.id
        csrf_token(request.session)
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get(CSRF_FIELD)):
            return page(request, "error.html", {"message": "The form expired. Reload the page and try again."}, 403)
        user = await session_user(request)
        if user is not None:
            await run_in_threadpool(store.audit, user.agent, "logout", address=address(request))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # --- the queue -------------------------------------------------------------------------------

    async def queue_page(request: Request) -> Response:
        user = await session_user(request)
        if user is None:
            return to_login(request)
        filters = _filters(request)
        rows, counts, options = await run_in_threadpool(_queue_data, store, user, filters, QUEUE_PAGE_ROWS)
        options = options | {"queue": list(QUEUES), "urgency": list(URGENCIES), "status": [*STATUSES, "all"]}
        return page(request, "queue.html", {"user": user, "rows": rows, "counts": counts, "filters": filters,
                                            "options": options, "refresh_ms": REFRESH_MS})

    async def queue_rows(request: Request) -> Response:
        user = await session_user(request)
        if user is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        rows, counts, _ = await run_in_threadpool(_queue_data, store, user, _filters(request), QUEUE_PAGE_ROWS, False)
        html = environment.get_template("_queue_rows.html").render(rows=rows)
        return JSONResponse({"rows_html": html, "counts": counts, "shown": len(rows)},
                            headers={"cache-control": "no-store"})

    # --- one ticket ------------------------------------------------------------------------------

    async def ticket_page(request: Request) -> Response:
        user = await session_user(request)
        if user is None:
            return to_login(request)
        ticket_id = request.path_params["ticket_id"]
        view = await run_in_threadpool(_view, store, ticket_id, user)
        if view is None:
            return page(request, "error.html", {"user": user, "message": "No such ticket."}, 404)
        done = request.query_params.get("done", "")
        return await run_in_threadpool(ticket_page_for, request, user, view, notice=DONE_NOTICES.get(done, ""))

    def ticket_page_for(request: Request, user: User, view: dict, *, notice: str = "", error: str = "",
                        status_code: int = 200, edited_text: str | None = None) -> Response:
        queues = store.known_target_queues(user.grant)
        return page(request, "ticket.html", {
            "user": user, "t": view, "notice": notice, "error": error, "reject_reasons": REJECT_REASONS,
            "target_queues": queues,
            "reply_text": edited_text if edited_text is not None else (view["draft"] or {}).get("text", ""),
        }, status_code)

    async def ticket_action(request: Request) -> Response:
        user = await session_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        ticket_id = request.path_params["ticket_id"]
        kind = ACTION_PATHS.get(request.path_params["action"])
        form = await request.form()
        if not csrf_ok(request.session, form.get(CSRF_FIELD)):
            await run_in_threadpool(store.audit, user.agent, "refused", ticket_id=ticket_id,
                                    detail="missing or forged CSRF token", address=address(request))
            return page(request, "error.html", {"user": user, "message":
                        "This form expired or did not come from the workspace: nothing was done. Reload the page."}, 403)
        if kind is None:
            return page(request, "error.html", {"user": user, "message": "No such action."}, 404)
        action = ActionRequest(kind=kind, text=str(form.get("text", "")), reason=str(form.get("reason", "")),
                               note=str(form.get("note", "")), target_queue=str(form.get("queue", "")))
        try:
            await run_in_threadpool(desk.act, user, ticket_id, action, address(request))
        except TicketNotFound:
            return page(request, "error.html", {"user": user, "message": "No such ticket."}, 404)
        except (ActionRefused, PublishFailed) as exc:
            view = await run_in_threadpool(_view, store, ticket_id, user)
            if view is None:
                return page(request, "error.html", {"user": user, "message": "No such ticket."}, 404)
            status, message = (exc.status, exc.message) if isinstance(exc, ActionRefused) else (
                503, "The action could not be recorded (the event bus did not answer). Nothing was sent; try again.")
            return await run_in_threadpool(ticket_page_for, request, user, view, error=message, status_code=status,
                                           edited_text=action.text if kind == "edit" else None)
        return RedirectResponse(f"/tickets/{quote(ticket_id, safe='')}?{urlencode({'done': kind})}", status_code=303)

    # --- the API ---------------------------------------------------------------------------------

    def unauthorized() -> JSONResponse:
        return JSONResponse({"error": "a valid bearer token is required"}, status_code=401,
                            headers={"www-authenticate": 'Bearer realm="supportflow-workspace"'})

    async def api_queue(request: Request) -> Response:
        user = await bearer_user(request)
        if user is None:
            return unauthorized()
        try:
            limit = min(max(int(request.query_params.get("limit", QUEUE_PAGE_ROWS)), 1), API_MAX_ROWS)
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        rows, _, _ = await run_in_threadpool(_queue_data, store, user, _filters(request), limit, False)
        items = [{"ticket_id": r["ticket_id"], "tenant": r["tenant"], "queue": r["queue"], "intent": r["intent"],
                  "archetype": r["archetype"], "urgency": r["urgency"], "channel": r["channel"], "status": r["status"],
                  "received_at": _iso(r["received_at"])} for r in rows]
        return JSONResponse({"items": items})

    async def api_ticket(request: Request) -> Response:
        user = await bearer_user(request)
        if user is None:
            return unauthorized()
        view = await run_in_threadpool(_view, store, request.path_params["ticket_id"], user)
        if view is None:
            return JSONResponse({"error": "no such ticket"}, status_code=404)
        return JSONResponse(view)

    async def api_action(request: Request) -> Response:
        user = await bearer_user(request)
        if user is None:
            return unauthorized()
        kind = ACTION_PATHS.get(request.path_params["action"])
        if kind is None:
            return JSONResponse({"error": f"no action; choose one of {', '.join(ACTION_PATHS)}"}, status_code=404)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or any(not isinstance(v, str) for v in body.values()):
            return JSONResponse({"error": "the body must be a JSON object of strings"}, status_code=400)
        action = ActionRequest(kind=kind, text=body.get("text", ""), reason=body.get("reason", ""),
                               note=body.get("note", ""), target_queue=body.get("queue", ""))
        ticket_id = request.path_params["ticket_id"]
        try:
            acted = await run_in_threadpool(desk.act, user, ticket_id, action, address(request))
        except TicketNotFound:
            return JSONResponse({"error": "no such ticket"}, status_code=404)
        except ActionRefused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except PublishFailed:
            return JSONResponse({"error": "the action could not be published; nothing was done, try again"},
                                status_code=503)
        return JSONResponse({"ticket_id": acted.ticket_id, "action_id": acted.action_id, "kind": acted.kind,
                             "status": acted.status})

    # --- the rest --------------------------------------------------------------------------------

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def home(_request: Request) -> Response:
        return RedirectResponse("/queue", status_code=303)

    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/queue", queue_page),
        Route("/queue/rows", queue_rows),
        Route("/tickets/{ticket_id}", ticket_page),
        Route("/tickets/{ticket_id}/{action}", ticket_action, methods=["POST"]),
        Route("/api/v1/queue", api_queue),
        Route("/api/v1/tickets/{ticket_id}", api_ticket),
        Route("/api/v1/tickets/{ticket_id}/{action}", api_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session_secret, session_cookie=SESSION_COOKIE,
                   max_age=session_max_age_s, same_site="strict", https_only=https_only),
    ]
    return Starlette(routes=routes, middleware=middleware, max_body_size=MAX_BODY_BYTES)


class SecurityHeaders:
    """Headers every answer carries: scripts and styles only from the workspace itself, no framing,
    no content sniffing, no referrer outside."""

    HEADERS = (
        (b"content-security-policy",
         b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
         b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + list(self.HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)


def _queue_data(store: WorkspaceStore, user: User, filters: dict[str, str], limit: int,
                with_options: bool = True) -> tuple[list[dict], dict[str, int], dict[str, list[str]]]:
    rows = store.queue(user.grant, filters, limit=limit)
    counts = store.counts(user.grant)
    options = store.filter_values(user.grant) if with_options else {}
    return rows, counts, options


def _view(store: WorkspaceStore, ticket_id: str, user: User) -> dict | None:
    row = store.ticket(ticket_id, user.grant)
    if row is None:
        return None
    decided = decision_from_json(row["decision"])
    actions = [{"action_id": a["action_id"], "kind": a["kind"], "agent": a["agent"], "at": _iso(a["at"]),
                "text": a["text"], "reason": a["reason"], "note": a["note"], "target_queue": a["target_queue"],
                "edit_ratio": a["edit_ratio"]} for a in store.actions(ticket_id)]
    deliveries = [d | {"delivered_at": _iso(d["delivered_at"])} for d in store.deliveries(ticket_id)]
    view = ticket_view(decided, status=row["status"], queue=row["queue"], deliveries=deliveries, actions=actions)
    view["received_at"] = _iso(view["received_at"] or row["received_at"])
    for turn in view["conversation"]:
        turn["at"] = _iso(turn["at"])
    view["target_queue"] = row["target_queue"] or view["target_queue"]
    return view


def _filters(request: Request) -> dict[str, str]:
    """The queue filters of the query string; a value outside a fixed set is dropped."""
    fixed = {"queue": QUEUES, "urgency": URGENCIES, "status": (*STATUSES, "all")}
    found = {}
    for name in FILTERS:
        value = request.query_params.get(name, "").strip()[:_MAX_FILTER_CHARS]
        if value and (name not in fixed or value in fixed[name]):
            found[name] = value
    return found


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this site only, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _when(value: object) -> str:
    """A time for people: '2025-03-01 14:05 UTC'."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, tz=timezone.utc)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC")

