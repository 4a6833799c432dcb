"""HTML and plain text, the way the helpdesks turn one into the other for their APIs."""

from __future__ import annotations

import html as html_lib
import re

from bs4 import BeautifulSoup

_BLOCKS = ("p", "div", "ul", "ol", "table", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6")
_LINES = ("li", "tr")
_TAG = re.compile(r"<[a-zA-Z][^>]*>")


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: paragraphs apart by a blank line, list items one per line,
    links reduced to their text, whitespace collapsed."""
    if not markup:
        return ""
    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_LINES):
        tag.insert_before("\n")
        tag.insert_after("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    lines = [re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in soup.get_text().split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def looks_like_html(text: str) -> bool:
    return bool(_TAG.search(text or ""))


def text_to_html(text: str) -> str:
    """A plain-text body as the helpdesks store it: one <p> per paragraph, line breaks kept.
    A body that already holds HTML is kept as it is."""
    if looks_like_html(text):
        return text
    paragraphs = [part for part in re.split(r"\n\s*\n", text or "") if part.strip()]
    return "".join(f"<p>{html_lib.escape(part.strip()).replace(chr(10), '<br>')}</p>" for part in paragraphs)
