"""Knowledge articles: parsing (JSON lines, Markdown folders), sample-KB enrichment and section-aware
chunking. Pure: no Weaviate, no Kafka, no gRPC.

A chunk is one section of an article (split on Markdown headings). Tiny sections are merged into
their neighbour so that a heading followed by one line does not become a passage of its own, and
huge sections are split on paragraph boundaries under a size cap. Every chunk keeps the article
title and its section heading: a passage such as "The fee is $25." means nothing without them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

import yaml

SOURCES = ("help_center", "internal_policy", "release_notes", "faq", "community")
DEFAULT_LOCALE = "en"
DEFAULT_SOURCE = "help_center"

# Chunk sizes in characters. MiniLM reads about 256 word pieces (roughly 1,000 characters of
# English); a cap a little below keeps the whole chunk inside what the encoder sees.
MAX_CHUNK_CHARS = 900
MIN_CHUNK_CHARS = 200


class ArticleError(ValueError):
    """An article record is unusable (no id, no content, malformed front matter)."""


@dataclass(frozen=True)
class KnowledgeArticle:
    article_id: str
    title: str
    content: str  # Markdown
    url: str = ""
    source: str = DEFAULT_SOURCE
    owner: str = ""
    updated_at: datetime | None = None
    review_by: datetime | None = None
    intents: tuple[str, ...] = ()
    locale: str = DEFAULT_LOCALE
    is_policy: bool = False


@dataclass(frozen=True)
class Chunk:
    article: KnowledgeArticle = field(repr=False)
    index: int  # position in the article, 0-based
    section: str  # heading path, e.g. "Fees / Foreign transactions"; "" before the first heading
    text: str  # the section body, Markdown

    @property
    def chunk_id(self) -> str:
        return f"{self.article.article_id}#{self.index}"

    @property
    def search_text(self) -> str:
        """What the encoder embeds: the passage with the title and heading it lives under."""
        head = f"{self.article.title}: {self.section}" if self.section else self.article.title
        return f"{head}\n{self.text}"


# ---------------------------------------------------------------------------------------------
# Parsing


def article_from_record(record: dict) -> KnowledgeArticle:
    """A `{"id","title","content", ...metadata}` record (JSON line or front matter + body)."""
    if not isinstance(record, dict):
        raise ArticleError("an article record must be a JSON object")
    article_id = str(record.get("id") or record.get("article_id") or "").strip()
    if not article_id:
        raise ArticleError("article has no id")
    content = str(record.get("content") or "").strip()
    title = str(record.get("title") or "").strip()
    if not content and not title:
        raise ArticleError(f"article {article_id} has neither title nor content")
    source = str(record.get("source") or DEFAULT_SOURCE).strip()
    intents = record.get("intents") or ()
    if isinstance(intents, str):
        intents = [part.strip() for part in intents.split(",")]
    return KnowledgeArticle(
        article_id=article_id,
        title=title or article_id,
        content=content,
        url=str(record.get("url") or ""),
        source=source,
        owner=str(record.get("owner") or ""),
        updated_at=parse_timestamp(record.get("updated_at"), f"{article_id}.updated_at"),
        review_by=parse_timestamp(record.get("review_by"), f"{article_id}.review_by"),
        intents=tuple(str(intent) for intent in intents if str(intent)),
        locale=str(record.get("locale") or DEFAULT_LOCALE),
        is_policy=_as_bool(record.get("is_policy", False)),
    )


def parse_timestamp(value: object, what: str) -> datetime | None:
    """ISO-8601 date or datetime (or a YAML date) -> aware UTC datetime; empty -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif hasattr(value, "isoformat"):  # a datetime.date, as YAML parses `2025-01-31`
        moment = datetime.fromisoformat(value.isoformat())
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ArticleError(f"{what}: {value!r} is not an ISO-8601 date") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)


