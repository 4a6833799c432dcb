"""Intake normalization: a channel's ticket (subject, body, history, metadata) read into one
`NormalizedTicket`: a short problem statement, language, environment, what was attempted, expected
vs actual outcome, timing, identifiers and steps already tried.

Pure and heuristic on purpose: it runs on every ticket, must be fast and must never fail. Fields it
cannot fill stay empty, so downstream can tell "unknown" from a guess. Which identifiers are
*missing* depends on the intent, so it is computed after classification (`missing_identifiers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.classifier import input_guard

PROBLEM_STATEMENT_CHARS = 300
# What the intent model reads: sentence encoders see ~256 word pieces, and Banking77-style intents
# are stated in the first sentences of a message.
MODEL_TEXT_CHARS = 1_000
MAX_SENTENCES = 40
# What the structure extraction (sentences, identifiers, product, timing...) reads of the message
# and of each earlier turn. Problems are stated early; past this a message is a paste, and each of
# the ~60 extraction patterns costs ~1 ms per 4,000 characters. The injection scan reads it all.
EXTRACTION_CHARS = 4_000
UNDETERMINED_LANGUAGE = "und"

# --- cleaning: greetings, signatures, quoted replies, boilerplate -----------------------------------

_GREETING_LINE = re.compile(
    r"^\s*(?i:hi|hello|hey|hiya|dear|greetings|good\s+(?:morning|afternoon|evening)|to\s+whom\s+it\s+may\s+concern)"
    r"(?:\s+(?i:there|team|all|everyone|support|folks|guys|sir|madam|sir/madam|sir\s+or\s+madam)|\s+[A-Z][\w'.-]*){0,4}"
    r"\s*[,.!:;-]*\s*$"
)
_GREETING_PREFIX = re.compile(
    r"^\s*(?i:hi|hello|hey|hiya|dear|greetings|good\s+(?:morning|afternoon|evening))"
    r"(?:\s+(?i:there|team|all|everyone|support|folks|guys)|\s+[A-Z][\w'-]*){0,2}\s*[,.!:;-]+\s*"
)
_CLOSING_LINE = re.compile(
    r"^\s*(?:thanks?(?:\s+(?:you|so\s+much|a\s+lot|again|in\s+advance))*|many\s+thanks|cheers|best|regards|"
    r"kind\s+regards|best\s+regards|warm\s+regards|sincerely|yours(?:\s+(?:sincerely|truly|faithfully))?|"
    r"best\s+wishes|br|thx|ty)\s*[,.!]*\s*$",
    re.I,
)
_SENT_FROM = re.compile(r"^\s*(?:sent\s+from\s+my\s+\w+.*|get\s+outlook\s+for\s+\w+.*)$", re.I)
_QUOTE_HEADER = re.compile(
    r"^\s*(?:on\s.{4,120}\swrote:|-{2,}\s*original\s+message\s*-{2,}|-{2,}\s*forwarded\s+message\s*-{2,}|"
    r"from:\s.+|_{8,}|le\s.{4,120}\sa\s+écrit\s*:|am\s.{4,120}\sschrieb.*:)\s*$",
    re.I,
)
_BOILERPLATE = re.compile(
    r"(?:confidential.{0,200}(?:intended|recipient)|(?:intended|recipient).{0,200}confidential|"
    r"please\s+consider\s+the\s+environment|this\s+e-?mail\s+(?:and\s+any\s+attachments\s+)?(?:is|are|may\s+be)\s+"
    r"(?:confidential|privileged|intended)|unsubscribe|do\s+not\s+reply\s+to\s+this\s+(?:e-?mail|message))",
    re.I | re.S,
)
_PLEASANTRY = re.compile(
    r"^(?:thanks?(?:\s+you)?(?:\s+(?:so\s+much|a\s+lot|in\s+advance|for\s+(?:your|the)\s+help))*|many\s+thanks|"
    r"i\s+hope\s+(?:you(?:'re|\s+are)\s+well|this\s+(?:email|message)\s+finds\s+you\s+well)|hope\s+you(?:'re|\s+are)\s+well|"
    r"looking\s+forward\s+to\s+(?:your|hearing).*|have\s+a\s+(?:nice|good|great)\s+day)\s*[.!]*$",
    re.I,
)
# Subjects that say nothing about the problem.
_GENERIC_SUBJECT = re.compile(
    r"^(?:(?:re|fw|fwd|aw|tr)\s*:\s*)*(?:help(?:\s+(?:request|needed|please))?|problem|issue|question|urgent|"
    r"support(?:\s+request)?|request|complaint|inquiry|enquiry|hi|hello|hey|\(no subject\)|no subject|ticket|"
    r"contact(?:\s+form)?|feedback|query|assistance|important|asap)?\s*[!?.]*\s*$",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


def clean_message(body: str) -> str:
    """The customer's own words in `body`: no greeting, signature, quoted reply or disclaimer."""
    lines = body.split("\n")
    kept: list[str] = []
    for line in lines:
        if _QUOTE_HEADER.match(line) or line.strip() == "--":
            break  # everything below is a quoted reply, a forward or a signature block
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    while kept and (not kept[-1].strip() or _SENT_FROM.match(kept[-1])):
        kept.pop()
    kept = _drop_closing(kept)
    while kept and not kept[0].strip():
        kept.pop(0)
    if kept and _GREETING_LINE.match(kept[0]):
        kept.pop(0)
    paragraphs = re.split(r"\n\s*\n", "\n".join(kept))
    text = "\n\n".join(p.strip() for p in paragraphs if p.strip() and not _BOILERPLATE.search(p))
    return _GREETING_PREFIX.sub("", text, count=1).strip()


