"""What the wording of a ticket signals beyond its intent: urgency, sentiment, frustration and risk.

Pure lexicons and punctuation/caps heuristics, readable and cheap (the risk flags' phrases are a data
file, risk_lexicon.yaml). Risk flags are deliberately
narrow (explicit words, not topics): each one sends a ticket to a human, so a flag must mean the
customer said something a human has to see. "I was charged twice" is an intent; "I will dispute
this charge" is a billing dispute. Prompt injection is flagged by `input_guard`, not here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from supportflow.contracts.v1 import ticket_pb2 as tk

# Frustration signals, a fixed set (documented strings downstream systems and the learner use).
REPEATED_CONTACT = "repeated_contact"
LONG_WAIT = "long_wait"
ALL_CAPS = "all_caps"
EXCLAMATION = "exclamation"
PROFANITY = "profanity"
HUMAN_REQUESTED = "human_requested"
THREAT_TO_LEAVE = "threat_to_leave"
NEGATIVE_SENTIMENT = "negative_sentiment"
FRUSTRATION_SIGNALS = (
    REPEATED_CONTACT, LONG_WAIT, ALL_CAPS, EXCLAMATION, PROFANITY, HUMAN_REQUESTED, THREAT_TO_LEAVE, NEGATIVE_SENTIMENT,
)
NEGATIVE_SENTIMENT_AT = -0.5
# Earlier customer turns in the same conversation beyond which a ticket counts as a repeat contact.
REPEAT_CONTACT_TURNS = 2

_POSITIVE = frozenset(
    "thanks thank great good love appreciate appreciated helpful happy excellent awesome perfect pleased glad "
    "amazing wonderful nice fantastic brilliant easy resolved works quick".split()
)
_NEGATIVE = frozenset(
    "angry annoyed annoying frustrated frustrating furious upset terrible awful horrible worst bad ridiculous "
    "unacceptable disappointed disappointing useless hate scam rubbish pathetic incompetent disgusting outrageous "
    "shocking stressed worried concerned confused stupid nightmare joke poor waste disgrace appalling absurd "
    "fed sick tired mad livid hopeless shameful insane crazy".split()
)
_NEGATORS = frozenset("not no never don't doesn't didn't isn't wasn't aren't won't can't cannot hardly".split())
_INTENSIFIERS = frozenset("very so extremely really totally absolutely completely utterly incredibly".split())
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")

_PATTERNS = {
    REPEATED_CONTACT: re.compile(
        r"\b(?:again|(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th))\s+time|already\s+(?:contacted|told|asked|called|"
        r"emailed|explained|written|reported|sent)|keep\s+(?:asking|telling|getting|calling|writing)|every\s+time\s+I\s+"
        r"(?:call|write|ask)|nobody\s+(?:has\s+)?(?:replied|answered|responded|got\s+back)|no\s+one\s+(?:has\s+)?"
        r"(?:replied|answered|responded|got\s+back)|still\s+(?:no|not|haven't|hasn't|waiting))\b",
        re.I,
    ),
    LONG_WAIT: re.compile(
        r"\b(?:for\s+(?:\d+|several|many|two|three|a\s+few|over\s+a)\s+(?:days|weeks|months|hours|week|month)|"
        r"\d+\s+(?:days|weeks|months)\s+(?:now|already)|still\s+waiting|(?:for\s+)?ages|forever|"
        r"(?:over|more\s+than)\s+(?:a|one|two|\d+)\s+(?:week|weeks|month|months))\b",
        re.I,
    ),
    PROFANITY: re.compile(r"\b(?:damn\w*|crap\w*|wtf|shit\w*|fuck\w*|bullshit|bloody|hell|piss\w*|arse|ass(?:hole)?s?)\b", re.I),
    HUMAN_REQUESTED: re.compile(
        r"\b(?:speak|talk|chat)\s+(?:to|with)\s+(?:a|an|your|the|some)?\s*(?:real\s+|actual\s+|live\s+)?"
        r"(?:human|person|manager|supervisor|agent|someone|somebody|representative)\b|"
        r"\b(?:human|real\s+person|live\s+agent)\s*,?\s+please\b|\bescalate\s+(?:this|my)\b",
        re.I,
    ),
}

# The risk flags' phrases are data (risk_lexicon.yaml): which words a customer uses for a theft, a
# dispute, a legal threat or leaving, per language or domain, is not code.
RISK_LEXICON_PATH = Path(__file__).with_name("risk_lexicon.yaml")
RISK_FLAG_NAMES = {"security": tk.RISK_FLAG_SECURITY, "billing_dispute": tk.RISK_FLAG_BILLING_DISPUTE,
                   "legal": tk.RISK_FLAG_LEGAL, "churn": tk.RISK_FLAG_CHURN}


class RiskLexiconError(ValueError):
    """The risk lexicon is malformed; raised at import, so the classifier does not start."""


def load_risk_patterns(path: Path = RISK_LEXICON_PATH) -> dict[int, re.Pattern[str]]:
    """One pattern per risk flag, in enum order: any of the flag's phrases, between word boundaries."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) != set(RISK_FLAG_NAMES):
        raise RiskLexiconError(f"{path}: expected exactly the lists {sorted(RISK_FLAG_NAMES)}")
    patterns = {}
    for name, flag in sorted(RISK_FLAG_NAMES.items(), key=lambda item: item[1]):
        phrases = data[name]
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise RiskLexiconError(f"{path}: `{name}` must be a non-empty list of strings")
        try:
            patterns[flag] = re.compile(r"\b(?:" + "|".join(f"(?:{p.strip()})" for p in phrases) + r")\b", re.I)
        except re.error as exc:
            raise RiskLexiconError(f"{path}: `{name}`: {exc}") from exc
    return patterns


