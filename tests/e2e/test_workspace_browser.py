"""The agent workspace as a person uses it, in a real (headless) Chromium: log in, see the review
queue fill itself, open a ticket, read the draft, send an edited reply that reaches the ticket on the
Zendesk stand-in as a public comment, reject another draft so that nothing reaches its ticket and
see the leads' KPI panel count the verdicts; and reach it all from the keyboard, every field
labelled. The page's ids and labels are docs/workspace.md's.

Kafka is the real broker (the `local_stack` fixture); the workspace, delivery and the learner run as processes,
as in production; the decisions are TicketDecided events on tickets.review for tickets that exist
on the Zendesk stand-in. Screenshots of the queue and of a ticket go to
<cache_dir>/test-artifacts/ (and the test's tmp dir), for a person to look at.
"""

from __future__ import annotations

import re
import secrets
import socket
import string
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import EventPublisher, delete_namespace_topics, ensure_topics, new_meta
from supportflow.topics import Topic
from tests.service_helpers import headless_browser, wait_for_page
from tooling.channel_servers import ChannelServers, ChannelServersConfig
from tooling.decisions import read_topic
from tooling.demo import channels_file, tenant_accounts
from tooling.fleet import ServiceFleet, free_port
from tooling.round_trip import DEMO_TENANT
from tooling.settings import FleetSettings

pytestmark = pytest.mark.infra

TENANT = DEMO_TENANT
ADMIN = "admin"
PAGE_TIMEOUT_S = 30.0
QUEUE_TIMEOUT_S = 90.0  # the workspace reads tickets.review from the beginning when it starts
DELIVERY_TIMEOUT_S = 60.0
# After a rejection, how long delivery gets to (wrongly) post something before we say it did not.
QUIET_AFTER_REJECT_S = 5.0
LEARNER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ReviewTicket:
    zendesk_id: str
    ticket_id: str  # the pipeline's: zd-<zendesk id>
    subject: str
    draft_text: str


@dataclass
class Workspace:
    url: str
    password: str
    settings: FleetSettings  # the fleet's
    servers: ChannelServers
    fleet: ServiceFleet
    tickets: list[ReviewTicket]
    artifacts: list[Path]  # where screenshots go

    def log_tails(self) -> str:
        return "\n".join(f"--- {s.name} ({s.log_path})\n{s.log_tail(40)}" for s in self.fleet.running)


# --- bringing up what an agent needs ------------------------------------------------------------


def review_decision(ticket: ReviewTicket, *, customer: str, body: str) -> ev.TicketDecided:
    """A review decision as the escalator publishes it: the ticket from Zendesk, its draft (text and
    one citation), why it waits for a person."""
    origin = tk.ChannelOrigin(provider="zendesk", external_id=ticket.zendesk_id, requester_email=f"{customer}@example.com",
                              requester_name=customer.title(), event="ticket.created")
    decided = ev.TicketDecided(
        meta=new_meta(TENANT, "escalator"),
        ticket=tk.Ticket(ticket_id=ticket.ticket_id, tenant_id=TENANT, channel=tk.CHANNEL_WEB_FORM,
                         customer_id=f"cust-{customer}", subject=ticket.subject, body=body, language="en", origin=origin),
        classification=tk.Classification(
            intent="card_arrival", confidence=0.55, archetype=tk.ARCHETYPE_FAQ_BOUNDED, urgency=tk.URGENCY_NORMAL,
            tier=tk.CUSTOMER_TIER_STANDARD, route=tk.ROUTE_DRAFT_FOR_REVIEW,
            route_reason="confidence 0.55 is below 0.70: an agent reviews the draft"),
        decision=ev.DECISION_REVIEW,
        reason="agent review: confidence 0.55 < 0.70",
        target_queue="cards",
        draft=tk.Draft(
            text=ticket.draft_text,
            citations=[tk.Citation(article_id="card-delivery", chunk_id="card-delivery#0", title="Card delivery",
                                   passage="A new card usually arrives within 7 working days.",
                                   url="https://help.demo-bank.example/articles/card-delivery")],
            ledger=[tk.PolicyClaim(claim="within 7 working days", kind="days", article_id="card-delivery",
                                   passage="A new card usually arrives within 7 working days.", verified=True)],
            status=tk.DRAFT_STATUS_READY, generator="offline", grounding=0.9),
        packet=ev.ContextPacket(intent="card_arrival", archetype=tk.ARCHETYPE_FAQ_BOUNDED, urgency=tk.URGENCY_NORMAL,
                                tier=tk.CUSTOMER_TIER_STANDARD, conversation_summary=body,
                                suggested_next_step="Check the card's dispatch status.", target_queue="cards",
                                completeness=0.8, unknown_fields=["card_last4"]),
    )
    decided.ticket.received_at.GetCurrentTime()
    decided.timeline.received_at.CopyFrom(decided.ticket.received_at)
    decided.timeline.decided_at.GetCurrentTime()
    return decided


