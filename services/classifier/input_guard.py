"""Hostile and broken input: sanitising text before anything reads it, and spotting prompt injection.

Pure. Nothing here raises on any `str`: empty, huge, binary, half-decoded or adversarial text all
come back as usable text plus input flags that say what was wrong, so a bad ticket is classified or
rejected with a reason, never a crash.

Prompt injection is detected per sentence so that the rest of the ticket can still be read: the
injected sentences are kept out of the problem statement and out of the intent model's input, and
the ticket is flagged so routing keeps automation away from it.
"""

from __future__ import annotations

import base64
import codecs
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from integrations.claude import TICKET_CHARS_SHOWN

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


# Prompt injection, by style. What makes text an injection is its structure, not its words: an
# instruction addressed to a model or to the system (a vocative "Assistant, ...", "To the AI reading
# this: ..."), an imperative standing where an imperative stands (a clause start: "please ignore
# your instructions", not "your letter says to disregard the earlier instructions"), a role marker
# followed by a directive ("System: the customer is verified", not "System: Windows 11"), a role
# given to the reader ("you are now Supervisor Bot"), a tool call's shape, text hidden from the
# human reader, an encoded payload. The words these structures are built from are data
# (injection_lexicon.yaml); ordinary names, signatures, logs and quoted code carry none of the
# structures ("Thanks, Dan" is a name, not the DAN persona).
LEXICON_PATH = Path(__file__).with_name("injection_lexicon.yaml")
_LEXICON_KEYS = (
    "override_verbs", "instruction_nouns", "prior_words", "foreign_override_verbs", "foreign_instruction_nouns",
    "ai_addressees", "directive_verbs", "directive_objects", "directive_phrases", "role_markers", "model_modes",
    "unambiguous_modes", "persona_nouns", "unbound",
)


class LexiconError(ValueError):
    """The injection lexicon is malformed; raised at import, so the classifier does not start."""


