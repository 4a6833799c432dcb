"""The workspace's web side (Starlette): the pages agents use, the JSON API, /healthz.

Pages (server-rendered Jinja2, autoescaped: a ticket's text is always shown as text):
  GET  /login, POST /login, POST /logout
  GET  /queue               the queue, filtered by the query string
  GET  /queue/rows          the queue's rows and counts as JSON, for /static/queue.js
  GET  /tickets/{id}        one ticket, its draft and the action forms
  POST /tickets/{id}/{approve|edit|reject|escalate|flag-context-loss|reassign|redraft|confirm-action|decline-action}
Leads (role lead or admin):
  GET  /leads               the KPI panel (Learner.GetKpis) with its plotly chart
  GET  /leads/routing       routing overrides and kill switches, who changed what; the rollback forms
  POST /leads/routing/rollback   an archetype back to draft-for-review (its named owner only)
  GET  /leads/qa, POST /leads/qa/{id}   the weekly QA sample, and marking a sample's severity class
Admins:
  GET  /admin/users, POST /admin/users, POST /admin/users/{id}     users: create, role, tenants, disable
  GET  /admin/tokens, POST /admin/tokens, POST /admin/tokens/revoke API tokens: create (shown once), revoke
API (Authorization: Bearer <token>):
  GET  /api/v1/queue, GET /api/v1/tickets/{id}, POST /api/v1/tickets/{id}/{action}

Refusals: a POST form without the session's CSRF token 403; another tenant's ticket 404 (as if it
did not exist); no session: pages redirect to /login, /queue/rows and the API answer 401; a page or
form above one's role 403 (audited); a second approval 409; an empty edit 422. None of them changes
anything.

plotly.js is served from the installed plotly package (/static/vendor/plotly.min.js): nothing is
fetched from a CDN and no copy of it is committed.

Database work, password hashing and publishing run on worker threads, never on the event loop.
"""

from __future__ import annotations

import json
import re
import logging
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup
import plotly
import plotly.graph_objects as go
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supportflow.contracts.v1 import services_pb2 as svc

from services.workspace import metrics
from services.workspace.assist import ServiceUnavailable
from services.workspace.auth import (
    ADMIN,
    CSRF_FIELD,
    LEAD,
    ROLES,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Authenticator,
    LoginLimiter,
    User,
    csrf_ok,
    csrf_token,
    hash_password,
    new_api_token,
    token_digest,
)
from services.workspace.desk import ActionDesk, NotAllowed, PublishFailed, TicketNotFound
from services.workspace.handlers import (
    ALL_TENANTS,
    ARCHETYPES,
    QA_CLASSES,
    QUEUES,
    REJECT_REASONS,
    STATUSES,
    URGENCIES,
    ActionRefused,
    ActionRequest,
    decision_from_json,
    ticket_view,
)
from services.workspace.store import ALL_TENANTS as ALL_GRANTED
from services.workspace.store import FILTERS, WorkspaceStore

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 256 * 1024
QUEUE_PAGE_ROWS = 200
API_MAX_ROWS = 1000
REFRESH_MS = 5000
# URL segment -> action name (handlers.ACTION_KINDS).
ACTION_PATHS = {"approve": "approve", "edit": "edit", "reject": "reject", "escalate": "escalate",
                "flag-context-loss": "flag_context_loss", "reassign": "reassign", "redraft": "redraft",
                "confirm-action": "confirm_action", "decline-action": "decline_action"}