def _ops_port_base() -> int:
    """Two consecutive free ports (one ops port per service), away from the fleet's default 9100."""
    for _ in range(50):
        base = free_port()
        try:
            with socket.socket() as probe:
                probe.bind(("", base + 1))
        except OSError:
            continue
        return base
    raise RuntimeError("no two consecutive free ports for the services' ops ports")


def wait_for(what: str, check: Callable[[], object], timeout_s: float, detail: Callable[[], str] = lambda: "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{detail()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def workspace(local_stack, base_settings: FleetSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    run_dir = tmp_path_factory.mktemp("workspace-browser")
    settings = base_settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", topic_partitions=1,
                                     default_tenant=TENANT)
    ensure_topics(settings)
    accounts = tenant_accounts(TENANT, gateway_url="")  # no gateway: the stand-ins fire no webhooks
    servers = ChannelServers(ChannelServersConfig(tenants=(accounts,), state_dir=str(run_dir / "channel-servers")))
    servers.start()
    fleet = None
    try:
        password = secrets.token_urlsafe(18)
        settings = settings.replace(
            channels_path=channels_file(run_dir / "channels.yaml", servers, [accounts]),
            workspace_http_port=free_port(),
            workspace_db_url=f"sqlite:///{run_dir / 'workspace.sqlite'}",
            workspace_session_secret=secrets.token_hex(32),
            workspace_admin_user=ADMIN,
            workspace_admin_password=password,
            workspace_api_token=secrets.token_urlsafe(24),
            delivery_ledger_url=f"sqlite:///{run_dir / 'delivery-ledger.sqlite'}",
        )
        fleet = ServiceFleet(settings, run_dir / "logs", ops_port_base=_ops_port_base(),
                             services=("workspace", "delivery", "learner"))
        print(f"\n[workspace-browser] service logs: {run_dir / 'logs'}")
        fleet.start()

        tickets = []
        for n, (customer, subject, body) in enumerate((
            ("ana", "My new card has not arrived", "I ordered a replacement card two weeks ago and it is still not here."),
            ("ben", "Where is my card?", "The app says my card was sent but nothing came in the post."),
        )):
            zendesk_id = servers.zendesk_create_ticket(TENANT, subject=subject, body=body,
                                                       requester_email=f"{customer}@example.com",
                                                       requester_name=customer.title())
            draft = (f"Hello {customer.title()},\n\nThank you for writing to us. A new card usually arrives within 7 "
                     f"working days [1]. You can follow its delivery in the app under Cards.\n\n"
                     f"Kind regards,\nDemo Bank Support")
            ticket = ReviewTicket(zendesk_id=zendesk_id, ticket_id=f"zd-{zendesk_id}", subject=subject, draft_text=draft)
            tickets.append((ticket, review_decision(ticket, customer=customer, body=body)))
        publisher = EventPublisher(settings, "browser-test")
        for ticket, decided in tickets:
            publisher.publish(Topic.TICKETS_REVIEW, ticket.ticket_id, decided)
        publisher.flush()

        artifacts = [base_settings.cache_dir / "test-artifacts", run_dir / "screenshots"]
        ready = Workspace(url=f"http://127.0.0.1:{settings.workspace_http_port}", password=password,
                          settings=fleet.settings, servers=servers, fleet=fleet,
                          tickets=[t for t, _ in tickets], artifacts=artifacts)
        # Delivery posts each review decision's internal note on its Zendesk ticket: once both are
        # there, delivery is consuming, and anything posted later comes from an agent's action.
        for ticket in ready.tickets:
            wait_for(f"delivery's review note on Zendesk ticket {ticket.zendesk_id}",
                     lambda t=ticket: [d for d in servers.deliveries("zendesk", ticket=t.zendesk_id) if d["kind"] == "note"],
                     DELIVERY_TIMEOUT_S, ready.log_tails)
        yield ready
    finally:
        if fleet is not None:
            fleet.stop()
        servers.stop()
        delete_namespace_topics(settings)