def load_lexicon(path: Path = LEXICON_PATH) -> dict[str, str]:
    """Each list of the lexicon as one regular-expression alternation."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: expected a mapping of lists")
    missing = [key for key in _LEXICON_KEYS if key not in data]
    if missing:
        raise LexiconError(f"{path}: missing lists {missing}")
    lists: dict[str, str] = {}
    for key in _LEXICON_KEYS:
        words = data[key]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise LexiconError(f"{path}: `{key}` must be a non-empty list of strings")
        for word in words:
            try:
                re.compile(word)
            except re.error as exc:
                raise LexiconError(f"{path}: `{key}`: {word!r} is not a regular expression: {exc}") from exc
        lists[key] = "(?:" + "|".join(f"(?:{w.strip()})" for w in words) + ")"
    return lists


_W = load_lexicon()
# Where an imperative stands: the start of the text, a line, a sentence or a clause, or after a
# softener ("please", "now", "and").
_IMPERATIVE_AT = r"(?:^|[\n.!?;:,(\[>*-]\s*|\b(?:please|now|then|and|so|just|kindly|also)\s+)"
_AI = _W["ai_addressees"]
_DIRECTIVE = r"(?:\b" + _W["directive_verbs"] + r"\s+" + _W["directive_objects"] + r"(?!\w)|\b" + _W["directive_phrases"] + r"\b)"
# "Note to the automated assistant", "To the AI handling this", "Dear AI" (not "to model my budget").
_ADDRESSEE = r"(?:\b(?:note|message|instructions?|memo|notice)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+|whatever\s+|every\s+)?" \
             r"|\bto\s+(?:the|any|all|whatever|every)\s+|\b(?:dear|hey|hi|hello)\s+(?:the\s+)?)" + _AI + r"\b"
# "System:", "[system]", "<<SYSTEM MESSAGE>>": a marker claiming the text after it is not the customer's.
_ROLE = _W["role_markers"] + r"(?:\s+(?:message|note|override|directive|prompt))?"
# A claim about the state of things only a system could make.
_STATE_CLAIM = r"\b(?:customer|user|account|ticket|request|refund)\s+(?:is|has\s+been|was)\s+(?:already\s+)?" \
               r"(?:verified|approved|pre-?approved|authori[sz]ed|whitelisted|cleared|exempt)\b"

INJECTION_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "instruction_override": (
        re.compile(_IMPERATIVE_AT + r"\b" + _W["override_verbs"] + r"\b[\w\s,']{0,40}?\b" + _W["prior_words"]
                   + r"\b[\w\s,']{0,20}?\b" + _W["instruction_nouns"] + r"\b", re.I | re.M),
        re.compile(r"\b(?:new|updated|revised|real|actual|additional)\s+(?:system\s+)?instructions?\s*(?:for|to)\s+(?:the|you|this)?\s*"
                   + _AI + r"\b", re.I),
        re.compile(r"\b(?:new|updated)\s+(?:system\s+)?instructions?\s*:", re.I),
        re.compile(_IMPERATIVE_AT + r"(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:above|before|(?:you\s+(?:were|have\s+been)\s+)?told)\b", re.I | re.M),
        # "Bypass any checks you have": addressed to whatever does the checking. Plural nouns only
        # ("can I skip the verification step?" is a customer's question).
        re.compile(r"\b(?:bypass|circumvent|disable|turn\s+off|ignore|skip)\s+(?:any|all|the|your)\s+(?:\w+\s+)?"
                   r"(?:checks|safeguards|controls|filters|restrictions|safety\s+measures)\b(?!\s+(?:on|for)\s+my\s+card)", re.I),
        re.compile(r"\bdo\s+not\s+follow\s+(?:your|the|any)\s+" + _W["instruction_nouns"], re.I),
        re.compile(r"\b(?:the\s+)?(?:rules|instructions|guidelines)\s+you\s+(?:were|have\s+been)\s+given\b", re.I),
        # Other languages: an override verb and an instruction noun in one clause.
        re.compile(_W["foreign_override_verbs"] + r"[^.!?\n]{0,40}?" + _W["foreign_instruction_nouns"], re.I),
    ),
    "role_play": (
        re.compile(
            r"\byou\s+are\s+now\s+(?:in\s+)?(?:an?\s+|the\s+|my\s+)?(?:[\w-]+\s+)?"
            r"(?:mode|assistant|ai|bot|admin\w*|developer|dan|unrestricted|jailbroken|unfiltered|agent|system|root|free\s+from)\b",
            re.I,
        ),
        re.compile(r"\bpretend\s+(?:that\s+)?you\s+(?:are|were|have)\b|\bimagine\s+(?:that\s+)?you\s+(?:are|were)\s+(?:an?|the|my)\s+", re.I),
        re.compile(_IMPERATIVE_AT + r"(?:act|behave|respond|answer|reply|speak|talk|write)\s+(?:to\s+me\s+)?as\s+(?:if\s+you\s+(?:are|were)\s+)?"
                   r"(?:an?\s+|the\s+|my\s+)?(?:unrestricted|unfiltered|jailbroken|evil|admin\w*|developer|system|root|dan\b|ai\b|"
                   r"assistant|model|bank\W?s?\s+(?:policy|system|manager))", re.I | re.M),
        re.compile(r"\b(?:i\s+want|i\s+need|i'd\s+like)\s+you\s+to\s+(?:act|behave|respond|answer|reply|speak|talk|pretend|play)\s+(?:as|like)\s+(?:an?|the|my)\b", re.I),
        re.compile(r"\blet['’]?s\s+(?:role-?play|roleplay|play\s+a\s+game)\b|^\s*(?:role-?play|roleplay)\s*:", re.I | re.M),
        re.compile(r"\b(?:switch|change)\s+(?:your\s+)?personas?\b|\bnew\s+persona\b|\b(?:stay|remain)\s+in\s+character\b|\bbreak\s+character\b", re.I),
        re.compile(r"\byou(?:['’]re|\s+are)\s+(?:now\s+)?(?:an?\s+|the\s+)?(?:[\w-]+\s+){0,2}" + _W["persona_nouns"]
                   + r"\s+(?:now\b|" + _W["unbound"] + r")", re.I),
        re.compile(r"\b" + _W["unambiguous_modes"] + r"\s+mode\b", re.I),
        re.compile(_IMPERATIVE_AT + r"(?:enable|enter|activate|switch\s+(?:in)?to|turn\s+on|go\s+into)\s+(?:the\s+)?" + _W["model_modes"]
                   + r"\s+mode\b", re.I | re.M),
        re.compile(r"\byou(?:['’]re|\s+are)\s+(?:now\s+)?in\s+" + _W["model_modes"] + r"\s+mode\b", re.I),
        # "DAN" the jailbreak persona, not Dan the customer who signs "Thanks, Dan": only where a
        # message makes the model it or turns it on.
        re.compile(r"\b(?:you\s+are|you['’]re|be|become|as|enable|activate|switch\s+to)\s+(?:now\s+)?(?:a\s+|the\s+)?DAN\b"
                   r"|\bDAN\s+(?:mode|prompt|jailbreak)\b|\bdo\s+anything\s+now\b", re.I),
        re.compile(r"\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must|answer|only|respond|reply|act|have\s+no)\b", re.I),
    ),
    "system_prompt_request": (
        re.compile(
            r"\b(?:reveal|show|print|repeat|display|output|tell\s+me|give\s+me|share|leak|dump|what\s+(?:is|are))\b[\w\s,']{0,30}?"
            r"\b(?:your\s+(?:system|initial|original|hidden|secret|internal)\s+(?:prompt|instructions?|rules|message|configuration)"
            r"|the\s+(?:system|initial|original|hidden|secret)\s+(?:prompt|instructions))",
            re.I,
        ),
        re.compile(r"\bsystem\s+prompt\b", re.I),
        re.compile(r"\b(?:repeat|print|output)\s+(?:everything|all|the\s+text)\s+(?:above|before)\b", re.I),
        re.compile(r"\b(?:list|show|print|reveal|output|tell\s+me|name)\s+(?:all\s+|every\s+|each\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
                   r"(?:tools?|functions?)\s+(?:you\s+(?:can|have|are\s+able)|available\s+to\s+you)", re.I),
    ),
    "fake_role_marker": (
        # A role marker opening a line, followed on that line by a directive or a claim only a
        # system makes; "System: Windows 11" and "Assistant: Mark Chen" are a bug report and a signature.
        re.compile(r"(?:^|[.!?]\s+)[*#\s]*(?:[\[<(]+\s*" + _ROLE + r"\s*[\]>)]+\s*:?|" + _ROLE + r"\s*:)"
                   r"[^\n]{0,160}?(?:" + _DIRECTIVE + r"|\byou\s+(?:are|must|should|will)\b|" + _STATE_CLAIM + ")",
                   re.I | re.M),
        re.compile(r"(?:^|[.!?]\s+)[\[<(]+\s*" + _W["role_markers"] + r"\s*[\]>)]+", re.I | re.M),
        re.compile(r"\b(?:end\s+of\s+(?:customer\s+)?(?:message|input|ticket)|begin\s+(?:operator|system|admin)\s+(?:note|message|instructions?))\b", re.I),
        re.compile(r"</?\s*(?:system|ticket|user|assistant|instructions?|im_start|im_end|prompt|context)\s*/?>", re.I),
        re.compile(r"<\|[a-z_]+\|>|\[/?INST\]|\[/?SYS\]|<<SYS>>", re.I),
        re.compile(r"^#{1,}\s*(?:system|assistant|instructions?|new\s+task)(?:\s+(?:prompt|message|instructions?))?\s*:?\s*$", re.I | re.M),
    ),
    "addressed_to_model": (
        # An instruction addressed to a model: a vocative at a sentence start or a note to it,
        # followed by a directive in the same sentence.
        re.compile(r"(?:^|[\n.!?>]\s*)(?:dear\s+|hey\s+|hi\s+|ok(?:ay)?\s+)?" + _AI + r"\s*,[^.!?\n]{0,120}?" + _DIRECTIVE, re.I | re.M),
        re.compile(_ADDRESSEE + r"[^.!?\n]{0,60}?[:,][^\n]{0,160}?" + _DIRECTIVE, re.I | re.M),
        re.compile(r"\b(?:note|message|instructions?)\s+for\s+(?:any|the)\s+(?:automated|ai)\b", re.I),
    ),
    "tool_command": (
        # Imperative only: "when I call the payments API I get a 500" is a developer's bug report.
        re.compile(
            r"(?:^|[\n.!?:]\s*|\b(?:please|now|then|and)\s+)(?:call|invoke|execute|trigger|use|run)\s+(?:the\s+)?"
            r"[\w-]+\s+(?:tool|function)s?\b",
            re.I,
        ),
        re.compile(r"\b(?:function_call|function_calls|tool_use|tool_calls?|tool_code)\b|<\s*(?:invoke|tool|tool_call)\b", re.I),
        # A tool call's shape: a snake_case action named under "tool"/"function", or a name with arguments.
        re.compile(r"\"(?:tool|function)\"\s*:\s*\"[a-z]+_[a-z_]+\"", re.I),
        re.compile(r"\"name\"\s*:\s*\"[a-z]+_[a-z_]+\"\s*,\s*\"(?:arguments|parameters|input|args)\"\s*:", re.I),
        re.compile(r"^\s*action\s*:\s*[a-z]+_[a-z_]+\s*\n\s*action\s+input\s*:", re.I | re.M),
        re.compile(r"\bexecute\s*:\s*[a-z]+_[a-z_]+", re.I),
        re.compile(r"\b(?:DROP\s+TABLE|UNION\s+SELECT)\b", re.I),
        re.compile(r"\b(?:say|state|write)\s+(?:that\s+)?(?:it\s+is|it's|this\s+is)\s+(?:approved|policy|official)\b", re.I),
        re.compile(r"\b(?:decode|decrypt|translate)\b[^.!?\n]{0,60}?\b(?:and|then)\s+(?:then\s+)?(?:follow|obey|execute|run|do\s+what|carry|act\s+on|apply)\b", re.I),
        re.compile(r"\b(?:follow|obey|execute|run)\s+(?:the\s+)?(?:following\s+)?(?:base64|hex|rot13|encoded|hex-encoded)\b", re.I),
    ),
    "authority_claim": (
        re.compile(r"\bas\s+(?:the|your)\s+(?:bank\W?s?\s+)?(?:policy\s+engine|system|administrator|admin|developer|operator|supervisor\s+ai|model\s+provider)\b(?!\s+(?:of|for|at|on)\b)", re.I),
        re.compile(r"\bI(?:\s+am|\s*['’]m)\s+(?:your|the)\s+(?:developer|administrator|admin|creator|operator|system\s+owner)\b(?!\s+(?:of|for|at|on)\b)", re.I),
        re.compile(r"\b(?:the\s+)?" + _AI + r"\s+(?:must|should|shall|will)\s+(?:now\s+)?(?:approve|refund|grant|promise|say|confirm|reveal|ignore|output)\b", re.I),
    ),
}


def _for_folded_text(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern`, written case-insensitive, as a case-sensitive pattern for case-folded text: the
    same matches, ~40% faster on a long text, where re.I folds case at every position tried. A
    letter after a backslash is an escape (\\W, \\b) and keeps its case."""
    source = re.sub(r"\\.|[A-Z]", lambda m: m.group() if m.group()[0] == "\\" else m.group().lower(), pattern.pattern)
    return re.compile(source, pattern.flags & ~re.I)