DONE_NOTICES = {
    "approve": "Approved: the draft is on its way to the customer.",
    "edit": "Sent: your edited reply is on its way to the customer.",
    "reject": "Rejected: the draft will not be sent.",
    "escalate": "Escalated.",
    "flag_context_loss": "Flagged: the customer had to restate their problem.",
    "reassign": "Reassigned.",
    "redraft": "New draft from the drafter, following your instruction: read it before sending.",
    "confirm_action": "Confirmed: the escalator carries out the proposed action.",
    "decline_action": "Declined: the proposed action will not be carried out.",
}
_MAX_FILTER_CHARS = 200
USERNAME_CHARS = 150
MIN_PASSWORD_CHARS = 12
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def create_app(store: WorkspaceStore, publisher, *, session_secret: str,  # noqa: ANN001 - EventPublisher-like
               session_max_age_s: int = SESSION_MAX_AGE_S, https_only: bool = False,
               limiter: LoginLimiter | None = None, drafter=None, kpis=None,  # noqa: ANN001
               rollback_owners: dict[str, str] | None = None) -> Starlette:
    """The workspace application. `publisher` has publish(topic, key, event) and flush();
    `drafter` draft(DraftRequest) -> Draft and `kpis` kpis(GetKpisRequest) -> GetKpisResponse, each
    raising ServiceUnavailable (assist.py; None: that page says it is not configured);
    `rollback_owners` {archetype: username}."""
    if not session_secret:
        raise ValueError("the session secret is empty")
    if not PLOTLY_JS.is_file():
        raise RuntimeError(f"the installed plotly package has no {PLOTLY_JS}: reinstall plotly")
    auth = Authenticator(store, limiter)
    desk = ActionDesk(store, publisher, drafter=drafter, rollback_owners=rollback_owners)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["when"] = _when
    environment.filters["segment"] = lambda value: quote(str(value), safe="")
    environment.filters["percent"] = lambda value: f"{float(value) * 100:.0f}%"
    environment.filters["safe_json"] = _json_in_script
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
        assignees = [name for name in store.usernames_granted(view["tenant"]) if name != user.username]
        return page(request, "ticket.html", {
            "user": user, "t": view, "notice": notice, "error": error, "reject_reasons": REJECT_REASONS,
            "target_queues": queues, "assignees": assignees,
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
        action = _action_request(kind, {name: str(value) for name, value in form.items()})
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
        action = _action_request(kind, body)
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

    # --- roles -----------------------------------------------------------------------------------

    async def refuse(request: Request, user: User, area: str, why: str) -> Response:
        """403 for a request above the user's role: audited, counted, nothing changed."""
        metrics.ROLE_REFUSALS.labels(area).inc()
        await run_in_threadpool(store.audit, user.agent, "refused", detail=f"{request.method} {request.url.path}: {why}",
                                address=address(request))
        return page(request, "error.html", {"user": user, "message": f"Not allowed: {why}."}, 403)

    async def signed_in_with(request: Request, role: str, area: str) -> tuple[User | None, Response | None]:
        """The user when their role is `role` or above; else the answer to give (login or 403)."""
        user = await session_user(request)
        if user is None:
            return None, (to_login(request) if request.method == "GET" else RedirectResponse("/login", status_code=303))
        if not user.may(role):
            return None, await refuse(request, user, area, f"this page is for the {role} role and above")
        return user, None

    async def checked_form(request: Request, user: User) -> tuple[dict | None, Response | None]:
        form = await request.form()
        if not csrf_ok(request.session, form.get(CSRF_FIELD)):
            await run_in_threadpool(store.audit, user.agent, "refused", detail=f"{request.url.path}: missing or forged CSRF token",
                                    address=address(request))
            return None, page(request, "error.html", {"user": user, "message":
                              "This form expired or did not come from the workspace: nothing was done. Reload the page."}, 403)
        return {name: str(value) for name, value in form.items()}, None

    async def signed_form(request: Request, role: str, area: str) -> tuple[User | None, dict, Response | None]:
        """A form posted by a user with `role` or above, CSRF-checked; else the answer to give."""
        user, refused = await signed_in_with(request, role, area)
        if refused:
            return user, {}, refused
        form, refused = await checked_form(request, user)
        return user, form or {}, refused

    # --- leads: the KPI panel --------------------------------------------------------------------

    async def kpi_page(request: Request) -> Response:
        user, refused = await signed_in_with(request, LEAD, "leads")
        if refused:
            return refused
        tenants = await run_in_threadpool(_tenants_of, store, user)
        chosen = {name: request.query_params.get(name, "").strip()[:_MAX_FILTER_CHARS]
                  for name in ("tenant", "archetype", "segment", "channel", "kpi")}
        if not chosen["tenant"] and tenants:
            chosen["tenant"] = tenants[0]
        context = {"user": user, "tenants": tenants, "chosen": chosen, "archetypes": list(ARCHETYPES), "rows": [],
                   "names": [], "figure": None, "problem": "", "computed_at": None}
        if chosen["tenant"] and not user.sees(chosen["tenant"]):
            return await refuse(request, user, "leads", f"{chosen['tenant']} is not one of your tenants")
        if kpis is None:
            context["problem"] = "No learner is configured for this workspace: the KPI panel is not available."
        elif chosen["tenant"]:
            try:
                answer = await run_in_threadpool(kpis.kpis, svc.GetKpisRequest(
                    tenant_id=chosen["tenant"], archetype=chosen["archetype"], segment=chosen["segment"],
                    channel=chosen["channel"]))
            except ServiceUnavailable as exc:
                log.warning("KPI panel unavailable", extra={"fields": {"error": str(exc)}})
                context["problem"] = "The learner did not answer in time: the KPI panel is not available. Reload to try again."
            else:
                context |= kpi_panel(answer, chosen["kpi"])
        response = page(request, "kpis.html", context)
        # plotly.js writes its own <style> element and probes for an image format with a data: URL;
        # scripts stay the workspace's own, as on every page.
        response.headers["content-security-policy"] = SecurityHeaders.CHART_POLICY.decode()
        return response

    # --- leads: routing overrides and the rollback authority ------------------------------------

    async def routing_page(request: Request, *, error: str = "", notice: str = "", status_code: int = 200,
                           user: User | None = None) -> Response:
        if user is None:
            user, refused = await signed_in_with(request, LEAD, "leads")
            if refused:
                return refused
        overrides, tenants = await run_in_threadpool(lambda: (store.overrides(user.grant), _tenants_of(store, user)))
        if user.grant is None:
            tenants = [ALL_TENANTS, *tenants]
        owned = [a for a, owner in desk.rollback_owners.items() if owner == user.username]
        return page(request, "routing.html", {
            "user": user, "overrides": overrides, "state": _routing_state(overrides), "owners": desk.rollback_owners,
            "archetypes": list(ARCHETYPES), "owned": owned, "tenants": tenants, "error": error,
            "notice": notice or ("Rolled back: the override is on its way to the classifier."
                                 if request.query_params.get("done") == "rollback" else ""),
        }, status_code)

    async def rollback(request: Request) -> Response:
        user, form, refused = await signed_form(request, LEAD, "rollback")
        if refused:
            return refused
        try:
            await run_in_threadpool(desk.roll_back, user, form.get("archetype", ""), form.get("tenant", ""),
                                    form.get("reason", ""), address(request))
        except NotAllowed as exc:
            return page(request, "error.html", {"user": user, "message": f"Not allowed: {exc}."}, 403)
        except ActionRefused as exc:
            return await routing_page(request, error=exc.message, status_code=exc.status, user=user)
        except PublishFailed:
            return await routing_page(request, error="The override could not be published (the event bus did not "
                                      "answer). Nothing changed; try again.", status_code=503, user=user)
        return RedirectResponse("/leads/routing?done=rollback", status_code=303)

    # --- leads: the QA sample --------------------------------------------------------------------

    async def qa_page(request: Request, *, error: str = "", status_code: int = 200, user: User | None = None) -> Response:
        if user is None:
            user, refused = await signed_in_with(request, LEAD, "leads")
            if refused:
                return refused
        week = request.query_params.get("week", "").strip()[:16]
        samples, weeks = await run_in_threadpool(lambda: (store.qa_samples(user.grant, week=week), store.qa_weeks(user.grant)))
        shown = []
        for sample in samples:
            decided = decision_from_json(sample["decision"])
            shown.append(sample | {"subject": decided.ticket.subject, "body": decided.ticket.body,
                                   "reply": decided.draft.text, "intent": decided.classification.intent,
                                   "decision_name": ticket_view(decided, status="", queue="", deliveries=[],
                                                                actions=[])["decision"]})
        notice = "Marked." if request.query_params.get("done") == "qa" else ""
        return page(request, "qa.html", {"user": user, "samples": shown, "weeks": weeks, "week": week,
                                         "qa_classes": QA_CLASSES, "error": error, "notice": notice}, status_code)

    async def qa_mark(request: Request) -> Response:
        user, form, refused = await signed_form(request, LEAD, "leads")
        if refused:
            return refused
        ticket_id = request.path_params["ticket_id"]
        try:
            await run_in_threadpool(desk.mark_qa, user, ticket_id, form.get("qa_class", ""), form.get("note", ""),
                                    address(request))
        except TicketNotFound:
            return page(request, "error.html", {"user": user, "message": "No such QA sample."}, 404)
        except ActionRefused as exc:
            return await qa_page(request, error=exc.message, status_code=exc.status, user=user)
        except PublishFailed:
            return await qa_page(request, error="The class could not be recorded (the event bus did not answer). "
                                 "Nothing changed; try again.", status_code=503, user=user)
        return RedirectResponse("/leads/qa?done=qa", status_code=303)

    # --- admins: users and API tokens ------------------------------------------------------------

    async def users_page(request: Request, *, error: str = "", notice: str = "", status_code: int = 200,
                         user: User | None = None) -> Response:
        if user is None:
            user, refused = await signed_in_with(request, ADMIN, "admin")
            if refused:
                return refused
        everyone = await run_in_threadpool(store.users)
        return page(request, "users.html", {"user": user, "users": everyone, "roles": ROLES, "error": error,
                                            "notice": notice or request.query_params.get("done", "") and "Saved."},
                    status_code)

    async def create_user(request: Request) -> Response:
        user, form, refused = await signed_form(request, ADMIN, "admin")
        if refused:
            return refused
        username = form.get("username", "").strip()
        password = form.get("password", "")
        role = form.get("role", "")
        tenants = _tenant_list(form.get("tenants", ""))
        problem = (
            "the username is empty or longer than 150 characters" if not username or len(username) > USERNAME_CHARS
            else "the username may hold letters, digits and . _ @ - only" if not _USERNAME.match(username)
            else f"the password must have at least {MIN_PASSWORD_CHARS} characters" if len(password) < MIN_PASSWORD_CHARS
            else f"the role must be one of {', '.join(ROLES)}" if role not in ROLES
            else "grant at least one tenant (or * for every tenant)" if not tenants else "")
        if not problem and await run_in_threadpool(store.user_by_name, username) is not None:
            problem = f"there is already a user {username}"
        if problem:
            return await users_page(request, error=f"Not created: {problem}.", status_code=422, user=user)
        password_hash = await run_in_threadpool(hash_password, password)
        await run_in_threadpool(store.create_user, username, password_hash, role, tenants)
        await run_in_threadpool(store.audit, user.agent, "user_created", detail=f"{username} ({role}; tenants {tenants})",
                                address=address(request))
        metrics.ADMIN_CHANGES_DONE.labels("user_created").inc()
        return RedirectResponse("/admin/users?done=created", status_code=303)

    async def change_user(request: Request) -> Response:
        user, form, refused = await signed_form(request, ADMIN, "admin")
        if refused:
            return refused
        try:
            target_id = int(request.path_params["user_id"])
        except ValueError:
            target_id = -1
        target = await run_in_threadpool(store.user_by_id, target_id)
        if target is None:
            return page(request, "error.html", {"user": user, "message": "No such user."}, 404)
        role = form.get("role", target["role"])
        tenants = _tenant_list(form.get("tenants", target["tenants"]))
        disabled = form.get("disabled") == "on"
        problem = (f"the role must be one of {', '.join(ROLES)}" if role not in ROLES
                   else "grant at least one tenant (or * for every tenant)" if not tenants
                   else "you cannot disable yourself or take away your own admin role"
                   if target["id"] == user.id and (disabled or role != ADMIN) else "")
        if problem:
            return await users_page(request, error=f"Not changed: {problem}.", status_code=422, user=user)
        changes = {"role": role, "tenants": tenants, "disabled": disabled}
        await run_in_threadpool(store.update_user, target["id"], **changes)
        before = {"role": target["role"], "tenants": target["tenants"], "disabled": bool(target["disabled"])}
        detail = ", ".join(f"{k} {before[k]} -> {v}" for k, v in changes.items() if before[k] != v) or "no change"
        await run_in_threadpool(store.audit, user.agent, "user_changed", detail=f"{target['username']}: {detail}",
                                address=address(request))
        metrics.ADMIN_CHANGES_DONE.labels("user_changed").inc()
        return RedirectResponse("/admin/users?done=changed", status_code=303)

    async def tokens_page(request: Request, *, error: str = "", new_token: str = "", status_code: int = 200,
                          user: User | None = None, notice: str = "") -> Response:
        if user is None:
            user, refused = await signed_in_with(request, ADMIN, "admin")
            if refused:
                return refused
        tokens, everyone = await run_in_threadpool(lambda: (store.tokens(), store.users()))
        if request.query_params.get("done") == "revoked":
            notice = "Revoked: the token no longer opens the API."
        return page(request, "tokens.html", {"user": user, "tokens": tokens, "users": everyone, "error": error,
                                             "new_token": new_token, "notice": notice}, status_code)

    async def create_token(request: Request) -> Response:
        user, form, refused = await signed_form(request, ADMIN, "admin")
        if refused:
            return refused
        owner = await run_in_threadpool(store.user_by_name, form.get("username", "").strip())
        label = form.get("label", "").strip()[:100]
        if owner is None or owner["disabled"]:
            return await tokens_page(request, error="Not created: choose an active user.", status_code=422, user=user)
        if not label:
            return await tokens_page(request, error="Not created: label the token (what it is for).", status_code=422,
                                     user=user)
        token = new_api_token()
        await run_in_threadpool(lambda: store.add_token(token_digest(token), owner["id"], label=label, created_by=user.agent))
        await run_in_threadpool(store.audit, user.agent, "token_created",
                                detail=f"for {owner['username']}: {label} ({token_digest(token)[:12]})", address=address(request))
        metrics.ADMIN_CHANGES_DONE.labels("token_created").inc()
        # Shown this once, on this answer only (no-store): only its digest is kept.
        return await tokens_page(request, new_token=token, user=user,
                                 notice=f"Token for {owner['username']} made. Copy it now: it is not shown again.")

    async def revoke_token(request: Request) -> Response:
        user, form, refused = await signed_form(request, ADMIN, "admin")
        if refused:
            return refused
        digest = form.get("token", "").strip()
        gone = await run_in_threadpool(store.revoke_token, digest) if digest else None
        if gone is None:
            return await tokens_page(request, error="No such token.", status_code=404, user=user)
        await run_in_threadpool(store.audit, user.agent, "token_revoked",
                                detail=f"of {gone['username']}: {gone['label']} ({digest[:12]})", address=address(request))
        metrics.ADMIN_CHANGES_DONE.labels("token_revoked").inc()
        return RedirectResponse("/admin/tokens?done=revoked", status_code=303)

    async def plotly_js(_request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"cache-control": "public, max-age=86400"})

    # --- the rest --------------------------------------------------------------------------------

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def favicon(_request: Request) -> Response:
        return Response(status_code=204)  # no icon; a 204 keeps browsers from logging a 404 on every page

    async def home(_request: Request) -> Response:
        return RedirectResponse("/queue", status_code=303)

    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/favicon.ico", favicon),
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
        Route("/leads", kpi_page),
        Route("/leads/routing", routing_page),
        Route("/leads/routing/rollback", rollback, methods=["POST"]),
        Route("/leads/qa", qa_page),
        Route("/leads/qa/{ticket_id}", qa_mark, methods=["POST"]),
        Route("/admin/users", users_page, methods=["GET"]),
        Route("/admin/users", create_user, methods=["POST"]),
        Route("/admin/users/{user_id}", change_user, methods=["POST"]),
        Route("/admin/tokens", tokens_page, methods=["GET"]),
        Route("/admin/tokens", create_token, methods=["POST"]),
        Route("/admin/tokens/revoke", revoke_token, methods=["POST"]),
        Route("/static/vendor/plotly.min.js", plotly_js),
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

    POLICY = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
              b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    CHART_POLICY = POLICY.replace(b"style-src 'self'", b"style-src 'self' 'unsafe-inline'").replace(
        b"img-src 'self'", b"img-src 'self' data:")
    HEADERS = (
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
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", self.POLICY))  # a page may set a narrower need
                message["headers"] = headers + list(self.HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)


_USERNAME = re.compile(r"^[A-Za-z0-9._@-]+$")


def _action_request(kind: str, fields: dict) -> ActionRequest:
    """An action from a form's or a JSON body's fields (the same names in both)."""
    def get(name: str) -> str:
        value = fields.get(name, "")
        return value if isinstance(value, str) else ""

    return ActionRequest(kind=kind, text=get("text"), reason=get("reason"),
                         note=get("instruction") or get("note"), target_queue=get("queue"), assignee=get("assignee"),
                         proposal_id=get("proposal_id"), confirmation_ref=get("confirmation_ref"))


def _tenant_list(text: str) -> str:
    """A grant as stored: "*", or tenant ids separated by commas (sorted, no blanks)."""
    names = sorted({t.strip() for t in text.replace("\n", ",").split(",") if t.strip()})
    return ALL_GRANTED if ALL_GRANTED in names else ",".join(names)


def _tenants_of(store: WorkspaceStore, user: User) -> list[str]:
    """The tenants a user can choose among: those granted, or every tenant the workspace has seen."""
    if user.grant is not None:
        return sorted(user.grant)
    return store.filter_values(None)["tenant"]


def kpi_panel(answer: svc.GetKpisResponse, chosen_kpi: str) -> dict:
    """The KPI table and the chart of one KPI (plotly figure as JSON) from Learner.GetKpis's rows.
    KPI names are whatever the learner sends, in the order it sends them (first seen first)."""
    names: list[str] = []
    for row in answer.rows:
        for name in row.values:
            if name not in names:
                names.append(name)
    kpi = chosen_kpi if chosen_kpi in names else (names[0] if names else "")
    rows = [{"archetype": r.archetype, "segment": r.segment, "channel": r.channel, "tickets": r.tickets,
             "values": dict(r.values)} for r in answer.rows]
    figure = None
    if kpi:
        series: dict[str, tuple[list[str], list[float]]] = {}
        for row in rows:
            if kpi not in row["values"]:
                continue
            name = row["segment"] + (f" · {row['channel']}" if row["channel"] else "")
            xs, ys = series.setdefault(name or "all", ([], []))
            xs.append(row["archetype"])
            ys.append(row["values"][kpi])
        chart = go.Figure([go.Bar(name=name, x=xs, y=ys) for name, (xs, ys) in series.items()])
        chart.update_layout(barmode="group", title={"text": f"{kpi} by archetype"}, xaxis_title="archetype",
                            yaxis_title=kpi, legend_title="segment · channel", height=420,
                            margin={"l": 60, "r": 20, "t": 60, "b": 60})
        figure = chart.to_json()
    computed = answer.computed_at.seconds if answer.HasField("computed_at") else None
    return {"rows": rows, "names": names, "figure": figure, "kpi": kpi, "computed_at": computed}


def _routing_state(overrides: list[dict]) -> list[dict]:
    """Per (tenant, archetype), what the overrides in force say, from the newest ones: the
    automation level set and the kill switch, each with who set it."""
    state: dict[tuple[str, str], dict] = {}
    for row in sorted(overrides, key=lambda r: r["at"]):
        entry = state.setdefault((row["tenant"], row["archetype"]), {
            "tenant": row["tenant"], "archetype": row["archetype"], "automation": "", "automation_by": "",
            "kill_switch": False, "kill_switch_by": "", "at": row["at"]})
        entry["at"] = row["at"]
        if row["action"] == "set_automation":
            entry["automation"], entry["automation_by"] = row["route"], row["issued_by"]
        elif row["action"] in ("kill_switch_on", "kill_switch_off"):
            entry["kill_switch"], entry["kill_switch_by"] = row["action"] == "kill_switch_on", row["issued_by"]
        elif row["action"] == "clear":
            entry.update(automation="", automation_by="", kill_switch=False, kill_switch_by=row["issued_by"])
    return sorted(state.values(), key=lambda e: (e["tenant"], e["archetype"]))


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
                "edit_ratio": a["edit_ratio"], "assignee": a["assignee"], "qa_class": a["qa_class"],
                "proposal_id": a["proposal_id"]} for a in store.actions(ticket_id)]
    deliveries = [d | {"delivered_at": _iso(d["delivered_at"])} for d in store.deliveries(ticket_id)]
    view = ticket_view(decided, status=row["status"], queue=row["queue"], deliveries=deliveries, actions=actions)
    view["received_at"] = _iso(view["received_at"] or row["received_at"])
    for turn in view["conversation"]:
        turn["at"] = _iso(turn["at"])
    view["target_queue"] = row["target_queue"] or view["target_queue"]
    view["assignee"] = row["assignee"]
    view["proposals"] = [p | {"proposed_at": _iso(p["proposed_at"])} for p in store.proposals(ticket_id)]
    if view["investigation"]:
        for finding in view["investigation"]["findings"]:
            finding["observed_at"] = _iso(finding["observed_at"])
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


def _json_in_script(text: str) -> Markup:
    """JSON text to place inside a <script type="application/json"> block: <, > and & only occur in
    its strings, where their \\u escapes mean the same, and then no "</script>" can end the block."""
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


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