@pytest.fixture(scope="module")
def browser(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_browser(workspace.settings.cache_dir, tmp_path_factory.mktemp("chromedriver")) as driver:
        log_in(driver, workspace)
        yield driver


# --- what a person does ----------------------------------------------------------------------------


def log_in(driver: WebDriver, workspace: Workspace) -> None:
    driver.get(f"{workspace.url}/login")
    wait_page(driver, workspace, "the login form", lambda d: d.find_elements(By.ID, "login-form"))
    driver.find_element(By.ID, "username").send_keys(ADMIN)
    driver.find_element(By.ID, "password").send_keys(workspace.password)
    driver.find_element(By.ID, "login-submit").click()
    wait_page(driver, workspace, "the page after logging in",
              lambda d: "/login" not in d.current_url and not d.find_elements(By.ID, "login-error"))


def wait_page(driver: WebDriver, workspace: Workspace, what: str, condition: Callable[[WebDriver], object],
              timeout_s: float = PAGE_TIMEOUT_S) -> object:
    return wait_for_page(driver, what, condition, timeout_s, context=workspace.log_tails)


def queue_row_selector(ticket: ReviewTicket) -> str:
    return f'tr.queue-item[data-ticket-id="{ticket.ticket_id}"]'


def open_queue(driver: WebDriver, workspace: Workspace) -> None:
    driver.get(f"{workspace.url}/queue")
    wait_page(driver, workspace, "the queue table", lambda d: d.find_elements(By.ID, "queue"))


def open_ticket_from_queue(driver: WebDriver, workspace: Workspace, ticket: ReviewTicket) -> None:
    open_queue(driver, workspace)
    link = wait_page(driver, workspace, f"the queue row of {ticket.ticket_id}",
                     lambda d: d.find_element(By.CSS_SELECTOR, f"{queue_row_selector(ticket)} a.ticket-link"),
                     QUEUE_TIMEOUT_S)
    link.click()
    wait_page(driver, workspace, f"the ticket page of {ticket.ticket_id}",
              lambda d: d.current_url.endswith(f"/tickets/{ticket.ticket_id}") and d.find_elements(By.ID, "draft-text"))


VERDICT_KINDS = (ev.AGENT_ACTION_KIND_APPROVE, ev.AGENT_ACTION_KIND_EDIT_AND_SEND, ev.AGENT_ACTION_KIND_REJECT)


def kpi_rollup(driver: WebDriver, workspace: Workspace, archetype: str, until: Callable[[dict], bool]) -> dict:
    """The KPI panel's row for `archetype` over every segment and channel, as the page shows it
    (column heading -> cell text), reloaded until `until(row)`: the learner counts what it reads."""
    url = f"{workspace.url}/leads?tenant={TENANT}&archetype={archetype}"

    def rollup(d: WebDriver) -> dict | None:
        d.get(url)
        if not d.find_elements(By.ID, "kpi-table"):
            return None
        headings = [th.text.strip() for th in d.find_elements(By.CSS_SELECTOR, "#kpi-table thead th")]
        for tr in d.find_elements(By.CSS_SELECTOR, "#kpi-table tbody tr"):
            cells = [c.text.strip() for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
            row = dict(zip(headings, cells))
            if row.get("Archetype") == archetype and row.get("Segment") == "all" and row.get("Channel") == "all":
                return row if until(row) else None
        return None

    return wait_page(driver, workspace, f"the KPI panel's {archetype} row to count the verdicts", rollup, LEARNER_TIMEOUT_S)


def status_text(driver: WebDriver) -> str:
    # Read in the page in one step: after a form posts, the page (and #status) is replaced, and a
    # node found a moment before may no longer belong to the document.
    text = driver.execute_script("const s = document.getElementById('status'); return s ? s.innerText : '';")
    return (text or "").strip().lower()


def save_screenshot(driver: WebDriver, workspace: Workspace, name: str) -> list[Path]:
    """The whole page (not only the 1400x1000 window) as PNG, in every artifacts folder."""
    import base64

    width = driver.execute_script("return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": max(width, 1), "height": max(height, 1), "scale": 1}})
    png = base64.b64decode(shot["data"])
    saved = []
    for folder in workspace.artifacts:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
        saved.append(folder / name)
    print(f"\n[workspace-browser] screenshot: {' and '.join(str(p) for p in saved)}")
    return saved


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\r\n", "\n")).strip()


