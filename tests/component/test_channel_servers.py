"""The helpdesk stand-ins (tooling/channel_servers), checked from outside as a person debugging them
would: raw HTTP with httpx, SMTP with smtplib, and a small HTTP server of the test's own standing
in for the gateway, which records the webhooks and verifies their signatures with the formulas of
docs/channels.md computed here, independently of the servers' code. No Kafka needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from tooling.channel_servers import ChannelServers, ChannelServersConfig, ChannelServersError, TenantAccounts
from tooling.fleet import free_port

TENANT = "demo-bank"
ZENDESK_AUTH = ("supportflow@demo-bank.example/token", "zd-api-token")
FRESHDESK_AUTH = ("fd-api-key", "X")
INTERCOM_HEADERS = {"Authorization": "Bearer ic-access-token", "Intercom-Version": "2.11"}
ARTICLES = {
    201: ("Replace a lost card", "lost_or_stolen_card", "2025-03-01T09:00:00Z", True),
    202: ("Card delivery times", "card_arrival", "2025-03-02T09:00:00Z", False),
    203: ("Exchange rates", "exchange_rate", "2025-03-03T09:00:00Z", False),
    204: ("Top up by transfer", "transfer_into_account", "2025-03-04T09:00:00Z", False),
}


@dataclass
class Hook:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class RecordingGateway:
    """Supportflow's gateway as the providers see it: records each webhook, answers 202, or the
    statuses queued in `fail_next` first."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.fail_next: list[int] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with gateway._lock:
                    gateway.hooks.append(Hook(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = gateway.fail_next.pop(0) if gateway.fail_next else 202
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, matches, count: int = 1, timeout_s: float = 10.0) -> list[Hook]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                found = [h for h in self.hooks if matches(h)]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"expected {count} webhooks, got {len(found)}: {found}"
                return found
            time.sleep(0.05)


class RecordingSmtp:
    """The gateway's SMTP listener, for the customer-mail helper."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def gateway():
    recorder = RecordingGateway()
    yield recorder
    recorder.server.shutdown()


@pytest.fixture(scope="module")
def gateway_smtp():
    recorder = RecordingSmtp()
    yield recorder
    recorder.controller.stop()


def write_help_center(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for article_id, (title, intent, updated_at, is_policy) in ARTICLES.items():
        (folder / f"{article_id}.md").write_text(
            f"---\nid: {article_id}\ntitle: {title}\nintents: [{intent}]\nupdated_at: {updated_at}\n"
            f"review_by: 2026-09-01\nis_policy: {str(is_policy).lower()}\nlocale: en-us\n---\n"
            f"# {title}\n\nIt takes **5 working days**.\n\n- first\n- second\n")
    return folder


def accounts(gateway_url: str, help_center: Path) -> TenantAccounts:
    return TenantAccounts(
        tenant=TENANT, gateway_url=gateway_url, zendesk_email=ZENDESK_AUTH[0].removesuffix("/token"),
        zendesk_api_token=ZENDESK_AUTH[1], zendesk_webhook_secret="zd-signing-secret",
        intercom_access_token="ic-access-token", intercom_client_secret="ic-client-secret",
        intercom_admin_id="814860", freshdesk_api_key=FRESHDESK_AUTH[0], freshdesk_webhook_secret="fd-secret",
        mailbox="support@demo-bank.example", help_center_dir=str(help_center), api_callback_secret="api-secret")


@pytest.fixture(scope="module")
def servers(tmp_path_factory, gateway, gateway_smtp):
    root = tmp_path_factory.mktemp("channel-servers")
    config = ChannelServersConfig(tenants=(accounts(gateway.url, write_help_center(root / "help-center")),),
                                  state_dir=str(root / "state"), gateway_smtp=f"127.0.0.1:{gateway_smtp.port}")
    running = ChannelServers(config)
    running.start()
    yield running
    running.stop()


def zendesk_signature_holds(hook: Hook, secret: str) -> bool:
    timestamp = hook.headers["x-zendesk-webhook-signature-timestamp"]
    expected = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + hook.body, hashlib.sha256).digest())
    return hmac.compare_digest(expected.decode(), hook.headers["x-zendesk-webhook-signature"])


def intercom_signature_holds(hook: Hook, secret: str) -> bool:
    expected = "sha1=" + hmac.new(secret.encode(), hook.body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, hook.headers["x-hub-signature"])


def tampered(hook: Hook) -> Hook:
    return Hook(hook.path, hook.headers, hook.body.replace(b'"', b"'", 1))


# ---------------------------------------------------------------------------------------------
# Refusals


def test_missing_or_wrong_credentials_are_refused_in_each_providers_shape(servers):
    for auth in (None, ("supportflow@demo-bank.example/token", "wrong"), ("nobody@demo-bank.example/token",
                                                                         ZENDESK_AUTH[1]), ZENDESK_AUTH[::-1]):
        for path in ("/api/v2/tickets/1.json", "/api/v2/help_center/en-us/articles.json"):
            response = httpx.get(servers.zendesk_url + path, auth=auth)
            assert (response.status_code, response.json()) == (401, {"error": "Couldn't authenticate you"})

    for headers in ({"Intercom-Version": "2.11"}, {"Authorization": "Bearer wrong", "Intercom-Version": "2.11"}):
        response = httpx.get(f"{servers.intercom_url}/conversations/1", headers=headers)
        assert response.status_code == 401
        assert response.json()["type"] == "error.list"
        assert response.json()["errors"] == [{"code": "unauthorized", "message": "Access Token Invalid"}]
    no_version = httpx.get(f"{servers.intercom_url}/me", headers={"Authorization": "Bearer ic-access-token"})
    assert no_version.status_code == 400 and no_version.json()["type"] == "error.list"
    me = httpx.get(f"{servers.intercom_url}/me", headers=INTERCOM_HEADERS | {"Intercom-Version": "2.10"})
    assert me.status_code == 200 and me.headers["Intercom-Version"] == "2.10" and me.json()["id"] == "814860"

    for auth in (None, ("wrong-key", "X")):
        response = httpx.get(f"{servers.freshdesk_url}/api/v2/tickets/1", auth=auth)
        assert (response.status_code, response.json()) == (401, {
            "code": "invalid_credentials", "message": "You have to be logged in to perform this action."})


def test_unknown_tickets_and_conversations_are_404(servers):
    zendesk = httpx.get(f"{servers.zendesk_url}/api/v2/tickets/999999.json", auth=ZENDESK_AUTH)
    assert (zendesk.status_code, zendesk.json()) == (404, {"error": "RecordNotFound", "description": "Not found"})
    put = httpx.put(f"{servers.zendesk_url}/api/v2/tickets/999999.json", auth=ZENDESK_AUTH,
                    json={"ticket": {"comment": {"body": "hi"}}})
    assert put.status_code == 404

    intercom = httpx.post(f"{servers.intercom_url}/conversations/999999/reply", headers=INTERCOM_HEADERS,
                          json={"message_type": "comment", "type": "admin", "admin_id": "814860", "body": "hi"})
    assert intercom.status_code == 404
    assert intercom.json()["type"] == "error.list" and intercom.json()["errors"][0]["code"] == "not_found"

    freshdesk = httpx.post(f"{servers.freshdesk_url}/api/v2/tickets/999999/reply", auth=FRESHDESK_AUTH,
                           json={"body": "hi"})
    assert freshdesk.status_code == 404


def test_zendesk_refuses_invalid_records_and_honours_idempotency_keys(servers):
    url = f"{servers.zendesk_url}/api/v2/tickets.json"
    no_comment = httpx.post(url, auth=ZENDESK_AUTH, json={"ticket": {"subject": "no body"}})
    assert no_comment.status_code == 422
    assert no_comment.json()["error"] == "RecordInvalid" and no_comment.json()["details"]

    ticket = {"ticket": {"subject": "Card", "comment": {"body": "where is my card"},
                         "requester": {"name": "Ana", "email": "ana@customers.example"}}}
    first = httpx.post(url, auth=ZENDESK_AUTH, json=ticket, headers={"Idempotency-Key": "k-1"})
    again = httpx.post(url, auth=ZENDESK_AUTH, json=ticket, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["ticket"]["id"] == again.json()["ticket"]["id"]
    assert again.headers["x-idempotency-lookup"] == "hit"
    other = httpx.post(url, auth=ZENDESK_AUTH, headers={"Idempotency-Key": "k-1"},
                       json={"ticket": {"subject": "Other", "comment": {"body": "different"}}})
    assert other.status_code == 400

    ticket_url = f"{servers.zendesk_url}/api/v2/tickets/{first.json()['ticket']['id']}.json"
    bogus = httpx.put(ticket_url, auth=ZENDESK_AUTH, json={"ticket": {"status": "bogus"}})
    assert bogus.status_code == 422
    assert bogus.json()["error"] == "RecordInvalid" and "status" in bogus.json()["details"]
    assert httpx.put(ticket_url, auth=ZENDESK_AUTH, json={"ticket": {"priority": "whenever"}}).status_code == 422
    assert httpx.put(ticket_url, auth=ZENDESK_AUTH, json={"ticket": {"status": "solved"}}).status_code == 200


# ---------------------------------------------------------------------------------------------
# Webhooks and what Supportflow posts back


def test_zendesk_ticket_and_requester_reply_fire_signed_triggers_agent_comments_do_not(servers, gateway):
    ticket_id = servers.zendesk_create_ticket(TENANT, subject="Lost card", body="I lost my card yesterday",
                                              requester_email="bo@customers.example", requester_name="Bo")

    def on_ticket(hook: Hook) -> bool:
        return hook.path == f"/v1/channels/zendesk/{TENANT}" and hook.json()["ticket"]["id"] == ticket_id

    [created] = gateway.wait_for(on_ticket)
    assert zendesk_signature_holds(created, "zd-signing-secret")
    assert not zendesk_signature_holds(tampered(created), "zd-signing-secret")
    assert not zendesk_signature_holds(created, "another-secret")
    assert time.strptime(created.headers["x-zendesk-webhook-signature-timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    payload = created.json()
    assert payload["event"] == "ticket.created"
    assert payload["ticket"]["description"] == "I lost my card yesterday"
    assert payload["ticket"]["requester"] == {"id": payload["ticket"]["requester"]["id"],
                                              "email": "bo@customers.example", "name": "Bo"}
    assert payload["ticket"]["latest_comment"]["author_id"] == payload["ticket"]["requester"]["id"]
    assert all(isinstance(v, str) for v in payload["ticket"].values() if not isinstance(v, dict))

    servers.zendesk_requester_reply(TENANT, ticket_id, "Any news?")
    _, updated = gateway.wait_for(on_ticket, count=2)
    assert updated.json()["event"] == "ticket.requester_updated"
    assert "Any news?" in updated.json()["ticket"]["latest_comment"]["html_body"]
    assert updated.headers["x-zendesk-webhook-invocation-id"] != created.headers["x-zendesk-webhook-invocation-id"]
    assert zendesk_signature_holds(updated, "zd-signing-secret")

    url = f"{servers.zendesk_url}/api/v2/tickets/{ticket_id}.json"
    reply = httpx.put(url, auth=ZENDESK_AUTH, json={"ticket": {
        "comment": {"html_body": "<p>We have <b>frozen</b> it.</p>", "public": True}, "status": "pending",
        "additional_tags": ["supportflow_answered"]}})
    assert reply.status_code == 200
    event = reply.json()["audit"]["events"][0]
    assert event["type"] == "Comment" and event["public"] is True
    assert reply.json()["ticket"]["status"] == "pending" and "supportflow_answered" in reply.json()["ticket"]["tags"]
    note = httpx.put(url, auth=ZENDESK_AUTH, json={"ticket": {
        "comment": {"html_body": "<p>check the limits</p>", "public": False}, "priority": "high", "group_id": 360001,
        "additional_tags": ["supportflow_review"]}})
    assert note.status_code == 200 and note.json()["ticket"]["group_id"] == 360001

    delivered = servers.deliveries("zendesk", ticket_id)
    assert [(d["kind"], d["public"], d["text"]) for d in delivered] == [
        ("reply", True, "We have frozen it."), ("note", False, "check the limits")]
    assert delivered[0]["external_id"] == str(event["id"]) and delivered[0]["ticket"] == ticket_id
    assert servers.deliveries("zendesk", f"zd-{ticket_id}") == delivered
    comments = httpx.get(f"{servers.zendesk_url}/api/v2/tickets/{ticket_id}/comments.json", auth=ZENDESK_AUTH)
    assert [c["public"] for c in comments.json()["comments"]] == [True, True, True, False]

    time.sleep(0.5)  # an agent's comments fire no trigger
    assert len(gateway.wait_for(on_ticket, count=2)) == 2
    redelivered = servers.redeliver("zendesk", ticket_id, wait=True)
    assert redelivered["outcome"]["status"] == 202
    hooks = gateway.wait_for(on_ticket, count=3)
    assert hooks[2].headers["x-zendesk-webhook-invocation-id"] == updated.headers["x-zendesk-webhook-invocation-id"]
    assert hooks[2].body == updated.body and zendesk_signature_holds(hooks[2], "zd-signing-secret")


def test_intercom_conversation_and_user_reply_fire_signed_notifications(servers, gateway):
    conversation_id = servers.intercom_start_conversation(TENANT, body="<p>My card has not arrived</p>",
                                                          email="cy@customers.example", name="Cy",
                                                          external_id="cust-0042")

    def on_conversation(hook: Hook) -> bool:
        return hook.path == f"/v1/channels/intercom/{TENANT}" and hook.json()["data"]["item"]["id"] == conversation_id

    [created] = gateway.wait_for(on_conversation)
    assert intercom_signature_holds(created, "ic-client-secret")
    assert not intercom_signature_holds(tampered(created), "ic-client-secret")
    notification = created.json()
    assert notification["type"] == "notification_event" and notification["topic"] == "conversation.user.created"
    assert notification["id"].startswith("notif_") and notification["delivery_attempts"] == 1
    item = notification["data"]["item"]
    assert item["source"]["body"] == "<p>My card has not arrived</p>"
    assert item["source"]["author"]["email"] == "cy@customers.example"
    assert item["contacts"]["contacts"][0]["external_id"] == "cust-0042"

    reply_url = f"{servers.intercom_url}/conversations/{conversation_id}/reply"
    wrong_admin = httpx.post(reply_url, headers=INTERCOM_HEADERS, json={
        "message_type": "comment", "type": "admin", "admin_id": "1", "body": "hi"})
    assert wrong_admin.status_code == 400 and wrong_admin.json()["type"] == "error.list"
    for message_type, body in (("comment", "<p>It ships today.</p>"), ("note", "<p>VIP customer</p>")):
        answer = httpx.post(reply_url, headers=INTERCOM_HEADERS, json={
            "message_type": message_type, "type": "admin", "admin_id": "814860", "body": body})
        assert answer.status_code == 200 and answer.headers["Intercom-Version"] == "2.11"
    assigned = httpx.post(f"{servers.intercom_url}/conversations/{conversation_id}/parts", headers=INTERCOM_HEADERS,
                          json={"message_type": "assignment", "type": "admin", "admin_id": "814860",
                                "assignee_id": "5017"})
    assert assigned.status_code == 200 and assigned.json()["team_assignee_id"] == "5017"
    no_assignee = httpx.post(f"{servers.intercom_url}/conversations/{conversation_id}/parts",
                             headers=INTERCOM_HEADERS,
                             json={"message_type": "assignment", "type": "admin", "admin_id": "814860"})
    assert no_assignee.status_code == 400

    delivered = servers.deliveries("intercom", f"ic-{conversation_id}")
    assert [(d["kind"], d["text"]) for d in delivered] == [("reply", "It ships today."), ("note", "VIP customer")]
    parts = httpx.get(f"{servers.intercom_url}/conversations/{conversation_id}", headers=INTERCOM_HEADERS).json()
    assert [p["part_type"] for p in parts["conversation_parts"]["conversation_parts"]] == [
        "comment", "note", "assignment"]
    assert parts["conversation_parts"]["conversation_parts"][0]["id"] == delivered[0]["external_id"]

    servers.intercom_user_reply(TENANT, conversation_id, "Thanks, and the PIN?")
    _, replied = gateway.wait_for(on_conversation, count=2)
    assert replied.json()["topic"] == "conversation.user.replied" and intercom_signature_holds(replied,
                                                                                              "ic-client-secret")
    last = replied.json()["data"]["item"]["conversation_parts"]["conversation_parts"][-1]
    assert last["author"]["type"] == "user" and "PIN" in last["body"]

    servers.redeliver("intercom", conversation_id, wait=True)
    again = gateway.wait_for(on_conversation, count=3)[2]
    assert again.json()["id"] == replied.json()["id"] and again.json()["delivery_attempts"] == 2
    assert intercom_signature_holds(again, "ic-client-secret")


def test_freshdesk_validates_tickets_and_its_webhook_carries_the_secret(servers, gateway):
    url = f"{servers.freshdesk_url}/api/v2/tickets"
    invalid = httpx.post(url, auth=FRESHDESK_AUTH, json={"description": "<p>x</p>", "email": "not-an-address",
                                                         "status": 9, "colour": "red"})
    assert invalid.status_code == 400 and invalid.json()["description"] == "Validation failed"
    problems = {(e["field"], e["code"]) for e in invalid.json()["errors"]}
    assert {("subject", "missing_field"), ("status", "invalid_value"), ("email", "invalid_value"),
            ("colour", "invalid_field")} <= problems

    ticket_id = servers.freshdesk_create_ticket(TENANT, subject="Refund", description_html="<p>I want a refund</p>",
                                                email="di@customers.example", name="Di")

    def on_ticket(hook: Hook) -> bool:
        return hook.path == f"/v1/channels/freshdesk/{TENANT}" and \
            hook.json()["freshdesk_webhook"]["ticket_id"] == ticket_id

    [created] = gateway.wait_for(on_ticket)
    assert created.headers["x-supportflow-webhook-secret"] == "fd-secret"
    body = created.json()["freshdesk_webhook"]
    assert body["event"] == "ticket_created" and body["ticket_description"] == "<p>I want a refund</p>"
    assert body["ticket_contact_email"] == "di@customers.example" and body["ticket_status"] == "Open"

    ticket_url = f"{url}/{ticket_id}"
    assert httpx.post(f"{ticket_url}/reply", auth=FRESHDESK_AUTH, json={}).status_code == 400
    assert httpx.post(f"{ticket_url}/reply", auth=FRESHDESK_AUTH,
                      json={"body": "<p>Refund sent.</p>"}).status_code == 201
    assert httpx.put(ticket_url, auth=FRESHDESK_AUTH, json={"status": 3}).json()["status"] == 3
    assert httpx.put(ticket_url, auth=FRESHDESK_AUTH, json={"priority": 7}).status_code == 400
    assert httpx.post(f"{ticket_url}/notes", auth=FRESHDESK_AUTH,
                      json={"body": "<p>checked the ledger</p>", "private": True}).status_code == 201
    delivered = servers.deliveries("freshdesk", f"fd-{ticket_id}")
    assert [(d["kind"], d["public"], d["text"]) for d in delivered] == [
        ("reply", True, "Refund sent."), ("note", False, "checked the ledger")]
    thread = httpx.get(f"{ticket_url}/conversations", auth=FRESHDESK_AUTH).json()
    assert [(c["private"], c["body_text"]) for c in thread] == [(False, "Refund sent."), (True, "checked the ledger")]

    servers.freshdesk_customer_reply(TENANT, ticket_id, "<p>Not received yet</p>")
    _, replied = gateway.wait_for(on_ticket, count=2)
    assert replied.json()["freshdesk_webhook"]["event"] == "customer_replied"
    assert replied.json()["freshdesk_webhook"]["ticket_latest_public_comment"] == "<p>Not received yet</p>"
    assert len(servers.deliveries("freshdesk", ticket_id)) == 2  # the customer's reply is not a delivery


def test_a_failing_gateway_gets_the_same_webhook_again_with_backoff(servers, gateway):
    gateway.fail_next = [503, 503]
    ticket_id = servers.zendesk_create_ticket(TENANT, subject="Retry", body="please retry",
                                              requester_email="ed@customers.example", requester_name="Ed")
    hooks = gateway.wait_for(lambda h: "zendesk" in h.path and h.json()["ticket"]["id"] == ticket_id, count=3)
    assert len({h.headers["x-zendesk-webhook-invocation-id"] for h in hooks}) == 1
    assert all(zendesk_signature_holds(h, "zd-signing-secret") for h in hooks)
    deadline = time.monotonic() + 5
    while True:
        attempts = [a for a in servers.webhook_attempts("zendesk") if a["ticket"] == ticket_id]
        if len(attempts) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [a["status"] for a in attempts] == [503, 503, 202]


def test_faults_answer_errors_retry_after_and_delays_then_clear(servers):
    ticket_id = servers.freshdesk_create_ticket(TENANT, subject="Faults", description_html="<p>x</p>",
                                                email="fa@customers.example", name="Fa")
    url = f"{servers.freshdesk_url}/api/v2/tickets/{ticket_id}"
    servers.set_faults("freshdesk", status=503, count=2)
    assert [httpx.get(url, auth=FRESHDESK_AUTH).status_code for _ in range(3)] == [503, 503, 200]
    assert [r["status"] for r in servers.received("freshdesk")[-3:]] == [503, 503, 200]

    servers.set_faults("zendesk", status=429, retry_after=1, count=1)
    limited = httpx.get(f"{servers.zendesk_url}/api/v2/users/me.json", auth=ZENDESK_AUTH)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert httpx.get(f"{servers.zendesk_url}/api/v2/users/me.json", auth=ZENDESK_AUTH).status_code == 200

    servers.set_faults("intercom", delay_s=0.6, count=1)
    started = time.monotonic()
    assert httpx.get(f"{servers.intercom_url}/me", headers=INTERCOM_HEADERS).status_code == 200
    assert time.monotonic() - started >= 0.6

    servers.set_faults("freshdesk", status=500)  # no count: until cleared
    assert [httpx.get(url, auth=FRESHDESK_AUTH).status_code for _ in range(3)] == [500, 500, 500]
    assert httpx.get(f"{servers.freshdesk_url}/healthz").status_code == 200  # the control API is never faulted
    servers.set_faults("freshdesk")
    assert httpx.get(url, auth=FRESHDESK_AUTH).status_code == 200
    assert httpx.get(f"{servers.freshdesk_url}/_sim/faults").json() == {"faults": {}}
    assert httpx.post(f"{servers.freshdesk_url}/_sim/faults", json={"status": 200}).status_code == 400


# ---------------------------------------------------------------------------------------------
# Help Center


def test_help_center_pages_exports_increments_and_deletes(servers):
    base = f"{servers.zendesk_url}/api/v2/help_center"
    seen, url, pages = [], f"{base}/en-us/articles.json?page=1&per_page=2", 0
    while url:
        page = httpx.get(url, auth=ZENDESK_AUTH).json()
        assert page["count"] == 4 and page["page_count"] == 2 and page["per_page"] == 2
        seen += page["articles"]
        url, pages = page["next_page"], pages + 1
    assert pages == 2 and [a["id"] for a in seen] == [201, 202, 203, 204]
    lost_card = seen[0]
    assert lost_card["title"] == "Replace a lost card" and lost_card["draft"] is False
    assert "<strong>5 working days</strong>" in lost_card["body"] and "<li>first</li>" in lost_card["body"]
    assert lost_card["label_names"] == ["intent:lost_or_stolen_card", "policy", "review-by:2026-09-01"]
    assert lost_card["html_url"] == f"{servers.zendesk_url}/hc/en-us/articles/201-Replace-a-lost-card"
    assert lost_card["updated_at"] == "2025-03-01T09:00:00Z"
    assert httpx.get(lost_card["url"], auth=ZENDESK_AUTH).json()["article"]["id"] == 201
    assert httpx.get(lost_card["html_url"]).status_code == 200

    everything = httpx.get(f"{base}/incremental/articles.json?start_time=0", auth=ZENDESK_AUTH).json()
    assert [a["id"] for a in everything["articles"]] == [201, 202, 203, 204] and everything["next_page"] is None
    before = int(time.time())
    touched = servers.touch_article(TENANT, 203, title="Exchange rates explained")
    assert touched["title"] == "Exchange rates explained"
    changed = httpx.get(f"{base}/incremental/articles.json?start_time={before}", auth=ZENDESK_AUTH).json()
    assert [a["id"] for a in changed["articles"]] == [203] and changed["count"] == 1
    assert changed["end_time"] >= before and changed["articles"][0]["title"] == "Exchange rates explained"

    assert httpx.delete(f"{base}/articles/202.json", auth=ZENDESK_AUTH).status_code == 204
    assert httpx.get(f"{base}/articles/202.json", auth=ZENDESK_AUTH).status_code == 404
    listing = httpx.get(f"{base}/en-us/articles.json?per_page=100", auth=ZENDESK_AUTH).json()
    assert [a["id"] for a in listing["articles"]] == [201, 203, 204] and listing["next_page"] is None
    assert httpx.delete(f"{base}/articles/202.json", auth=ZENDESK_AUTH).status_code == 404


# ---------------------------------------------------------------------------------------------
# Mail, the API callback, persistence


def test_mail_server_keeps_replies_and_notes_and_can_refuse(servers):
    host, port = servers.mail_smtp.split(":")
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "support@demo-bank.example", "fi@customers.example", "Re: Card"
    reply["Message-ID"], reply["In-Reply-To"] = "<reply-1@demo-bank.example>", "<question-1@customers.example>"
    reply["References"] = "<question-1@customers.example>"
    reply.set_content("Your card ships today.")
    reply.add_alternative("<p>Your card ships <b>today</b>.</p>", subtype="html")
    note = EmailMessage()
    note["From"], note["To"], note["Subject"] = "support@demo-bank.example", "agents@demo-bank.example", "Review"
    note["Message-ID"], note["References"] = "<note-1@demo-bank.example>", "<question-1@customers.example>"
    note.set_content("Needs a person.")
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.login("supportflow", "any-password")
        smtp.send_message(reply)
        smtp.send_message(note)

    thread = servers.deliveries("email", ticket="<question-1@customers.example>")
    assert [(d["kind"], d["external_id"]) for d in thread] == [
        ("reply", "<reply-1@demo-bank.example>"), ("note", "<note-1@demo-bank.example>")]
    assert thread[0]["in_reply_to"] == "<question-1@customers.example>" and thread[0]["text"].strip() == \
        "Your card ships today."
    assert thread[0]["html"].strip() == "<p>Your card ships <b>today</b>.</p>" and thread[0]["public"] is True
    assert servers.deliveries("email", ticket="reply-1@demo-bank.example") == thread[:1]
    assert servers.received("email")[-2]["body"]["auth_user"] == "supportflow"

    servers.set_faults("email", smtp_code=451, count=1)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.send_message(reply)
        assert refused.value.smtp_code == 451
        smtp.send_message(reply)  # the next one goes through
    assert len(servers.deliveries("email", ticket="<question-1@customers.example>")) == 3


def test_customer_mail_goes_to_the_gateways_smtp_addressed_to_the_mailbox(servers, gateway_smtp):
    message_id = servers.send_customer_mail(TENANT, from_addr="gu@customers.example", subject="Re: Card",
                                            body="Still nothing", in_reply_to="<reply-1@demo-bank.example>",
                                            references=("<question-1@customers.example>",
                                                        "<reply-1@demo-bank.example>"))
    [envelope] = [e for e in gateway_smtp.envelopes if message_id.encode() in e.original_content]
    assert envelope.rcpt_tos == ["support@demo-bank.example"] and envelope.mail_from == "gu@customers.example"
    raw = envelope.original_content.decode()
    assert "In-Reply-To: <reply-1@demo-bank.example>" in raw
    assert "References: <question-1@customers.example> <reply-1@demo-bank.example>" in raw


def test_api_callbacks_are_verified_and_repeats_dropped(servers):
    body = json.dumps({"ticket_id": "api-7", "decision_event_id": "ev-7", "kind": "reply", "decision": "respond",
                       "text": "Done.", "html": "<p>Done.</p>", "citations": []}).encode()
    timestamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(b"api-secret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"X-Supportflow-Timestamp": timestamp, "X-Supportflow-Signature": signature,
               "Idempotency-Key": "ev-7", "Content-Type": "application/json"}
    assert servers.api_callback_url.endswith("/callbacks")
    assert httpx.post(servers.api_callback_url, content=body, headers=headers).json()["duplicate"] is False
    assert httpx.post(servers.api_callback_url, content=body, headers=headers).json()["duplicate"] is True
    forged = headers | {"X-Supportflow-Signature": "sha256=" + "0" * 64}
    assert httpx.post(servers.api_callback_url, content=body, headers=forged).status_code == 401
    [item] = servers.deliveries("api", "api-7")
    assert (item["kind"], item["external_id"], item["text"]) == ("reply", "ev-7", "Done.")


def test_what_the_servers_received_survives_a_restart_as_jsonl(tmp_path):
    config = ChannelServersConfig(tenants=(accounts("", write_help_center(tmp_path / "hc")),),
                                  state_dir=str(tmp_path / "state"))
    first = ChannelServers(config)
    first.start()
    try:
        ticket_id = first.freshdesk_create_ticket(TENANT, subject="Persist", description_html="<p>x</p>",
                                                  email="ha@customers.example", name="Ha")
        httpx.post(f"{first.freshdesk_url}/api/v2/tickets/{ticket_id}/reply", auth=FRESHDESK_AUTH,
                   json={"body": "<p>kept</p>"})
        old_url = first.freshdesk_url
    finally:
        first.stop()
    assert first.process.returncode == 0  # stopped by SIGTERM, cleanly

    second = ChannelServers(config)
    second.start()
    try:
        assert second.received("freshdesk") == [] and second.freshdesk_url != old_url
    finally:
        second.stop()
    received = [json.loads(line) for line in (tmp_path / "state" / "received.jsonl").read_text().splitlines()]
    assert [(r["provider"], r["method"], r["path"], r["status"]) for r in received] == [
        ("freshdesk", "POST", "/api/v2/tickets", 201), ("freshdesk", "POST", f"/api/v2/tickets/{ticket_id}/reply", 201)]
    assert received[1]["body"] == {"body": "<p>kept</p>"} and received[1]["tenant"] == TENANT
    [delivery] = [json.loads(line) for line in (tmp_path / "state" / "deliveries.jsonl").read_text().splitlines()]
    assert (delivery["provider"], delivery["kind"], delivery["ticket"]) == ("freshdesk", "reply", ticket_id)


def test_a_help_center_article_it_cannot_serve_stops_the_start_and_is_named(tmp_path):
    folder = write_help_center(tmp_path / "hc")
    (folder / "broken.md").write_text("---\ntitle: No id\n---\nbody\n")
    servers = ChannelServers(ChannelServersConfig(tenants=(accounts("", folder),), state_dir=str(tmp_path / "state")))
    with pytest.raises(ChannelServersError, match="broken.md: id must be a positive integer"):
        servers.start(timeout_s=20)
    assert servers.process.poll() is not None


# ---------------------------------------------------------------------------------------------
# Outcome webhooks (/_sim/outcomes)


def test_outcomes_fire_each_providers_signed_webhooks_and_supportflows_own_changes_fire_none(servers, gateway):
    ticket_id = servers.zendesk_create_ticket(TENANT, subject="Outcome", body="Where is my card?",
                                              requester_email="fi@customers.example", requester_name="Fi")

    def on_zendesk(hook: Hook) -> bool:
        return "zendesk" in hook.path and hook.json()["ticket"]["id"] == ticket_id

    url = f"{servers.zendesk_url}/api/v2/tickets/{ticket_id}.json"
    assert httpx.put(url, auth=ZENDESK_AUTH, json={"ticket": {"status": "pending"}}).status_code == 200  # Supportflow
    fired = servers.outcome("zendesk", ticket_id, "status", status="solved")
    assert [(f["event"], f["outcome"]["status"]) for f in fired] == [("ticket.status_changed", 202)]
    servers.outcome("zendesk", ticket_id, "rate", score="good")
    servers.outcome("zendesk", ticket_id, "reply", text="Still nothing.")
    hooks = gateway.wait_for(on_zendesk, count=5)
    # One action's webhooks go out together, in no set order (as a provider's do).
    events = [h.json()["event"] for h in hooks]
    assert events[:3] == ["ticket.created", "ticket.status_changed", "ticket.satisfaction_rated"]
    assert sorted(events[3:]) == ["ticket.reopened", "ticket.requester_updated"]
    assert all(zendesk_signature_holds(h, "zd-signing-secret") for h in hooks)
    solved, rated = hooks[1].json(), hooks[2].json()
    replied = next(h.json() for h in hooks if h.json()["event"] == "ticket.requester_updated")
    assert solved["ticket"]["status"] == "Solved" and solved["current_user"]["email"] == "agent@demo-bank.example"
    assert rated["ticket"]["satisfaction_rating"]["score"] == "good"
    assert replied["current_user"]["id"] == replied["ticket"]["requester"]["id"]
    assert replied["ticket"]["public_comment_authors"].split() == [replied["ticket"]["requester"]["id"]] * 2

    conversation = servers.intercom_start_conversation(TENANT, body="<p>Hi</p>", email="gu@customers.example",
                                                       name="Gu", external_id="cust-0099")
    servers.outcome("intercom", conversation, "status", status="closed")
    servers.outcome("intercom", conversation, "rate", score=7)  # passed through as given
    hooks = gateway.wait_for(lambda h: "intercom" in h.path and h.json()["data"]["item"]["id"] == conversation, count=3)
    assert [h.json()["topic"] for h in hooks] == ["conversation.user.created", "conversation.admin.closed",
                                                  "conversation.rating.added"]
    assert all(intercom_signature_holds(h, "ic-client-secret") for h in hooks)
    assert hooks[2].json()["data"]["item"]["conversation_rating"]["rating"] == 7

    freshdesk_id = servers.freshdesk_create_ticket(TENANT, subject="Fees", description_html="<p>Fees?</p>",
                                                   email="ha@customers.example", name="Ha")
    assert httpx.put(f"{servers.freshdesk_url}/api/v2/tickets/{freshdesk_id}", auth=FRESHDESK_AUTH,
                     json={"status": 3}).status_code == 200  # Supportflow's own key: no rule fires
    servers.outcome("freshdesk", freshdesk_id, "status", status=4)
    servers.outcome("freshdesk", freshdesk_id, "rate", score=103)
    servers.outcome("freshdesk", freshdesk_id, "reply", text="It came back.")
    hooks = gateway.wait_for(lambda h: "freshdesk" in h.path and h.json()["freshdesk_webhook"]["ticket_id"] == freshdesk_id,
                             count=5)
    bodies = [h.json()["freshdesk_webhook"] for h in hooks]
    assert [b["event"] for b in bodies[:3]] == ["ticket_created", "status_changed", "customer_feedback"]
    assert sorted(b["event"] for b in bodies[3:]) == ["customer_replied", "ticket_reopened"]
    assert all(h.headers["x-supportflow-webhook-secret"] == "fd-secret" for h in hooks)
    assert (bodies[1]["ticket_status"], bodies[1]["performed_by"]) == ("Resolved", "agent")
    assert bodies[2]["satisfaction_rating"] == 103
    assert next(b for b in bodies if b["event"] == "ticket_reopened")["performed_by"] == "requester"

    for provider, ticket, body in (("zendesk", ticket_id, {"action": "fly"}), ("intercom", "404404", {"action": "rate"}),
                                   ("email", "<nobody@x>", {"action": "rate"})):
        response = httpx.post(f"{servers.base_url(provider)}/_sim/outcomes", json={"ticket": ticket} | body)
        assert response.status_code in (400, 404) and response.json()["error"]


def test_a_customers_mail_reply_answers_the_threads_latest_message(servers, gateway_smtp):
    root = servers.send_customer_mail(TENANT, from_addr="jo@customers.example", subject="Card", body="Lost it.")
    with smtplib.SMTP(*servers.mail_smtp.split(":")) as smtp:  # Supportflow's answer on the thread
        answer = EmailMessage()
        answer["From"], answer["To"], answer["Subject"] = "support@demo-bank.example", "jo@customers.example", "Re: Card"
        answer["Message-ID"], answer["In-Reply-To"], answer["References"] = "<sf-1@demo-bank.example>", root, root
        answer.set_content("We froze it.")
        smtp.send_message(answer)
    [fired] = servers.outcome("email", root, "reply", text="I already said it was lost.")
    assert fired["outcome"]["status"] == 250
    sent = gateway_smtp.envelopes[-1]
    assert sent.mail_from == "jo@customers.example" and sent.rcpt_tos == ["support@demo-bank.example"]
    from email import message_from_bytes, policy

    mail = message_from_bytes(sent.content, policy=policy.default)
    assert mail["In-Reply-To"] == "<sf-1@demo-bank.example>"
    assert mail["References"].split() == [root, "<sf-1@demo-bank.example>"]
    assert mail.get_content().strip() == "I already said it was lost."
