"""The overreach guard: a draft never says an action was taken, or promises to take one, unless the
action was actually executed for this ticket.

"Your refund has been issued", "I have cancelled your card", "we'll reset your password" are
statements about the customer's account that only an executed action (an `ActionRecorded` event
with status EXECUTED) can make true. Without one, the sentence is rewritten to a proposal that
asks for confirmation ("I can request a refund for you once you confirm."), or removed when no
allow-listed action could fulfil it. Conditional sentences ("once your refund has been processed,
it shows within...") describe a process, not an action, and are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.drafter.reply import ReplyParts, Sentence, edit_slots, text_slots

# Action kinds: the escalator's tool names where a tool exists (refund, password_reset,
# plan_change), descriptive names otherwise. Also the label values of the rewrite metric.
ACTION_KINDS = (
    "refund", "password_reset", "plan_change", "cancellation", "card_block", "card_replacement",
    "fee_waiver", "transfer", "escalation", "account_change", "other",
)

PROPOSALS = {
    "refund": "I can request a refund for you once you confirm.",
    "password_reset": "I can send you a password reset link once you confirm.",
    "plan_change": "I can change your plan once you confirm which plan you want.",
    "cancellation": "I can cancel it for you once you confirm.",
    "card_block": "I can freeze your card once you confirm.",
    "card_replacement": "I can order a replacement card once you confirm.",
    "fee_waiver": "I can ask for the charge to be reviewed once you confirm.",
    "escalation": "I can pass this to a specialist if you would like.",
    "account_change": "I can update your details once you confirm the change.",
}

_DONE = (
    r"issued|processed|refunded|credited|reversed|waived|cancell?ed|reset|changed|upgraded|downgraded|"
    r"switched|updated|frozen|froze|blocked|locked|unlocked|unblocked|unfrozen|closed|opened|ordered|sent|"
    r"shipped|initiated|submitted|escalated|forwarded|approved|replaced|reactivated|activated|removed|"
    r"disputed|filed|raised|transferred|paid|restored|deleted|completed"
)
_TO_DO = (
    r"issue|process|refund|credit|reverse|waive|cancel|reset|change|upgrade|downgrade|switch|update|"
    r"freeze|block|lock|unlock|unblock|unfreeze|close|open|order|send|ship|initiate|submit|escalate|"
    r"forward|approve|replace|reactivate|activate|remove|dispute|file|raise|transfer|pay|restore|delete"
)
_ADVERBS = r"(?:(?:just|now|already|successfully|also|immediately|gone ahead and|go ahead and)\s+)*"

_CLAIMS = (
    # I have refunded / we've cancelled / I issued
    re.compile(rf"\b(?:i|we)(?:\s*['’]ve|\s+have|\s+had)?\s+{_ADVERBS}(?P<verb>{_DONE})\b", re.I),
    # your refund has been issued / the transfer was cancelled / your card is now blocked
    re.compile(
        rf"\b(?:your|the|this|that|a|an)\s+(?:[\w-]+\s+){{0,4}}?"
        rf"(?:(?:has|have|had)\s+{_ADVERBS}been|was|were|is\s+now|are\s+now)\s+{_ADVERBS}(?P<verb>{_DONE})\b",
        re.I,
    ),
    # your refund is on its way
    re.compile(r"\b(?:is|are)\s+(?:now\s+)?on\s+(?:its|their|the)\s+way\b", re.I),
    # I'll refund you / we will cancel your card
    re.compile(
        rf"\b(?:i|we)(?:\s*['’]ll|\s+will|\s+shall|\s+am going to|\s+are going to)\s+{_ADVERBS}"
        rf"(?P<verb>{_TO_DO})\b(?=[^.!?]*\b(?:you|your)\b)",
        re.I,
    ),
)
_FIRST_PERSON = (_CLAIMS[0], _CLAIMS[3])
_CONDITION = re.compile(r"\b(?:if|once|when|whenever|after|until|before|unless|whether|as soon as)\b", re.I)
_NEGATION = re.compile(r"\b(?:not|never|no longer)\b|n['’]t\b", re.I)

_KIND_RULES = (
    ("refund", re.compile(r"\brefund\w*|\breimburs\w*|\bmoney back\b", re.I)),
    ("password_reset", re.compile(r"\bpass(?:word|code)s?\b|\bpin\b|\blog-?in details\b", re.I)),
    ("plan_change", re.compile(r"\bplan\b|\bsubscription\b|\bupgrad\w*|\bdowngrad\w*|\baccount type\b", re.I)),
    ("cancellation", re.compile(r"\bcancel\w*", re.I)),
    ("card_block", re.compile(r"\bcard\b.*\b(?:froze|frozen|freeze|block\w*|lock\w*)\b|\b(?:froze|frozen|freeze|block\w*|lock\w*)\b.*\bcard\b", re.I)),
    ("card_replacement", re.compile(r"\bcard\b.*\b(?:order|sent|send|ship|replac|reactivat)\w*|\b(?:order|send|sent|ship|replac)\w*\b.*\bcard\b", re.I)),
    ("fee_waiver", re.compile(r"\b(?:waive[ds]?|reversed?|credit(?:ed)?)\b", re.I)),
    ("transfer", re.compile(r"\b(?:transfer\w*|payment|wire|paid)\b", re.I)),
    ("escalation", re.compile(r"\b(?:escalat\w*|forward\w*)\b", re.I)),
    ("account_change", re.compile(r"\b(?:address|details|e-?mail|phone|name|account)\b", re.I)),
)


def action_claim(text: str, *, first_person_only: bool = False) -> str | None:
    """The kind of action `text` claims was taken (or promises), or None. `first_person_only`:
    only claims that we acted ("I have frozen...", "we'll cancel..."), for lines stating what the
    tenant's systems show, where "the card is frozen" is the record's own word."""
    for pattern in _FIRST_PERSON if first_person_only else _CLAIMS:
        for match in pattern.finditer(text):
            before = text[: match.start()]
            if _CONDITION.search(before) or _NEGATION.search(match.group()):
                continue
            for kind, rule in _KIND_RULES:
                if rule.search(text):
                    return kind
            return "other"
    return None


@dataclass(frozen=True)
class OverreachFinding:
    action: str
    sentence: str
    replacement: str  # "" when the sentence was removed


@dataclass(frozen=True)
class OverreachOutcome:
    parts: ReplyParts
    findings: tuple[OverreachFinding, ...]


def guard_overreach(parts: ReplyParts, executed_actions: frozenset[str] = frozenset()) -> OverreachOutcome:
    """Rewrite or remove every sentence claiming an action that is not in `executed_actions`."""
    edits: dict[tuple[str, int], Sentence | str | None] = {}
    findings: list[OverreachFinding] = []
    proposed: set[str] = set()
    for slot in text_slots(parts):
        # An evidence line says what the account's records show, checked against them
        # (evidence_ledger.py): only a claim that *we* acted is an overreach there.
        kind = action_claim(slot.text, first_person_only=slot.part == "evidence")
        if kind is None or kind in executed_actions:
            continue
        proposal = PROPOSALS.get(kind, "")
        if proposal and kind not in proposed:
            proposed.add(kind)
            edits[(slot.part, slot.index)] = Sentence(proposal, proposal=True)
        else:
            edits[(slot.part, slot.index)] = None
            proposal = ""
        findings.append(OverreachFinding(kind, slot.text, proposal))
    return OverreachOutcome(edit_slots(parts, edits), tuple(findings))
