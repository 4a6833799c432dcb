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
"""

from __future__ import annotations

import re

_ASKS_HOW = re.compile(
    r"\bhow (?:do|can|should|would|could|may|might) (?:i|we|one|you)\b(?: (?:go about|be able to|possibly|actually))?"
    r" (?P<a>[a-z]+)"
    r"|\bhow to (?:go about )?(?P<b>[a-z]+)"
    r"|\b(?:help|assist) (?:me |us )?(?:with |to |in )?(?P<c>[a-z]+ing)\b"
    r"|\bwhat (?:are the |is the )?steps? (?:to|for) (?P<d>[a-z]+)",
    re.I,
)
# Verbs a passage can serve in too many ways to check, and words the patterns above can catch that
# are not actions.
_TOO_GENERAL = frozenset(
    "get getting do doing make making use using know knowing find finding see seeing have having go going be "
    "being tell telling say ask asking look looking try trying start starting handle handling deal dealing "
    "fix fixing resolve resolving solve solving sort proceed proceeding this that it my the a an you your "
    "much many long often soon".split()
)
_SUFFIX = re.compile(r"(?:ing|ed|es|e|s)$")


def asked_action(question: str) -> str | None:
    """The verb of the action a question asks how to do, as asked ("ordering"), or None."""
    match = _ASKS_HOW.search(question)
    if match is None:
        return None
    verb = next(group for group in match.groups() if group).lower()
    return None if verb in _TOO_GENERAL or len(verb) < 3 else verb


def tells_how(text: str, action: str) -> bool:
    """True when `text` tells the reader to do `action` (a verb in any form): its base form starting
    a sentence or list item or after "you can", "to", "please", "then"...; "by ...ing"; "can be
    ...ed"."""
    stem = _SUFFIX.sub("", action)
    stem = re.escape(stem if len(stem) >= 3 else action)
    if stem.endswith("y"):  # verify, verified
        stem = stem[:-1] + "(?:y|i)"
    base, ing, done = (rf"{stem}{ending}\b" for ending in ("e?", "(?:t|n|l)?ing", "(?:t|n|l)?e?d"))
    instruction = re.compile(
        r"(?:(?:^|[.;:!?>•*\-–(\n]\s*|\b(?:you can|you may|you'll need to|you need to|you must|you should"
        r"|you will need to|to|please|simply|just|then|and|or|first|also|can|may|must|should|will)\s+)"
        r"(?:(?:also|easily|quickly|simply|first|then|always|now|still) )?" + base
        + r"|\bby " + ing
        + r"|\b(?:can|may|must|should|will|is|are) (?:also )?be " + done + ")",
        re.I,
    )
    return bool(instruction.search(text))
