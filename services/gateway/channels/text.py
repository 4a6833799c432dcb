"""The customer's own words in what a channel sends: HTML turned into plain text, earlier mail
quoted below a reply removed, a signature cut, the whole capped at the field limit.

Pure. Each step says what it did through the intake flags of `ChannelOrigin.intake_flags`, so
downstream can tell "the customer wrote nothing" from "intake threw text away".
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, Tag

from services.gateway.intake import MAX_FIELD_CHARS

HTML_CONVERTED = "html_converted"
QUOTED_TEXT_STRIPPED = "quoted_text_stripped"
BODY_TRUNCATED = "body_truncated"
ATTACHMENT_OVERSIZED = "attachment_oversized"
NO_READABLE_TEXT = "no_readable_text"
CHARSET_REPLACED = "charset_replaced"


@dataclass
class CustomerText:
    """Text read from a channel and the intake flags of what was done to it."""

    text: str
    flags: list[str] = field(default_factory=list)


# Elements whose content is never shown to a reader.
_INVISIBLE = ("script", "style", "head", "title", "meta", "noscript", "template")
# Elements that start a new line of text.
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tr", "ul",
})
# Where mail clients put the earlier message in an HTML reply: Gmail, Apple Mail and Thunderbird
# (`blockquote type=cite`), Yahoo; Outlook's reply header starts a block that runs to the end.
_QUOTE_SELECTORS = ("blockquote", ".gmail_quote", ".gmail_attr", ".yahoo_quoted", ".moz-cite-prefix")
_QUOTE_TO_END_SELECTORS = ("#divRplyFwdMsg", "#appendonsend", "#mail-editor-reference-message-container")


def looks_like_html(text: str) -> bool:
    return bool(re.search(r"<(?:[a-zA-Z][a-zA-Z0-9]*\b[^>]*|/[a-zA-Z][a-zA-Z0-9]*\s*)>", text))


def html_to_text(html: str, *, strip_quotes: bool = True) -> CustomerText:
    """Readable text of an HTML fragment or document: one line per block, list items as "- ",
    entities decoded, whitespace collapsed. With `strip_quotes`, the quoted earlier message of a
    mail client's reply is removed first (flag `quoted_text_stripped`)."""
    flags = [HTML_CONVERTED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_INVISIBLE):
        tag.decompose()
    if strip_quotes and _remove_html_quotes(soup):
        flags.append(QUOTED_TEXT_STRIPPED)
    for tag in soup.find_all(True):
        if tag.name == "br":
            tag.replace_with("\n")
        elif tag.name in ("td", "th"):
            tag.insert_after(" ")
        elif tag.name in _BLOCKS:
            if tag.name == "li":
                tag.insert(0, "- ")
            tag.insert_before("\n")
            tag.insert_after("\n")
    # Every block was given its own line breaks: blank lines between them say nothing.
    return CustomerText(_tidy(soup.get_text(), blank_lines=False), flags)


def _remove_html_quotes(soup: BeautifulSoup) -> bool:
    removed = False
    for selector in _QUOTE_TO_END_SELECTORS:
        for start in soup.select(selector):
            if start.decomposed:
                continue
            _remove_from_here_on(start)
            removed = True
    for selector in _QUOTE_SELECTORS:
        for tag in soup.select(selector):
            if not tag.decomposed:
                tag.decompose()
                removed = True
    return removed


def _remove_from_here_on(start: Tag) -> None:
    """Remove `start` and everything after it in document order (Outlook puts the earlier mail
    after its reply header, not inside it)."""
    node: Tag | None = start
    while node is not None and node.name not in ("body", "html", "[document]"):
        for later in list(node.next_siblings):
            later.extract()
        parent = node.parent
        if node is start:
            node.decompose()
        node = parent


