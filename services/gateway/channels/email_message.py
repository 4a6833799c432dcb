"""Email: a mail to a tenant's support mailbox into a ticket (docs/channels.md, "Email").

Read with Python's `email` package (`policy.default`). The body is the text/plain part of a
multipart/alternative, else the HTML part turned into text; declared charsets are honoured and
bytes they cannot decode replaced (`charset_replaced`); the earlier mail quoted below a reply and
a signature after `-- ` are cut. Every mail of a thread lands on one ticket: its id comes from
the thread's first Message-ID, and the mail's own Message-ID is the delivery id, so a resent
mail publishes the same event id.

A mail that threads onto an earlier one (In-Reply-To, References) is also the customer's reply on
that ticket: a customer_reply outcome (`reply_outcome`).

Mail that no person wrote (bounces, out-of-office replies, our own mail coming back) is ignored:
answering it would start a loop between two robots.
"""

from __future__ import annotations

import codecs
import hashlib
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.gateway.channels import outcomes as oc
from services.gateway.channels.payload import (
    ChannelTicket,
    Ignored,
    channel_ticket,
    message_ids,
    normalized_message_id,
)
from services.gateway.channels.text import ATTACHMENT_OVERSIZED, CHARSET_REPLACED, CustomerText, customer_text
from services.gateway.intake import MAX_DELIVERY_ID_CHARS

PROVIDER = "email"
EVENT = "email.received"
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024  # larger ones are flagged (attachments are counted, never carried)
MAX_REFERENCES = 50
_AUTOMATIC_PRECEDENCE = ("bulk", "junk", "auto_reply")


