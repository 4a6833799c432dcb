"""Mail into tickets (services/gateway/channels/email_message.py) and the SMTP handler's answers,
without a server: raw RFC 5322 bytes in, a ticket or an SMTP reply out."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import TransientError
from services.gateway.channels import ChannelTicket, Ignored, pipeline_ticket_id
from services.gateway.channels.email_message import MAX_ATTACHMENT_BYTES, ticket_from_mail
from services.gateway.intake import MAX_FIELD_CHARS, delivery_uuid
from services.gateway.smtp_intake import MailIntake

TENANT, MAILBOX = "demo-bank", "support@demo-bank.example"
CHANNELS = ChannelsConfig.model_validate({"tenants": {
    TENANT: {"email": {"address": MAILBOX, "smtp_host": "smtp.demo-bank.example"}},
    "other-bank": {"email": {"address": "help@other-bank.example", "smtp_host": "smtp.other-bank.example"}},
}})


def mail(body: str = "My card was declined at the ATM.", *, subject: str = "Card declined",
         message_id: str = "<m1@customer.example>", html: str | None = None, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ana Lopez <Ana@Customer.example>"
    message["To"] = MAILBOX
    message["Subject"] = subject
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, value in headers.items():  # after the content, which resets the Content-* headers
        message[name.replace("_", "-")] = value
    return message


def read(raw: bytes | EmailMessage, **kwargs) -> ChannelTicket:
    outcome = ticket_from_mail(raw if isinstance(raw, bytes) else raw.as_bytes(), tenant=TENANT, mailbox=MAILBOX, **kwargs)
    assert isinstance(outcome, ChannelTicket), outcome
    return outcome


def test_a_plain_mail_maps_to_the_canonical_ticket():
    outcome = read(mail(Content_Language="en-GB"))
    ticket = outcome.ticket
    assert ticket.ticket_id == pipeline_ticket_id("email", TENANT, "<m1@customer.example>")
    assert ticket.ticket_id.startswith("em-") and ticket.tenant_id == TENANT and ticket.channel == tk.CHANNEL_EMAIL
    assert (ticket.subject, ticket.body, ticket.language) == ("Card declined", "My card was declined at the ATM.", "en-GB")
    assert ticket.customer_id == "ana@customer.example"
    origin = ticket.origin
    assert (origin.provider, origin.external_id, origin.message_id, origin.mailbox) == (
        "email", "<m1@customer.example>", "<m1@customer.example>", MAILBOX)
    assert (origin.requester_email, origin.requester_name, origin.event) == ("ana@customer.example", "Ana Lopez", "email.received")
    assert list(origin.references) == [] and list(origin.intake_flags) == [] and origin.attachments == 0
    assert outcome.delivery == "<m1@customer.example>"
    assert outcome.event_id == delivery_uuid("email", TENANT, "<m1@customer.example>")


def test_multipart_alternative_prefers_the_plain_text():
    ticket = read(mail("Plain words.", html="<p>HTML <b>words</b>.</p>")).ticket
    assert ticket.body == "Plain words." and list(ticket.origin.intake_flags) == []


def test_an_html_only_mail_is_converted():
    message = mail()
    message.set_content("<html><body><p>My card<br>was declined.</p><p>Ana</p></body></html>", subtype="html")
    ticket = read(message).ticket
    assert ticket.body == "My card\nwas declined.\nAna" and list(ticket.origin.intake_flags) == ["html_converted"]


def test_an_empty_plain_part_falls_back_to_the_html_one():
    ticket = read(mail(" \n", html="<p>Only here.</p>")).ticket
    assert ticket.body == "Only here." and "html_converted" in ticket.origin.intake_flags


RAW_LATIN1 = (b"From: =?iso-8859-1?q?Jos=E9?= <jose@customer.example>\r\nTo: support@demo-bank.example\r\n"
              b"Subject: =?iso-8859-1?q?Cr=E9dito_rechazado?=\r\nMessage-ID: <latin@customer.example>\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\nMi tarjeta fue rechazada en el caf\xe9.\r\n")


def test_a_declared_iso_8859_1_charset_is_honoured():
    ticket = read(RAW_LATIN1).ticket
    assert ticket.body == "Mi tarjeta fue rechazada en el café."
    assert ticket.subject == "Crédito rechazado" and ticket.origin.requester_name == "José"
    assert list(ticket.origin.intake_flags) == []


@pytest.mark.parametrize("charset, expected", [
    (b"utf-8", "Mi tarjeta fue rechazada en el caf\ufffd."),  # bytes the declared charset cannot decode
    (b"x-klingon", "Mi tarjeta fue rechazada en el caf\ufffd."),  # a charset nobody knows
])
def test_undecodable_bytes_are_replaced_and_flagged(charset, expected):
    ticket = read(RAW_LATIN1.replace(b"charset=ISO-8859-1", b"charset=" + charset)).ticket
    assert ticket.body == expected and list(ticket.origin.intake_flags) == ["charset_replaced"]


def test_undeclared_utf8_is_read_as_utf8():
    raw = RAW_LATIN1.replace(b"Content-Type: text/plain; charset=ISO-8859-1\r\n", b"").replace(b"caf\xe9", "café".encode())
    ticket = read(raw).ticket
    assert ticket.body == "Mi tarjeta fue rechazada en el café." and list(ticket.origin.intake_flags) == []


def test_a_reply_loses_its_quote_and_signature_and_stays_on_the_first_mails_ticket():
    first = read(mail(message_id="<root@customer.example>")).ticket
    reply = mail(
        "It is still declined.\n-- \nAna Lopez\n\nOn Mon, 2 Mar 2026 at 10:00, Demo Bank <support@demo-bank.example> wrote:\n"
        "> Please try again.\n> Demo Bank",
        subject="Re: Card declined", message_id="<m3@customer.example>",
        In_Reply_To="<answer-1@demo-bank.example>",
        References="<root@customer.example> <answer-1@demo-bank.example>")
    outcome = read(reply)
    ticket = outcome.ticket
    assert ticket.ticket_id == first.ticket_id  # one thread, one ticket
    assert ticket.body == "It is still declined." and list(ticket.origin.intake_flags) == ["quoted_text_stripped"]
    assert ticket.origin.external_id == "<root@customer.example>" and ticket.origin.message_id == "<m3@customer.example>"
    assert list(ticket.origin.references) == ["<root@customer.example>", "<answer-1@demo-bank.example>"]
    assert outcome.delivery == "<m3@customer.example>"
    only_in_reply_to = read(mail(message_id="<m4@customer.example>", In_Reply_To="<root@customer.example>")).ticket
    assert only_in_reply_to.ticket_id == first.ticket_id


def test_an_outlook_reply_loses_the_original_message():
    ticket = read(mail("Thanks, that worked.\n\n-----Original Message-----\nFrom: Demo Bank\nSent: Monday\n\nTry again.")).ticket
    assert ticket.body == "Thanks, that worked." and "quoted_text_stripped" in ticket.origin.intake_flags


def test_a_mail_without_readable_text_is_still_a_ticket():
    message = mail("", subject="Statement attached")
    message.clear_content()
    message.set_content(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="statement.pdf")
    ticket = read(message).ticket
    assert (ticket.subject, ticket.body) == ("Statement attached", "")
    assert list(ticket.origin.intake_flags) == ["no_readable_text"] and ticket.origin.attachments == 1


def test_attachments_are_counted_and_an_oversized_one_flagged():
    message = mail("See the screenshots.")
    message.add_attachment(b"\x89PNG small", maintype="image", subtype="png", filename="a.png")
    message.add_attachment(b"x" * (MAX_ATTACHMENT_BYTES + 1), maintype="application", subtype="zip", filename="logs.zip")
    ticket = read(message).ticket
    assert ticket.body == "See the screenshots." and ticket.origin.attachments == 2
    assert list(ticket.origin.intake_flags) == ["attachment_oversized"]


def test_a_body_over_the_field_limit_is_cut_and_flagged():
    ticket = read(mail("word " * (MAX_FIELD_CHARS // 4))).ticket
    assert len(ticket.body) == MAX_FIELD_CHARS and list(ticket.origin.intake_flags) == ["body_truncated"]


def test_a_mail_without_message_id_is_named_by_its_bytes():
    raw = mail(message_id="").as_bytes()
    first, again = read(raw), read(raw)
    assert first.delivery == again.delivery and first.delivery.endswith("@supportflow.invalid>")
    assert first.ticket.ticket_id == again.ticket.ticket_id


@pytest.mark.parametrize("headers, envelope_sender", [
    ({"Auto_Submitted": "auto-replied"}, None),
    ({"Precedence": "bulk"}, None),
    ({"X_Autoreply": "yes"}, None),
    ({}, ""),  # a bounce: MAIL FROM:<>
])
def test_mail_no_person_wrote_is_ignored(headers, envelope_sender):
    outcome = ticket_from_mail(mail(**headers).as_bytes(), tenant=TENANT, mailbox=MAILBOX, envelope_sender=envelope_sender)
    assert isinstance(outcome, Ignored)


def test_our_own_mail_coming_back_is_ignored():
    message = mail()
    message.replace_header("From", f"Demo Bank <{MAILBOX}>")
    assert isinstance(ticket_from_mail(message.as_bytes(), tenant=TENANT, mailbox=MAILBOX), Ignored)


# --- the SMTP handler -----------------------------------------------------------------------------


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("supportflow_gateway_channel_refused_total",
                                     {"provider": "email", "reason": reason}) or 0.0


def NO_OUTCOMES(tenant, outcomes):  # noqa: N802 - a publisher for mail that must carry none
    assert not outcomes


def test_rcpt_must_be_a_tenant_mailbox():
    intake = MailIntake(CHANNELS, lambda ticket, event_id: None, NO_OUTCOMES)
    envelope = SimpleNamespace(rcpt_tos=[])
    before = refused("unknown_tenant")
    assert asyncio.run(intake.handle_RCPT(None, None, envelope, "nobody@demo-bank.example", [])).startswith("550")
    assert refused("unknown_tenant") == before + 1
    assert asyncio.run(intake.handle_RCPT(None, None, envelope, "Support@Demo-Bank.example", [])).startswith("250")
    assert envelope.rcpt_tos == ["Support@Demo-Bank.example"]


def test_a_mail_is_acknowledged_only_once_published():
    published: list[tuple[tk.Ticket, str]] = []
    intake = MailIntake(CHANNELS, lambda ticket, event_id: published.append((ticket, event_id)), NO_OUTCOMES)
    reply = intake.accept_mail(mail().as_bytes(), "ana@customer.example", [MAILBOX, "help@other-bank.example"])
    assert reply.startswith("250 ")
    assert sorted(t.tenant_id for t, _ in published) == ["demo-bank", "other-bank"]  # one ticket per tenant
    assert {t.origin.mailbox for t, _ in published} == {MAILBOX, "help@other-bank.example"}
    assert all(event_id == delivery_uuid("email", t.tenant_id, "<m1@customer.example>") for t, event_id in published)


def test_a_mail_kafka_did_not_take_is_451_so_the_sender_retries():
    def down(ticket, event_id):
        raise TransientError("broker down")

    before = refused("broker_unavailable")
    assert MailIntake(CHANNELS, down, NO_OUTCOMES).accept_mail(mail().as_bytes(), "a@b.example", [MAILBOX]).startswith("451 ")
    assert refused("broker_unavailable") == before + 1


def test_an_auto_reply_is_taken_and_dropped():
    published = []
    reply = MailIntake(CHANNELS, lambda t, e: published.append(t), NO_OUTCOMES).accept_mail(
        mail(Auto_Submitted="auto-replied").as_bytes(), "ooo@customer.example", [MAILBOX])
    assert reply.startswith("250 ") and "not a ticket" in reply and published == []


# --- a reply on a thread is an outcome too -------------------------------------------------------


def test_a_threaded_mail_is_a_customer_reply_counting_the_support_sides_mails_before_it():
    from services.gateway.channels.email_message import reply_outcome

    first = read(mail())
    assert reply_outcome(first).outcomes == () and reply_outcome(first).ignored
    # The customer answers the second of two replies the support mailbox sent on the thread.
    thread = "<m1@customer.example> <sf-abc@demo-bank.example> <m2@customer.example> <sf-def@demo-bank.example>"
    answer = read(mail("I already explained this in my first mail.", message_id="<m3@customer.example>",
                       In_Reply_To="<sf-def@demo-bank.example>", References=thread))
    [outcome] = reply_outcome(answer).outcomes
    event = outcome.feedback
    assert event.ticket_id == first.ticket.ticket_id == answer.ticket.ticket_id  # it joins the ticket's id
    assert (event.source, event.channel) == ("email", tk.CHANNEL_EMAIL)
    assert event.customer_reply.text == "I already explained this in my first mail."
    assert event.customer_reply.agent_turns_before == 2
    # The same mail resent is the same event: its Message-ID names the delivery.
    assert outcome.event_id(TENANT) == delivery_uuid("email-outcome-customer_reply", TENANT, "<m3@customer.example>")


def test_a_threaded_mail_publishes_its_ticket_and_its_reply_outcome_together():
    tickets, outcomes = [], []
    intake = MailIntake(CHANNELS, lambda ticket, event_id: tickets.append(ticket),
                        lambda tenant, found: outcomes.extend((tenant, o) for o in found))
    reply = intake.accept_mail(mail("Still waiting.", message_id="<m2@customer.example>",
                                    In_Reply_To="<sf-1@demo-bank.example>",
                                    References="<m1@customer.example> <sf-1@demo-bank.example>").as_bytes(),
                               "ana@customer.example", [MAILBOX])
    assert reply.startswith("250 ")
    [ticket] = tickets
    [(tenant, outcome)] = outcomes
    assert tenant == TENANT and outcome.ticket_id == ticket.ticket_id
    assert outcome.feedback.customer_reply.agent_turns_before == 1


def test_a_threaded_mail_whose_outcome_kafka_did_not_take_is_451():
    def down(tenant, found):
        raise TransientError("broker down")

    intake = MailIntake(CHANNELS, lambda ticket, event_id: None, down)
    assert intake.accept_mail(mail(In_Reply_To="<sf-1@demo-bank.example>").as_bytes(), "a@b.example",
                              [MAILBOX]).startswith("451 ")
