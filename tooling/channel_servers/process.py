"""`ChannelServers`: starts the stand-ins as one child process and talks to them, both as
Supportflow's tests read them (/_sim/) and as a customer would use each provider (through the
provider's own API, which then calls the gateway's webhook).
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import httpx

from tooling.channel_servers.basic_auth import basic_header
from tooling.channel_servers.config import ChannelServersConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
PORTS_FILE = "ports.json"
LOG_FILE = "channel_servers.log"
CONFIG_FILE = "config.json"
INTERCOM_VERSION = "2.11"
STOP_GRACE_S = 5.0


class ChannelServersError(RuntimeError):
    """The stand-ins did not start, or a call to them failed; says what and shows the log tail."""


class ChannelServers:
    def __init__(self, config: ChannelServersConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.log_path = self.state_dir / LOG_FILE
        self.process: subprocess.Popen | None = None
        self.zendesk_url = self.intercom_url = self.freshdesk_url = ""
        self.mail_smtp = self.mail_url = self.api_url = ""
        self._http: httpx.Client | None = None

    # ---- lifecycle

    def start(self, timeout_s: float = 30) -> None:
        if self.process is not None and self.process.poll() is None:
            raise ChannelServersError("already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ports_path = self.state_dir / PORTS_FILE
        ports_path.unlink(missing_ok=True)
        config_path = self.state_dir / CONFIG_FILE
        config_path.touch(mode=0o600)  # it holds the tenants' secrets
        config_path.write_text(self.config.to_json(), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as log_handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tooling.channel_servers", "--config", str(config_path)],
                cwd=REPO_ROOT, env=env, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True)
        self._http = httpx.Client(timeout=15.0, trust_env=False)  # loopback: never through a proxy
        try:
            self._wait_ready(ports_path, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, ports_path: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise ChannelServersError(
                    f"channel servers exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            if ports_path.exists() and self._read_ports(ports_path) and self._all_answer():
                return
            if time.monotonic() > deadline:
                raise ChannelServersError(f"channel servers not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _read_ports(self, ports_path: Path) -> bool:
        try:
            ports = json.loads(ports_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        self.zendesk_url, self.intercom_url = ports["zendesk_url"], ports["intercom_url"]
        self.freshdesk_url, self.mail_url = ports["freshdesk_url"], ports["mail_url"]
        self.api_url, self.mail_smtp = ports["api_url"], ports["mail_smtp"]
        return True

    def _all_answer(self) -> bool:
        for url in (self.zendesk_url, self.intercom_url, self.freshdesk_url, self.mail_url, self.api_url):
            try:
                if self._http.get(f"{url}/healthz", timeout=2.0).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        host, _, port = self.mail_smtp.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> "ChannelServers":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def api_callback_url(self) -> str:
        """Where a tenant's API-channel callbacks go (every tenant; the signature names the tenant)."""
        return f"{self.api_url}/callbacks" if self.api_url else ""

    # ---- the control API (/_sim/)

    def base_url(self, provider: str) -> str:
        urls = {"zendesk": self.zendesk_url, "intercom": self.intercom_url, "freshdesk": self.freshdesk_url,
                "email": self.mail_url, "mail": self.mail_url, "api": self.api_url}
        if provider not in urls:
            raise ValueError(f"unknown provider {provider!r} (one of {', '.join(urls)})")
        if not urls[provider]:
            raise ChannelServersError("channel servers are not started")
        return urls[provider]

    def deliveries(self, provider: str, ticket: str | None = None) -> list[dict]:
        params = {"ticket": ticket} if ticket else None
        return self._call("GET", f"{self.base_url(provider)}/_sim/deliveries", params=params)["items"]

    def received(self, provider: str) -> list[dict]:
        return self._call("GET", f"{self.base_url(provider)}/_sim/received")["requests"]

    def set_faults(self, provider: str, **fault: object) -> None:
        self._call("POST", f"{self.base_url(provider)}/_sim/faults", json=fault)

    def redeliver(self, provider: str, ticket: str, *, wait: bool = False) -> dict:
        """Send the ticket's last webhook again with the same id (a provider's retry)."""
        return self._call("POST", f"{self.base_url(provider)}/_sim/redeliver", json={"ticket": ticket, "wait": wait})

    def outcome(self, provider: str, ticket: str, action: str, **fields: object) -> list[dict]:
        """Make something happen on a ticket as its customer (action "reply" with text, "rate" with
        score) or a support agent ("status" with status) would, and wait for the outcome webhooks
        the provider fires: [{"event", "delivery_id", "outcome": {"status", "error", ...}}]."""
        body = {"ticket": ticket, "action": action, "wait": True} | fields
        return self._call("POST", f"{self.base_url(provider)}/_sim/outcomes", json=body)["fired"]

    def webhook_attempts(self, provider: str) -> list[dict]:
        return self._call("GET", f"{self.base_url(provider)}/_sim/webhooks")["attempts"]

    def touch_article(self, tenant: str, article_id: int, *, title: str | None = None,
                      body_markdown: str | None = None) -> dict:
        body = {"tenant": tenant, "id": article_id} | ({"title": title} if title else {}) | (
            {"body_markdown": body_markdown} if body_markdown is not None else {})
        return self._call("POST", f"{self.zendesk_url}/_sim/help_center/touch", json=body)["article"]

    # ---- the customer's side

    def zendesk_create_ticket(self, tenant: str, *, subject: str, body: str, requester_email: str,
                              requester_name: str) -> str:
        """A ticket opened by its requester: the requester is the submitter and the first
        comment's author (as for a ticket from the web form). Returns the Zendesk ticket id."""
        accounts = self.config.tenant(tenant)
        auth = {"Authorization": basic_header(f"{accounts.zendesk_email}/token", accounts.zendesk_api_token)}
        user = self._call("POST", f"{self.zendesk_url}/api/v2/users/create_or_update.json", headers=auth,
                          json={"user": {"name": requester_name, "email": requester_email, "role": "end-user"}})["user"]
        ticket = self._call("POST", f"{self.zendesk_url}/api/v2/tickets.json", headers=auth, json={"ticket": {
            "subject": subject, "comment": {"body": body}, "requester_id": user["id"], "submitter_id": user["id"]}})
        return str(ticket["ticket"]["id"])

    def zendesk_requester_reply(self, tenant: str, ticket_id: str, body: str) -> None:
        """The requester comments on their ticket (the Requests API, as the requester)."""
        accounts = self.config.tenant(tenant)
        agent = {"Authorization": basic_header(f"{accounts.zendesk_email}/token", accounts.zendesk_api_token)}
        ticket = self._call("GET", f"{self.zendesk_url}/api/v2/tickets/{ticket_id}.json", headers=agent)["ticket"]
        requester = self._call("GET", f"{self.zendesk_url}/api/v2/users/{ticket['requester_id']}.json",
                               headers=agent)["user"]
        as_requester = {"Authorization": basic_header(f"{requester['email']}/token", accounts.zendesk_api_token)}
        self._call("PUT", f"{self.zendesk_url}/api/v2/requests/{ticket_id}.json", headers=as_requester,
                   json={"request": {"comment": {"body": body}}})

    def intercom_start_conversation(self, tenant: str, *, body: str, email: str, name: str, external_id: str) -> str:
        """The contact (created if needed) starts a conversation; returns the conversation id."""
        headers = self._intercom_headers(tenant)
        found = self._call("POST", f"{self.intercom_url}/contacts/search", headers=headers, json={"query": {
            "operator": "OR", "value": [{"field": "external_id", "operator": "=", "value": external_id},
                                        {"field": "email", "operator": "=", "value": email}]}})["data"]
        if found:
            contact_id = found[0]["id"]
        else:
            contact_id = self._call("POST", f"{self.intercom_url}/contacts", headers=headers, json={
                "role": "user", "external_id": external_id, "email": email, "name": name})["id"]
        message = self._call("POST", f"{self.intercom_url}/conversations", headers=headers,
                             json={"from": {"type": "user", "id": contact_id}, "body": body})
        return str(message["conversation_id"])

    def intercom_user_reply(self, tenant: str, conversation_id: str, body: str) -> None:
        headers = self._intercom_headers(tenant)
        conversation = self._call("GET", f"{self.intercom_url}/conversations/{conversation_id}", headers=headers)
        contact_id = conversation["contacts"]["contacts"][0]["id"]
        self._call("POST", f"{self.intercom_url}/conversations/{conversation_id}/reply", headers=headers, json={
            "message_type": "comment", "type": "user", "intercom_user_id": contact_id, "body": body})

    def freshdesk_create_ticket(self, tenant: str, *, subject: str, description_html: str, email: str,
                                name: str) -> str:
        ticket = self._call("POST", f"{self.freshdesk_url}/api/v2/tickets", headers=self._freshdesk_headers(tenant),
                            json={"subject": subject, "description": description_html, "email": email, "name": name,
                                  "status": 2, "priority": 1})
        return str(ticket["id"])

    def freshdesk_customer_reply(self, tenant: str, ticket_id: str, body_html: str) -> None:
        """The requester replies (a public incoming note by the requester), which fires `customer_replied`."""
        headers = self._freshdesk_headers(tenant)
        ticket = self._call("GET", f"{self.freshdesk_url}/api/v2/tickets/{ticket_id}", headers=headers)
        self._call("POST", f"{self.freshdesk_url}/api/v2/tickets/{ticket_id}/notes", headers=headers, json={
            "body": body_html, "private": False, "incoming": True, "user_id": ticket["requester_id"]})

    def send_customer_mail(self, tenant: str, *, from_addr: str, subject: str, body: str, html: str | None = None,
                           in_reply_to: str | None = None, references: tuple[str, ...] | list[str] = (),
                           message_id: str | None = None) -> str:
        """A customer's mail to the tenant's support address, over SMTP to the gateway's listener.
        Returns its Message-ID."""
        if not self.config.gateway_smtp:
            raise ChannelServersError("no gateway_smtp configured: nowhere to send customer mail")
        accounts = self.config.tenant(tenant)
        message = EmailMessage()
        message["From"] = from_addr
        message["To"] = accounts.mailbox
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id or make_msgid(domain=from_addr.rpartition("@")[2] or None)
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
        chain = list(references) or ([in_reply_to] if in_reply_to else [])
        if chain:
            message["References"] = " ".join(chain)
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
        host, _, port = self.config.gateway_smtp.rpartition(":")
        with smtplib.SMTP(host, int(port), timeout=15) as smtp:
            smtp.send_message(message, from_addr=from_addr, to_addrs=[accounts.mailbox])
        return str(message["Message-ID"])

    # ---- plumbing

    def _intercom_headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.tenant(tenant).intercom_access_token}",
                "Intercom-Version": INTERCOM_VERSION, "Accept": "application/json"}

    def _freshdesk_headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": basic_header(self.config.tenant(tenant).freshdesk_api_key, "X")}

    def _call(self, method: str, url: str, **kwargs: object) -> dict:
        if self._http is None:
            raise ChannelServersError("channel servers are not started")
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise ChannelServersError(f"{method} {url} -> {response.status_code}: {response.text[:500]}")
        return response.json()