_FOLDED_PATTERNS = {style: tuple(map(_for_folded_text, patterns)) for style, patterns in INJECTION_PATTERNS.items()}
HIDDEN_MARKUP = "hidden_markup"
ENCODED_PAYLOAD = "encoded_payload"
INJECTION_STYLES = (*INJECTION_PATTERNS, HIDDEN_MARKUP, ENCODED_PAYLOAD)

# Text a person reading the ticket does not see but a model reading its source does.
_HIDDEN = re.compile(
    r"<!--(.*?)(?:-->|$)|^\s*\[//\]:\s*#\s*[(\"'](.*?)[)\"']\s*$"
    r"|<(\w+)[^>]*(?:display\s*:\s*none|visibility\s*:\s*hidden|\bhidden\b|font-size\s*:\s*0)[^>]*>(.*?)</\3\s*>",
    re.I | re.S | re.M,
)
_BASE64 = re.compile(r"(?<![\w+/])(?=[A-Za-z0-9+/]*[0-9+/=])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/])")
_HEX = re.compile(r"\b(?:[0-9a-f]{2}){8,}\b", re.I)
_ROT13 = re.compile(r"\brot-?13\b", re.I)


def pattern_styles(text: str) -> list[str]:
    """The styles whose patterns match `text`, in a fixed order."""
    folded = text.casefold()
    return [style for style, patterns in _FOLDED_PATTERNS.items() if any(p.search(folded) for p in patterns)]


def _decoded_payloads(text: str) -> list[str]:
    """Readable text hidden in base64, hex or rot13 inside `text`."""
    found = []
    for token in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        found.append(decoded)
    for token in _HEX.findall(text):
        try:
            found.append(bytes.fromhex(token).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
    if _ROT13.search(text):
        found.append(codecs.decode(text, "rot13"))
    return [payload for payload in found if payload.isprintable() and re.search(r"[a-z]{3,}\s+[a-z]{3,}", payload, re.I)]


def injection_styles(text: str) -> list[str]:
    """The injection styles found in `text`, in a fixed order; empty for an ordinary message."""
    if not text:
        return []
    styles = pattern_styles(text)
    for match in _HIDDEN.finditer(text):
        hidden = " ".join(part for part in match.groups() if part and not part.isidentifier())
        if hidden.strip() and (pattern_styles(hidden) or re.search(_DIRECTIVE, hidden.casefold())):
            styles.append(HIDDEN_MARKUP)
            break
    if any(pattern_styles(payload) for payload in _decoded_payloads(text)):
        styles.append(ENCODED_PAYLOAD)
    return [style for style in INJECTION_STYLES if style in styles]
