"""Which way money moves in a text: into the customer's account or out of it. Pure.

Sending and receiving are the near miss a support knowledge base invites most: "What does it cost
to receive a SEPA transfer?" retrieves the article on outgoing SEPA wires, whose every number is
right and beside the point. The offline drafter judges a reply off the question when every
passage it quotes that names a direction names the other one.

A direction counts only in a text that talks about moving money (a transfer, a wire, a payment,
funds), so "I have not received my card" and "cards are sent within 5 days" have none. A text that
names both directions ("I sent money and it was not received") has none either: it is about the
whole journey.

The words are data: `money_direction` in answer_checks.yaml, overridable per tenant.
"""

from __future__ import annotations

import re
from enum import Enum

from services.drafter.answer_lexicon import AnswerLexicon, default_lexicon


class Direction(Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


# Sent to the customer ("my friend sent me money") or to the bank ("I sent you a cheque").
_SENT_TO_US = r"sen(t|ds?) (\w+ ){0,2}(to )?(me|you|us)"
# "Sent to me" is incoming, not outgoing.
_SENT_TO_US_PHRASE = re.compile(rf"\b({_SENT_TO_US})\b", re.I)


class MoneyDirectionReader:
    """Reads a text's direction with the lexicon's `money_direction` lists: `money` (a text moves
    money only when it names some), `incoming`, `outgoing`, and `not_money` (what can be received
    or sent without moving money: "I received an error message")."""

    def __init__(self, lexicon: AnswerLexicon) -> None:
        def alternatives(key: str) -> str:
            return "|".join(lexicon.entries("money_direction", key))

        self._money = re.compile(rf"\b({alternatives('money')})\b", re.I)
        self._incoming = re.compile(rf"\b({alternatives('incoming')}|{_SENT_TO_US})\b", re.I)
        self._outgoing = re.compile(rf"\b({alternatives('outgoing')})\b", re.I)
        self._not_money = re.compile(
            r"\b(receiv\w*|sen(t|ds?)|got|get) (a |an |the |this |that |my |your )?(\w+ )?"
            rf"({alternatives('not_money')})\b",
            re.I,
        )

    def direction(self, text: str) -> Direction | None:
        """INCOMING or OUTGOING when `text` moves money one way only; None otherwise."""
        if not self._money.search(text):
            return None
        text = self._not_money.sub(" ", text)
        incoming = bool(self._incoming.search(text))
        outgoing = bool(self._outgoing.search(_SENT_TO_US_PHRASE.sub(" ", text)))
        if incoming == outgoing:
            return None
        return Direction.INCOMING if incoming else Direction.OUTGOING


_DEFAULT = MoneyDirectionReader(default_lexicon())


def money_direction(text: str) -> Direction | None:
    """INCOMING or OUTGOING when `text` moves money one way only (the default lexicon); None otherwise."""
    return _DEFAULT.direction(text)
