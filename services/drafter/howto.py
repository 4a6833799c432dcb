"""Whether a question asks how to do something, and whether a text tells how to do it. Pure.

"How do I go about ordering a new bank card?" retrieves "What happens when you order a replacement
card": the passage shares every word that matters and says what comes after the order, not how to
place one. A customer who asks how to do something wants the step: the action itself, told as
something to do ("Order a card in the app", "you can order one by phone", "to order a card, ...",
"cards can be ordered online"). The offline drafter judges a reply off the question when the
question asks how to do an action and no passage it quotes tells the reader to do that action.

Both readings lean one way on purpose: the question side needs an explicit "how do I <verb>" (or
"help me <verb>"), and a verb too general to check ("get", "do", "use") is not checked; the passage
side accepts the verb in any form that reads as an instruction. A miss sends the draft on as
before; a false alarm only holds it for an agent.

The words are data: `how_to` in answer_checks.yaml, overridable per tenant.
"""

from __future__ import annotations

import re

from services.drafter.answer_lexicon import AnswerLexicon, default_lexicon

_ASKS_HOW = re.compile(
    r"\bhow (?:do|can|should|would|could|may|might) (?:i|we|one|you)\b(?: (?:go about|be able to|possibly|actually))?"
    r" (?P<a>[a-z]+)"
    r"|\bhow to (?:go about )?(?P<b>[a-z]+)"
    r"|\b(?:help|assist) (?:me |us )?(?:with |to |in )?(?P<c>[a-z]+ing)\b"
    r"|\bwhat (?:are the |is the )?steps? (?:to|for) (?P<d>[a-z]+)",
    re.I,
)
_SUFFIX = re.compile(r"(?:ing|ed|es|e|s)$")


class HowToReader:
    """Reads how-to questions and instructions with the lexicon's `how_to` lists: `too_general`
    (verbs a passage can serve in too many ways to check, and words the question patterns can catch
    that are not actions) and `instruction_cues` (what may come before the verb in an instruction:
    "you can", "to", "please", "then")."""

    def __init__(self, lexicon: AnswerLexicon) -> None:
        self._too_general = frozenset(lexicon.entries("how_to", "too_general"))
        self._cues = "|".join(lexicon.entries("how_to", "instruction_cues"))

    def asked_action(self, question: str) -> str | None:
        """The verb of the action a question asks how to do, as asked ("ordering"), or None."""
        match = _ASKS_HOW.search(question)
        if match is None:
            return None
        verb = next(group for group in match.groups() if group).lower()
        return None if verb in self._too_general or len(verb) < 3 else verb

    def tells_how(self, text: str, action: str) -> bool:
        """True when `text` tells the reader to do `action` (a verb in any form): its base form
        starting a sentence or list item or after an instruction cue ("you can", "to", "please",
        "then"...); "by ...ing"; "can be ...ed"."""
        stem = _SUFFIX.sub("", action)
        stem = re.escape(stem if len(stem) >= 3 else action)
        if stem.endswith("y"):  # verify, verified
            stem = stem[:-1] + "(?:y|i)"
        base, ing, done = (rf"{stem}{ending}\b" for ending in ("e?", "(?:t|n|l)?ing", "(?:t|n|l)?e?d"))
        instruction = re.compile(
            r"(?:(?:^|[.;:!?>•*\-–(\n]\s*|\b(?:" + self._cues + r")\s+)"
            r"(?:(?:also|easily|quickly|simply|first|then|always|now|still) )?" + base
            + r"|\bby " + ing
            + r"|\b(?:can|may|must|should|will|is|are) (?:also )?be " + done + ")",
            re.I,
        )
        return bool(instruction.search(text))


_DEFAULT = HowToReader(default_lexicon())


def asked_action(question: str) -> str | None:
    """The verb of the action a question asks how to do, as asked ("ordering"), or None (the
    default lexicon)."""
    return _DEFAULT.asked_action(question)


def tells_how(text: str, action: str) -> bool:
    """True when `text` tells the reader to do `action` (the default lexicon)."""
    return _DEFAULT.tells_how(text, action)
