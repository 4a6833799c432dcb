"""The policy-claim ledger: every policy quantity in a draft must be backed by a cited canonical
passage, or the sentence carrying it goes.

A hallucinated fee, refund window or limit is a compliance incident, so the check is deliberately
literal: a claim is *verified* only when the same quantity, with a compatible unit, appears in a
cited passage marked `is_policy` (canonical), on a line that shares at least one content word with
the claim (so "$10" backed by a "$10 graduation bonus" does not verify "a $10 wire fee").
Numbers are normalised first: "$20", "20 USD" and "twenty dollars" are one amount; "1,000" is
1000; "30 days", "30-day" and "thirty days" are one duration.

What counts as a policy quantity: money (fee, amount, limit), percentages and rates, durations
(days, hours, weeks, months, years; "business" days are days), ages, times of day and "24/7"
(service levels), dates, multipliers ("2x points"), ordinals ("the 15th") and any other number
(a count or limit). Not claims: citation markers, list numbering, identifiers glued to letters
(`open_bank_account_4821`, `P2P`), numbers after "step"/"code"/"section"..., and identifiers the
customer wrote themselves (their card or phone number). Other phone-shaped numbers are "contact"
claims and need backing like anything else: an invented hotline is as bad as an invented fee.

A sentence with an unverified claim is removed (its claims stay in the ledger, unverified, for
the reviewer). The draft is BLOCKED when its answer cannot stand without what was removed: no
answer sentence is left, or more than half of them went.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.lexical import content_words, named_words
from services.drafter.reply import ReplyParts, Sentence, SourceRef, edit_slots, text_slots

CLAIM_KINDS = (
    "fee", "amount", "limit", "percentage", "rate", "days", "hours", "duration", "sla", "warranty",
    "eligibility", "date", "count", "contact",
)

# --- numbers -------------------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))

DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
WORDS = rf"(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*"
SCALE = r"(?:\s*(?:thousand|million|billion)\b|[kK]\b)?"
NUMBER = rf"(?:(?<![\w.,])(?:{DIGITS})|\b{WORDS}\b)"
AMOUNT = rf"(?:{NUMBER}{SCALE})"


def words_to_number(text: str) -> float | None:
    """'thirty' -> 30, 'one hundred and twenty-five' -> 125, 'two thousand' -> 2000."""
    total, current, seen = 0, 0, False
    for word in re.split(r"[\s-]+", text.lower().strip()):
        if not word or word == "and":
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
        else:
            return None
        seen = True
    return float(total + current) if seen else None


def parse_number(text: str) -> float | None:
    """A number as written in a policy text: digits with separators, words, a scale suffix."""
    text = text.strip()
    scale = 1.0
    lowered = text.lower()
    for word, factor in (("thousand", 1e3), ("million", 1e6), ("billion", 1e9)):
        if lowered.endswith(word) and re.search(r"\d", lowered):
            text, scale = text[: -len(word)].strip(), factor
            break
    if text[-1:] in "kK" and re.search(r"\d", text):
        text, scale = text[:-1], 1e3
    if re.fullmatch(DIGITS, text):
        return float(text.replace(",", "")) * scale
    value = words_to_number(text)
    return None if value is None else value * scale


# --- quantities ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str  # USD EUR GBP percent second minute hour day week month year age time 24/7 date year_literal
    # multiplier ordinal count contact
    text: str
    start: int
    end: int


_CURRENCY_CODES = {"$": "USD", "us$": "USD", "usd": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP"}
_CURRENCY_WORDS = {
    "dollar": "USD", "dollars": "USD", "usd": "USD", "cent": "USD", "cents": "USD",
    "euro": "EUR", "euros": "EUR", "eur": "EUR", "pound": "GBP", "pounds": "GBP", "gbp": "GBP",
}
_DURATION_UNITS = {
    "second": "second", "seconds": "second", "sec": "second", "secs": "second",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute",
    "hour": "hour", "hours": "hour", "hr": "hour", "hrs": "hour",
    "day": "day", "days": "day", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year", "yr": "year", "yrs": "year",
}
_MONTHS = {
    name: index
    for index, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
         ("nov", "november"), ("dec", "december")],
        start=1,
    )
    for name in names
}

_CURRENCY_PREFIX = re.compile(rf"(?P<cur>US\$|\$|€|£|\bUSD|\bEUR|\bGBP)\s?(?P<num>(?:{DIGITS}){SCALE})", re.I)
_CURRENCY_SUFFIX = re.compile(rf"(?P<num>{AMOUNT})\s?(?P<cur>USD|EUR|GBP|dollars?|euros?|pounds?|cents?)\b", re.I)
_PERCENT = re.compile(rf"(?P<num>{NUMBER})\s?(?:%|percent\b|per\s?cent\b|percentage points?\b)", re.I)
_AGE = re.compile(
    rf"(?P<num>{NUMBER})\s*(?:-\s*|\s)?(?:years?|yrs?)(?:\s*-\s*|\s+)(?:old|of age)\b"
    rf"|\bage[ds]?\b(?:\s+of)?[^\d.;\n]{{0,25}}?(?P<num2>(?<![\w.,])\d+)(?!\.\d)\b"
    rf"|(?P<num3>(?<![\w.,])\d{{2}})\+(?!\w)",
    re.I,
)
_DURATION = re.compile(
    rf"(?P<num>{NUMBER})(?:\s*-\s*|\s+)(?:(?:calendar|business|working|banking)\s+)?"
    rf"(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|yrs?)(?:\(s\))?\b",
    re.I,
)
_TIME = re.compile(
    r"\b(?P<h>1[0-2]|0?[1-9])(?::(?P<m>[0-5]\d))?\s*(?P<ap>a\.?m\b\.?|p\.?m\b\.?)"
    r"|\b(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)\b",
    re.I,
)
_ALWAYS = re.compile(r"\b24\s?/\s?7\b|\b24\s?x\s?7\b", re.I)
_MONTH_DAY = re.compile(
    r"\b(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?\s+(?P<day>[0-3]?\d)(?:st|nd|rd|th)?\b"
    r"(?:,?\s+(?P<year>(?:19|20)\d{2})\b)?",
    re.I,
)
_ISO_DATE = re.compile(r"\b(?P<year>(?:19|20)\d{2})-(?P<month>[01]\d)-(?P<day>[0-3]\d)\b")
_YEAR = re.compile(r"(?<![\w$.,])(?:19|20)\d{2}(?![\w%]|\.\d|,\d)")
_MULTIPLIER = re.compile(rf"(?<![\w.,])(?P<num>{DIGITS})\s?[x×](?!\w)", re.I)
_ORDINAL = re.compile(r"(?<![\w.,])(?P<num>\d{1,2})(?:st|nd|rd|th)\b", re.I)
_PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[ .-]?|1[ .-])?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?![\w])"
    r"|(?<![\w.,])\d{9,19}(?![\w.,])"
    r"|(?<![\w.])\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?(?![\w])"
)
_BARE = re.compile(rf"(?P<num>{NUMBER}){SCALE}")

# Never claims: markers, placeholders, URLs, e-mail addresses, identifiers glued to letters.
_MASKS = (
    re.compile(r"\[(?:P?\d+|[A-Z]+_\d+)\]"),
    re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.I),
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    re.compile(r"\b(?=\w*[A-Za-z_])(?=\w*\d)(?!\d+(?:st|nd|rd|th|[xXkK]|s)\b)\w+\b"),
    re.compile(r"^\s*(?:[-*]\s*)?\d+[.)](?=\s)", re.M),  # list numbering
    re.compile(
        r"\b(?:step|code|section|chapter|part|page|item|phase|option|tier|level|version|form|question|"
        r"regulation|rule|line|box|no\.|number|#)\s*#?\s*\d+(?:\.\d+)?",
        re.I,
    ),
    re.compile(r"#\s?\d+"),
)

_FEE_WORDS = re.compile(r"\b(?:fees?|charge[sd]?|cost[s]?|price[sd]?|pricing|surcharges?|penalt(?:y|ies)|commission)\b", re.I)
_LIMIT_WORDS = re.compile(
    r"\b(?:limits?|maximum|minimum|max|min|up to|cap(?:ped|s)?|at least|at most|no more than|exceed\w*|"
    r"threshold|allowance|balance requirement|requires?|required)\b",
    re.I,
)
_RATE_WORDS = re.compile(r"\b(?:rates?|apy|apr|interest|cash ?back|yield|rewards?|points|bonus)\b", re.I)
_SLA_WORDS = re.compile(r"\b(?:respon[sd]\w*|repl(?:y|ies)|support|answer|resolve[sd]?|resolution|available)\b", re.I)
_WARRANTY_WORDS = re.compile(r"\b(?:warrant(?:y|ies)|guarantee[sd]?|coverage|insurance|protection)\b", re.I)


def _masked(text: str, customer_text: str) -> str:
    """`text` with non-claims blanked out (same length, so offsets stay valid)."""
    chars = list(text)

    def blank(start: int, end: int) -> None:
        for index in range(start, end):
            if chars[index] != "\n":
                chars[index] = " "

    for pattern in _MASKS:
        for match in pattern.finditer(text):
            blank(match.start(), match.end())
    if customer_text:
        own = {re.sub(r"\D", "", m.group()) for m in _PHONE.finditer(customer_text)}
        for match in _PHONE.finditer(text):
            if re.sub(r"\D", "", match.group()) in own:
                blank(match.start(), match.end())
    return "".join(chars)


def quantities(text: str, *, strict: bool = True, customer_text: str = "") -> list[Quantity]:
    """Every policy quantity in `text`, in order.

    `strict` is for drafts: a lone "one" is not read as a count there ("one of your cards"), while
    in canonical passages every number word counts, so that a passage's "ten free wires" can back
    a draft's "10 free wires".
    """
    scan = _masked(text, customer_text)
    taken = [False] * len(scan)
    found: list[Quantity] = []

    def take(start: int, end: int, value: float | None, unit: str) -> None:
        if value is None or any(taken[start:end]):
            return
        for index in range(start, end):
            taken[index] = True
        found.append(Quantity(value, unit, text[start:end].strip(), start, end))

    for match in _PHONE.finditer(scan):
        digits = re.sub(r"\D", "", match.group())
        if len(digits) >= 9:
            take(match.start(), match.end(), float(digits), "contact")
    for match in _ALWAYS.finditer(scan):
        take(match.start(), match.end(), 1.0, "24/7")
    for match in _CURRENCY_PREFIX.finditer(scan):
        take(match.start(), match.end(), parse_number(match["num"]), _CURRENCY_CODES[match["cur"].lower()])
    for match in _CURRENCY_SUFFIX.finditer(scan):
        value = parse_number(match["num"])
        word = match["cur"].lower()
        if value is not None and word.startswith("cent"):
            value /= 100
        take(match.start(), match.end(), value, _CURRENCY_WORDS[word])
    for match in _PERCENT.finditer(scan):
        take(match.start(), match.end(), parse_number(match["num"]), "percent")
    for match in _AGE.finditer(scan):
        raw = match["num"] or match["num2"] or match["num3"]
        take(match.start(), match.end(), parse_number(raw), "age")
    for match in _TIME.finditer(scan):
        if match["h24"]:
            minutes = int(match["h24"]) * 60 + int(match["m24"])
        else:
            hour = int(match["h"]) % 12 + (12 if match["ap"].lower().startswith("p") else 0)
            minutes = hour * 60 + int(match["m"] or 0)
        take(match.start(), match.end(), float(minutes), "time")
    for match in _DURATION.finditer(scan):
        take(match.start(), match.end(), parse_number(match["num"]), _DURATION_UNITS[match["unit"].lower()])
    for pattern in (_ISO_DATE, _MONTH_DAY):
        for match in pattern.finditer(scan):
            month = match["month"]
            month_number = int(month) if month.isdigit() else _MONTHS[month.lower()[:3] if month.lower()[:4] != "sept" else "sep"]
            take(match.start(), match.end(), float(month_number * 100 + int(match["day"])), "date")
    for match in _YEAR.finditer(scan):
        take(match.start(), match.end(), float(match.group()), "year_literal")
    for match in _MULTIPLIER.finditer(scan):
        take(match.start(), match.end(), parse_number(match["num"]), "multiplier")
    for match in _ORDINAL.finditer(scan):
        take(match.start(), match.end(), float(match["num"]), "ordinal")
    for match in _BARE.finditer(scan):
        raw = match.group()
        if strict and not re.search(r"\d", raw) and (parse_number(raw) or 0) < 2:
            continue
        take(match.start(), match.end(), parse_number(raw), "count")
    found.sort(key=lambda q: q.start)
    return found


_COMPATIBLE = {"age": {"age", "year"}, "year": {"year", "age"}, "ordinal": {"ordinal", "count"}}


def compatible(claim: Quantity, backing: Quantity) -> bool:
    """Same quantity, compatible unit."""
    units = _COMPATIBLE.get(claim.unit, {claim.unit})
    return backing.unit in units and abs(claim.value - backing.value) < 0.005


# --- claims --------------------------------------------------------------------------------------


def _window(text: str, start: int, words: int = 6) -> str:
    return " ".join(text[:start].split()[-words:])


def claim_kind(quantity: Quantity, sentence: str) -> str:
    before = _window(sentence, quantity.start)
    clause = claim_clause(quantity, sentence)
    unit = quantity.unit
    if unit == "contact":
        return "contact"
    if unit in {"USD", "EUR", "GBP"}:
        if _LIMIT_WORDS.search(before):
            return "limit"
        if _FEE_WORDS.search(before) or _FEE_WORDS.search(clause):
            return "fee"
        return "limit" if _LIMIT_WORDS.search(clause) else "amount"
    if unit == "percent":
        return "rate" if _RATE_WORDS.search(clause) else "percentage"
    if unit == "multiplier":
        return "rate"
    if unit == "age":
        return "eligibility"
    if unit in {"time", "24/7"}:
        return "sla"
    if unit in {"date", "year_literal", "ordinal"}:
        return "date"
    if unit in {"second", "minute", "hour", "day", "week", "month", "year"}:
        if _WARRANTY_WORDS.search(clause):
            return "warranty"
        if _SLA_WORDS.search(clause):
            return "sla"
        return {"day": "days", "hour": "hours", "minute": "hours", "second": "hours"}.get(unit, "duration")
    return "limit" if _LIMIT_WORDS.search(before) or _LIMIT_WORDS.search(clause) else "count"


def claim_clause(quantity: Quantity, sentence: str) -> str:
    """The part of `sentence` that states `quantity`: its clause, with the label before a colon."""
    bounds = [m.end() for m in re.finditer(r"[;:()]|,\s(?!\d{3}\b)|\s[-–—]\s", sentence[: quantity.start])]
    start = bounds[-1] if bounds else 0
    after = re.search(r"[;()]|,\s(?!\d{3}\b)|\s[-–—]\s|[.!?](?:\s|$)", sentence[quantity.end :])
    end = quantity.end + after.start() if after else len(sentence)
    clause = sentence[start:end].strip(" ,;:-()")
    if len(clause.split()) < 4 and start > 0:  # "Domestic outgoing wire: $10.00" keeps its label
        previous = [0, *bounds[:-1]][-1]
        clause = sentence[previous:end].strip(" ,;:-()")
    return clause


# --- canonical backing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _BackingLine:
    source: int
    passage: tk.EvidencePassage
    line: str
    context: frozenset[str]
    quantities: tuple[Quantity, ...]
    passage_words: frozenset[str]


def _backing_lines(parts: ReplyParts) -> dict[int, list[_BackingLine]]:
    """Lines of each canonical source with their quantities and context words."""
    result: dict[int, list[_BackingLine]] = {}
    for index, ref in enumerate(parts.sources):
        passage = ref.passage
        if not passage.is_policy:
            continue
        passage_words, lines = _canonical_lines(passage.title, passage.section, passage.text)
        result[index] = [_BackingLine(index, passage, line, context, found, passage_words)
                         for line, context, found in lines]
    return result


@functools.lru_cache(maxsize=512)
def _canonical_lines(title: str, section: str, text: str) -> tuple[
        frozenset[str], tuple[tuple[str, frozenset[str], tuple[Quantity, ...]], ...]]:
    """A canonical passage's words, and its lines that state quantities with their context words.
    Cached: the same policy passages back the drafts of ticket after ticket."""
    heading = set(content_words(f"{title} {section}"))
    passage_words = frozenset(heading | set(content_words(text)))
    lines = [line for line in text.splitlines() if line.strip()]
    table_header = ""
    backing = []
    for position, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("|") and not table_header:
            table_header = stripped
        elif not stripped.startswith("|"):
            table_header = ""
        previous = lines[position - 1] if position else ""
        context = heading | set(content_words(f"{previous} {line} {table_header}"))
        found = tuple(quantities(line, strict=False))
        if found:
            backing.append((stripped, frozenset(context), found))
    return passage_words, tuple(backing)


@dataclass(frozen=True)
class Check:
    quantity: Quantity
    kind: str
    clause: str
    backing: _BackingLine | None


def check_sentence(
    text: str,
    sources: Sequence[int],
    backing: dict[int, list[_BackingLine]],
    *,
    customer_text: str = "",
    exempt_names: frozenset[str] = frozenset(),
) -> list[Check]:
    """Each claim in `text` and the canonical line (among `sources`) that backs it, if any.

    A claim that names something ("the Blue Account fee is...") is backed only by a passage that
    names it too: a Gold Account passage stating the same figure does not make it true of Blue.
    """
    checks = []
    names = named_words(text) - exempt_names
    for quantity in quantities(text, customer_text=customer_text):
        clause = claim_clause(quantity, text)
        words = set(content_words(re.sub(re.escape(quantity.text), " ", clause)))
        found = None
        for source in sources:
            for line in backing.get(source, []):
                if not any(compatible(quantity, q) for q in line.quantities):
                    continue
                if words and not words & line.context:
                    continue
                if not names <= line.passage_words:
                    continue
                found = line
                break
            if found:
                break
        checks.append(Check(quantity, claim_kind(quantity, text), clause, found))
    return checks


# --- the ledger ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerOutcome:
    parts: ReplyParts  # unverifiable sentences removed
    ledger: tuple[tk.PolicyClaim, ...]
    removed: tuple[str, ...]  # the sentences taken out
    blocked: bool
    block_reason: str


def check_policy_claims(parts: ReplyParts, *, customer_text: str = "") -> LedgerOutcome:
    """Verify every policy claim in `parts` against its cited canonical sources.

    An answer sentence is checked against the sources it cites, or, when it cites none, against
    every source of the reply; other text (uncertainty, next step, templates) against every source.
    `customer_text` is the ticket: identifiers the customer gave are theirs to hear back.
    """
    backing = _backing_lines(parts)
    every_source = tuple(range(len(parts.sources)))
    # The tenant's own name (in its greeting and sign-off) is not a product the passage must name.
    exempt = frozenset(named_words(f"{parts.greeting}\n{parts.closing}", sentence_initial=True))
    ledger: list[tk.PolicyClaim] = []
    edits: dict[tuple[str, int], Sentence | str | None] = {}
    removed: list[str] = []
    for slot in text_slots(parts):
        if slot.part == "evidence":
            continue  # account facts: checked against the findings (evidence_ledger.py), not the KB
        sources = slot.sources or every_source
        checks = check_sentence(slot.text, sources, backing, customer_text=customer_text, exempt_names=exempt)
        for check in checks:
            line = check.backing
            ledger.append(
                tk.PolicyClaim(
                    claim=check.clause,
                    kind=check.kind,
                    article_id=line.passage.article_id if line else "",
                    passage=line.line if line else "",
                    verified=line is not None,
                )
            )
        if any(check.backing is None for check in checks):
            edits[(slot.part, slot.index)] = None
            removed.append(slot.text)
    kept = edit_slots(parts, edits)
    factual = [s for s in parts.answer if not s.proposal]
    removed_answer = sum(1 for (part, index) in edits if part == "answer" and not parts.answer[index].proposal)
    blocked = bool(factual) and (removed_answer == len(factual) or removed_answer * 2 > len(factual))
    reason = ""
    if blocked:
        unverified = [c.claim for c in ledger if not c.verified]
        reason = "unverifiable policy claim(s): " + "; ".join(_dedupe(unverified))[:500]
    return LedgerOutcome(kept, tuple(ledger), tuple(removed), blocked, reason)


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


class PassageBacking:
    """One canonical passage's backing lines, computed once, to test many candidate sentences
    against it: the offline drafter skips sentences the ledger would remove anyway."""

    def __init__(self, passage: tk.EvidencePassage) -> None:
        self._backing = _backing_lines(ReplyParts(status=tk.DRAFT_STATUS_READY, generator="", sources=(SourceRef(passage),)))

    def backs(self, text: str) -> bool:
        """Whether every claim in `text` would verify against the passage."""
        return all(check.backing is not None for check in check_sentence(text, (0,), self._backing))

    def backing_lines(self, text: str) -> tuple[str, ...]:
        """The passage's lines that back the claims in `text` (empty when one of them is not)."""
        checks = check_sentence(text, (0,), self._backing)
        if any(check.backing is None for check in checks):
            return ()
        return tuple(dict.fromkeys(check.backing.line for check in checks))
