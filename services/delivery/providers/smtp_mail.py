"""Mail: a reply from the tenant's support mailbox to the customer, threaded under their mail
(`In-Reply-To`, `References`, `Re:` subject), or a note to the agents' `notes_address`. Sent over
SMTP (STARTTLS or implicit TLS, AUTH when a username is set), as text and HTML alternatives.

The Message-ID is derived from the decision's event id, so every retry and every restart sends
the same one. A mailbox cannot be read back, so reconciliation (a decision found *started* after
a crash) cannot tell whether the first send went out: it sends again with that same Message-ID,
which mail clients and helpdesk mail intake use to drop a repeat. Likewise a timeout after the
message data was handed over is retried as a re-send.

SMTP replies 4xx (and dropped or refused connections, timeouts) are transient and retried; 5xx
are permanent and carry the server's reply.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Callable

from supportflow.channels import EmailChannel

from services.delivery.handlers import DeliveryPlan
from services.delivery.providers.base import ProviderCaller, PermanentDeliveryError, Posted, Retryable, RetryPolicy

log = logging.getLogger(__name__)

SmtpFactory = Callable[[], smtplib.SMTP]


def build_message(plan: DeliveryPlan) -> EmailMessage:
    envelope = plan.email
    assert envelope is not None
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = email.utils.formataddr((envelope.sender_name, envelope.sender)) if envelope.sender_name else envelope.sender
    message["To"] = envelope.to
    message["Subject"] = envelope.subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = envelope.message_id
    if envelope.in_reply_to:
        message["In-Reply-To"] = envelope.in_reply_to
    if envelope.references:
        message["References"] = " ".join(envelope.references)
    # RFC 3834: an automatic answer; well-behaved auto-responders do not answer it (no mail loops).
    # A reply an agent approved or wrote in the workspace is a person's, and is not marked.
    if plan.automatic or not plan.public:
        message["Auto-Submitted"] = "auto-replied" if plan.public else "auto-generated"
    message.set_content(plan.message.text)
    message.add_alternative(f"<!DOCTYPE html><html><body>{plan.message.html}</body></html>", subtype="html")
    return message


class SmtpMailer:
    provider = "email"

    def __init__(
        self,
        channel: EmailChannel,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self._caller = ProviderCaller(self.provider, policy, sleep=sleep)

    def deliver(self, plan: DeliveryPlan, *, reconcile: bool) -> Posted:
        if plan.record_only or plan.email is None:
            return Posted("", 0)
        if reconcile:
            log.info("mail cannot be read back: sending again with the same Message-ID",
                     extra={"fields": {"message_id": plan.email.message_id}})
        message = build_message(plan)
        _, attempts = self._caller.run("send", lambda: self._send(message, plan.email.sender, plan.email.to))
        return Posted(plan.email.message_id, attempts)

    def _send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        channel = self._channel
        try:
            if channel.smtp_ssl:
                connection = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port, timeout=self._timeout_s,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=self._timeout_s)
            with connection:
                if channel.smtp_starttls and not channel.smtp_ssl:
                    connection.starttls(context=ssl.create_default_context())
                if channel.smtp_username:
                    connection.login(channel.smtp_username, channel.smtp_password.get_secret_value())
                connection.send_message(message, from_addr=sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in exc.recipients.items())
            if any(code >= 500 for code in codes):
                raise PermanentDeliveryError(self.provider, max(codes), f"recipient refused: {detail}") from exc
            raise Retryable(f"recipient deferred: {detail}") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise PermanentDeliveryError(self.provider, exc.smtp_code, _text(exc.smtp_error)) from exc
            raise Retryable(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPNotSupportedError as exc:  # STARTTLS or AUTH configured, not offered
            raise PermanentDeliveryError(self.provider, 530, f"the server does not support it: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnected, refused, timed out
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        pass


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