_RISK_PATTERNS = load_risk_patterns()

# Critical: money is being taken as we speak.
_CRITICAL = re.compile(
    r"\b(?:emergency|(?:someone|somebody)\s+is\s+(?:using|taking|draining|spending)|(?:account|card)\s+(?:is\s+being|"
    r"was)\s+(?:drained|emptied))\b",
    re.I,
)
_HIGH = re.compile(
    r"\b(?:urgent(?:ly)?|asap|as\s+soon\s+as\s+possible|immediately|right\s+away|straight\s+away|stranded|"
    r"(?:all\s+)?my\s+(?:money|savings)\s+(?:is\s+|has\s+)?(?:gone|disappeared|missing|vanished)|"
    r"stuck\s+(?:abroad|at|in)|time[- ]sensitive|deadline|can(?:'t|not)\s+(?:pay|buy|afford)\s+(?:for\s+)?(?:food|rent|"
    r"bills?|anything|my\s+rent|groceries)|need\s+(?:it|this|the\s+money|my\s+money|my\s+card|cash)\s+(?:today|now|"
    r"tonight|by\s+tomorrow))\b",
    re.I,
)
_LOW = re.compile(
    r"\b(?:just\s+(?:wondering|curious|asking)|out\s+of\s+curiosity|no\s+rush|no\s+hurry|not\s+urgent|"
    r"when\s+you\s+(?:get|have)\s+(?:a\s+)?(?:chance|moment|time)|whenever\s+(?:you\s+can|convenient))\b",
    re.I,
)
_GENERAL_QUESTION = re.compile(
    r"^\s*(?:do\s+you|does\s+(?:the|your)|is\s+(?:there|it\s+possible)|are\s+there|what\s+(?:is|are)\s+the|"
    r"can\s+I|how\s+(?:much|long|many)|which)\b",
    re.I,
)
_PROBLEM_WORDS = re.compile(
    r"\b(?:not|never|can't|cannot|won't|didn't|doesn't|isn't|wasn't|haven't|hasn't|error|fail\w*|declin\w*|wrong|"
    r"missing|stolen|lost|blocked|charged|still|stuck)\b",
    re.I,
)
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_CAPS_RUN = re.compile(r"\b[A-Z]{2,}(?:[\s,]+[A-Z]+){3,}\b")
_ACRONYMS = frozenset(
    "ATM PIN USD EUR GBP CHF JPY CAD AUD IBAN SWIFT BIC SEPA ACH CVV CVC OTP SMS APP VISA UK USA EU EEA KYC ID FAQ "
    "NFC API PDF URL HTTP IOS GDPR FCA CFPB DAN".split()
)


