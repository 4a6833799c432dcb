"""The evidence check: every account fact a draft states must be carried by a finding of the
ticket's investigation, the way every policy figure must be carried by a canonical passage
(policy_ledger.py).

A draft's evidence lines (`ReplyParts.evidence`: what the customer's own records show) are read
for the facts a reader would act on:

- amounts and other numbers ("120.00", "1,250", the card's last digits);
- dates ("3 December", "December 3rd, 2026", "2026-12-03") and times of day ("09:12");
- references: tokens mixing letters and digits ("TRF-88213", "ref a41c9");
- statuses: a word that is the value of a finding's status or state fact ("held", "frozen"), so
  "the transfer is pending" cannot stand when the transfer's record says it is held.

Each line is matched to the one available finding that carries most of its facts (its summary,
its facts' values, its record id and the time it was observed); a fact that finding does not carry
is unverified: a line stating an amount of one transfer and the status of another is wrong even if
both exist. A line with an unverified fact is removed (its facts stay in the ledger, unverified,
for the reviewer); the draft is BLOCKED when every evidence line went, or more than half of them.

Every checked fact is recorded in the draft's ledger as a PolicyClaim of kind "evidence" whose
`article_id` is the finding's record id and whose `passage` is the finding's summary.

Only the findings a customer may be told are stated or checked (`customer_findings`): a finding
the playbook marks internal (the bank's own deploys, say) reaches the agents through the packet,
never a reply.

Only the evidence lines are read here. The help-center answer is checked by the policy ledger,
which refuses any figure no canonical passage carries, so an account figure slipped into an answer
sentence is removed there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable, Sequence

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.reply import ReplyParts, Sentence, edit_slots

EVIDENCE_KIND = "evidence"  # PolicyClaim.kind of a checked evidence fact
FACT_KINDS = ("amount", "date", "time", "reference", "status")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
         ("nov", "november"), ("dec", "december")],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
_DATES = (
    re.compile(rf"\b{_YEAR}-(?P<month>[01]\d)-(?P<day>[0-3]\d)(?:[T ](?P<hour>[0-2]\d):(?P<minute>[0-5]\d)(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?", re.I),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b", re.I),
    re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b", re.I),
)
_TIME = re.compile(r"\b(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)\b")
_REFERENCE = re.compile(r"(?<![\w-])(?=[\w-]*[A-Za-z])(?=[\w-]*\d)[A-Za-z0-9][\w-]*[A-Za-z0-9](?![\w-])")
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w]|[.,]\d)|(?<![\w.,])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
_STATUS_KEYS = re.compile(r"status|state", re.I)


@dataclass(frozen=True)
class EvidenceFact:
    kind: str  # one of FACT_KINDS
    text: str  # as written
    key: str  # normalised, comparable across spellings


def _month_number(month: str) -> int:
    return int(month) if month.isdigit() else _MONTHS[month.lower().rstrip(".")]


def _number_key(text: str) -> str | None:
    try:
        return str(Decimal(text.replace(",", "")).normalize())
    except InvalidOperation:
        return None


def facts_in(text: str, statuses: Iterable[str] = ()) -> list[EvidenceFact]:
    """The checkable facts of `text`. `statuses` are the status words the findings use: only those
    are read as status claims (a draft's other words are not facts)."""
    found: list[EvidenceFact] = []
    taken = [False] * len(text)

    def take(match: re.Match[str], kind: str, key: str) -> None:
        if any(taken[match.start():match.end()]):
            return
        for index in range(match.start(), match.end()):
            taken[index] = True
        found.append(EvidenceFact(kind, match.group().strip(), key))

    for pattern in _DATES:
        for match in pattern.finditer(text):
            day = int(match["day"])
            if 1 <= day <= 31:
                take(match, "date", f"{_month_number(match['month']):02d}-{day:02d}")
                groups = match.groupdict()
                if groups.get("hour"):
                    found.append(EvidenceFact("time", f"{match['hour']}:{match['minute']}",
                                              f"{int(match['hour']):02d}:{match['minute']}"))
    for match in _TIME.finditer(text):
        take(match, "time", f"{int(match['hour']):02d}:{match['minute']}")
    for match in _REFERENCE.finditer(text):
        take(match, "reference", match.group().lower())
    for match in _NUMBER.finditer(text):
        key = _number_key(match.group())
        if key is not None:
            take(match, "amount", key)
    lowered = text.lower()
    for status in sorted({s.strip().lower() for s in statuses if s.strip()}, key=len, reverse=True):
        for match in re.finditer(rf"(?<!\w){re.escape(status)}(?!\w)", lowered):
            take(match, "status", status)
    return found


def customer_findings(investigation: ev.Investigation) -> list[ev.Finding]:
    """The findings a reply to the customer may state: available, worded, and not internal."""
    return [f for f in investigation.findings if f.available and f.summary.strip() and not f.internal]


def status_words(findings: Iterable[ev.Finding]) -> set[str]:
    """The values of the findings' status and state facts ("held", "frozen", "pending")."""
    words = set()
    for finding in findings:
        for key, value in finding.facts.items():
            if _STATUS_KEYS.search(key) and value.strip() and len(value.split()) <= 3:
                words.add(value.strip().lower().replace("_", " "))
    return words


def carried_by(finding: ev.Finding, statuses: Iterable[str]) -> set[tuple[str, str]]:
    """(kind, key) of every fact `finding` carries: in its summary, its facts' values, its record
    id, and the time it was observed."""
    texts = [finding.summary, finding.record_id, *finding.facts.values(),
             *(value.replace("_", " ") for value in finding.facts.values())]
    if finding.HasField("observed_at") and finding.observed_at.seconds:
        texts.append(finding.observed_at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ"))
    carried = {(fact.kind, fact.key) for text in texts if text for fact in facts_in(text, statuses)}
    # A record id is a reference even when it is all digits or all letters.
    if finding.record_id.strip():
        carried.add(("reference", finding.record_id.strip().lower()))
    for value in finding.facts.values():
        key = _number_key(value.strip()) if re.fullmatch(r"[\d,]+(?:\.\d+)?", value.strip()) else None
        if key is not None:
            carried.add(("amount", key))
    return carried


@dataclass(frozen=True)
class LineCheck:
    text: str
    facts: tuple[EvidenceFact, ...]
    finding: ev.Finding | None  # the finding the line is matched to
    unverified: tuple[EvidenceFact, ...]


def check_line(text: str, findings: Sequence[ev.Finding], statuses: Iterable[str]) -> LineCheck:
    statuses = tuple(statuses)
    facts = tuple(facts_in(text, statuses))
    best: ev.Finding | None = None
    best_carried: set[tuple[str, str]] = set()
    best_count = -1
    for finding in findings:
        carried = carried_by(finding, statuses)
        count = sum(1 for fact in facts if (fact.kind, fact.key) in carried)
        if count > best_count:
            best, best_carried, best_count = finding, carried, count
    unverified = tuple(fact for fact in facts if (fact.kind, fact.key) not in best_carried)
    return LineCheck(text, facts, best, unverified)


@dataclass(frozen=True)
class EvidenceOutcome:
    parts: ReplyParts  # lines with an unverified fact removed
    ledger: tuple[tk.PolicyClaim, ...]
    removed: tuple[str, ...]
    blocked: bool
    block_reason: str


def check_evidence_facts(parts: ReplyParts) -> EvidenceOutcome:
    """Verify every fact of the draft's evidence lines against the available findings."""
    findings = [finding for finding in parts.findings if finding.available and not finding.internal]
    statuses = status_words(findings)
    ledger: list[tk.PolicyClaim] = []
    edits: dict[tuple[str, int], Sentence | str | None] = {}
    removed: list[str] = []
    for index, text in enumerate(parts.evidence):
        check = check_line(text, findings, statuses)
        for fact in check.facts:
            verified = fact not in check.unverified
            ledger.append(tk.PolicyClaim(
                claim=f"{fact.kind} {fact.text}: {text}"[:300],
                kind=EVIDENCE_KIND,
                article_id=(check.finding.record_id or f"{check.finding.source}:{check.finding.lookup}")
                if check.finding is not None and verified else "",
                passage=check.finding.summary if check.finding is not None and verified else "",
                verified=verified,
            ))
        if check.unverified or not findings:  # with nothing found, nothing about the account can be said
            edits[("evidence", index)] = None
            removed.append(text)
    kept = edit_slots(parts, edits)
    if not kept.evidence and kept.evidence_lead_in:
        kept = kept.replace(evidence_lead_in="")
    stated = len(parts.evidence)
    blocked = bool(stated) and (len(removed) == stated or len(removed) * 2 > stated)
    reason = ""
    if blocked:
        wrong = [claim.claim for claim in ledger if not claim.verified]
        reason = "evidence fact(s) no finding carries: " + "; ".join(dict.fromkeys(wrong))[:500]
    return EvidenceOutcome(kept, tuple(ledger), tuple(removed), blocked, reason)
