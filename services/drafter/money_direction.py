"""Which way money moves in a text: into the customer's account or out of it. Pure.

Sending and receiving are the near miss a support knowledge base invites most: "What does it cost
to receive a SEPA transfer?" retrieves the article on outgoing SEPA wires, whose every number is
right and beside the point. The offline drafter judges a reply off the question when every
passage it quotes that names a direction names the other one.

A direction counts only in a text that talks about moving money (a transfer, a wire, a payment,
funds), so "I have not received my card" and "cards are sent within 5 days" have none. A text that
names both directions ("I sent money and it was not received") has none either: it is about the
whole journey.
"""

from __future__ import annotations

import re
from enum import Enum


class Direction(Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


# Sent to the customer ("my friend sent me money") or to the bank ("I sent you a cheque").
_SENT_TO_US = r"sen(t|ds?) (\w+ ){0,2}(to )?(me|you|us)"
_MONEY = re.compile(
    r"\b(transfers?|transferr\w*|wires?|payments?|paid|pay|payees?|money|funds?|deposits?|top[ -]?ups?|topp\w*"
    r"|sepa|swift|ach|remittances?|cash|cheques?|checks?|salary|refunds?|withdraw\w*)\b",
    re.I,
)
_INCOMING = re.compile(
    r"\b(receiv(e|es|ed|ing)|incoming|inbound|deposit\w*|credited|top[ -]?ups?|topp\w+ up|add\w* money"
    r"|(in)?to (my|your|the customer's) account|reach(es|ed)? (my|your) account|from (another|an external|a different) bank"
    r"|get paid|paid to me|" + _SENT_TO_US + r")\b",
    re.I,
)
_OUTGOING = re.compile(
    r"\b(send(ing|s)?|sent|outgoing|outbound|withdraw\w*|atms?|cash machines?|(take|took|get|got|taking) (\w+ )?(cash|money) out"
    r"|pay (someone|a friend|a bill|bills)"
    # Someone else receiving, or cash received from a machine, is money leaving the account.
    r"|(recipient|receiver|beneficiary|payee|seller|merchant|they|he|she|friend|landlord|person)\b[^.?!]{0,40}\b(receiv\w*|get|got)"
    r"|cash\b[^.?!]{0,20}\breceiv\w*|receiv\w*[^.?!]{0,25}\bcash"
    r"|to (an? )?(external|other|another|different) (bank|account)s?|transfer out|wire out)\b",
    re.I,
)
# Receiving something that is not money ("I received an error message") moves nothing.
_NOT_MONEY = re.compile(
    r"\b(receiv\w*|sen(t|ds?)|got|get) (a |an |the |this |that |my |your )?(\w+ )?"
    r"(messages?|errors?|notifications?|e-?mails?|texts?|letters?|codes?|cards?|pins?)\b",
    re.I,
)
# "Sent to me" is incoming, not outgoing.
_SENT_TO_US_PHRASE = re.compile(rf"\b({_SENT_TO_US})\b", re.I)


def money_direction(text: str) -> Direction | None:
    """INCOMING or OUTGOING when `text` moves money one way only; None otherwise."""
    if not _MONEY.search(text):
        return None
    text = _NOT_MONEY.sub(" ", text)
    incoming = bool(_INCOMING.search(text))
    outgoing = bool(_OUTGOING.search(_SENT_TO_US_PHRASE.sub(" ", text)))
    if incoming == outgoing:
        return None
    return Direction.INCOMING if incoming else Direction.OUTGOING
