"""The workspace's roles, its admin and leads' pages and the actions added for issue 24, against a
SQLite database in tmp_path, a publisher that records what it is given and in-process stand-ins for
the drafter (Drafter.Draft) and the learner (Learner.GetKpis): each refusal above one's role (403,
audited, nothing changed), users and tokens, reassign, confirm or decline a proposed action, a new
draft with an instruction, the QA sample, the KPI panel and the rollback authority."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta
from supportflow.topics import Topic

from services.workspace.assist import ServiceUnavailable
from services.workspace.auth import LoginLimiter, bootstrap_admin, hash_password, token_digest
from services.workspace.handlers import INSTRUCTION_METADATA_KEY, parse_rollback_owners, queue_row
from services.workspace.main import QueueFeed
from services.workspace.store import WorkspaceStore
from services.workspace.web import create_app
from tests.unit.test_workspace_web import DRAFT, OTHER_TENANT, TENANT, RecordingPublisher, csrf_of, decided

ADMIN_TOKEN = "admin-token-roles-0123456789"
PASSWORDS = {"admin": "admin-password", "ana": "ana-password-1", "bo": "bo-password-12", "lee": "lee-password-1",
             "max": "max-password-1", "nc-agent": "nc-password-12"}
NEW_DRAFT = "Hello,\n\nYour card is on its way [1].\n\nKind regards"


class FakeDrafter:
    """Drafter.Draft in process: records each request, answers `draft` or raises."""

    def __init__(self) -> None:
        self.requests: list[svc.DraftRequest] = []
        self.draft = tk.Draft(text=NEW_DRAFT, status=tk.DRAFT_STATUS_READY, generator="offline",
                              citations=[tk.Citation(article_id="a2", title="Card delivery", passage="on its way")])
        self.down = False

    def draft_for(self, request: svc.DraftRequest) -> tk.Draft:
        self.requests.append(request)
        if self.down:
            raise ServiceUnavailable("the drafter: DEADLINE_EXCEEDED")
        return self.draft



class FakeLearner:
    def __init__(self) -> None:
        self.requests: list[svc.GetKpisRequest] = []
        self.down = False

    def kpis(self, request: svc.GetKpisRequest) -> svc.GetKpisResponse:
        self.requests.append(request)
        if self.down:
            raise ServiceUnavailable("the learner: UNAVAILABLE")
        # Names no list in the workspace has: the page shows whatever comes, in the order it comes.
        self.last = svc.GetKpisResponse(rows=[
            svc.KpiRow(archetype="faq_bounded", segment="all", channel="email", tickets=40,
                       values={"zeta_rate": 0.5, "csat_protected_deflection": 0.31}),
            svc.KpiRow(archetype="repetitive", segment="all", channel="email", tickets=12,
                       values={"zeta_rate": 0.25, "csat_protected_deflection": 0.62}),
        ])
        return self.last


class DrafterAdapter:
    def __init__(self, fake: FakeDrafter) -> None:
        self.fake = fake

    def draft(self, request: svc.DraftRequest) -> tk.Draft:
        return self.fake.draft_for(request)


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    store = WorkspaceStore(f"sqlite:///{tmp_path / 'workspace.sqlite'}")
    bootstrap_admin(store, "admin", PASSWORDS["admin"], ADMIN_TOKEN)
    for name, role, tenants in (("ana", "agent", [TENANT]), ("bo", "agent", [TENANT]), ("lee", "lead", [TENANT]),
                                ("max", "lead", [TENANT]), ("nc-agent", "agent", [OTHER_TENANT])):
        store.create_user(name, hash_password(PASSWORDS[name]), role, tenants)
    for event in (decided("zd-1"), decided("zd-2"), decided("nc-1", OTHER_TENANT)):
        store.upsert_ticket(queue_row(event))
    yield store
    store.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def drafter() -> FakeDrafter:
    return FakeDrafter()


@pytest.fixture
def learner() -> FakeLearner:
    return FakeLearner()


@pytest.fixture
def app(store, publisher, drafter, learner):  # noqa: ANN001, ANN201
    return create_app(store, publisher, session_secret="roles-secret", limiter=LoginLimiter(),
                      drafter=DrafterAdapter(drafter), kpis=learner,
                      rollback_owners=parse_rollback_owners("faq_bounded=lee,repetitive=admin"))


def client_for(app, username: str) -> TestClient:  # noqa: ANN001
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def csrf(client: TestClient, path: str = "/queue") -> str:
    return csrf_of(client.get(path).text)


def published(publisher: RecordingPublisher, topic: Topic) -> list:
    return [event for t, _, event in publisher.published if t is topic]


def refusals(store: WorkspaceStore, actor: str) -> list[dict]:
    return [e for e in store.audit_entries(500) if e["event"] == "refused" and e["actor"] == f"agent:{actor}"]


# --- roles: a request above one's role is 403 and changes nothing ----------------------------------

LEADS_GETS = ("/leads", "/leads/routing", "/leads/qa")
ADMIN_GETS = ("/admin/users", "/admin/tokens")


@pytest.mark.parametrize("path", LEADS_GETS + ADMIN_GETS)
def test_an_agent_is_refused_every_leads_and_admin_page(app, store, path: str) -> None:  # noqa: ANN001
    agent = client_for(app, "ana")
    answer = agent.get(path)
    assert answer.status_code == 403 and "Not allowed" in answer.text
    assert refusals(store, "ana")[0]["detail"].startswith(f"GET {path}")


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_a_lead_is_refused_the_admin_pages(app, store, path: str) -> None:  # noqa: ANN001
    assert client_for(app, "lee").get(path).status_code == 403
    assert refusals(store, "lee")


def test_an_agents_posts_to_leads_and_admin_forms_are_refused_and_change_nothing(app, store, publisher) -> None:  # noqa: ANN001
    _sample(store)
    agent = client_for(app, "ana")
    token = csrf(agent)
    users_before, tokens_before = store.users(), store.tokens()
    posts = {
        "/leads/routing/rollback": {"archetype": "faq_bounded", "tenant": TENANT, "reason": "csat slip"},
        "/leads/qa/zd-s": {"qa_class": "refund_pricing"},
        "/admin/users": {"username": "eve", "password": "x" * 20, "role": "admin", "tenants": "*"},
        f"/admin/users/{store.user_by_name('ana')['id']}": {"role": "admin", "tenants": "*"},
        "/admin/tokens": {"username": "ana", "label": "mine"},
        "/admin/tokens/revoke": {"token": token_digest(ADMIN_TOKEN)},
    }
    for path, fields in posts.items():
        answer = agent.post(path, data=fields | {"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
    assert store.users() == users_before and store.tokens() == tokens_before
    assert publisher.published == [] and store.qa_sample("zd-s", None)["qa_class"] == ""
    assert len(refusals(store, "ana")) == len(posts)


def test_a_lead_sees_the_leads_pages(app) -> None:  # noqa: ANN001
    lead = client_for(app, "lee")
    for path in LEADS_GETS:
        assert lead.get(path).status_code == 200, path
    queue = lead.get("/queue").text
    assert 'href="/leads"' in queue and 'href="/admin/users"' not in queue


# --- admins: users and tokens ------------------------------------------------------------------------


def test_an_admin_creates_a_user_changes_and_disables_them_all_audited(app, store) -> None:  # noqa: ANN001
    admin = client_for(app, "admin")
    token = csrf(admin, "/admin/users")
    made = admin.post("/admin/users", data={"username": "cy", "password": "cy-password-12", "role": "agent",
                                            "tenants": f"{TENANT}, {OTHER_TENANT}", "csrf_token": token}, follow_redirects=False)
    assert made.status_code == 303
    cy = store.user_by_name("cy")
    assert (cy["role"], cy["tenants"], cy["disabled"]) == ("agent", f"{OTHER_TENANT},{TENANT}", False)
    assert client_for(app, "admin").get("/queue").status_code == 200
    PASSWORDS["cy"] = "cy-password-12"
    assert client_for(app, "cy").get("/queue").status_code == 200
    # A weak password, a taken name, a role that does not exist: 422, nothing made.
    for fields in ({"username": "dee", "password": "short", "role": "agent", "tenants": TENANT},
                   {"username": "cy", "password": "x" * 14, "role": "agent", "tenants": TENANT},
                   {"username": "dee", "password": "x" * 14, "role": "root", "tenants": TENANT}):
        assert admin.post("/admin/users", data=fields | {"csrf_token": token}).status_code == 422
    assert store.user_by_name("dee") is None
    changed = admin.post(f"/admin/users/{cy['id']}", data={"role": "lead", "tenants": TENANT, "disabled": "on",
                                                          "csrf_token": token}, follow_redirects=False)
    assert changed.status_code == 303
    cy = store.user_by_name("cy")
    assert (cy["role"], cy["tenants"], cy["disabled"]) == ("lead", TENANT, True)
    login = TestClient(app)
    refused = login.post("/login", data={"username": "cy", "password": "cy-password-12",
                                         "csrf_token": csrf_of(login.get("/login").text)})
    assert refused.status_code == 401
    events = [(e["event"], e["detail"]) for e in store.audit_entries(50)]
    assert ("user_changed", f"cy: role agent -> lead, tenants {OTHER_TENANT},{TENANT} -> {TENANT}, disabled False -> True") in events
    assert any(event == "user_created" and detail.startswith("cy (agent") for event, detail in events)


def test_an_admin_cannot_lock_themselves_out(app, store) -> None:  # noqa: ANN001
    admin = client_for(app, "admin")
    me = store.user_by_name("admin")
    answer = admin.post(f"/admin/users/{me['id']}", data={"role": "agent", "tenants": "*", "csrf_token": csrf(admin)})
    assert answer.status_code == 422 and store.user_by_name("admin")["role"] == "admin"


def test_a_token_is_shown_once_listed_by_digest_and_revoked(app, store) -> None:  # noqa: ANN001
    admin = client_for(app, "admin")
    token = csrf(admin, "/admin/tokens")
    made = admin.post("/admin/tokens", data={"username": "ana", "label": "crm sync", "csrf_token": token})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-token" type="text" readonly value="([^"]+)"', made.text).group(1)
    api = TestClient(app)
    assert api.get("/api/v1/queue", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = admin.get("/admin/tokens").text
    assert secret not in listing and token_digest(secret)[:12] in listing and "crm sync" in listing
    assert admin.post("/admin/tokens", data={"username": "ana", "label": "", "csrf_token": token}).status_code == 422
    revoked = admin.post("/admin/tokens/revoke", data={"token": token_digest(secret), "csrf_token": token},
                         follow_redirects=False)
    assert revoked.status_code == 303
    assert api.get("/api/v1/queue", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert [e["event"] for e in store.audit_entries(10)][:2] == ["token_revoked", "token_created"]


def test_a_disabled_users_session_and_token_count_for_nothing(app, store) -> None:  # noqa: ANN001
    ana = client_for(app, "ana")
    store.add_token(token_digest("ana-token-0123456789"), store.user_by_name("ana")["id"])
    store.update_user(store.user_by_name("ana")["id"], disabled=True)
    assert ana.get("/queue", follow_redirects=False).status_code == 303
    api = TestClient(app)
    assert api.get("/api/v1/queue", headers={"Authorization": "Bearer ana-token-0123456789"}).status_code == 401


# --- reassign ----------------------------------------------------------------------------------------


def test_reassign_hands_the_ticket_to_another_agent_of_its_tenant(app, store, publisher) -> None:  # noqa: ANN001
    ana = client_for(app, "ana")
    page = ana.get("/tickets/zd-1").text
    assert 'id="reassign-assignee"' in page and '<option value="bo"' in page and '<option value="nc-agent"' not in page
    token = csrf_of(page)
    for who in ("nc-agent", "ana", "nobody"):  # another tenant's agent, oneself, no such user
        assert ana.post("/tickets/zd-1/reassign", data={"assignee": who, "csrf_token": token}).status_code == 422
    assert publisher.published == []
    answer = ana.post("/tickets/zd-1/reassign", data={"assignee": "bo", "csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    (action,) = published(publisher, Topic.AGENT_ACTIONS)
    assert action.kind == ev.AGENT_ACTION_KIND_REASSIGN and action.assignee == "agent:bo" and action.agent == "agent:ana"
    assert store.ticket("zd-1", None)["assignee"] == "bo" and store.ticket("zd-1", None)["status"] == "open"
    rows = ana.get("/queue/rows", params={"assignee": "bo"}).json()
    assert rows["shown"] == 1 and 'data-ticket-id="zd-1"' in rows["rows_html"]


# --- proposed actions ---------------------------------------------------------------------------------


def _proposal(store: WorkspaceStore, proposal_id: str, ticket_id: str = "zd-1") -> None:
    QueueFeed(store).on_action_recorded(ev.ActionRecorded(
        meta=new_meta(TENANT, "escalator"), ticket_id=ticket_id, action_id=proposal_id, tool="card_replacement",
        params={"card": "visa"}, status=ev.ACTION_STATUS_PROPOSED, reason="within limits: waiting for the customer",
        requested_by="escalator:card_lost"))


def test_confirming_a_proposed_action_tells_the_escalator_and_counts_once(app, store, publisher) -> None:  # noqa: ANN001
    _proposal(store, "p-1")
    _proposal(store, "p-2")
    ana = client_for(app, "ana")
    page = ana.get("/tickets/zd-1").text
    assert 'id="proposals"' in page and "card replacement" in page and 'id="confirmation-ref-1"' in page
    token = csrf_of(page)
    assert ana.post("/tickets/zd-1/confirm-action", data={"proposal_id": "p-1", "csrf_token": token}).status_code == 422
    assert ana.post("/tickets/zd-1/confirm-action", data={"proposal_id": "p-9", "confirmation_ref": "x",
                                                          "csrf_token": token}).status_code == 404
    assert publisher.published == []
    done = ana.post("/tickets/zd-1/confirm-action", data={"proposal_id": "p-1", "confirmation_ref": "call 2026-12-06 10:02",
                                                          "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    (action,) = published(publisher, Topic.AGENT_ACTIONS)
    (confirmation,) = published(publisher, Topic.ACTIONS_CONFIRMED)
    assert action.kind == ev.AGENT_ACTION_KIND_CONFIRM_ACTION and action.proposal_id == "p-1"
    assert (confirmation.proposal_id, confirmation.ticket_id, confirmation.confirmed_by, confirmation.confirmation_ref) == (
        "p-1", "zd-1", "agent:ana", "call 2026-12-06 10:02")
    assert ana.post("/tickets/zd-1/confirm-action", data={"proposal_id": "p-1", "confirmation_ref": "again",
                                                          "csrf_token": token}).status_code == 409
    declined = ana.post("/tickets/zd-1/decline-action", data={"proposal_id": "p-2", "note": "customer said no",
                                                             "csrf_token": token}, follow_redirects=False)
    assert declined.status_code == 303
    assert [a.kind for a in published(publisher, Topic.AGENT_ACTIONS)][-1] == ev.AGENT_ACTION_KIND_DECLINE_ACTION
    assert len(published(publisher, Topic.ACTIONS_CONFIRMED)) == 1
    # The escalator's outcome of the confirmed proposal shows beside the agent's answer.
    QueueFeed(store).on_action_recorded(ev.ActionRecorded(
        meta=new_meta(TENANT, "escalator"), ticket_id="zd-1", action_id="a-9", tool="card_replacement",
        status=ev.ACTION_STATUS_DRY_RUN, proposal_id="p-1"))
    states = {p["proposal_id"]: (p["answered"], p["outcome"]) for p in store.proposals("zd-1")}
    assert states == {"p-1": ("confirm_action", "dry_run"), "p-2": ("decline_action", "")}


# --- a new draft with an instruction ---------------------------------------------------------------------


def test_a_redraft_asks_the_drafter_with_the_instruction_and_replaces_the_draft(app, store, publisher, drafter) -> None:  # noqa: ANN001
    ana = client_for(app, "ana")
    token = csrf(ana, "/tickets/zd-1")
    answer = ana.post("/tickets/zd-1/redraft", data={"instruction": "shorter; mention the fee", "csrf_token": token},
                      follow_redirects=False)
    assert answer.status_code == 303
    (request,) = drafter.requests
    assert request.ticket.ticket_id == "zd-1" and request.classification.intent == "card_arrival"
    assert (request.ticket.history[-1].author, request.ticket.history[-1].text) == ("agent", "shorter; mention the fee")
    assert request.ticket.metadata[INSTRUCTION_METADATA_KEY] == "shorter; mention the fee"
    (action,) = published(publisher, Topic.AGENT_ACTIONS)
    assert action.kind == ev.AGENT_ACTION_KIND_REDRAFT and action.note == "shorter; mention the fee"
    assert action.text == NEW_DRAFT and action.decision.draft.text == NEW_DRAFT
    page = ana.get(answer.headers["location"]).text
    assert "New draft from the drafter" in page and "Your card is on its way" in page
    assert "Card delivery" in page  # the new draft's citation
    # Approving now sends the draft the agent saw: the new one.
    ana.post("/tickets/zd-1/approve", data={"csrf_token": token})
    approved = published(publisher, Topic.AGENT_ACTIONS)[-1]
    assert approved.kind == ev.AGENT_ACTION_KIND_APPROVE and approved.text == NEW_DRAFT


def test_a_redraft_the_drafter_cannot_give_changes_nothing(app, store, publisher, drafter) -> None:  # noqa: ANN001
    ana = client_for(app, "ana")
    token = csrf(ana, "/tickets/zd-1")
    assert ana.post("/tickets/zd-1/redraft", data={"instruction": " ", "csrf_token": token}).status_code == 422
    assert drafter.requests == []  # no instruction: the drafter is not asked
    drafter.down = True
    down = ana.post("/tickets/zd-1/redraft", data={"instruction": "shorter", "csrf_token": token})
    assert down.status_code == 503 and "did not answer" in down.text
    drafter.down = False
    drafter.draft = tk.Draft(status=tk.DRAFT_STATUS_BLOCKED, block_reason="unverifiable fee")
    blocked = ana.post("/tickets/zd-1/redraft", data={"instruction": "mention the fee", "csrf_token": token})
    assert blocked.status_code == 422 and "unverifiable fee" in blocked.text
    assert publisher.published == []
    assert json.loads(store.ticket("zd-1", None)["decision"])["draft"]["text"] == DRAFT


def test_a_rebuilt_queue_keeps_the_assignee_and_the_new_draft(app, store, publisher, tmp_path: Path) -> None:  # noqa: ANN001
    ana = client_for(app, "ana")
    token = csrf(ana, "/tickets/zd-1")
    ana.post("/tickets/zd-1/redraft", data={"instruction": "shorter", "csrf_token": token})
    ana.post("/tickets/zd-1/reassign", data={"assignee": "bo", "csrf_token": token})
    fresh = WorkspaceStore(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    feed = QueueFeed(fresh)
    for action in published(publisher, Topic.AGENT_ACTIONS):  # read before the decision: the action makes the ticket
        feed.on_agent_action(action)
    feed.on_decided(decided("zd-1"))
    row = fresh.ticket("zd-1", None)
    assert row["assignee"] == "bo" and json.loads(row["decision"])["draft"]["text"] == NEW_DRAFT


# --- the QA sample ---------------------------------------------------------------------------------------


def _sample(store: WorkspaceStore, ticket_id: str = "zd-s", tenant: str = TENANT) -> None:
    answered = decided(ticket_id, tenant, decision=ev.DECISION_RESPOND, draft="Refunds take 3 days.")
    QueueFeed(store).on_qa_sample(ev.QaSampleRequested(meta=new_meta(tenant, "learner"), ticket_id=ticket_id,
                                                       week="2026-W49", decision=answered))


def test_a_lead_marks_a_qa_samples_severity_class_once(app, store, publisher) -> None:  # noqa: ANN001
    _sample(store)
    _sample(store, "nc-s", OTHER_TENANT)
    lead = client_for(app, "lee")
    page = lead.get("/leads/qa").text
    assert 'data-ticket-id="zd-s"' in page and "Refunds take 3 days." in page and 'data-ticket-id="nc-s"' not in page
    token = csrf_of(page)
    assert lead.post("/leads/qa/zd-s", data={"qa_class": "made_up", "csrf_token": token}).status_code == 422
    assert lead.post("/leads/qa/nc-s", data={"qa_class": "none", "csrf_token": token}).status_code == 404
    assert publisher.published == []
    marked = lead.post("/leads/qa/zd-s", data={"qa_class": "refund_pricing", "note": "3 days is wrong",
                                               "csrf_token": token}, follow_redirects=False)
    assert marked.status_code == 303
    (action,) = published(publisher, Topic.AGENT_ACTIONS)
    assert (action.kind, action.qa_class, action.ticket_id, action.agent) == (
        ev.AGENT_ACTION_KIND_QA_SEVERITY, "refund_pricing", "zd-s", "agent:lee")
    assert action.decision.draft.text == "Refunds take 3 days."
    assert lead.post("/leads/qa/zd-s", data={"qa_class": "none", "csrf_token": token}).status_code == 409
    assert "Marked <strong>refund pricing</strong> by agent:lee" in lead.get("/leads/qa").text


# --- the KPI panel ------------------------------------------------------------------------------------------


def test_the_kpi_panel_shows_the_learners_names_in_its_order_with_a_plotly_chart(app, learner) -> None:  # noqa: ANN001
    lead = client_for(app, "lee")
    page = lead.get("/leads", params={"channel": "email"}).text
    (request,) = learner.requests
    assert (request.tenant_id, request.channel) == (TENANT, "email")
    headers = re.findall(r'<th scope="col">([^<]+)</th>', page.split('id="kpi-table"')[1])
    # A protobuf map keeps no order of its own: the order is the one the response iterates in.
    names = list(learner.last.rows[0].values)
    assert headers == ["Archetype", "Segment", "Channel", "Tickets", *names]
    assert sorted(names) == ["csat_protected_deflection", "zeta_rate"]
    figure = json.loads(re.search(r'<script type="application/json" id="kpi-figure">(.*?)</script>', page, re.S).group(1))
    first = {"zeta_rate": [0.5, 0.25], "csat_protected_deflection": [0.31, 0.62]}[names[0]]
    assert figure["data"][0]["type"] == "bar" and list(figure["data"][0]["y"]) == first
    assert '<script src="/static/vendor/plotly.min.js"' in page
    chosen = lead.get("/leads", params={"kpi": "csat_protected_deflection"}).text
    figure = json.loads(re.search(r'id="kpi-figure">(.*?)</script>', chosen, re.S).group(1))
    assert list(figure["data"][0]["y"]) == [0.31, 0.62]
    plotly_js = lead.get("/static/vendor/plotly.min.js")
    assert plotly_js.status_code == 200 and "plotly.js" in plotly_js.text[:500]
    assert lead.get("/leads", params={"tenant": OTHER_TENANT}).status_code == 403


def test_the_kpi_panel_says_so_when_the_learner_does_not_answer(app, learner) -> None:  # noqa: ANN001
    learner.down = True
    page = client_for(app, "lee").get("/leads")
    assert page.status_code == 200 and 'id="kpi-problem"' in page.text and "kpi-figure" not in page.text


# --- routing overrides and the rollback authority -------------------------------------------------------------


def test_only_the_named_owner_rolls_an_archetype_back_with_a_reason(app, store, publisher) -> None:  # noqa: ANN001
    QueueFeed(store).on_routing_override(ev.RoutingOverride(
        meta=new_meta(TENANT, "learner"), override_id="o-1", archetype=tk.ARCHETYPE_REPETITIVE,
        action=ev.OVERRIDE_ACTION_KILL_SWITCH_ON, reason="hallucinated policy P0", issued_by="learner:guardrail"))
    owner, other = client_for(app, "lee"), client_for(app, "max")
    page = owner.get("/leads/routing").text
    assert "learner:guardrail" in page and "hallucinated policy P0" in page and 'id="rollback-form"' in page
    assert 'id="rollback-form"' not in other.get("/leads/routing").text
    fields = {"archetype": "faq_bounded", "tenant": TENANT, "reason": "CSAT slipped 4 points"}
    assert other.post("/leads/routing/rollback", data=fields | {"csrf_token": csrf(other)}).status_code == 403
    token = csrf(owner)
    assert owner.post("/leads/routing/rollback", data=fields | {"reason": " ", "csrf_token": token}).status_code == 422
    assert owner.post("/leads/routing/rollback", data=fields | {"archetype": "repetitive",
                                                                "csrf_token": token}).status_code == 403  # admin owns it
    assert owner.post("/leads/routing/rollback", data=fields | {"tenant": OTHER_TENANT, "csrf_token": token}).status_code == 403
    assert owner.post("/leads/routing/rollback", data=fields).status_code == 403  # no CSRF token
    assert publisher.published == []
    done = owner.post("/leads/routing/rollback", data=fields | {"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    ((topic, key, override),) = publisher.published
    assert (topic, key) == (Topic.ROUTING_OVERRIDES, "faq_bounded")
    assert (override.archetype, override.action, override.route, override.issued_by, override.reason,
            override.meta.tenant_id) == (tk.ARCHETYPE_FAQ_BOUNDED, ev.OVERRIDE_ACTION_SET_AUTOMATION,
                                         tk.ROUTE_DRAFT_FOR_REVIEW, "human:lee", "CSAT slipped 4 points", TENANT)
    assert "human:lee" in owner.get("/leads/routing").text
    assert any(e["event"] == "rollback" and e["actor"] == "agent:lee" for e in store.audit_entries(20))
    assert len(refusals(store, "max")) == 1


def test_rollback_owners_are_parsed_strictly() -> None:
    assert parse_rollback_owners(" faq_bounded = lee , repetitive=admin ") == {"faq_bounded": "lee", "repetitive": "admin"}
    for bad in ("faq=lee", "faq_bounded", "faq_bounded=lee,faq_bounded=max"):
        with pytest.raises(ValueError):
            parse_rollback_owners(bad)


# --- the investigation --------------------------------------------------------------------------------------------


def test_the_ticket_view_shows_the_investigations_findings(app, store) -> None:  # noqa: ANN001
    event = decided("zd-7")
    found = event.investigation.findings.add(source="transactions", lookup="last_transfer",
                                             summary="A transfer of 40.00 is pending", available=True, record_id="tr-1")
    found.observed_at.seconds = 1_700_000_000
    event.investigation.findings.add(source="account", lookup="card_status", available=False,
                                     unavailable_reason="timed out after 800 ms")
    event.investigation.playbook = "transfer_pending"
    store.upsert_ticket(queue_row(event))
    page = client_for(app, "ana").get("/tickets/zd-7").text
    section = page.split('id="investigation"')[1].split("</section>")[0]
    assert "A transfer of 40.00 is pending" in section and "2023-11-14 22:13 UTC" in section
    assert "not available: timed out after 800 ms" in section and "transfer_pending" in section