def ticket_from_mail(raw: bytes, *, tenant: str, mailbox: str, envelope_sender: str | None = None,
                     now: Timestamp | None = None) -> ChannelTicket | Ignored:
    """The ticket of one mail to `mailbox` (the tenant's support address it was sent to).
    `envelope_sender` is SMTP's MAIL FROM when the mail came over SMTP ("" for a bounce)."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    sender_name, sender = _sender(message)
    automatic = _automatic(message, envelope_sender, sender, mailbox)
    if automatic:
        return Ignored(automatic)

    message_id = normalized_message_id(_header(message, "Message-ID"))
    if not message_id or len(message_id) > MAX_DELIVERY_ID_CHARS or not message_id.isprintable():
        # Without a usable Message-ID the mail's own bytes name it: a resent copy is still one delivery.
        message_id = f"<{hashlib.sha256(raw).hexdigest()[:32]}@supportflow.invalid>"
    references = message_ids(_header(message, "References"))
    in_reply_to = message_ids(_header(message, "In-Reply-To"))
    thread = references + [mid for mid in in_reply_to if mid not in references]
    root = thread[0] if thread else message_id

    body, body_part = _readable_body(message)
    attachments = _attachments(message, body_part)
    flags = list(body.flags)
    if any(_size(part) > MAX_ATTACHMENT_BYTES for part in attachments):
        flags.append(ATTACHMENT_OVERSIZED)
    ticket = channel_ticket(
        PROVIDER,
        tenant,
        root,
        channel=tk.CHANNEL_EMAIL,
        subject=_header(message, "Subject"),
        body=CustomerText(body.text, flags),
        event=EVENT,
        requester_email=sender,
        requester_name=sender_name,
        attachments=len(attachments),
        now=now,
    )
    ticket.language = _header(message, "Content-Language").split(",")[0].strip()[:16]
    origin = ticket.origin
    origin.message_id = message_id
    # A long thread keeps its first Message-ID (replies name the root) and its latest ones.
    origin.references.extend(thread if len(thread) <= MAX_REFERENCES else [thread[0], *thread[1 - MAX_REFERENCES:]])
    origin.mailbox = mailbox
    return ChannelTicket(ticket, message_id)


def reply_outcome(mail: ChannelTicket) -> oc.ChannelOutcomes:
    """The customer_reply a threaded mail is (nothing for a thread's first mail). The agent turns
    before it are the mails of its thread sent from the support mailbox's domain (Supportflow's
    replies and the agents'), as their Message-IDs in References and In-Reply-To say."""
    origin = mail.ticket.origin
    thread = [mid for mid in origin.references if mid != origin.message_id]
    if not thread:
        return oc.ChannelOutcomes(ignored="the first mail of its thread")
    domain = origin.mailbox.rpartition("@")[2].lower()
    ours = sum(1 for mid in thread if domain and mid.strip("<>").rpartition("@")[2].lower() == domain)
    found = oc.OutcomeBuilder(PROVIDER, mail.ticket.ticket_id, tk.CHANNEL_EMAIL, mail.delivery)
    found.customer_reply(mail.ticket.body, ours)
    return found.result()


def _header(message: Message, name: str) -> str:
    """A header's decoded value ("" when absent). A header too broken for the structured parser
    is read from its raw text instead of failing the mail."""
    try:
        return str(message.get(name, "") or "").replace("\x00", "")
    except Exception:  # noqa: BLE001 - the email package raises assorted errors on malformed headers
        raw = next((value for key, value in message.raw_items() if key.lower() == name.lower()), "")
        try:
            return str(make_header(decode_header(raw)))
        except Exception:  # noqa: BLE001
            return str(raw)


def _sender(message: Message) -> tuple[str, str]:
    """(display name, address) of the mail's From."""
    try:
        addresses = message["From"].addresses if message["From"] is not None else ()
        if addresses:
            return addresses[0].display_name, addresses[0].addr_spec.lower()
    except Exception:  # noqa: BLE001 - see _header
        pass
    found = getaddresses([_header(message, "From")])
    name, address = found[0] if found else ("", "")
    return name, address.lower()


def _automatic(message: Message, envelope_sender: str | None, sender: str, mailbox: str) -> str:
    """Why the mail was sent by a machine rather than a person ("" when a person wrote it)."""
    if envelope_sender is not None and envelope_sender.strip() in ("", "<>"):
        return "a bounce (empty envelope sender)"
    if sender.startswith("mailer-daemon@"):
        return "a bounce (from MAILER-DAEMON)"
    auto_submitted = _header(message, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"an automatic mail (Auto-Submitted: {auto_submitted[:40]})"
    if _header(message, "Precedence").strip().lower() in _AUTOMATIC_PRECEDENCE:
        return "an automatic mail (Precedence)"
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond"):
        return "an automatic reply"
    if sender and sender == mailbox.strip().lower():
        return "a mail from the support mailbox itself"
    return ""


def _readable_body(message: EmailMessage) -> tuple[CustomerText, Message | None]:
    """The customer's text and the part it came from: text/plain preferred, HTML converted when
    there is no plain text (or only an empty one)."""
    candidates = []
    for preference in (("plain", "html"), ("html",)):
        try:
            part = message.get_body(preferencelist=preference)
        except Exception:  # noqa: BLE001 - a malformed structure: fall through to no body
            part = None
        if part is not None and part not in candidates:
            candidates.append(part)
    first: tuple[CustomerText, Message | None] = (CustomerText(""), None)
    for part in candidates:
        text, replaced = _decoded(part)
        read = customer_text(text, html=part.get_content_subtype() == "html")
        if replaced:
            read.flags.append(CHARSET_REPLACED)
        if read.text.strip():
            return read, part
        if first[1] is None:
            first = (read, part)
    return first


def _decoded(part: Message) -> tuple[str, bool]:
    """A text part's content in its declared charset, and whether bytes had to be replaced."""
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):
        return "", False
    charset = part.get_content_charset() or "us-ascii"
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        return payload.decode("utf-8", errors="replace"), True
    try:
        return payload.decode(codec), False
    except UnicodeDecodeError:
        pass
    if codec == "ascii":
        # Undeclared 8-bit text is most often UTF-8.
        try:
            return payload.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return payload.decode(codec, errors="replace"), True


def _attachments(part: Message, body: Message | None) -> list[Message]:
    """The parts that are not text for the reader: files, inline images, attached mails."""
    if part is body:
        return []
    if part.get_content_type() == "message/rfc822":
        return [part]
    if part.is_multipart():
        found: list[Message] = []
        for child in part.get_payload():
            if isinstance(child, Message):
                found.extend(_attachments(child, body))
        return found
    if part.get_filename() or part.get_content_disposition() == "attachment" or part.get_content_maintype() != "text":
        return [part]
    return []


def _size(part: Message) -> int:
    try:
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            return len(part.as_bytes())
        payload = part.get_payload(decode=True)
        return len(payload) if isinstance(payload, bytes) else 0
    except Exception:  # noqa: BLE001 - a broken part has no size worth flagging
        return 0
