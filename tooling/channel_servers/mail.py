"""The tenants' outgoing mail server: an SMTP server (aiosmtpd) that accepts every message Supportflow
sends (AUTH with any credentials, or none), keeps it, and lists it over HTTP.

A message to a customer is a "reply" (a follow-up cannot be told apart by mail); a message whose
recipients are all at a tenant's own mail domain (an agents' notes address) is a "note". Its
`external_id` is its Message-ID; its `ticket` is its thread root, the first Message-ID in
References, else In-Reply-To, else its own (`/_sim/deliveries?ticket=` also finds a message by any
Message-ID of its thread).

`POST /_sim/outcomes {"ticket": <a Message-ID of the thread>, "action": "reply", "text", "from"?}`:
the customer answers the thread's latest message, by mail to the tenant's support address at the
gateway's SMTP listener (`gateway_smtp`), with In-Reply-To and References as a mail client sets
them; From is the customer the thread's latest reply went to, or `from`. Mail has no statuses or
ratings: the other actions are refused.

`POST /_sim/faults` on the HTTP port: `{"smtp_code": 451, "count": 2}` makes the next two messages
get 451 after DATA (`"stage": "rcpt"`: each RCPT instead); `{"delay_s": 3, "count": 1}` slows the
next DATA down.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from starlette.applications import Starlette
from starlette.types import ASGIApp

from tooling.channel_servers.config import TenantAccounts
from tooling.channel_servers.control_api import Fired, SimError, control_routes
from tooling.channel_servers.markup import html_to_text
from tooling.channel_servers.store import FaultPlan, TrafficLog

log = logging.getLogger("channel_servers.mail")

MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class MailServer:
    provider = "email"

    def __init__(self, tenants: tuple[TenantAccounts, ...], state_dir: Path, *, gateway_smtp: str = "") -> None:
        self.traffic = TrafficLog(self.provider, state_dir)
        self.faults = FaultPlan(smtp=True)
        self.tenant_by_domain = {t.mail_domain: t.tenant for t in tenants if t.mail_domain}
        self.mailboxes = {t.tenant: t.mailbox for t in tenants}
        self.gateway_smtp = gateway_smtp

    # ---- SMTP

    def smtp_protocol(self) -> SMTP:
        """One connection's protocol (asyncio server factory)."""
        return SMTP(self, hostname="mail.channel-servers.local", data_size_limit=MAX_MESSAGE_BYTES,
                    auth_require_tls=False, authenticator=_any_credentials, enable_SMTPUTF8=True)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = await self._fault("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes) else b"")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        login = session.auth_data.login.decode(errors="replace") if getattr(session.auth_data, "login", None) else ""
        parsed = _parsed(message) | {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                     "auth_user": login, "size": len(raw)}
        tenant = self._tenant_of(parsed)
        refusal = await self._fault("data")
        if refusal:
            self.traffic.record_request(method="SMTP", path="DATA", status=int(refusal[:3]), body=parsed,
                                        tenant=tenant)
            return refusal
        self.traffic.record_request(method="SMTP", path="DATA", status=250, body=parsed, tenant=tenant)
        internal = all(_domain(r) in self.tenant_by_domain for r in envelope.rcpt_tos)
        kind = "note" if internal else "reply"
        self.traffic.record_delivery(
            tenant=tenant, kind=kind, external_id=parsed["message_id"], ticket=_thread_root(parsed),
            html=parsed["html"], text=parsed["text"] or html_to_text(parsed["html"]), public=kind == "reply",
            message_id=parsed["message_id"], in_reply_to=parsed["in_reply_to"], references=parsed["references"],
            subject=parsed["subject"], from_addr=parsed["from"], to=parsed["to"], cc=parsed["cc"],
            rcpt_tos=parsed["rcpt_tos"])
        return "250 OK: message accepted"

    async def _fault(self, stage: str) -> str:
        fault = self.faults.take_smtp(stage)
        if fault is None:
            return ""
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if not fault.smtp_code:
            return ""
        log.info("SMTP %s answered %d (fault)", stage.upper(), fault.smtp_code)
        default = "Requested action aborted: try again later" if fault.smtp_code < 500 else "Message refused"
        return f"{fault.smtp_code} {fault.message or default}"

    def _tenant_of(self, parsed: dict) -> str:
        for address in [parsed["mail_from"], *(a for _, a in getaddresses([parsed["from"]])), *parsed["rcpt_tos"]]:
            tenant = self.tenant_by_domain.get(_domain(address))
            if tenant:
                return tenant
        return ""

    # ---- HTTP listing

    def app(self) -> ASGIApp:
        return Starlette(routes=control_routes(provider=self.provider, traffic=self.traffic, faults=self.faults,
                                               belongs=_in_thread, outcomes=self.sim_outcome))

    # ---- the customer's reply (/_sim/outcomes)

    async def sim_outcome(self, body: dict) -> list[Fired]:
        if body["action"] != "reply":
            raise SimError(400, "mail has no statuses or ratings: the only action is reply")
        text = str(body.get("text") or "")
        if not text.strip():
            raise SimError(400, "a reply needs text")
        if not self.gateway_smtp:
            raise SimError(409, "no gateway_smtp configured: nowhere to send the customer's mail")
        replies = [item for item in self.traffic.deliveries_for(body["ticket"], _in_thread) if item["kind"] != "note"]
        latest = replies[-1] if replies else None
        sender = str(body.get("from") or "") or (latest["rcpt_tos"][0] if latest and latest["rcpt_tos"] else "")
        tenant = (latest or {}).get("tenant") or str(body.get("tenant") or "") or (
            next(iter(self.mailboxes)) if len(self.mailboxes) == 1 else "")
        if not sender or tenant not in self.mailboxes:
            raise SimError(404, f"no reply on thread {body['ticket']!r} to answer: pass from (and tenant)")
        answered = latest["message_id"] if latest else body["ticket"]
        chain = [*(latest["references"] if latest else []), answered] if latest else [body["ticket"]]
        message = EmailMessage()
        message["From"], message["To"] = sender, self.mailboxes[tenant]
        message["Subject"] = "Re: " + ((latest or {}).get("subject") or "").removeprefix("Re: ")
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message["In-Reply-To"] = answered
        message["References"] = " ".join(dict.fromkeys(chain))
        message.set_content(text)
        result = asyncio.get_running_loop().create_task(asyncio.to_thread(self._send_to_gateway, message))
        return [("email.reply", str(message["Message-ID"]), result)]

    def _send_to_gateway(self, message: EmailMessage) -> dict:
        host, _, port = self.gateway_smtp.rpartition(":")
        try:
            with smtplib.SMTP(host, int(port), timeout=15) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            return {"status": exc.smtp_code, "error": str(exc.smtp_error)[:300]}
        except (smtplib.SMTPException, OSError) as exc:
            return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
        log.info("customer reply %s sent to the gateway", message["Message-ID"])
        return {"status": 250, "error": ""}


def _any_credentials(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: object) -> AuthResult:
    return AuthResult(success=True, auth_data=auth_data)


def _parsed(message: EmailMessage) -> dict:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return {
        "message_id": str(message.get("Message-ID", "")).strip(),
        "in_reply_to": str(message.get("In-Reply-To", "")).strip(),
        "references": str(message.get("References", "")).split(),
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "cc": str(message.get("Cc", "")),
        "subject": str(message.get("Subject", "")),
        "date": str(message.get("Date", "")),
        "text": _content(text_part),
        "html": _content(html_part),
    }


def _content(part: EmailMessage | None) -> str:
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, UnicodeDecodeError):
        return part.get_payload(decode=True).decode("utf-8", errors="replace")


def _thread_root(parsed: dict) -> str:
    if parsed["references"]:
        return parsed["references"][0]
    return parsed["in_reply_to"] or parsed["message_id"]


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


def _in_thread(item: dict, wanted: str) -> bool:
    ids = {item.get("ticket", ""), item.get("message_id", ""), item.get("in_reply_to", ""), *item.get("references", [])}
    return _bare(wanted) in {_bare(i) for i in ids if i}


def _domain(address: str) -> str:
    return address.strip().strip("<>").rpartition("@")[2].lower()