@dataclass(frozen=True)
class TextSignals:
    urgency: int  # tk.Urgency
    sentiment: float  # -1 (angry) .. 1 (happy)
    frustration_signals: tuple[str, ...]
    risk_flags: tuple[int, ...]  # tk.RiskFlag values, in enum order


def sentiment(text: str) -> float:
    """Lexicon polarity with negation and intensifiers, pushed further by shouting and '!!'."""
    tokens = _TOKEN.findall(text.lower().replace("’", "'"))
    score = 0.0
    for index, token in enumerate(tokens):
        polarity = 1.0 if token in _POSITIVE else -1.0 if token in _NEGATIVE else 0.0
        if not polarity:
            continue
        window = tokens[max(0, index - 3) : index]
        if any(word in _NEGATORS for word in window):
            polarity = -polarity * 0.7  # "not happy" is negative, "not bad" only mildly positive
        if any(word in _INTENSIFIERS for word in window):
            polarity *= 1.5
        score += polarity
    if score < 0:
        score -= 0.5 * _exclamation_runs(text) + (0.5 if _shouting(text) else 0.0)
    return round(math.tanh(score / 2.0), 3)


def _exclamation_runs(text: str) -> int:
    return len(re.findall(r"!{2,}|\?!|!\?", text))


def _shouting(text: str) -> bool:
    """Mostly capitals, or a shouted phrase of several capitalised words in a row."""
    words = re.findall(r"\b[A-Za-z]{3,}\b", text)
    caps = [w for w in _CAPS_WORD.findall(text) if w not in _ACRONYMS]
    if len(caps) < 3:
        return False
    return len(caps) >= 0.3 * len(words) or _CAPS_RUN.search(text) is not None


def frustration_signals(text: str, score: float, earlier_customer_turns: int) -> list[str]:
    found = [name for name, pattern in _PATTERNS.items() if pattern.search(text)]
    if earlier_customer_turns >= REPEAT_CONTACT_TURNS and REPEATED_CONTACT not in found:
        found.append(REPEATED_CONTACT)
    if _shouting(text):
        found.append(ALL_CAPS)
    if _exclamation_runs(text) or text.count("!") >= 3:
        found.append(EXCLAMATION)
    if _RISK_PATTERNS[tk.RISK_FLAG_CHURN].search(text) and _NEGATIVE_CONTEXT.search(text):
        found.append(THREAT_TO_LEAVE)
    if score <= NEGATIVE_SENTIMENT_AT:
        found.append(NEGATIVE_SENTIMENT)
    return [name for name in FRUSTRATION_SIGNALS if name in found]


# Closing an account is a request; closing it *because of us* is a threat to leave.
_NEGATIVE_CONTEXT = re.compile(
    r"\b(?:because|unless|otherwise|or\s+else|if\s+(?:you|this|it)|fed\s+up|sick\s+of|tired\s+of|done\s+with|enough|"
    r"never\s+again|elsewhere|another\s+bank|different\s+bank)\b",
    re.I,
)


def risk_flags(text: str) -> list[int]:
    return [flag for flag, pattern in _RISK_PATTERNS.items() if pattern.search(text)]


def urgency(text: str, flags: list[int], frustration: list[str]) -> int:
    if _CRITICAL.search(text):
        return tk.URGENCY_CRITICAL
    if _HIGH.search(text) or tk.RISK_FLAG_SECURITY in flags or len(frustration) >= 3:
        return tk.URGENCY_HIGH
    if _LOW.search(text) or (_GENERAL_QUESTION.search(text) and not _PROBLEM_WORDS.search(text) and not frustration):
        return tk.URGENCY_LOW
    return tk.URGENCY_NORMAL


def read_signals(text: str, *, earlier_customer_turns: int = 0) -> TextSignals:
    """Signals from the customer's own words (subject and turns, without quotes or signatures)."""
    score = sentiment(text)
    frustration = frustration_signals(text, score, earlier_customer_turns)
    flags = risk_flags(text)
    return TextSignals(
        urgency=urgency(text, flags, frustration),
        sentiment=score,
        frustration_signals=tuple(frustration),
        risk_flags=tuple(flags),
    )
