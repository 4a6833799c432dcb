"""Whether a question waits for something that has not arrived, and whether a text says anything
about arrival. Pure.

"Why have I not received my virtual card yet?" retrieves the article on creating a virtual card,
and "My transfer still hasn't shown up" the one on making a transfer: the passages share every
word that matters and answer another question. A customer who is waiting wants to hear when,
how or whether the thing arrives: a delivery time, a processing status, what to do if it is lost.
The offline drafter judges a reply off the question when the question waits for something and no
passage it quotes says a word about delivery, timing or status.

Both readings lean one way on purpose: the question side asks for an explicit sign of waiting, the
passage side accepts any mention of time or delivery. A miss sends the draft on as before; a false
alarm only holds it for an agent.

The words are data: `waiting` in answer_checks.yaml, overridable per tenant.
"""

from __future__ import annotations

import re

from services.drafter.answer_lexicon import AnswerLexicon, default_lexicon


class ArrivalReader:
    """Reads waiting and arrival with the lexicon's `waiting` lists: `waiting` (something expected
    that has not come: "hasn't arrived", "did not receive", "still pending", "when will my card
    arrive"), `short_amount` and `not_ours` (not waiting for us: an amount short of what was asked,
    "did not receive the right amount of cash", or a merchant's goods, which the bank's knowledge
    base cannot track), and `arrival` (a passage that answers a waiting customer names a delivery,
    a time or a status)."""

    def __init__(self, lexicon: AnswerLexicon) -> None:
        def alternatives(key: str) -> str:
            return "|".join(lexicon.entries("waiting", key))

        self._not_yet = re.compile(alternatives("waiting"), re.I)
        self._not_waiting = re.compile(
            rf"\breceiv\w* (the |all |my )?({alternatives('short_amount')})\b|\b({alternatives('not_ours')})\b", re.I
        )
        self._arrival = re.compile(rf"\b({alternatives('arrival')})\b", re.I)

    def awaits(self, text: str) -> bool:
        """True when `text` says the writer is waiting for something that has not arrived yet."""
        return bool(self._not_yet.search(text)) and not self._not_waiting.search(text)

    def speaks_of(self, text: str) -> bool:
        """True when `text` says anything about delivery, timing or status."""
        return bool(self._arrival.search(text))


_DEFAULT = ArrivalReader(default_lexicon())


def awaits_arrival(text: str) -> bool:
    """True when `text` says the writer is waiting for something that has not arrived yet (the
    default lexicon)."""
    return _DEFAULT.awaits(text)


def speaks_of_arrival(text: str) -> bool:
    """True when `text` says anything about delivery, timing or status (the default lexicon)."""
    return _DEFAULT.speaks_of(text)
