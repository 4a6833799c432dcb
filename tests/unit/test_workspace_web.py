"""The workspace's web side against a SQLite database in tmp_path and a publisher that records what
it is given: signing in, the queue, the ticket page, the actions and each refusal of
docs/workspace.md, the API, and the store's own promises (the schema is the migrations', a queue
rebuilt from agent.actions keeps the statuses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from starlette.testclient import TestClient

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import TransientError
from supportflow.topics import Topic

from services.workspace.auth import LoginLimiter, bootstrap_admin, hash_password, token_digest
from services.workspace.handlers import queue_row
from services.workspace.main import QueueFeed
from services.workspace.models import metadata
from services.workspace.store import WorkspaceStore
from services.workspace.web import create_app

TENANT = "rho-bank"
OTHER_TENANT = "north-credit"
DRAFT = "Hello,\n\nYour new card arrives within 5 working days [1].\n\nKind regards"
ADMIN_TOKEN = "admin-token-0123456789"
AGENT_TOKEN = "agent-token-0123456789"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Topic, str, object]] = []
        self.fail = False

    def publish(self, topic: Topic, key: str, event: object, traceparent: str | None = None) -> None:
        self.published.append((topic, key, event))

    def flush(self, timeout_s: float = 30.0) -> None:
        if self.fail:
            self.published.clear()
            raise TransientError("broker unavailable")


def decided(ticket_id: str, tenant: str = TENANT, *, draft: str = DRAFT, decision: int = ev.DECISION_REVIEW,
            urgency: int = tk.URGENCY_NORMAL, received: int = 1_700_000_000) -> ev.TicketDecided:
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, channel=tk.CHANNEL_EMAIL, subject="Card?", body="Where is it")
    ticket.received_at.seconds = received
    event = ev.TicketDecided(
        meta=ev.EventMeta(event_id=f"decision-{ticket_id}", tenant_id=tenant), ticket=ticket, decision=decision,
        classification=tk.Classification(intent="card_arrival", confidence=0.7, urgency=urgency,
                                          route=tk.ROUTE_DRAFT_FOR_REVIEW, route_reason="low confidence"),
        draft=tk.Draft(text=draft, citations=[tk.Citation(article_id="a1", title="Cards", passage="5 working days")]),
    )
    event.timeline.decided_at.seconds = received + 5
    return event


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    store = WorkspaceStore(f"sqlite:///{tmp_path / 'workspace.sqlite'}")
    bootstrap_admin(store, "admin", "admin-password", ADMIN_TOKEN)
    agent_id = store.create_user("ana", hash_password("ana-password"), "agent", [TENANT])
    store.add_token(token_digest(AGENT_TOKEN), agent_id)
    for event in (decided("zd-1"), decided("zd-2", urgency=tk.URGENCY_CRITICAL, received=1_600_000_000),
                  decided("zd-3", received=1_700_000_500), decided("nc-1", OTHER_TENANT),
                  decided("zd-9", decision=ev.DECISION_ESCALATE)):
        store.upsert_ticket(queue_row(event))
    yield store
    store.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(store: WorkspaceStore, publisher: RecordingPublisher) -> TestClient:
    app = create_app(store, publisher, session_secret="test-secret", limiter=LoginLimiter())
    with TestClient(app) as client:
        yield client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf_token in the page"
    return found.group(1)


def sign_in(client: TestClient, username: str = "ana", password: str = "ana-password") -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/queue", answer.text


def page_csrf(client: TestClient, ticket_id: str) -> str:
    return csrf_of(client.get(f"/tickets/{ticket_id}").text)


def actions_published(publisher: RecordingPublisher) -> list[ev.AgentAction]:
    assert all(topic is Topic.AGENT_ACTIONS for topic, _, _ in publisher.published)
    return [event for _, _, event in publisher.published]


# --- signing in -------------------------------------------------------------------------------------


def test_the_login_page_has_its_labelled_fields_and_a_csrf_token(client: TestClient) -> None:
    html = client.get("/login").text
    for needle in ('id="login-form"', 'id="username"', 'id="password"', 'id="login-submit"', 'for="username"',
                   'for="password"', 'name="csrf_token"'):
        assert needle in html


def test_signing_in_leads_to_the_queue_with_an_httponly_strict_session(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "ana", "password": "ana-password", "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/queue").status_code == 200


def test_a_wrong_password_answers_401_with_the_form_and_the_error(client: TestClient, store: WorkspaceStore) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "ana", "password": "nope", "csrf_token": token})
    assert answer.status_code == 401
    assert 'id="login-error"' in answer.text and 'id="login-form"' in answer.text
    assert client.get("/queue", follow_redirects=False).status_code == 303
    assert store.audit_entries()[0]["event"] == "login_refused"


def test_more_than_five_failures_a_minute_answer_429(client: TestClient) -> None:
    for _ in range(5):
        token = csrf_of(client.get("/login").text)
        assert client.post("/login", data={"username": "ana", "password": "nope", "csrf_token": token}).status_code == 401
    token = csrf_of(client.get("/login").text)
    # Even the right password: the username is locked out for the rest of the minute.
    answer = client.post("/login", data={"username": "ana", "password": "ana-password", "csrf_token": token})
    assert answer.status_code == 429 and 'id="login-error"' in answer.text


def test_the_login_limiter_counts_per_username_and_per_address_over_a_minute() -> None:
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for index in range(5):
        limiter.failed(f"user{index}", "10.0.0.1")
    assert limiter.blocked("someone-else", "10.0.0.1") and not limiter.blocked("someone-else", "10.0.0.2")
    now[0] = 61.0
    assert not limiter.blocked("someone-else", "10.0.0.1")


def test_a_login_without_the_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"username": "ana", "password": "ana-password", "csrf_token": "forged"})
    assert answer.status_code == 403
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_without_a_session_pages_redirect_to_login_and_the_rows_answer_401(client: TestClient) -> None:
    answer = client.get("/tickets/zd-1", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert client.get("/queue/rows").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_a_session_signed_with_another_secret_counts_for_nothing(store: WorkspaceStore, publisher) -> None:
    first = TestClient(create_app(store, publisher, session_secret="one"))
    sign_in(first)
    second = TestClient(create_app(store, publisher, session_secret="two"))
    second.cookies = first.cookies
    assert second.get("/queue", follow_redirects=False).status_code == 303


# --- the queue --------------------------------------------------------------------------------------


def test_the_queue_lists_open_tickets_most_urgent_then_newest_first(client: TestClient) -> None:
    sign_in(client)
    html = client.get("/queue").text
    for needle in ('id="queue-counts"', 'id="filters"', 'id="queue"', 'src="/static/queue.js"'):
        assert needle in html
    order = re.findall(r'<tr class="queue-item[^"]*" data-ticket-id="([^"]+)"', html)
    assert order == ["zd-2", "zd-3", "zd-1", "zd-9"]
    assert '<a class="ticket-link" href="/tickets/zd-2">' in html
    for name in ("tenant", "queue", "archetype", "intent", "urgency", "channel", "incident"):
        assert f'<label for="filter-{name}">' in html and f'name="{name}"' in html


def test_the_queue_filters_and_its_rows_refresh_as_json(client: TestClient) -> None:
    sign_in(client)
    html = client.get("/queue?queue=escalated").text
    assert re.findall(r'data-ticket-id="([^"]+)"', html) == ["zd-9"]
    rows = client.get("/queue/rows?queue=review").json()
    assert re.findall(r'data-ticket-id="([^"]+)"', rows["rows_html"]) == ["zd-2", "zd-3", "zd-1"]
    assert rows["counts"] == {"review": 3, "escalated": 1, "follow_up": 0}
    assert client.get("/static/queue.js").status_code == 200


# --- tickets and actions ----------------------------------------------------------------------------


def test_the_ticket_page_has_every_part_and_form(client: TestClient) -> None:
    sign_in(client)
    html = client.get("/tickets/zd-1").text
    for part in ("message", "classification", "draft", "citations", "ledger", "packet", "delivered", "status",
                 "approve-form", "approve", "edit-form", "send-edited", "reject-form", "reject-reason", "reject-note",
                 "reject", "escalate-form", "escalate-queue", "escalate", "context-loss-form", "flag-context-loss"):
        assert f'id="{part}"' in html, part
    assert '<label for="draft-text">Reply to send</label>' in html and '<textarea id="draft-text"' in html
    assert "<mark>5 working days</mark>" in html
    assert html.count('name="csrf_token"') >= 6
    for reason in ("wrong_intent", "wrong_or_outdated_policy", "incomplete", "tone", "not_needed", "other"):
        assert f'<option value="{reason}">' in html


def test_approving_publishes_the_draft_and_shows_the_new_status(client: TestClient, publisher, store) -> None:
    sign_in(client)
    answer = client.post("/tickets/zd-1/approve", data={"csrf_token": page_csrf(client, "zd-1")})
    assert answer.status_code == 200 and 'id="status"' in answer.text and "<strong>sent</strong>" in answer.text
    (action,) = actions_published(publisher)
    assert action.kind == ev.AGENT_ACTION_KIND_APPROVE and action.text == DRAFT and action.agent == "agent:ana"
    assert action.decision.meta.event_id == "decision-zd-1" and publisher.published[0][1] == "zd-1"
    assert store.ticket("zd-1", None)["status"] == "sent"
    assert store.actions("zd-1")[0]["action_id"] == action.action_id
    assert any(entry["event"] == "action" and entry["ticket_id"] == "zd-1" for entry in store.audit_entries())


def test_a_second_approval_answers_409_and_publishes_nothing(client: TestClient, publisher) -> None:
    sign_in(client)
    token = page_csrf(client, "zd-1")
    assert client.post("/tickets/zd-1/approve", data={"csrf_token": token}).status_code == 200
    again = client.post("/tickets/zd-1/approve", data={"csrf_token": token})
    assert again.status_code == 409 and 'id="action-error"' in again.text
    edit = client.post("/tickets/zd-1/edit", data={"csrf_token": token, "text": "Something else"})
    assert edit.status_code == 409
    assert len(actions_published(publisher)) == 1


def test_an_empty_edit_answers_422_and_changes_nothing(client: TestClient, publisher, store) -> None:
    sign_in(client)
    answer = client.post("/tickets/zd-1/edit", data={"csrf_token": page_csrf(client, "zd-1"), "text": "  \r\n "})
    assert answer.status_code == 422 and 'id="action-error"' in answer.text
    assert publisher.published == [] and store.ticket("zd-1", None)["status"] == "open" and store.actions("zd-1") == []


def test_an_edit_sends_the_edited_text_with_its_edit_ratio(client: TestClient, publisher) -> None:
    sign_in(client)
    edited = DRAFT.replace("5 working days", "3 working days")
    client.post("/tickets/zd-1/edit", data={"csrf_token": page_csrf(client, "zd-1"), "text": edited.replace("\n", "\r\n")})
    (action,) = actions_published(publisher)
    assert action.kind == ev.AGENT_ACTION_KIND_EDIT_AND_SEND and action.text == edited and 0 < action.edit_ratio < 0.1


def test_reject_escalate_and_flag(client: TestClient, publisher, store) -> None:
    sign_in(client)
    token = page_csrf(client, "zd-1")
    client.post("/tickets/zd-1/flag-context-loss", data={"csrf_token": token})
    assert store.ticket("zd-1", None)["status"] == "open"
    client.post("/tickets/zd-1/reject", data={"csrf_token": token, "reason": "tone", "note": "too curt"})
    assert store.ticket("zd-1", None)["status"] == "rejected"
    client.post("/tickets/zd-3/escalate", data={"csrf_token": token, "queue": "fraud-and-security"})
    assert store.ticket("zd-3", None)["status"] == "escalated"
    kinds = [(a.kind, a.reason, a.note, a.target_queue) for a in actions_published(publisher)]
    assert kinds == [(ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS, "", "", ""), (ev.AGENT_ACTION_KIND_REJECT, "tone", "too curt", ""),
                     (ev.AGENT_ACTION_KIND_ESCALATE, "", "", "fraud-and-security")]
    bad = client.post("/tickets/zd-2/reject", data={"csrf_token": token, "reason": "because"})
    assert bad.status_code == 422 and len(publisher.published) == 3


def test_a_forged_or_missing_csrf_token_answers_403_and_changes_nothing(client: TestClient, publisher, store) -> None:
    sign_in(client)
    assert client.post("/tickets/zd-1/approve", data={"csrf_token": "forged"}).status_code == 403
    assert client.post("/tickets/zd-1/approve", data={}).status_code == 403
    assert publisher.published == [] and store.ticket("zd-1", None)["status"] == "open"


def test_another_tenants_ticket_is_not_found(client: TestClient, publisher) -> None:
    sign_in(client)
    html = client.get("/queue?status=all").text
    assert "nc-1" not in html
    assert client.get("/tickets/nc-1").status_code == 404
    assert client.post("/tickets/nc-1/approve", data={"csrf_token": page_csrf(client, "zd-1")}).status_code == 404
    assert client.get("/api/v1/tickets/nc-1", headers={"Authorization": f"Bearer {AGENT_TOKEN}"}).status_code == 404
    assert client.post("/api/v1/tickets/nc-1/approve", headers={"Authorization": f"Bearer {AGENT_TOKEN}"}).status_code == 404
    assert publisher.published == []


def test_html_in_a_ticket_or_draft_is_shown_as_text(client: TestClient, store) -> None:
    hostile = decided("zd-x", draft='<script>alert("draft")</script></textarea><b>bold</b>')
    hostile.ticket.subject = "<img src=x onerror=alert(1)>"
    store.upsert_ticket(queue_row(hostile))
    sign_in(client)
    html = client.get("/tickets/zd-x").text
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#34;draft&#34;)&lt;/script&gt;&lt;/textarea&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "script-src 'self'" in client.get("/tickets/zd-x").headers["content-security-policy"]


def test_an_action_the_broker_did_not_acknowledge_is_not_recorded(client: TestClient, publisher, store) -> None:
    sign_in(client)
    publisher.fail = True
    answer = client.post("/tickets/zd-1/approve", data={"csrf_token": page_csrf(client, "zd-1")})
    assert answer.status_code == 503
    assert store.ticket("zd-1", None)["status"] == "open" and store.actions("zd-1") == []


# --- the API ----------------------------------------------------------------------------------------


def test_the_api_answers_401_without_a_valid_token_and_200_with_one(client: TestClient) -> None:
    assert client.get("/api/v1/queue").status_code == 401
    assert client.get("/api/v1/queue", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/api/v1/tickets/zd-1/approve").status_code == 401
    answer = client.get("/api/v1/queue", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [item["ticket_id"] for item in items] == ["zd-2", "zd-3", "nc-1", "zd-1", "zd-9"]
    assert set(items[0]) == {"ticket_id", "tenant", "queue", "intent", "archetype", "urgency", "channel", "status",
                             "received_at"}
    agent_items = client.get("/api/v1/queue", headers={"Authorization": f"Bearer {AGENT_TOKEN}"}).json()["items"]
    assert "nc-1" not in [item["ticket_id"] for item in agent_items]


def test_the_api_shows_a_ticket_and_acts_on_it(client: TestClient, publisher) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    view = client.get("/api/v1/tickets/zd-1", headers=auth).json()
    assert view["draft"]["text"] == DRAFT and view["delivered"] == [] and view["status"] == "open"
    assert client.post("/api/v1/tickets/zd-1/edit", headers=auth, json={"text": ""}).status_code == 422
    answer = client.post("/api/v1/tickets/zd-1/approve", headers=auth)
    assert answer.status_code == 200 and answer.json()["status"] == "sent"
    assert client.post("/api/v1/tickets/zd-1/approve", headers=auth).status_code == 409
    assert client.post("/api/v1/tickets/zd-2/reject", headers=auth, json={"reason": "incomplete", "note": "n"}).json()["status"] == "rejected"
    assert client.post("/api/v1/tickets/zd-3/escalate", headers=auth, json={"queue": "cards"}).json()["status"] == "escalated"
    assert client.post("/api/v1/tickets/zd-9/flag-context-loss", headers=auth).json()["status"] == "open"
    assert client.post("/api/v1/tickets/zd-9/edit", headers=auth, content=b"{not json").status_code == 400
    assert len(publisher.published) == 4
    assert client.get("/api/v1/tickets/zd-1", headers=auth).json()["actions"][0]["kind"] == "approve"


# --- the store --------------------------------------------------------------------------------------


def test_the_migrated_schema_is_the_models_schema(store: WorkspaceStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    with store.engine.connect() as connection:
        plan = connection.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT ticket_id FROM tickets WHERE status = 'open' "
            "ORDER BY urgency_rank DESC, received_at DESC LIMIT 200")).fetchall()
    assert any("ix_tickets_status_order" in str(row) for row in plan), plan


def test_the_bootstrap_makes_one_admin_and_a_password_when_none_is_set(tmp_path: Path) -> None:
    store = WorkspaceStore(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    generated = bootstrap_admin(store, "boss", "", "tok")
    assert generated and len(generated) >= 16
    assert bootstrap_admin(store, "boss", "", "tok") is None and store.user_count() == 1
    admin = store.user_by_token(token_digest("tok"))
    assert admin["username"] == "boss" and admin["role"] == "admin" and admin["tenants"] == "*"
    assert store.user_by_name("boss")["password_hash"].startswith("$argon2id$")
    reopened = WorkspaceStore(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    assert reopened.workspace_id == store.workspace_id
    assert WorkspaceStore(f"sqlite:///{tmp_path / 'other.sqlite'}").workspace_id != store.workspace_id


def test_a_queue_rebuilt_from_the_topics_keeps_what_agents_did(tmp_path: Path, client: TestClient, publisher) -> None:
    sign_in(client)
    client.post("/tickets/zd-1/approve", data={"csrf_token": page_csrf(client, "zd-1")})
    (action,) = actions_published(publisher)
    fresh = WorkspaceStore(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    feed = QueueFeed(fresh)
    # agent.actions may be read before the decision topics: the action makes the ticket.
    feed.on_agent_action(action)
    feed.on_decided(decided("zd-1"))
    feed.on_agent_action(action)  # read again: counted once
    assert fresh.ticket("zd-1", None)["status"] == "sent" and len(fresh.actions("zd-1")) == 1
    # A newer decision on the same ticket opens it again; an older one changes nothing.
    newer = decided("zd-1", received=1_700_000_000)
    newer.meta.event_id = "decision-zd-1-again"
    newer.timeline.decided_at.seconds += 100
    feed.on_decided(newer)
    assert fresh.ticket("zd-1", None)["status"] == "open"
    feed.on_decided(decided("zd-1"))
    assert fresh.ticket("zd-1", None)["decision_event_id"] == "decision-zd-1-again"
    feed.on_decided(decided("zd-r", decision=ev.DECISION_RESPOND))
    assert fresh.ticket("zd-r", None) is None
