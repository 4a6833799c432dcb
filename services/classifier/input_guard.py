"""Hostile and broken input: sanitising text before anything reads it, and spotting prompt injection.

Pure. Nothing here raises on any `str`: empty, huge, binary, half-decoded or adversarial text all
come back as usable text plus input flags that say what was wrong, so a bad ticket is classified or
rejected with a reason, never a crash.

Prompt injection is detected per sentence so that the rest of the ticket can still be read: the
injected sentences are kept out of the problem statement and out of the intent model's input, and
the ticket is flagged so routing keeps automation away from it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from supportflow.claude import TICKET_CHARS_SHOWN

# Input flags, a fixed set (they label metrics and travel in Classification.input_flags).
EMPTY = "empty"
TRUNCATED = "truncated"
CONTROL_CHARACTERS = "control_characters"
INVISIBLE_CHARACTERS = "invisible_characters"
INVALID_UNICODE = "invalid_unicode"
BINARY = "binary"
PROMPT_INJECTION = "prompt_injection"
FULL_CARD_NUMBER = "full_card_number"
LANGUAGE_UNSUPPORTED = "language_unsupported"
TIER_FALLBACK = "tier_fallback"
CLAUDE_ASSISTED = "claude_assisted"  # not a problem: Claude refined this low-confidence ticket
# The channel found nothing readable in the customer's message (a mail of attachments or images
# only): the intake kept it (Ticket.origin.intake_flags) and a person reads it.
NO_READABLE_TEXT = "no_readable_text"
INPUT_FLAGS = (
    EMPTY,
    TRUNCATED,
    CONTROL_CHARACTERS,
    INVISIBLE_CHARACTERS,
    INVALID_UNICODE,
    BINARY,
    PROMPT_INJECTION,
    FULL_CARD_NUMBER,
    LANGUAGE_UNSUPPORTED,
    TIER_FALLBACK,
    CLAUDE_ASSISTED,
    NO_READABLE_TEXT,
)

# What the classifier reads of one text field: all that any model is shown of it, so the injection
# scan sees everything a model could obey. Far beyond what a problem statement needs (the intent
# model reads 400 characters).
MAX_TEXT_CHARS = TICKET_CHARS_SHOWN
# Above this share of unreadable characters (control bytes, replacement characters) the field is
# binary data pasted as text, not a message with a few stray bytes.
BINARY_SHARE = 0.10

_REPLACEMENT = "\ufffd"
_KEEP_CONTROLS = {"\n", "\t"}


@dataclass(frozen=True)
class SanitizedText:
    text: str
    flags: tuple[str, ...]


def sanitize_text(raw: str, max_chars: int = MAX_TEXT_CHARS) -> SanitizedText:
    """Readable text from whatever arrived, with flags for each kind of damage repaired."""
    if not raw:
        return SanitizedText("", ())
    flags: list[str] = []
    # Bound the work first: normalisation below never shrinks text by more than a few times.
    if len(raw) > 4 * max_chars:
        raw = raw[: 4 * max_chars]
        flags.append(TRUNCATED)
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if raw.replace("\n", "").replace("\t", "").isprintable() and _REPLACEMENT not in raw:
        return _normalized(raw, max_chars, flags)  # the usual case: nothing to repair, no per-character pass
    kept: list[str] = []
    unreadable = controls = invisible = invalid = 0
    for char in raw:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF or char == _REPLACEMENT:
            # A lone surrogate (undecodable bytes smuggled through JSON) cannot even be encoded as
            # UTF-8 for Kafka; it becomes a replacement character like any other decoding damage.
            invalid += 1
            unreadable += 1
            kept.append(_REPLACEMENT)
            continue
        category = unicodedata.category(char)
        if category == "Cc" and char not in _KEEP_CONTROLS:
            controls += 1
            unreadable += 1
            kept.append(" ")
        elif category == "Cf":
            # Zero-width and bidi-override characters can hide or reorder text (an instruction
            # invisible to the agent but read by a model); nothing legitimate needs them here.
            invisible += 1
        else:
            kept.append(char)
    if controls:
        flags.append(CONTROL_CHARACTERS)
    if invisible:
        flags.append(INVISIBLE_CHARACTERS)
    if invalid:
        flags.append(INVALID_UNICODE)
    if unreadable / len(raw) > BINARY_SHARE and unreadable >= 4:
        return SanitizedText("", tuple(flags + [BINARY]))
    return _normalized("".join(kept), max_chars, flags)


def _normalized(text: str, max_chars: int, flags: list[str]) -> SanitizedText:
    # NFKC folds full-width and compatibility forms ("ｉｇｎｏｒｅ" -> "ignore") so that the
    # patterns below see what a reader sees.
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip()
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
        if TRUNCATED not in flags:
            flags.append(TRUNCATED)
    return SanitizedText(text, tuple(flags))


# Prompt injection, by style. Each pattern is meant to match instructions addressed to a model or a
# system, not customers describing their problem ("the app ignores my taps" is not an injection).
# "Disregard my previous message" and "ignore your policy" are things customers say; the nouns below
# are what only a model is given.
_INSTRUCTION_NOUN = r"(?:instructions?|prompts?|rules|directives?|guidelines|guardrails|constraints|programming)"
INJECTION_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "instruction_override": (
        re.compile(
            r"\b(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|abandon)\b[\w\s,']{0,40}?"
            r"\b(?:previous|prior|above|earlier|preceding|initial|original|existing|system|all|any|your|the)\b[\w\s,']{0,20}?"
            + _INSTRUCTION_NOUN
            + r"\b",
            re.I,
        ),
        re.compile(r"\b(?:new|updated|revised|real|actual|additional)\s+(?:system\s+)?instructions?\s*(?:for|to)\s+(?:the|you|this)?\s*(?:assistant|ai|bot|model|agent|system|llm)\b", re.I),
        re.compile(r"\b(?:new|updated)\s+(?:system\s+)?instructions?\s*:", re.I),
        re.compile(r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:above|before|(?:you\s+(?:were|have\s+been)\s+)?told)\b", re.I),
        # "Bypass any checks you have": addressed to whatever does the checking. Plural nouns only
        # ("can I skip the verification step?" is a customer's question).
        re.compile(r"\b(?:bypass|circumvent|disable|turn\s+off|ignore|skip)\s+(?:any|all|the|your)\s+(?:\w+\s+)?"
                   r"(?:checks|safeguards|controls|filters|restrictions|safety\s+measures)\b(?!\s+(?:on|for)\s+my\s+card)", re.I),
        re.compile(r"\bdo\s+not\s+follow\s+(?:your|the|any)\s+" + _INSTRUCTION_NOUN, re.I),
    ),
    "role_play": (
        re.compile(
            r"\byou\s+are\s+now\s+(?:in\s+)?(?:an?\s+|the\s+|my\s+)?(?:[\w-]+\s+)?"
            r"(?:mode|assistant|ai|bot|admin\w*|developer|dan|unrestricted|jailbroken|unfiltered|agent|system|root|free\s+from)\b",
            re.I,
        ),
        re.compile(r"\b(?:pretend|imagine)\s+(?:that\s+)?you\s+(?:are|were|have)\b", re.I),
        re.compile(r"\b(?:act|behave|respond|answer)\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+|the\s+|my\s+)?(?:unrestricted|unfiltered|jailbroken|evil|admin\w*|developer|system|root|dan\b|ai\b|assistant|model|bank\W?s?\s+(?:policy|system|manager))", re.I),
        re.compile(r"\b(?:role-?play|roleplay)\b", re.I),
        re.compile(r"\b(?:developer|admin|god|debug|maintenance|sudo|jailbreak|unrestricted)\s+mode\b", re.I),
        # "DAN" the jailbreak persona, not Dan the customer who signs "Thanks, Dan": only where a
        # message makes the model it or turns it on.
        re.compile(r"\b(?:you\s+are|you['’]re|be|become|as|enable|activate|switch\s+to)\s+(?:now\s+)?(?:a\s+|the\s+)?DAN\b"
                   r"|\bDAN\s+(?:mode|prompt|jailbreak)\b|\bdo\s+anything\s+now\b", re.I),
        re.compile(r"\bfrom\s+now\s+on,?\s+you\b", re.I),
    ),
    "system_prompt_request": (
        re.compile(
            r"\b(?:reveal|show|print|repeat|display|output|tell\s+me|give\s+me|share|leak|dump|what\s+(?:is|are))\b[\w\s,']{0,30}?"
            r"\b(?:your|the)\s+(?:system|initial|original|hidden|secret|internal)\s+(?:prompt|instructions?|rules|message|configuration)",
            re.I,
        ),
        re.compile(r"\bsystem\s+prompt\b", re.I),
        re.compile(r"\b(?:repeat|print|output)\s+(?:everything|all|the\s+text)\s+(?:above|before)\b", re.I),
    ),
    "fake_role_marker": (
        re.compile(r"(?:^|[\n.!?]\s*)(?:system|assistant|developer)\s*:", re.I),
        re.compile(r"</?\s*(?:system|ticket|user|assistant|instructions?|im_start|im_end|prompt|context)\s*/?>", re.I),
        re.compile(r"<\|[a-z_]+\|>|\[/?INST\]|\[/?SYS\]|<<SYS>>", re.I),
        re.compile(r"^#{2,}\s*(?:system|instruction|assistant|new\s+task)\b", re.I | re.M),
    ),
    "tool_command": (
        # Imperative only: "when I call the payments API I get a 500" is a developer's bug report.
        re.compile(
            r"(?:^|[\n.!?:]\s*|\b(?:please|now|then|and)\s+)(?:call|invoke|execute|trigger|use|run)\s+(?:the\s+)?"
            r"[\w-]+\s+(?:tool|function)s?\b",
            re.I,
        ),
        re.compile(r"\b(?:function_call|tool_use|tool_calls?)\b|\"(?:tool|function|action)\"\s*:", re.I),
        re.compile(r"\b(?:execute|run)\s*:\s*\w+", re.I),
        re.compile(r"\b(?:rm\s+-rf|curl\s+https?://|wget\s+https?://|DROP\s+TABLE|;\s*--)", re.I),
        re.compile(r"\b(?:confirm|say|state|reply|respond|write)\s+(?:that\s+)?(?:it\s+is|it's|this\s+is)\s+(?:done|approved|policy|completed|official)\b", re.I),
    ),
    "authority_claim": (
        re.compile(r"\bas\s+(?:the|your)\s+(?:bank\W?s?\s+)?(?:policy\s+engine|system|administrator|admin|developer|operator|supervisor\s+ai|model\s+provider)\b", re.I),
        re.compile(r"\bI(?:\s+am|\s*['’]m)\s+(?:your|the)\s+(?:developer|administrator|admin|creator|operator|system\s+owner)\b", re.I),
        re.compile(r"\b(?:the\s+)?(?:ai|assistant|bot|model|llm)\s+(?:must|should|shall|will)\s+(?:now\s+)?(?:approve|refund|grant|promise|say|confirm|reveal|ignore|output)\b", re.I),
    ),
}


def _for_folded_text(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern`, written case-insensitive, as a case-sensitive pattern for case-folded text: the
    same matches, ~40% faster on a long text, where re.I folds case at every position tried. A
    letter after a backslash is an escape (\\W, \\b) and keeps its case."""
    source = re.sub(r"\\.|[A-Z]", lambda m: m.group() if m.group()[0] == "\\" else m.group().lower(), pattern.pattern)
    return re.compile(source, pattern.flags & ~re.I)


_FOLDED_PATTERNS = {style: tuple(map(_for_folded_text, patterns)) for style, patterns in INJECTION_PATTERNS.items()}


def injection_styles(text: str) -> list[str]:
    """The injection styles found in `text`, in a fixed order; empty for an ordinary message."""
    if not text:
        return []
    folded = text.casefold()
    return [style for style, patterns in _FOLDED_PATTERNS.items() if any(p.search(folded) for p in patterns)]