def _tidy(text: str, *, blank_lines: bool = True) -> str:
    """Whitespace collapsed within lines, lines trimmed, at most one blank line in a row (none
    without `blank_lines`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [re.sub(r"[ \t\f\v\u00a0\u200b]+", " ", line).strip() for line in text.split("\n")]
    tidy: list[str] = []
    for line in lines:
        if line or (blank_lines and tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip()


_ON_WROTE = re.compile(
    r"^(?:on\s.{4,200}\swrote|am\s.{4,200}\sschrieb\s.{1,200}|le\s.{4,200}\sa\s+écrit|el\s.{4,200}\sescribió"
    r"|op\s.{4,200}\sschreef\s.{1,200})\s*:$",
    re.I,
)
_ORIGINAL_MESSAGE = re.compile(r"^-{2,}\s*(?:original\s+message|ursprüngliche\s+nachricht|message\s+d'origine)\s*-{2,}$", re.I)
_OUTLOOK_FROM = re.compile(r"^\*?(?:from|von|de)\s*:\*?\s+\S", re.I)
_OUTLOOK_SENT = re.compile(r"^\*?(?:sent|date|gesendet|envoyé)\s*:\*?\s+\S", re.I)
_UNDERSCORES = re.compile(r"^_{8,}$")
_SIGNATURE = re.compile(r"^--\s?$")


def strip_quoted(text: str) -> CustomerText:
    """The new part of a plain-text reply: the earlier mail it quotes is removed (an `On <date>,
    <name> wrote:` line and what follows, lines starting with `>`, Outlook's `-----Original
    Message-----` or `From: ... Sent: ...` header and what follows), then a signature after a
    `-- ` line. A text that would be left empty is kept whole: the customer sent it for a reason
    (a forwarded message, a reply typed inside the quote) and a person can read it."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _quote_start(lines)
    kept = lines[:cut]
    without_quote_marks = [line for line in kept if not line.lstrip().startswith(">")]
    stripped = cut < len(lines) or len(without_quote_marks) < len(kept)
    for index, line in enumerate(without_quote_marks):
        if _SIGNATURE.match(line):
            without_quote_marks = without_quote_marks[:index]
            break
    result = _tidy("\n".join(without_quote_marks))
    if not result and text.strip():
        return CustomerText(_tidy(text), [])
    return CustomerText(result, [QUOTED_TEXT_STRIPPED] if stripped else [])


def _quote_start(lines: list[str]) -> int:
    """Index of the first line of the quoted earlier mail (len(lines) when there is none)."""
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if _ORIGINAL_MESSAGE.match(line):
            return index
        # Clients wrap a long "On <date>, <name> <address> wrote:" over two or three lines; the
        # date's digits tell it from a sentence that happens to start with "On".
        for span in (1, 2, 3):
            joined = " ".join(part.strip() for part in lines[index:index + span])
            if _ON_WROTE.match(joined) and re.search(r"\d", joined):
                return index
        if _OUTLOOK_FROM.match(line) and any(_OUTLOOK_SENT.match(later.strip()) for later in lines[index + 1:index + 5]):
            return index - 1 if index > 0 and _UNDERSCORES.match(lines[index - 1].strip()) else index
    return len(lines)


def cap(text: str, limit: int = MAX_FIELD_CHARS) -> CustomerText:
    """`text` cut to `limit` characters (flag `body_truncated`)."""
    if len(text) <= limit:
        return CustomerText(text, [])
    return CustomerText(text[:limit], [BODY_TRUNCATED])


def customer_text(raw: str, *, html: bool | None = None) -> CustomerText:
    """The customer's words in a helpdesk or mail body: HTML converted (when `html`, or when it
    looks like HTML with `html=None`), quotes and signature stripped, capped. Flags in order."""
    raw = raw.replace("\x00", "")
    flags: list[str] = []
    if html if html is not None else looks_like_html(raw):
        converted = html_to_text(raw)
        raw = converted.text
        flags += converted.flags
    unquoted = strip_quoted(raw)
    capped = cap(unquoted.text)
    for flag in unquoted.flags + capped.flags:
        if flag not in flags:
            flags.append(flag)
    return CustomerText(capped.text, flags)
