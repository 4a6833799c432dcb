"""Knowledge articles: parsing (JSON lines, Markdown folders), what a tenant does with the metadata
its knowledge base does not carry, and section-aware chunking. Pure: no Weaviate, no Kafka, no gRPC.

Metadata an article does not carry stays unknown: no URL, no owner, no dates, `is_policy` None. A
knowledge base of bare `{"id", "title", "content"}` records (the Rho-Bank sample) gets nothing
invented. What an unknown review date or an unmarked article means is the tenant's decision,
`<tenants_dir>/<tenant>/knowledge.yaml` (`KnowledgePolicy`), applied where the answer is served.

A chunk is one section of an article (split on Markdown headings). Tiny sections are merged into
their neighbour so that a heading followed by one line does not become a passage of its own, and
huge sections are split on paragraph boundaries under a size cap. Every chunk keeps the article
title and its section heading: a passage such as "The fee is $25." means nothing without them.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    is_policy: bool | None = None  # None: the knowledge base does not say whether it is canonical policy


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
        is_policy=_as_optional_bool(record.get("is_policy")),
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


def _as_optional_bool(value: object) -> bool | None:
    """A flag the record states, or None when it states nothing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
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
    """Articles from a .jsonl / .jsonl.gz file or a folder of .md files (searched recursively), with
    the metadata each record carries and no other."""
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
        articles.append(article)
    return articles


# ---------------------------------------------------------------------------------------------
# What a tenant does with metadata its knowledge base lacks

KNOWLEDGE_FILE = "knowledge.yaml"
FRESH, HOLD = "fresh", "hold"
CANONICAL, NOT_CANONICAL = "canonical", "not_canonical"


class KnowledgePolicyError(ValueError):
    """A tenant's knowledge.yaml is malformed."""


@dataclass(frozen=True)
class KnowledgePolicy:
    """`unknown_freshness`: an article without a review date is served as `fresh`, or every answer
    citing it is held for an agent (`hold`, the stale-article hold). `unmarked_policy`: an article
    the knowledge base does not mark either way may back a policy figure (`canonical`: the tenant
    declares its whole KB authoritative) or not (`not_canonical`). The defaults are what a knowledge
    base says by saying nothing: no review date was set, no article was marked as policy."""

    unknown_freshness: str = FRESH
    unmarked_policy: str = NOT_CANONICAL
    origin: str = "default"

    def stale(self, review_by: datetime | None, now: datetime) -> bool:
        if review_by is None:
            return self.unknown_freshness == HOLD
        return review_by < now

    def canonical(self, is_policy: bool | None) -> bool:
        return self.unmarked_policy == CANONICAL if is_policy is None else is_policy


def parse_knowledge_policy(data: object, origin: str) -> KnowledgePolicy:
    if not isinstance(data, dict):
        raise KnowledgePolicyError(f"{origin}: expected a mapping with unknown_freshness and unmarked_policy")
    unknown = set(map(str, data)) - {"unknown_freshness", "unmarked_policy"}
    if unknown:
        raise KnowledgePolicyError(f"{origin}: unknown keys {sorted(unknown)}; expected unknown_freshness, unmarked_policy")
    freshness = str(data.get("unknown_freshness", FRESH))
    if freshness not in (FRESH, HOLD):
        raise KnowledgePolicyError(f"{origin}: unknown_freshness is {freshness!r}; expected {FRESH} or {HOLD}")
    unmarked = str(data.get("unmarked_policy", NOT_CANONICAL))
    if unmarked not in (CANONICAL, NOT_CANONICAL):
        raise KnowledgePolicyError(f"{origin}: unmarked_policy is {unmarked!r}; expected {CANONICAL} or {NOT_CANONICAL}")
    return KnowledgePolicy(freshness, unmarked, origin)


def read_knowledge_policy(path: Path) -> KnowledgePolicy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise KnowledgePolicyError(f"{path}: not valid YAML: {exc}") from exc
    return parse_knowledge_policy(data, str(path))


class TenantKnowledgePolicies:
    """Each tenant's knowledge policy, read once from `<tenants_dir>/<tenant>/knowledge.yaml`; a
    tenant without the file (or no tenants_dir) has the defaults."""

    def __init__(self, tenants_dir: Path | None) -> None:
        self._dir = Path(tenants_dir) if tenants_dir is not None else None
        self._policies: dict[str, KnowledgePolicy] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> KnowledgePolicy:
        with self._lock:
            if tenant not in self._policies:
                path = self._file(tenant)
                self._policies[tenant] = read_knowledge_policy(path) if path else KnowledgePolicy()
            return self._policies[tenant]

    def _file(self, tenant: str) -> Path | None:
        if self._dir is None or not tenant or "/" in tenant or tenant.startswith("."):
            return None
        path = self._dir / tenant / KNOWLEDGE_FILE
        return path if path.is_file() else None


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
