"""The gateway's SMTP intake: the tenants' mail servers forward their support mailboxes here.

A recipient that is not a tenant's support address is refused at RCPT time (550), a mail over
`gateway_max_mail_bytes` during DATA (552, aiosmtpd's size limit, announced in EHLO as SIZE).
A mail is acknowledged (250) only after the broker has acknowledged its TicketReceived; when
Kafka is down the answer is 451 and the sending server retries later, as SMTP servers do. Its
Message-ID names the delivery, so a retried mail publishes the same event id. A mail that threads
onto an earlier one is also the customer's reply on that ticket: a customer_reply outcome on
`tickets.feedback`, acknowledged with the ticket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence

from aiosmtpd.smtp import SMTP, Envelope, Session

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import TransientError

from services.gateway import metrics
from services.gateway.channels import ChannelOutcome, Ignored
from services.gateway.channels.email_message import PROVIDER, reply_outcome, ticket_from_mail

log = logging.getLogger(__name__)

PublishTicket = Callable[[tk.Ticket, str], None]  # (ticket, event id); raises TransientError
PublishOutcomes = Callable[[str, Sequence[ChannelOutcome]], None]  # (tenant, outcomes); raises TransientError


class MailIntake:
    """The aiosmtpd handler: RCPT checks the mailbox, DATA parses and publishes."""

    def __init__(self, channels: ChannelsConfig, publish_ticket: PublishTicket, publish_outcomes: PublishOutcomes) -> None:
        self._channels = channels
        self._publish_ticket = publish_ticket
        self._publish_outcomes = publish_outcomes

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if self._channels.tenant_for_mailbox(address) is None:
            metrics.channel_refused(PROVIDER, "unknown_tenant")
            return f"550 5.1.1 <{address[:200]}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        # Publishing waits for the broker: off the event loop, so other sessions carry on.
        return await asyncio.get_running_loop().run_in_executor(
            None, self.accept_mail, raw, envelope.mail_from, list(envelope.rcpt_tos))

    def accept_mail(self, raw: bytes, mail_from: str | None, recipients: list[str]) -> str:
        """Publish the mail as a ticket for each tenant it was sent to; the SMTP reply."""
        mailboxes: dict[str, str] = {}  # tenant -> the first of its addresses the mail was sent to
        for address in recipients:
            tenant = self._channels.tenant_for_mailbox(address)
            if tenant is not None:
                mailboxes.setdefault(tenant, address)
        accepted: list[str] = []
        ignored: list[str] = []
        for tenant, mailbox in mailboxes.items():
            try:
                outcome = ticket_from_mail(raw, tenant=tenant, mailbox=mailbox, envelope_sender=mail_from)
            except Exception:  # noqa: BLE001 - the email package has no single error type for broken mail
                log.exception("could not read a mail", extra={"fields": {"tenant": tenant}})
                metrics.channel_refused(PROVIDER, "unreadable")
                return "554 5.6.0 the message could not be read"
            if isinstance(outcome, Ignored):
                metrics.channel_refused(PROVIDER, "ignored")
                log.info("mail ignored", extra={"fields": {"tenant": tenant, "reason": outcome.reason}})
                ignored.append(outcome.reason)
                continue
            replied = reply_outcome(outcome)
            try:
                self._publish_ticket(outcome.ticket, outcome.event_id)
                self._publish_outcomes(tenant, replied.outcomes)
            except TransientError as exc:
                metrics.channel_refused(PROVIDER, "broker_unavailable")
                log.error("could not publish", extra={"fields": {"error": str(exc), "provider": PROVIDER}})
                return "451 4.3.0 event bus unavailable, try again later"
            metrics.channel_accepted(PROVIDER)
            metrics.ACCEPTED.labels("ticket").inc()
            accepted.append(outcome.ticket.ticket_id)
        if accepted:
            return f"250 2.0.0 OK: queued as {' '.join(accepted)}"
        # Accepted and dropped: refusing an auto-reply would only bounce it back.
        return f"250 2.0.0 OK: not a ticket ({'; '.join(ignored)[:200]})"


class _IntakeSMTP(SMTP):
    """aiosmtpd's SMTP session, counting the mails it refuses for their size (552)."""

    async def push(self, status: str) -> None:  # type: ignore[override]
        if str(status).startswith("552"):
            metrics.channel_refused(PROVIDER, "too_large")
        await super().push(status)


class SmtpServer:
    """An SMTP server for `MailIntake`, its event loop on a thread of its own."""

    def __init__(self, intake: MailIntake, host: str, port: int, *, max_mail_bytes: int,
                 server_hostname: str | None = None) -> None:
        self._intake = intake
        self._host, self._port = host, port
        self._max_mail_bytes = max_mail_bytes
        self._hostname = server_hostname or socket.gethostname()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-smtp", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.server_address: tuple[str, int] = (host, port)

    def _session(self) -> SMTP:
        return _IntakeSMTP(self._intake, data_size_limit=self._max_mail_bytes, enable_SMTPUTF8=True,
                           hostname=self._hostname, loop=self._loop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._session, host=self._host, port=self._port))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._failure = exc
            self._ready.set()
            return
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def start(self, timeout_s: float = 10.0) -> "SmtpServer":
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._failure is not None:
            raise RuntimeError(f"the gateway's SMTP server did not start on {self._host}:{self._port}: {self._failure!r}")
        log.info("SMTP serving", extra={"fields": {"port": self.server_address[1]}})
        return self

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)


def serve_smtp(intake: MailIntake, port: int, host: str = "0.0.0.0", *, max_mail_bytes: int) -> SmtpServer:
    """Start the SMTP intake (port 0: any free port, see `server_address`); `shutdown()` stops it."""
    return SmtpServer(intake, host, port, max_mail_bytes=max_mail_bytes).start()