def article_from_markdown(text: str, default_id: str) -> KnowledgeArticle:
    """A Markdown document with optional YAML front matter; the id defaults to the file stem and
    the title to the first level-1 heading (which is then removed from the body)."""
    record: dict = {}
    body = text
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise ArticleError(f"{default_id}: bad YAML front matter: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ArticleError(f"{default_id}: front matter must be a mapping")
        record, body = dict(loaded), text[match.end():]
    if not record.get("title"):
        heading = re.match(r"\s*#\s+(.+?)\s*\n", body)
        if heading:
            record["title"] = heading.group(1)
            body = body[heading.end():]
    record.setdefault("id", default_id)
    record["content"] = body
    return article_from_record(record)


def read_jsonl(lines: Iterable[str], origin: str = "<jsonl>") -> Iterator[dict]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ArticleError(f"{origin}:{number}: not JSON: {exc}") from exc


def load_articles(path: Path) -> list[KnowledgeArticle]:
    """Articles from a .jsonl / .jsonl.gz file or a folder of .md files (searched recursively).

    The shipped sample KB (records with only id/title/content) is enriched with derived metadata.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.md"))
        if not files:
            raise ArticleError(f"{path}: no .md files")
        return [article_from_markdown(f.read_text(encoding="utf-8"), f.stem) for f in files]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        records = list(read_jsonl(handle, str(path)))
    articles = []
    for index, record in enumerate(records):
        try:
            article = article_from_record(record)
        except ArticleError as exc:
            raise ArticleError(f"{path}: record {index + 1}: {exc}") from exc
        articles.append(enrich_sample_article(article) if _is_bare(record) else article)
    return articles


def _is_bare(record: dict) -> bool:
    """Only id/title/content: the shape of the shipped Rho-Bank KB, which carries no metadata."""
    return set(record) <= {"id", "title", "content"}


# ---------------------------------------------------------------------------------------------
# Sample-KB enrichment (Rho-Bank). The shipped articles carry only id/title/content; the metadata a
# real help centre would have is derived here by fixed, documented rules so that demos and tests
# exercise filters, ownership and freshness.

SAMPLE_KB_BASE_URL = "https://help.rho-bank.example"
# Dates are spread deterministically (from a hash of the id) over the year before the day the
# sample KB is loaded, so it has the same freshness mix whenever it is indexed: every help-centre
# article is within its review interval and canonical policy older than 180 days (about half of
# it) is due for review. A fixed date would let every article go stale as the calendar moves on.
HELP_CENTER_REVIEW_DAYS = 365
POLICY_REVIEW_DAYS = 180  # canonical policy is re-checked twice a year

# The id's area prefix (doc_<area>_...) -> owning team.
SAMPLE_KB_OWNERS = {
    "bank": "accounts-team",
    "business": "business-banking-team",
    "buy": "bnpl-team",
    "checking": "accounts-team",
    "credit": "cards-team",
    "customer": "customer-care-team",
    "everyone": "payments-team",
    "personal": "accounts-team",
    "savings": "accounts-team",
}
DEFAULT_OWNER = "knowledge-team"

# The is_policy rule: an article is canonical policy when it states a concrete quantity (a money
# amount, a percentage or a duration) AND uses a policy term (fee, limit, rate, eligibility...).
# Either alone is not enough: "contact us within the app" has a policy term but no quantity; a
# how-to listing "step 1, 2, 3" has numbers but no fee, limit or rate.
_POLICY_QUANTITY = re.compile(
    r"[$€£]\s?\d[\d,]*(?:\.\d+)?"  # $25, $1,000.00
    r"|\b\d+(?:\.\d+)?\s?%"  # 1.5 %
    r"|\b\d+\s*-?\s*(?:calendar |business )?(?:hours?|days?|weeks?|months?|years?)\b",  # 30 days
    re.I,
)
_POLICY_TERM = re.compile(
    r"\b(?:fees?|limits?|rates?|apr|apy|interest|eligib\w*|minimum|maximum|penalt(?:y|ies)"
    r"|charges?|charged|deadline|refunds?|waive[ds]?)\b",
    re.I,
)


def states_policy(text: str) -> bool:
    return bool(_POLICY_QUANTITY.search(text) and _POLICY_TERM.search(text))


def sample_source(title: str) -> str:
    return "internal_policy" if title.lower().startswith("internal:") else "help_center"


def sample_owner(article_id: str) -> str:
    parts = article_id.split("_")
    area = parts[1] if len(parts) > 2 and parts[0] == "doc" else ""
    return SAMPLE_KB_OWNERS.get(area, DEFAULT_OWNER)


def sample_url(article_id: str, source: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", article_id.lower()).strip("-")
    folder = "internal" if source == "internal_policy" else "articles"
    return f"{SAMPLE_KB_BASE_URL}/{folder}/{slug}"


def sample_dates(article_id: str, is_policy: bool, loaded_on: date | None = None) -> tuple[datetime, datetime]:
    """updated_at within the year before `loaded_on` (default: today, UTC); review_by a fixed
    interval later."""
    loaded_on = loaded_on or datetime.now(timezone.utc).date()
    epoch = datetime(loaded_on.year, loaded_on.month, loaded_on.day, tzinfo=timezone.utc)
    age_days = int.from_bytes(hashlib.sha256(article_id.encode()).digest()[:4], "big") % 365
    updated_at = epoch - timedelta(days=age_days)
    interval = POLICY_REVIEW_DAYS if is_policy else HELP_CENTER_REVIEW_DAYS
    return updated_at, updated_at + timedelta(days=interval)


def enrich_sample_article(article: KnowledgeArticle) -> KnowledgeArticle:
    source = sample_source(article.title)
    is_policy = states_policy(article.content)
    updated_at, review_by = sample_dates(article.article_id, is_policy)
    return replace(
        article,
        source=source,
        is_policy=is_policy,
        owner=sample_owner(article.article_id),
        url=sample_url(article.article_id, source),
        updated_at=updated_at,
        review_by=review_by,
    )


# ---------------------------------------------------------------------------------------------
# Chunking

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass
class _Section:
    path: list[str]
    lines: list[str]

    @property
    def body(self) -> str:
        return "\n".join(self.lines).strip()

    @property
    def label(self) -> str:
        return " / ".join(self.path)


def _sections(content: str) -> list[_Section]:
    """Split on Markdown headings (outside code fences); each section remembers its heading path."""
    sections = [_Section([], [])]
    stack: list[tuple[int, str]] = []
    in_fence = False
    for line in content.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            level, heading = len(match.group(1)), match.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            sections.append(_Section([h for _, h in stack], []))
        else:
            sections[-1].lines.append(line)
    return sections


def _merge_tiny(sections: list[_Section], min_chars: int, max_chars: int) -> list[tuple[str, str]]:
    """Drop empty sections and merge a section shorter than `min_chars` into the next one (or the
    previous one at the end), as long as the result stays under `max_chars`."""
    pieces = [(s.label, s.body) for s in sections if s.body]
    merged: list[tuple[str, str]] = []
    carry: tuple[str, str] | None = None
    for label, body in pieces:
        if carry is not None:
            carry_label, carry_body = carry
            joined = f"{carry_body}\n\n{_subheading(label)}{body}"
            if len(joined) <= max_chars:
                label, body = _join_labels(carry_label, label), joined
            else:
                merged.append(carry)
            carry = None
        if len(body) < min_chars:
            carry = (label, body)
        else:
            merged.append((label, body))
    if carry is not None:
        if merged and len(merged[-1][1]) + len(carry[1]) + 2 <= max_chars:
            last_label, last_body = merged[-1]
            merged[-1] = (_join_labels(last_label, carry[0]), f"{last_body}\n\n{_subheading(carry[0])}{carry[1]}")
        else:
            merged.append(carry)
    return merged


def _subheading(label: str) -> str:
    """Inside a merged chunk, a merged section keeps its own heading as a line."""
    return f"{label.rsplit(' / ', 1)[-1]}:\n" if label else ""


def _join_labels(first: str, second: str) -> str:
    """"Fees" + "Fees / Foreign use" -> "Fees; Foreign use": the merged chunk lists its headings."""
    if not second:
        return first
    heading = second.rsplit(" / ", 1)[-1]
    if not first:
        return second
    return first if heading in first.split("; ") else f"{first}; {heading}"


def _split_large(body: str, max_chars: int) -> list[str]:
    """Split on paragraph boundaries, then lines, then sentences, then hard cuts, under max_chars."""
    if len(body) <= max_chars:
        return [body]
    for separator in ("\n\n", "\n", ". "):
        units = [u for u in body.split(separator) if u.strip()]
        if len(units) > 1:
            break
    else:
        return [body[i:i + max_chars].strip() for i in range(0, len(body), max_chars)]
    parts: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{separator}{unit}" if current else unit
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            parts.append(current)
        if len(unit) > max_chars:
            parts.extend(_split_large(unit, max_chars))
            current = ""
        else:
            current = unit
    if current:
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def chunk_article(
    article: KnowledgeArticle, *, max_chars: int = MAX_CHUNK_CHARS, min_chars: int = MIN_CHUNK_CHARS
) -> list[Chunk]:
    """Section-aware chunks of `article`, in document order, each at most `max_chars` of body."""
    if min_chars >= max_chars:
        raise ValueError("min_chars must be smaller than max_chars")
    chunks: list[Chunk] = []
    for label, body in _merge_tiny(_sections(article.content), min_chars, max_chars):
        for part in _split_large(body, max_chars):
            chunks.append(Chunk(article=article, index=len(chunks), section=label, text=part))
    if not chunks:  # a title-only article is still findable by its title
        chunks.append(Chunk(article=article, index=0, section="", text=article.title))
    return chunks