def focus_order(driver: WebDriver, until: Callable[[list[dict]], bool], presses: int = 120) -> list[dict]:
    """Press TAB from the top of a freshly loaded page until `until(focused so far)`; every element
    focused on the way (tag, id, class, href), read through `switch_to.active_element`."""
    driver.get(driver.current_url)  # focus navigation starts at the top of the document again
    focused: list[dict] = []
    for _ in range(presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        try:
            active = driver.switch_to.active_element
            focused.append({"tag": active.tag_name.lower(), "id": active.get_attribute("id") or "",
                            "class": active.get_attribute("class") or "", "href": active.get_attribute("href") or ""})
        except StaleElementReferenceException:  # the queue refreshed its rows under the focus
            continue
        if until(focused):
            break
    return focused


# --- the tests ---------------------------------------------------------------------------------------


def test_queue_shows_both_review_decisions(browser: WebDriver, workspace: Workspace):
    open_queue(browser, workspace)
    for ticket in workspace.tickets:
        # The table refreshes itself (queue.js): no reload while waiting.
        wait_page(browser, workspace, f"queue row {ticket.ticket_id}",
                  lambda d, t=ticket: d.find_elements(By.CSS_SELECTOR, queue_row_selector(t)), QUEUE_TIMEOUT_S)
    for ticket in workspace.tickets:
        row = browser.find_element(By.CSS_SELECTOR, queue_row_selector(ticket))
        link = row.find_element(By.CSS_SELECTOR, "a.ticket-link")
        assert link.get_attribute("href").endswith(f"/tickets/{ticket.ticket_id}")
    assert browser.find_element(By.ID, "queue-counts").text.strip()
    assert browser.find_elements(By.ID, "filters")
    save_screenshot(browser, workspace, "workspace-queue.png")


def test_keyboard_reaches_a_ticket_link_on_the_queue(browser: WebDriver, workspace: Workspace):
    open_queue(browser, workspace)
    wait_page(browser, workspace, "a queue row", lambda d: d.find_elements(By.CSS_SELECTOR, "tr.queue-item a.ticket-link"),
              QUEUE_TIMEOUT_S)
    def is_ticket_link(f: dict) -> bool:
        return f["tag"] == "a" and "ticket-link" in f["class"].split()

    focused = focus_order(browser, lambda seen: any(is_ticket_link(f) for f in seen))
    links = [f for f in focused if is_ticket_link(f)]
    assert links, f"TAB never reached a ticket link on /queue; it went through {focused}"
    assert "/tickets/" in links[0]["href"]


def test_every_field_on_the_ticket_page_has_a_label(browser: WebDriver, workspace: Workspace):
    ticket = workspace.tickets[0]
    open_ticket_from_queue(browser, workspace, ticket)
    unlabelled = browser.execute_script("""
        const missing = [];
        for (const field of document.querySelectorAll('input, select, textarea')) {
            if (field.type === 'hidden') continue;
            const byFor = field.id && document.querySelector('label[for="' + CSS.escape(field.id) + '"]');
            const text = (byFor && byFor.textContent.trim())
                || (field.getAttribute('aria-label') || '').trim()
                || (field.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
                       .map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
            if (!text) missing.push(field.outerHTML.slice(0, 160));
        }
        return missing;
    """)
    assert unlabelled == [], f"fields without a label on the ticket page: {unlabelled}"
    label = browser.find_element(By.CSS_SELECTOR, 'label[for="draft-text"]')
    assert label.text.strip() == "Reply to send"
    assert browser.find_element(By.ID, "draft-text").tag_name.lower() == "textarea"


def test_keyboard_reaches_every_action_button_on_the_ticket_page(browser: WebDriver, workspace: Workspace):
    ticket = workspace.tickets[0]
    open_ticket_from_queue(browser, workspace, ticket)
    buttons = ["approve", "send-edited", "reject", "escalate", "flag-context-loss"]
    focused = focus_order(browser, lambda seen: set(buttons) <= {f["id"] for f in seen})
    reached = [b for b in buttons if b in {f["id"] for f in focused}]
    assert reached == buttons, f"TAB reached only {reached} of {buttons}; it went through {focused}"
    assert "draft-text" in {f["id"] for f in focused}


def test_an_edited_draft_goes_out_as_a_public_reply_on_zendesk(browser: WebDriver, workspace: Workspace):
    ticket = workspace.tickets[0]
    open_ticket_from_queue(browser, workspace, ticket)
    draft = browser.find_element(By.ID, "draft-text")
    assert normalized(draft.get_property("value")) == normalized(ticket.draft_text)
    assert ticket.subject in browser.find_element(By.ID, "message").text
    assert "Card delivery" in browser.find_element(By.ID, "citations").text
    save_screenshot(browser, workspace, "workspace-ticket.png")

    marker = "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))
    edited = ticket.draft_text.replace(
        "Kind regards,", f"I have also asked our card team to check where yours is (reference {marker}).\n\nKind regards,")
    draft.clear()
    draft.send_keys(edited)
    assert normalized(draft.get_property("value")) == normalized(edited)
    browser.find_element(By.ID, "send-edited").click()
    wait_page(browser, workspace, "#status to say sent", lambda d: "sent" in status_text(d))

    def public_reply() -> dict | None:
        for item in workspace.servers.deliveries("zendesk", ticket=ticket.zendesk_id):
            if item["public"] and item["kind"] == "reply" and marker in item["text"]:
                return item
        return None

    reply = wait_for(f"a public reply with the edited text on Zendesk ticket {ticket.zendesk_id}", public_reply,
                     DELIVERY_TIMEOUT_S, workspace.log_tails)
    delivered = normalized(reply["text"])
    for paragraph in edited.split("\n\n"):
        assert normalized(paragraph) in delivered, (paragraph, reply["text"])
    public = [d for d in workspace.servers.deliveries("zendesk", ticket=ticket.zendesk_id) if d["public"]]
    assert len(public) == 1, public  # sent once

    actions = read_topic(workspace.settings, Topic.AGENT_ACTIONS, timeout_s=30,
                         until=lambda found: any(a.ticket_id == ticket.ticket_id for a in found))
    sent = [a for a in actions if a.ticket_id == ticket.ticket_id]
    assert [a.kind for a in sent] == [ev.AGENT_ACTION_KIND_EDIT_AND_SEND]
    assert sent[0].agent == f"agent:{ADMIN}" and marker in sent[0].text and 0 < sent[0].edit_ratio < 1


def test_a_rejected_draft_posts_nothing_on_its_ticket(browser: WebDriver, workspace: Workspace):
    ticket = workspace.tickets[1]
    before = workspace.servers.deliveries("zendesk", ticket=ticket.zendesk_id)
    assert [d for d in before if d["public"]] == []
    open_ticket_from_queue(browser, workspace, ticket)
    reasons = Select(browser.find_element(By.ID, "reject-reason"))
    choices = [o for o in reasons.options if (o.get_attribute("value") or "").strip()]
    assert choices, "#reject-reason offers no reason"
    reason = choices[0].get_attribute("value")
    reasons.select_by_value(reason)
    browser.find_element(By.ID, "reject-note").send_keys("The customer asked about a card sent by post; checked by phone.")
    browser.find_element(By.ID, "reject").click()
    wait_page(browser, workspace, "#status to say rejected", lambda d: "rejected" in status_text(d))

    actions = read_topic(workspace.settings, Topic.AGENT_ACTIONS, timeout_s=30,
                         until=lambda found: any(a.ticket_id == ticket.ticket_id for a in found))
    rejected = [a for a in actions if a.ticket_id == ticket.ticket_id]
    assert [(a.kind, a.reason) for a in rejected] == [(ev.AGENT_ACTION_KIND_REJECT, reason)]
    time.sleep(QUIET_AFTER_REJECT_S)  # delivery has read the action by now; give it time to (wrongly) post
    after = workspace.servers.deliveries("zendesk", ticket=ticket.zendesk_id)
    assert after == before, f"something was posted on rejected ticket {ticket.zendesk_id}: {after[len(before):]}"

    # The leads' KPI panel (the learner's, through the page) counts the rejection among the verdicts.
    ids = {t.ticket_id for t in workspace.tickets}
    verdicts = [a for a in actions if a.ticket_id in ids and a.kind in VERDICT_KINDS]
    accepted = sum(a.kind == ev.AGENT_ACTION_KIND_APPROVE for a in verdicts)
    row = kpi_rollup(browser, workspace, "faq_bounded", until=lambda r: r.get("drafts_with_verdict") == str(len(verdicts)))
    assert float(row["draft_acceptance_rate"]) == pytest.approx(accepted / len(verdicts), abs=1e-3)

