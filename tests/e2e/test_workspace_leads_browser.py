"""The workspace's issue-24 additions as people use them, in a real (headless) Chromium: an agent
watches a new ticket appear in the open queue without reloading, reassigns a ticket and asks the
drafter for a new draft with an instruction; a lead opens the KPI panel (a plotly chart drawn as
SVG), pulls an archetype back to draft-for-review (the RoutingOverride lands on Kafka) and marks a
QA sample's severity class; every field on the new pages is labelled and the keyboard reaches
their buttons.

Kafka is the real broker (the `local_stack` fixture). The workspace runs in this process as its
service runs it (`build`), calling a real gRPC Drafter and Learner: test servicers on loopback
ports (the real drafter needs the retriever, Weaviate and models; these answer at once, and the
drafter's echoes the instruction it received so the test can see it crossed gRPC). Screenshots go
to <cache_dir>/test-artifacts/ and the test's tmp dir; their paths are printed.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, delete_namespace_topics, ensure_topics, new_meta
from supportflow.observability import Health
from supportflow.rpc import create_server
from supportflow.topics import Topic
from tooling.settings import FleetSettings

from services.workspace.auth import bootstrap_admin, hash_password
from services.workspace.handlers import INSTRUCTION_METADATA_KEY
from services.workspace.store import WorkspaceStore
from tooling.decisions import read_topic
from tests.service_helpers import headless_browser, wait_for_page, workspace_running
from tooling.fleet import free_port

pytestmark = pytest.mark.infra

TENANT = "rho-bank"
PAGE_TIMEOUT_S = 30.0
QUEUE_TIMEOUT_S = 60.0
USERS = {"ana": ("agent", TENANT), "bo": ("agent", TENANT), "lee": ("lead", TENANT)}
KPI_NAMES = ("csat_protected_deflection", "deflection_rate", "containment_rate", "context_loss_rate")


class EchoDrafter(services_pb2_grpc.DrafterServicer):
    """Drafter.Draft for the test: a new draft that says which instruction it was given."""

    def __init__(self) -> None:
        self.requests: list[svc.DraftRequest] = []

    def Draft(self, request: svc.DraftRequest, context) -> svc.DraftResponse:  # noqa: N802, ANN001
        self.requests.append(request)
        instruction = request.ticket.metadata.get(INSTRUCTION_METADATA_KEY, "")
        text = (f"Hello,\n\nYour card arrives within 7 working days [1].\n\n"
                f"(redrafted as asked: {instruction})\n\nKind regards,\nRho-Bank Support")
        return svc.DraftResponse(draft=tk.Draft(
            text=text, status=tk.DRAFT_STATUS_READY, generator="echo-test",
            citations=[tk.Citation(article_id="card-delivery", title="Card delivery",
                                   passage="A new card arrives within 7 working days.")]))


class PanelLearner(services_pb2_grpc.LearnerServicer):
    """Learner.GetKpis for the test: two archetypes over two channels."""

    def GetKpis(self, request: svc.GetKpisRequest, context) -> svc.GetKpisResponse:  # noqa: N802, ANN001
        rows = []
        for n, archetype in enumerate(("faq_bounded", "repetitive")):
            for m, channel in enumerate(("email", "zendesk")):
                values = {name: round(0.2 + 0.1 * n + 0.05 * m + 0.01 * k, 3) for k, name in enumerate(KPI_NAMES)}
                rows.append(svc.KpiRow(archetype=archetype, segment="all", channel=channel, values=values,
                                       tickets=20 + n * 10 + m))
        response = svc.GetKpisResponse(rows=rows)
        response.computed_at.GetCurrentTime()
        return response


@dataclass
class Workspace:
    url: str
    passwords: dict[str, str]
    settings: FleetSettings
    publisher: EventPublisher
    drafter: EchoDrafter
    artifacts: list[Path]


def review_decision(ticket_id: str, subject: str) -> ev.TicketDecided:
    decided = ev.TicketDecided(
        meta=new_meta(TENANT, "escalator"),
        ticket=tk.Ticket(ticket_id=ticket_id, tenant_id=TENANT, channel=tk.CHANNEL_EMAIL, subject=subject,
                         body="I ordered a card two weeks ago and it has not come.",
                         origin=tk.ChannelOrigin(provider="email", external_id=f"<{ticket_id}@example.com>")),
        classification=tk.Classification(intent="card_arrival", confidence=0.55, archetype=tk.ARCHETYPE_FAQ_BOUNDED,
                                         urgency=tk.URGENCY_NORMAL, route=tk.ROUTE_DRAFT_FOR_REVIEW,
                                         route_reason="confidence 0.55 is below 0.70"),
        decision=ev.DECISION_REVIEW, reason="agent review", target_queue="cards",
        draft=tk.Draft(text="Hello,\n\nThank you for writing. A new card usually arrives within 7 working days [1]. "
                            "You can follow it in the app.\n\nKind regards,\nRho-Bank Support",
                       status=tk.DRAFT_STATUS_READY, generator="offline",
                       citations=[tk.Citation(article_id="card-delivery", title="Card delivery",
                                              passage="A new card arrives within 7 working days.")]),
    )
    decided.ticket.received_at.GetCurrentTime()
    decided.timeline.decided_at.GetCurrentTime()
    return decided


@pytest.fixture(scope="module")
def workspace(local_stack, base_settings: FleetSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    run_dir = tmp_path_factory.mktemp("workspace-leads")
    settings = base_settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", topic_partitions=1, default_tenant=TENANT)
    ensure_topics(settings)
    drafter = EchoDrafter()
    health = Health("workspace-test-servicers")
    server, port = create_server("test-assist", [
        (services_pb2_grpc.add_DrafterServicer_to_server, drafter, "supportflow.contracts.v1.Drafter"),
        (services_pb2_grpc.add_LearnerServicer_to_server, PanelLearner(), "supportflow.contracts.v1.Learner"),
    ], health, 0, host="127.0.0.1")
    server.start()
    passwords = {name: secrets.token_urlsafe(12) for name in [*USERS, "admin"]}
    database = f"sqlite:///{run_dir / 'workspace.sqlite'}"
    store = WorkspaceStore(database)  # the people, made before the service opens the database
    bootstrap_admin(store, "admin", passwords["admin"], "")
    for name, (role, tenant) in USERS.items():
        store.create_user(name, hash_password(passwords[name]), role, [tenant])
    store.close()
    settings = settings.replace(
        workspace_db_url=database, workspace_http_port=free_port(), workspace_session_secret=secrets.token_hex(32),
        drafter_addr=f"127.0.0.1:{port}", learner_addr=f"127.0.0.1:{port}", workspace_rollback_owners="faq_bounded=lee")
    publisher = EventPublisher(settings, "browser-test")
    for ticket_id, subject in (("em-1", "My new card has not arrived"), ("em-2", "Where is my card?")):
        publisher.publish(Topic.TICKETS_REVIEW, ticket_id, review_decision(ticket_id, subject))
    answered = review_decision("em-9", "Refund for a card fee")
    answered.decision = ev.DECISION_RESPOND
    answered.draft.text = "Hello,\n\nWe refund card fees within 3 days.\n\nKind regards"
    publisher.publish(Topic.QA_SAMPLES, "em-9", ev.QaSampleRequested(meta=new_meta(TENANT, "learner"), ticket_id="em-9",
                                                                      week="2026-W49", decision=answered))
    publisher.flush()

    try:
        with workspace_running(settings) as (url, _):
            yield Workspace(url=url, passwords=passwords, settings=settings, publisher=publisher, drafter=drafter,
                            artifacts=[base_settings.cache_dir / "test-artifacts", run_dir / "screenshots"])
    finally:
        server.stop(1)
        delete_namespace_topics(settings)


@pytest.fixture(scope="module")
def browser(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_browser(workspace.settings.cache_dir, tmp_path_factory.mktemp("chromedriver")) as driver:
        yield driver


# --- what a person does --------------------------------------------------------------------------


def wait_page(driver: WebDriver, what: str, condition: Callable[[WebDriver], object],
              timeout_s: float = PAGE_TIMEOUT_S) -> object:
    return wait_for_page(driver, what, condition, timeout_s)


def log_in_as(driver: WebDriver, workspace: Workspace, username: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{workspace.url}/login")
    wait_page(driver, "the login form", lambda d: d.find_elements(By.ID, "login-form"))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(workspace.passwords[username])
    driver.find_element(By.ID, "login-submit").click()
    wait_page(driver, "the page after logging in", lambda d: "/login" not in d.current_url)


def open_ticket(driver: WebDriver, workspace: Workspace, ticket_id: str) -> None:
    driver.get(f"{workspace.url}/queue")
    link = wait_page(driver, f"the queue row of {ticket_id}", lambda d: d.find_element(
        By.CSS_SELECTOR, f'tr.queue-item[data-ticket-id="{ticket_id}"] a.ticket-link'), QUEUE_TIMEOUT_S)
    link.click()
    wait_page(driver, f"the page of {ticket_id}", lambda d: d.find_elements(By.ID, "draft-text"))


def save_screenshot(driver: WebDriver, workspace: Workspace, name: str) -> list[Path]:
    width = driver.execute_script("return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": max(width, 1), "height": max(height, 1), "scale": 1}})
    saved = []
    for folder in workspace.artifacts:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(base64.b64decode(shot["data"]))
        saved.append(folder / name)
    print(f"\n[workspace-leads-browser] screenshot: {' and '.join(str(p) for p in saved)}")
    return saved


def actions_on_kafka(workspace: Workspace, ticket_id: str, kind: int) -> list[ev.AgentAction]:
    found = read_topic(workspace.settings, Topic.AGENT_ACTIONS, timeout_s=30,
                       until=lambda events: any(a.ticket_id == ticket_id and a.kind == kind for a in events))
    return [a for a in found if a.ticket_id == ticket_id and a.kind == kind]


def unlabelled_fields(driver: WebDriver) -> list[str]:
    return driver.execute_script("""
        const missing = [];
        for (const field of document.querySelectorAll('input, select, textarea')) {
            if (field.type === 'hidden') continue;
            const byFor = field.id && document.querySelector('label[for="' + CSS.escape(field.id) + '"]');
            const text = (byFor && byFor.textContent.trim()) || (field.getAttribute('aria-label') || '').trim();
            if (!text) missing.push(field.outerHTML.slice(0, 160));
        }
        return missing;
    """)


def tab_reaches(driver: WebDriver, element_id: str, presses: int = 80) -> list[str]:
    """Press TAB from the top of the freshly loaded page until `element_id` has the focus; the ids
    focused on the way."""
    driver.get(driver.current_url)
    seen: list[str] = []
    for _ in range(presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        try:
            seen.append(driver.switch_to.active_element.get_attribute("id") or "")
        except StaleElementReferenceException:
            continue
        if seen[-1] == element_id:
            break
    return seen


# --- the agent --------------------------------------------------------------------------------------


def test_a_new_ticket_appears_in_the_open_queue_without_a_reload(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "ana")
    browser.get(f"{workspace.url}/queue")
    wait_page(browser, "the first tickets", lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.queue-item[data-ticket-id="em-1"]'),
              QUEUE_TIMEOUT_S)
    browser.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads
    workspace.publisher.publish(Topic.TICKETS_REVIEW, "em-3", review_decision("em-3", "Card never came"))
    workspace.publisher.flush()
    wait_page(browser, "the new ticket's row", lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.queue-item[data-ticket-id="em-3"]'),
              QUEUE_TIMEOUT_S)
    assert browser.execute_script("return window.__sameDocument;") == "yes", "the queue page reloaded"
    assert browser.find_element(By.CSS_SELECTOR, '#queue-counts [data-count="review"]').text == "3"


def test_an_agent_reassigns_a_ticket_to_another_agent(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "ana")
    open_ticket(browser, workspace, "em-1")
    assert unlabelled_fields(browser) == []
    Select(browser.find_element(By.ID, "reassign-assignee")).select_by_value("bo")
    browser.find_element(By.ID, "reassign").click()
    wait_page(browser, "the ticket to say it is bo's", lambda d: "assigned to bo" in d.find_element(By.ID, "assignee").text)
    (action,) = actions_on_kafka(workspace, "em-1", ev.AGENT_ACTION_KIND_REASSIGN)
    assert (action.assignee, action.agent) == ("agent:bo", "agent:ana")


def test_an_agent_asks_the_drafter_for_a_new_draft_with_an_instruction(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "ana")
    open_ticket(browser, workspace, "em-2")
    assert "redraft" in tab_reaches(browser, "redraft"), "TAB never reached the redraft button"
    instruction = f"shorter, and mention the app {secrets.token_hex(3)}"
    browser.find_element(By.ID, "redraft-instruction").send_keys(instruction)
    browser.find_element(By.ID, "redraft").click()
    wait_page(browser, "the new draft in the reply box",
              lambda d: f"redrafted as asked: {instruction}" in d.find_element(By.ID, "draft-text").get_property("value"))
    assert "New draft from the drafter" in browser.find_element(By.ID, "notice").text
    save_screenshot(browser, workspace, "workspace-redraft.png")
    (request,) = [r for r in workspace.drafter.requests if r.ticket.ticket_id == "em-2"]
    assert request.ticket.history[-1].author == "agent" and request.ticket.history[-1].text == instruction
    (action,) = actions_on_kafka(workspace, "em-2", ev.AGENT_ACTION_KIND_REDRAFT)
    assert action.note == instruction and f"redrafted as asked: {instruction}" in action.decision.draft.text


# --- the lead --------------------------------------------------------------------------------------------


def test_a_lead_sees_the_kpi_chart_drawn_by_plotly(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "lee")
    browser.get(f"{workspace.url}/leads")
    wait_page(browser, "plotly's SVG chart", lambda d: d.find_elements(By.CSS_SELECTOR, "#kpi-chart svg.main-svg"))
    wait_page(browser, "the chart's bars", lambda d: d.find_elements(By.CSS_SELECTOR, "#kpi-chart g.trace.bars path"))
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#kpi-table thead th")][4:]
    # A protobuf map has no order of its own: the page keeps the order the names come off the wire.
    wire = svc.GetKpisResponse.FromString(PanelLearner().GetKpis(svc.GetKpisRequest(), None).SerializeToString())
    assert headers == list(wire.rows[0].values) and sorted(headers) == sorted(KPI_NAMES)
    assert unlabelled_fields(browser) == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], "\n".join(e["message"] for e in errors)  # plotly.js ran under the page's content security policy
    save_screenshot(browser, workspace, "workspace-kpi-panel.png")


def test_the_rollback_owner_pulls_an_archetype_back_to_draft_for_review(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "lee")
    browser.get(f"{workspace.url}/leads/routing")
    wait_page(browser, "the rollback form", lambda d: d.find_elements(By.ID, "rollback-form"))
    assert unlabelled_fields(browser) == []
    assert "rollback-submit" in tab_reaches(browser, "rollback-submit"), "TAB never reached the rollback button"
    Select(browser.find_element(By.ID, "rollback-archetype")).select_by_value("faq_bounded")
    Select(browser.find_element(By.ID, "rollback-tenant")).select_by_value(TENANT)
    reason = f"CSAT slipped 4 points this week ({secrets.token_hex(3)})"
    browser.find_element(By.ID, "rollback-reason").send_keys(reason)
    browser.find_element(By.ID, "rollback-submit").click()
    wait_page(browser, "the notice", lambda d: d.find_elements(By.ID, "notice"))
    found = read_topic(workspace.settings, Topic.ROUTING_OVERRIDES, timeout_s=30,
                       until=lambda events: any(o.reason == reason for o in events))
    (override,) = [o for o in found if o.reason == reason]
    assert (override.archetype, override.action, override.route, override.issued_by, override.meta.tenant_id) == (
        tk.ARCHETYPE_FAQ_BOUNDED, ev.OVERRIDE_ACTION_SET_AUTOMATION, tk.ROUTE_DRAFT_FOR_REVIEW, "human:lee", TENANT)
    assert reason in browser.find_element(By.ID, "override-log").text
    save_screenshot(browser, workspace, "workspace-routing.png")


def test_a_lead_marks_a_qa_samples_severity_class(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "lee")
    browser.get(f"{workspace.url}/leads/qa")
    wait_page(browser, "the QA sample", lambda d: d.find_elements(By.CSS_SELECTOR, 'li.qa-sample[data-ticket-id="em-9"] form'),
              QUEUE_TIMEOUT_S)
    assert unlabelled_fields(browser) == []
    assert "qa-mark-1" in tab_reaches(browser, "qa-mark-1"), "TAB never reached the QA mark button"
    sample = browser.find_element(By.CSS_SELECTOR, 'li.qa-sample[data-ticket-id="em-9"]')
    assert "We refund card fees within 3 days." in sample.text
    Select(sample.find_element(By.CSS_SELECTOR, "select")).select_by_value("refund_pricing")
    sample.find_element(By.CSS_SELECTOR, "button.qa-mark").click()
    # .text is as shown, and the stylesheet may capitalise the class: compared without case.
    wait_page(browser, "the class shown", lambda d: "marked refund pricing by agent:lee" in d.find_element(
        By.CSS_SELECTOR, 'li.qa-sample[data-ticket-id="em-9"]').text.lower())
    save_screenshot(browser, workspace, "workspace-qa.png")
    (action,) = actions_on_kafka(workspace, "em-9", ev.AGENT_ACTION_KIND_QA_SEVERITY)
    assert (action.qa_class, action.agent) == ("refund_pricing", "agent:lee")


def test_an_agent_is_refused_the_leads_pages_in_the_browser(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "bo")
    browser.get(f"{workspace.url}/leads")
    assert "Not allowed" in wait_page(browser, "the refusal", lambda d: d.find_element(By.ID, "error-message")).text
    assert not browser.find_elements(By.ID, "nav-kpis")


# --- the admin -------------------------------------------------------------------------------------------------


def test_an_admin_creates_a_user_and_a_token_from_the_pages(browser: WebDriver, workspace: Workspace):
    log_in_as(browser, workspace, "admin")
    browser.get(f"{workspace.url}/admin/users")
    wait_page(browser, "the users page", lambda d: d.find_elements(By.ID, "new-user-form"))
    assert unlabelled_fields(browser) == []
    assert "create-user" in tab_reaches(browser, "create-user", presses=120), "TAB never reached the create button"
    password = secrets.token_urlsafe(12)
    browser.find_element(By.ID, "new-username").send_keys("dana")
    browser.find_element(By.ID, "new-password").send_keys(password)
    Select(browser.find_element(By.ID, "new-role")).select_by_value("agent")
    browser.find_element(By.ID, "new-tenants").send_keys(TENANT)
    browser.find_element(By.ID, "create-user").click()
    wait_page(browser, "dana in the list", lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.user[data-username="dana"]'))
    browser.get(f"{workspace.url}/admin/tokens")
    wait_page(browser, "the tokens page", lambda d: d.find_elements(By.ID, "new-token-form"))
    assert unlabelled_fields(browser) == []
    Select(browser.find_element(By.ID, "token-user")).select_by_value("dana")
    browser.find_element(By.ID, "token-label").send_keys("dana's CRM sync")
    browser.find_element(By.ID, "create-token").click()
    token = wait_page(browser, "the new token", lambda d: d.find_element(By.ID, "new-token")).get_property("value")
    save_screenshot(browser, workspace, "workspace-tokens.png")
    with httpx.Client(base_url=workspace.url, timeout=10) as api:
        answer = api.get("/api/v1/queue", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and {i["ticket_id"] for i in answer.json()["items"]} >= {"em-1", "em-2"}
    workspace.passwords["dana"] = password
    log_in_as(browser, workspace, "dana")
    assert "dana (agent)" in browser.find_element(By.CSS_SELECTOR, "header .who").text