def _drop_closing(lines: list[str]) -> list[str]:
    """Cut a sign-off ("Thanks,\\nAna") and the few short name/title lines after it."""
    for index in range(len(lines) - 1, max(-1, len(lines) - 6), -1):
        if _CLOSING_LINE.match(lines[index]):
            tail = [line for line in lines[index + 1 :] if line.strip()]
            if len(tail) <= 3 and all(len(line.split()) <= 5 and not line.rstrip().endswith("?") for line in tail):
                return lines[:index]
    return lines


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def is_informative_subject(subject: str, body: str) -> bool:
    subject = subject.strip()
    if not subject or _GENERIC_SUBJECT.match(subject):
        return False
    # Email clients and forms often copy the first words of the body into the subject.
    return _squash(subject).rstrip(".!?…") not in _squash(body)


def _squash(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


# --- language -------------------------------------------------------------------------------------

# Function words, chosen so that each language has several of its own. Overlaps (e.g. "de") count
# for every language that has the word; the distinctive ones break the tie.
_STOPWORDS = {
    "en": "the and i my you your it this that to of on for with have has had not can can't cannot how what why "
    "when do does did don't didn't doesn't be been would should there from at or but if got am please still just "
    "we our they which about any isn't wasn't won't i'm i've it's is are was will an where who could also "
    "some than too very my as",
    "es": "el la los las que y un una por con para mi mis está esta del al pero más hola gracias porque cuando "
    "desde ayer qué puedo tengo hace sido muy su sus le es no se lo como ya yo",
    "de": "der die das und ist nicht ich mein meine meinen mit auf für von zu den dem ein eine einen es sie wir "
    "aber noch habe hat wurde kann bitte danke hallo warum wie bei aus auch schon nur keine kein gemacht",
    "fr": "le la les et est je mon ma mes pas ne une un des du pour avec sur dans que qui au aux bonjour merci ai "
    "j'ai c'est il elle nous vous ce cette mais ou très depuis hier pourquoi comment",
    "it": "il lo gli della del di che e è non per con una mio mia sono ho ha ciao grazie perché come anche ma "
    "questo questa nel alla dal",
    "pt": "o os as da do das dos e é não um uma com para por meu minha que em no na olá obrigado obrigada mas "
    "você foi está já ontem porque como eu",
    "nl": "de het een en is niet ik mijn met op van voor dat die er maar ook nog wel heb heeft kan geen hallo "
    "bedankt alstublieft waarom hoe gisteren naar bij",
}
_STOPWORD_SETS = {language: frozenset(words.split()) for language, words in _STOPWORDS.items()}
# Scripts that name their language well enough for routing (a Cyrillic ticket is not English).
_SCRIPTS = (
    ("ru", 0x0400, 0x04FF),
    ("el", 0x0370, 0x03FF),
    ("he", 0x0590, 0x05FF),
    ("ar", 0x0600, 0x06FF),
    ("hi", 0x0900, 0x097F),
    ("th", 0x0E00, 0x0E7F),
    ("ko", 0xAC00, 0xD7AF),
    ("ja", 0x3040, 0x30FF),
    ("zh", 0x4E00, 0x9FFF),
)
_FIRST_SCRIPT_CODE = min(low for _, low, _ in _SCRIPTS)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


@dataclass(frozen=True)
class DetectedLanguage:
    code: str  # ISO 639-1, or "und"
    confident: bool


def detect_language(text: str) -> DetectedLanguage:
    """A light guess: the dominant non-Latin script, else the language with the most function words."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return DetectedLanguage(UNDETERMINED_LANGUAGE, False)
    script_counts: dict[str, int] = {}
    for char in letters:
        code = ord(char)
        if code < _FIRST_SCRIPT_CODE:  # Latin letters, most of them: no script range to try
            continue
        for language, low, high in _SCRIPTS:
            if low <= code <= high:
                script_counts[language] = script_counts.get(language, 0) + 1
                break
    if script_counts:
        language, count = max(script_counts.items(), key=lambda item: item[1])
        if language == "zh" and "ja" in script_counts:
            language = "ja"  # Japanese mixes kana with kanji; Chinese has no kana
        if sum(script_counts.values()) > len(letters) / 2:
            return DetectedLanguage(language, sum(script_counts.values()) >= 4)
    words = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
    scores = {language: sum(w in stopwords for w in words) for language, stopwords in _STOPWORD_SETS.items()}
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    if best_score == 0:
        return DetectedLanguage(UNDETERMINED_LANGUAGE, False)
    if best_score == second_score:
        # Short texts tie on a shared word ("is", "no"); English is the usual language of a tie and
        # the model's own, but the guess is not confident enough to reject a ticket on.
        tied = [language for language, score in ranked if score == best_score]
        return DetectedLanguage("en" if "en" in tied else UNDETERMINED_LANGUAGE, False)
    return DetectedLanguage(best, best_score >= 2 and best_score >= 1.5 * second_score)


# --- identifiers ----------------------------------------------------------------------------------

ORDER_ID = "order_id"
TRANSACTION_ID = "transaction_id"
REQUEST_ID = "request_id"
ERROR_CODE = "error_code"
AMOUNT = "amount"
DATE = "date"
CARD_LAST4 = "card_last4"
IDENTIFIER_KINDS = (ORDER_ID, TRANSACTION_ID, REQUEST_ID, ERROR_CODE, AMOUNT, DATE, CARD_LAST4)

_CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₽": "RUB", "₺": "TRY", "₩": "KRW"}
_CURRENCY_WORDS = {
    "dollar": "USD", "dollars": "USD", "bucks": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP",
    "pounds": "GBP", "quid": "GBP", "yen": "JPY", "rupees": "INR", "francs": "CHF",
}
_CURRENCY_CODES = "USD|EUR|GBP|CHF|JPY|CAD|AUD|NZD|SEK|NOK|DKK|PLN|CZK|HUF|RON|BGN|INR|CNY|HKD|SGD|ZAR|MXN|BRL|TRY|RUB|KRW|AED"
_NUMBER = r"\d{1,3}(?:[,\s]\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_AMOUNT_PATTERNS = (
    re.compile(rf"(?P<symbol>[$€£¥₹₽₺₩])\s?(?P<number>{_NUMBER})"),
    re.compile(rf"\b(?P<code>{_CURRENCY_CODES})\s?(?P<number>{_NUMBER})\b"),
    re.compile(rf"(?<![\w.,])(?P<number>{_NUMBER})\s?(?P<code>{_CURRENCY_CODES})\b"),
    re.compile(rf"(?<![\w.,])(?P<number>{_NUMBER})\s?(?P<word>{'|'.join(_CURRENCY_WORDS)})\b", re.I),
)
_MONTHS = r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
_WEEKDAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_DATE_PATTERNS = (
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(r"\b\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})\b"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b(?:,?\s+\d{{4}})?", re.I),
    re.compile(rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}})?", re.I),
    # Relative days a customer uses to point at one transaction; vague spans ("last week") are timing.
    re.compile(r"\b(?:the\s+day\s+before\s+yesterday|yesterday|today|this\s+morning|last\s+night|tonight)\b", re.I),
    re.compile(rf"\b(?:on|last|this\s+past|this)\s+(?:{_WEEKDAYS})\b", re.I),
    re.compile(r"\b(?:\d+|one|two|three|four|five|six|seven)\s+days?\s+ago\b", re.I),
)
_REFERENCE = r"(?P<value>[A-Z0-9][A-Z0-9_-]{3,}[A-Z0-9])"
_TRANSACTION_PATTERNS = (
    re.compile(
        rf"\b(?:transaction|txn|payment|transfer|reference|ref)\s*(?:id|no\.?|number|ref(?:erence)?|code)?\s*(?:is\s+)?[:#]?\s*{_REFERENCE}",
        re.I,
    ),
    re.compile(r"\b(?P<value>(?:TXN|TRX|TX|REF)[-_]?[A-Z0-9]{4,})\b"),
)
_ORDER_PATTERNS = (
    re.compile(rf"\border\s*(?:id|no\.?|number)?\s*(?:is\s+)?[:#]?\s*{_REFERENCE}", re.I),
    re.compile(r"\b(?P<value>ORD[-_]?[A-Z0-9]{3,})\b"),
)
_REQUEST_PATTERNS = (
    re.compile(rf"\b(?:request|req|case|ticket)\s*(?:id|no\.?|number)\s*(?:is\s+)?[:#]?\s*{_REFERENCE}", re.I),
    re.compile(r"\b(?P<value>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", re.I),
)
_ERROR_PATTERNS = (
    re.compile(r"\berror\s*(?:code|message)?\s*[:#]?\s*(?P<value>[A-Z]{0,6}[-_]?\d{2,6}|[A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", re.I),
    re.compile(r"\b(?P<value>(?:ERR|E)[-_]?\d{2,6})\b"),
    re.compile(r"\b(?P<value>(?:ERR|ERROR)_[A-Z0-9_]{3,})\b"),
    re.compile(r"\bcode\s*[:#]\s*(?P<value>[A-Z][A-Z0-9_-]{2,})\b"),
)
_CARD_LAST4_PATTERNS = (
    re.compile(r"\b(?:card|account)\s+(?:number\s+)?(?:ending|ends|that\s+ends)\s+(?:in|with)\s+(?P<value>\d{4})\b", re.I),
    re.compile(r"\blast\s+(?:4|four)\s+(?:digits\s+)?(?:of\s+(?:my|the)\s+card\s+)?(?:are|is|:)?\s*(?P<value>\d{4})\b", re.I),
    re.compile(r"(?:[*xX•]{4}[\s-]?){1,3}(?P<value>\d{4})\b"),
)
_CARD_NUMBER = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass(frozen=True)
class FoundIdentifiers:
    identifiers: list[tk.Identifier]
    # A full card number was typed; only its last four digits are kept, and the flag tells
    # downstream to redact the raw text before it goes anywhere.
    full_card_number: bool


def extract_identifiers(texts: Iterable[str]) -> FoundIdentifiers:
    found: list[tuple[int, int, str, str]] = []  # (text index, position, kind, value)
    full_card_number = False
    for text_index, text in enumerate(texts):
        for match in _CARD_NUMBER.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if 13 <= len(digits) <= 19 and _luhn_valid(digits):
                full_card_number = True
                found.append((text_index, match.start(), CARD_LAST4, digits[-4:]))
        for pattern in _AMOUNT_PATTERNS:
            for match in pattern.finditer(text):
                groups = match.groupdict()
                currency = (
                    _CURRENCY_SYMBOLS.get(groups.get("symbol") or "")
                    or (groups.get("code") or "").upper()
                    or _CURRENCY_WORDS.get((groups.get("word") or "").lower(), "")
                )
                number = re.sub(r"[,\s](?=\d{3}\b)", "", groups["number"])
                found.append((text_index, match.start(), AMOUNT, f"{number} {currency}"))
        for kind, patterns in (
            (DATE, _DATE_PATTERNS),
            (TRANSACTION_ID, _TRANSACTION_PATTERNS),
            (ORDER_ID, _ORDER_PATTERNS),
            (REQUEST_ID, _REQUEST_PATTERNS),
            (ERROR_CODE, _ERROR_PATTERNS),
            (CARD_LAST4, _CARD_LAST4_PATTERNS),
        ):
            for pattern in patterns:
                for match in pattern.finditer(text):
                    value = match.groupdict().get("value") or match.group()
                    # A reference is a code, not a word: "payment reference please" has none.
                    if kind in (TRANSACTION_ID, ORDER_ID, REQUEST_ID) and not re.search(r"\d", value):
                        continue
                    found.append((text_index, match.start(), kind, value.strip()))
    identifiers: list[tk.Identifier] = []
    seen: set[tuple[str, str]] = set()
    for _, _, kind, value in sorted(found):
        key = (kind, value.lower())
        if key not in seen:
            seen.add(key)
            identifiers.append(tk.Identifier(kind=kind, value=value))
    return FoundIdentifiers(identifiers, full_card_number)


def redact_card_numbers(text: str) -> str:
    """Full card numbers reduced to their last four digits, for text that travels downstream."""

    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn_valid(digits):
            return f"**** {digits[-4:]}"
        return match.group()

    return _CARD_NUMBER.sub(mask, text)


def missing_identifiers(
    intent: str, identifiers: Sequence[tk.Identifier], requirements: Mapping[str, Sequence[Sequence[str]]]
) -> list[str]:
    """Identifier kinds `intent` needs that the ticket lacks.

    `requirements[intent]` is a list of groups; a group is met when the ticket has any kind in it.
    For an unmet group every kind in it is listed: any one of them would do.
    """
    present = {identifier.kind for identifier in identifiers}
    missing: list[str] = []
    for group in requirements.get(intent, ()):
        if not present.intersection(group):
            missing += [kind for kind in group if kind not in missing]
    return missing


# --- environment, action, outcome, timing, steps ---------------------------------------------------

_PLATFORMS = (
    ("ios", re.compile(r"\b(?:iphone|ipad|ios|apple\s+watch)\b", re.I)),
    ("android", re.compile(r"\b(?:android|samsung|pixel|galaxy|huawei|xiaomi|oneplus)\b", re.I)),
    ("web", re.compile(r"\b(?:web\s?site|browser|online\s+banking|web\s+app|chrome|firefox|safari|edge|laptop|desktop|pc|mac)\b", re.I)),
    ("app", re.compile(r"\b(?:app|mobile\s+app|application)\b", re.I)),
)
_PRODUCTS = (
    ("apple_pay", re.compile(r"\bapple\s*pay\b", re.I)),
    ("google_pay", re.compile(r"\b(?:google|android)\s*pay\b", re.I)),
    ("disposable_virtual_card", re.compile(r"\bdisposable\s+(?:virtual\s+)?cards?\b", re.I)),
    ("virtual_card", re.compile(r"\bvirtual\s+cards?\b", re.I)),
    ("physical_card", re.compile(r"\b(?:physical|plastic)\s+cards?\b", re.I)),
    ("credit_card", re.compile(r"\bcredit\s+cards?\b", re.I)),
    ("card", re.compile(r"\b(?:debit\s+)?cards?\b|\bcontactless\b|\bpin\b", re.I)),
    ("mobile_app", re.compile(r"\bapp\b", re.I)),
    ("savings_account", re.compile(r"\bsavings?\s+account\b", re.I)),
    ("checking_account", re.compile(r"\b(?:checking|current)\s+account\b", re.I)),
    ("account", re.compile(r"\baccount\b", re.I)),
)
_VERSION = re.compile(r"\b(?:version|ver\.?|v)\s?(?P<value>\d+(?:\.\d+){1,3})\b|\bapp\s+(?P<app>\d+\.\d+(?:\.\d+)?)\b", re.I)
# A clause runs to the next sentence or clause break; "€45.20" and "1,000" do not end it.
_CLAUSE_END = (
    r"(?P<x>(?:[^.,;!?\n]|[.,](?=\d)){3,100}?)"
    r"(?=\s+(?:but|and\s+(?:it|then)|because|however)\b|[.,](?!\d)|[;!?\n]|$)"
)
_ACTION = re.compile(
    r"\b(?:I\s+(?:was\s+|am\s+|have\s+been\s+)?(?:tried|trying|attempted|attempting|wanted|want|wanna|need|needed)\s+to|"
    r"when\s+I\s+(?:try|tried|attempt|attempted)\s+to|I\s+(?:can't|cannot|can\s+not|couldn't|could\s+not|am\s+unable\s+to|"
    r"was\s+unable\s+to|wasn't\s+able\s+to|am\s+not\s+able\s+to)|how\s+(?:do|can)\s+I)\s+" + _CLAUSE_END,
    re.I,
)
_EXPECTED = re.compile(
    r"\b(?:I\s+expected(?:\s+to)?|I\s+was\s+expecting|(?:it|this|that|which)\s+(?:should(?:\s+have)?|was\s+supposed\s+to|is\s+supposed\s+to)|"
    r"should\s+have\s+(?:been\s+)?|(?:was|were)\s+supposed\s+to)\s+" + _CLAUSE_END,
    re.I,
)
_ACTUAL = re.compile(
    r"\b(?:but|instead|however,?|yet)\s+" + _CLAUSE_END + r"|\b(?:it|the\s+app|the\s+atm|the\s+screen)\s+(?:says|said|shows|showed|"
    r"displays|displayed|gives\s+me|gave\s+me|keeps?\s+saying)\s+(?P<y>[^.;!?\n]{3,100})",
    re.I,
)
_TIMING = re.compile(
    rf"\b(?:(?:since|for)\s+(?:the\s+(?:past|last)\s+)?(?:\d+|a|one|two|three|several|a\s+few|a\s+couple\s+of)\s+(?:minutes?|hours?|days?|weeks?|months?)|"
    rf"(?:\d+|a|one|two|three|a\s+few|a\s+couple\s+of)\s+(?:minutes?|hours?|days?|weeks?|months?)\s+ago|"
    rf"since\s+(?:yesterday|this\s+morning|last\s+\w+|(?:{_WEEKDAYS})|\d{{1,2}}(?:st|nd|rd|th)?(?:\s+(?:{_MONTHS}))?)|"
    rf"the\s+day\s+before\s+yesterday|yesterday|today|this\s+morning|last\s+night|tonight|earlier\s+today|"
    rf"(?:last|this)\s+(?:week|month|weekend|{_WEEKDAYS})|on\s+(?:{_WEEKDAYS}))\b",
    re.I,
)
_STEP = re.compile(
    r"\b(?:I(?:'ve|\s+have)?|we(?:'ve|\s+have)?)\s+(?:already\s+|also\s+)?(?:tried(?!\s+to\b)|restarted|rebooted|reinstalled|re-installed|"
    r"updated|cleared|reset|logged\s+out|logged\s+back\s+in|checked|contacted|called|emailed|waited|turned|switched|"
    r"uninstalled|deleted|re-?entered|re-?added|removed|verified|double[- ]checked)\b[^.;!?\n]{0,100}",
    re.I,
)


def _first(pattern: re.Pattern[str], texts: Iterable[str]) -> str:
    for text in texts:
        match = pattern.search(text)
        if match:
            groups = {k: v for k, v in match.groupdict().items() if v}
            value = groups.get("x") or groups.get("y") or groups.get("value") or groups.get("app") or match.group()
            return value.strip(" ,")
    return ""


def _platform(texts: Sequence[str], metadata: Mapping[str, str]) -> str:
    """The channel's own metadata first (an app reports its OS), then what the customer wrote."""
    declared = " ".join(v for k, v in metadata.items() if k.lower() in {"platform", "os", "device", "user_agent", "user-agent"})
    for name, pattern in _PLATFORMS:
        if pattern.search(declared):
            return name
    if declared.lower().startswith("mozilla"):
        return "web"  # a browser user agent that names no mobile OS
    for text in texts:
        for name, pattern in _PLATFORMS:
            if pattern.search(text):
                return name
    return ""


def _metadata_value(metadata: Mapping[str, str], *names: str) -> str:
    lowered = {k.lower(): v for k, v in metadata.items()}
    return next((lowered[name].strip() for name in names if lowered.get(name, "").strip()), "")


# --- the whole reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketReading:
    """What intake made of a ticket: the normalized ticket (without missing identifiers, which
    depend on the intent) and the texts the later stages read."""

    normalized: tk.NormalizedTicket
    model_text: str  # what the intent model reads: the customer's own words ("" if there are none)
    signal_text: str  # subject and customer turns without quotes and signatures, for signals
    injection_styles: tuple[str, ...]
    input_flags: tuple[str, ...]
    language_confident: bool
    earlier_customer_turns: int  # customer turns before the current message


def read_ticket(ticket: tk.Ticket) -> TicketReading:
    flags: list[str] = []

    def sanitized(text: str) -> input_guard.SanitizedText:
        result = input_guard.sanitize_text(text)
        flags.extend(f for f in result.flags if f not in flags)
        return result

    subject = sanitized(ticket.subject).text
    body_result = sanitized(ticket.body)
    body = body_result.text
    customer_turns = [sanitized(turn.text).text for turn in ticket.history if turn.author in ("customer", "")]
    other_turns = [sanitized(turn.text).text for turn in ticket.history if turn.author not in ("customer", "")]
    if not body and customer_turns:
        body = customer_turns.pop()  # a chat transcript whose last customer turn is the message

    # Injection is looked for everywhere the customer wrote, quoted parts included: a model reading
    # the raw ticket would see them too.
    injection = input_guard.injection_styles("\n".join([subject, body, *customer_turns]))
    message = clean_message(body[:EXTRACTION_CHARS])
    earlier = [clean_message(turn[:EXTRACTION_CHARS]) for turn in customer_turns]
    other_turns = [turn[:EXTRACTION_CHARS] for turn in other_turns]

    message_sentences = split_sentences(redact_card_numbers(message))
    cut = input_guard.TRUNCATED in body_result.flags or len(body) > EXTRACTION_CHARS
    if cut and len(message_sentences) > 1:
        message_sentences.pop()  # cut mid-sentence
    # Past a few dozen sentences a message is a transcript or a paste; its problem is stated early.
    all_sentences = [s for s in _unique(message_sentences)[:MAX_SENTENCES] if not _PLEASANTRY.match(s)]
    if is_informative_subject(subject, message):
        all_sentences.insert(0, subject.rstrip(".!?") + ".")
    sentences = [s for s in all_sentences if not input_guard.injection_styles(s)] if injection else all_sentences
    # A message that is nothing but instructions to the system still gets an intent guess (for the
    # human it is escalated to); it never gets a problem statement.
    model_text = _cap(" ".join(sentences or all_sentences), MODEL_TEXT_CHARS)
    if not model_text and input_guard.BINARY not in flags:
        flags.append(input_guard.EMPTY)

    customer_texts = [message, *earlier]
    found = extract_identifiers([subject, message, *earlier, *other_turns])
    if found.full_card_number:
        flags.append(input_guard.FULL_CARD_NUMBER)
    language = detect_language(model_text or message)
    declared = ticket.language.strip().lower()[:2]
    normalized = tk.NormalizedTicket(
        problem_statement=problem_statement(sentences),
        language=language.code if language.confident or not declared else declared,
        product=_metadata_value(ticket.metadata, "product") or _first_product(customer_texts + [subject]),
        product_version=_metadata_value(ticket.metadata, "app_version", "version", "product_version")
        or _first(_VERSION, customer_texts),
        platform=_platform(customer_texts + [subject], ticket.metadata),
        action_attempted=_first(_ACTION, customer_texts),
        expected_outcome=_first(_EXPECTED, customer_texts),
        actual_outcome=_first(_ACTUAL, customer_texts),
        timing=_first(_TIMING, customer_texts + [subject]),
        identifiers=found.identifiers,
        steps_tried=_unique(m.group().strip(" ,") for text in customer_texts for m in _STEP.finditer(text)),
    )
    return TicketReading(
        normalized=normalized,
        model_text=model_text,
        signal_text="\n".join(t for t in [subject, message, *earlier] if t),
        injection_styles=tuple(injection),
        input_flags=tuple(flags),
        language_confident=language.confident,
        earlier_customer_turns=len(earlier),
    )


def _first_product(texts: Sequence[str]) -> str:
    for name, pattern in _PRODUCTS:
        if any(pattern.search(text) for text in texts):
            return name
    return ""


_PROBLEM_CUE = re.compile(
    r"\b(?:can't|cannot|can\s+not|won't|doesn't|didn't|isn't|wasn't|not|never|no\s+longer|error|fail\w*|declin\w*|"
    r"charged?|missing|still|stuck|wrong|lost|stolen|block\w*|locked|pending|haven't|hasn't|why|how|problem|issue|"
    r"help|need|want|unable|refund|dispute|fraud|hack\w*)\b|\?",
    re.I,
)


def problem_statement(sentences: Sequence[str]) -> str:
    """One or two sentences that carry the problem, in the customer's order, capped in length."""
    # Sentences that state a problem come first; context only fills the gap.
    ranked = sorted(range(len(sentences)), key=lambda i: (_PROBLEM_CUE.search(sentences[i]) is None, i))
    return _cap(" ".join(sentences[i] for i in sorted(ranked[:2])), PROBLEM_STATEMENT_CHARS)


def _cap(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[: cut if cut > limit // 2 else limit - 1].rstrip(" ,;:") + "…"


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for item in items:
        key = _squash(item)
        if key and key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
