"""Zendesk Help Center: a client for the two article listings the sync reads, and the mapping of a
Zendesk article to a KnowledgeArticle.

    GET /api/v2/help_center/{locale}/articles.json?per_page=100       every article of one locale
    GET /api/v2/help_center/incremental/articles.json?start_time=<unix>  articles changed since then

Both pages carry `next_page` (an absolute URL; the incremental one moves `start_time` forward to
the page's `end_time`), followed until it is null. Authentication is Zendesk's API token scheme:
basic auth `<email>/token:<api_token>`. Every request has a timeout; 5xx, 429 and transport
failures are retried with exponential backoff (a 429's `Retry-After` is honoured, capped), any
other 4xx is permanent. A `next_page` on another host is refused: the credentials go with it.

Metadata comes from the article's labels, by a convention the help-centre editors follow:
`intent:<name>` (one per intent the article answers), `policy` (canonical policy) and
`review-by:YYYY-MM-DD`. An article without them keeps them unknown: no intents, policy status and
review date unknown (what the tenant does with unknown ones: `KnowledgePolicy` in articles.py).
Nothing is guessed from the text.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx
from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from supportflow.channels import ZendeskChannel

from services.retriever.articles import DEFAULT_LOCALE, ArticleError, KnowledgeArticle, parse_timestamp

log = logging.getLogger(__name__)

SOURCE = "help_center"
PAGE_SIZE = 100  # the List Articles maximum
INTENT_LABEL = "intent:"
POLICY_LABEL = "policy"
REVIEW_BY_LABEL = "review-by:"
MAX_PAGES = 10_000  # a runaway paginator stops here (a million articles), it does not loop forever


class HelpCenterError(RuntimeError):
    """Zendesk refused a request (a 4xx other than 429: bad credentials, unknown locale) or
    answered something that is not an article page."""


class HelpCenterUnavailable(HelpCenterError):
    """Zendesk did not answer usefully within the retries (5xx, 429, timeouts, connection errors)."""


class _Transient(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is waited this long, then tried


class HelpCenterClient:
    """Read-only Help Center API client for one Zendesk account (one tenant's channel)."""

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        locale: str = "en-us",
        timeout_s: float = 15.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url or not email or not api_token:
            raise ValueError("a Help Center client needs the Zendesk base_url, the API user's email and an API token")
        self.base_url = base_url.rstrip("/")
        self.locale = locale
        self._origin = _origin(self.base_url)
        self._retry = retry
        self._backoff = wait_exponential_jitter(multiplier=retry.initial_backoff_s, max=retry.max_backoff_s,
                                                jitter=retry.initial_backoff_s)
        self._sleep = sleep
        self._http = httpx.Client(
            auth=httpx.BasicAuth(f"{email}/token", api_token),
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Accept": "application/json", "User-Agent": "supportflow-retriever/help-center-sync"},
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_channel(cls, channel: ZendeskChannel, **options: Any) -> "HelpCenterClient":
        return cls(channel.base_url, channel.email, channel.api_token.get_secret_value(),
                   locale=channel.help_center_locale, **options)

    def __enter__(self) -> "HelpCenterClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the two listings --------------------------------------------------------------------------

    def articles(self) -> Iterator[dict]:
        """Every article of the client's locale, as Zendesk returns them."""
        yield from self._paged(f"{self.base_url}/api/v2/help_center/{self.locale}/articles.json?per_page={PAGE_SIZE}")

    def changed_articles(self, since: datetime) -> Iterator[dict]:
        """Articles whose metadata changed at or after `since` (whole seconds, rounded down, so the
        articles of the boundary second come again rather than being missed)."""
        start = max(0, int(since.timestamp()))
        yield from self._paged(f"{self.base_url}/api/v2/help_center/incremental/articles.json?start_time={start}")

    def _paged(self, url: str) -> Iterator[dict]:
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            seen.add(url)
            page = self._get(url)
            articles = page.get("articles")
            if not isinstance(articles, list):
                raise HelpCenterError(f"GET {_path(url)}: no 'articles' list in the answer")
            yield from (a for a in articles if isinstance(a, dict))
            next_page = page.get("next_page")
            # The incremental export's last page may point at itself; an empty page ends it too.
            if not next_page or not articles or page.get("end_of_stream") is True or next_page in seen:
                return
            if _origin(str(next_page)) != self._origin:
                raise HelpCenterError(f"next_page {next_page!r} is not on {self._origin}: not following it")
            url = str(next_page)
        raise HelpCenterError(f"more than {MAX_PAGES} pages from {_path(url)}: stopped")

    # -- one request, retried ------------------------------------------------------------------------

    def _get(self, url: str) -> dict:
        retrying = Retrying(
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, url)
        except _Transient as exc:
            raise HelpCenterUnavailable(
                f"GET {_path(url)}: {exc} (gave up after {self._retry.max_attempts} attempts)"
            ) from exc

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Transient) and failure.retry_after_s is not None:
            return min(failure.retry_after_s, self._retry.max_retry_after_s)
        return float(self._backoff(state))

    def _get_once(self, url: str) -> dict:
        try:
            response = self._http.get(url)
        except httpx.TransportError as exc:  # connect errors, timeouts, a dropped connection
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code} {_reason(response)}",
                             _retry_after_s(response.headers.get("Retry-After")))
        if response.status_code != 200:
            raise HelpCenterError(f"GET {_path(url)}: HTTP {response.status_code} {_reason(response)}")
        try:
            page = response.json()
        except ValueError as exc:
            raise HelpCenterError(f"GET {_path(url)}: the answer is not JSON") from exc
        if not isinstance(page, dict):
            raise HelpCenterError(f"GET {_path(url)}: the answer is not a JSON object")
        return page


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _reason(response: httpx.Response) -> str:
    """Zendesk's error, in either of its shapes ({"error": "...", "description"} or
    {"error": {"title", "message"}}), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return ": ".join(str(error[k]) for k in ("title", "message") if error.get(k))
        if error:
            return ": ".join(str(v) for v in (error, body.get("description")) if v)
    return str(body)[:200]


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (Zendesk sends seconds; an HTTP date is read too)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Zendesk article -> KnowledgeArticle


@dataclass(frozen=True)
class LabelMetadata:
    intents: tuple[str, ...] = ()
    is_policy: bool | None = None  # True with the `policy` label; None: the labels do not say
    review_by: datetime | None = None


def label_metadata(labels: object, article_id: str = "") -> LabelMetadata:
    """What an article's labels say; labels outside the convention are ignored, and so is a
    review-by label whose date cannot be read (logged: the article keeps no review date)."""
    intents: list[str] = []
    is_policy: bool | None = None
    review_dates: list[datetime] = []
    for label in labels if isinstance(labels, list) else ():
        text = str(label).strip()
        lowered = text.lower()
        if lowered.startswith(INTENT_LABEL):
            name = text[len(INTENT_LABEL):].strip()
            if name and name not in intents:
                intents.append(name)
        elif lowered == POLICY_LABEL:
            is_policy = True
        elif lowered.startswith(REVIEW_BY_LABEL):
            raw = text[len(REVIEW_BY_LABEL):].strip()
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                log.warning("help-centre article %s: label %r is not review-by:YYYY-MM-DD; no review date taken",
                            article_id, text)
                continue
            review_dates.append(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    # Two review-by labels: the earlier one, so the article is re-checked no later than either asks.
    return LabelMetadata(tuple(intents), is_policy, min(review_dates, default=None))


def article_from_zendesk(raw: dict) -> KnowledgeArticle:
    """A Help Center article (the JSON of List Articles) as a KnowledgeArticle."""
    if not isinstance(raw, dict):
        raise ArticleError("a Zendesk article must be a JSON object")
    article_id = str(raw.get("id") or "").strip()
    if not article_id:
        raise ArticleError("Zendesk article has no id")
    title = str(raw.get("title") or "").strip()
    content = html_to_markdown(str(raw.get("body") or ""))
    if not title and not content:
        raise ArticleError(f"Zendesk article {article_id} has neither title nor body")
    labels = label_metadata(raw.get("label_names"), article_id)
    return KnowledgeArticle(
        article_id=article_id,
        title=title or article_id,
        content=content,
        url=str(raw.get("html_url") or ""),
        source=SOURCE,
        updated_at=parse_timestamp(raw.get("updated_at"), f"{article_id}.updated_at"),
        review_by=labels.review_by,
        intents=labels.intents,
        locale=str(raw.get("locale") or DEFAULT_LOCALE),
        is_policy=labels.is_policy,
    )


# ---------------------------------------------------------------------------------------------
# HTML body -> Markdown-like text. Headings stay headings (`## Fees`) so the chunker splits the
# article by section; paragraphs are blocks; list items, table rows and line breaks are lines.
# Inline markup (links, emphasis, spans) keeps its text only: it is noise to BM25 and the encoder.

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_DROPPED = {"script", "style", "template", "noscript", "iframe", "svg", "head", "button", "form"}
_BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "blockquote",
           "figure", "figcaption", "details", "summary", "dl", "dt", "dd", "address", "center", "body", "html"}
_SPACE = re.compile(r"[ \t\r\n\f\v\u00a0]+")


def html_to_markdown(html: str) -> str:
    if not html.strip():
        return ""
    soup = BeautifulSoup(html, "html.parser")
    return "\n\n".join(block for block in _blocks(soup, 0) if block.strip()).strip()


def _blocks(node: Tag, depth: int) -> list[str]:
    """The blocks under `node`: runs of inline content become paragraphs."""
    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = _clean_lines("".join(inline))
        if text:
            blocks.append(text)
        inline.clear()

    for child in node.children:
        if isinstance(child, Comment):
            continue
        if isinstance(child, NavigableString):
            inline.append(str(child))
            continue
        if not isinstance(child, Tag) or child.name in _DROPPED:
            continue
        name = child.name
        if name in _HEADINGS:
            flush()
            heading = " ".join(_inline_text(child).split()).strip("# ")
            if heading:
                blocks.append(f"{'#' * _HEADINGS[name]} {heading}")
        elif name in ("ul", "ol"):
            flush()
            blocks.append("\n".join(_list_lines(child, depth)))
        elif name == "pre":
            flush()
            code = child.get_text().strip("\n")
            if code.strip():
                blocks.append(f"```\n{code}\n```")
        elif name == "table":
            flush()
            blocks.append("\n".join(_table_lines(child)))
        elif name == "hr":
            flush()
        elif name in _BLOCKS:
            flush()
            blocks.extend(_blocks(child, depth))
        else:  # inline: a, strong, em, span, code, br, img, ...
            inline.append(_inline_text(child))
    flush()
    return blocks


def _inline_text(node: Tag) -> str:
    """Text of inline content: whitespace collapsed, <br> kept as a line break, images by alt text."""
    if node.name == "br":
        return "\n"
    if node.name == "img":
        alt = str(node.get("alt") or "").strip()
        return f" {alt} " if alt else ""
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, Comment):
            continue
        if isinstance(child, NavigableString):
            parts.append(str(child))
        elif isinstance(child, Tag) and child.name not in _DROPPED:
            parts.append(_inline_text(child))
    return "".join(parts)


def _clean_lines(text: str) -> str:
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _list_lines(node: Tag, depth: int) -> list[str]:
    """One line per item (`- ` or `1. `), nested lists indented under their item."""
    lines: list[str] = []
    ordered = node.name == "ol"
    try:
        number = int(str(node.get("start") or 1))
    except ValueError:
        number = 1
    for item in node.find_all("li", recursive=False):
        nested = [c for c in item.children if isinstance(c, Tag) and c.name in ("ul", "ol")]
        for sub in nested:
            sub.extract()
        text = " ".join(" ".join(_blocks(item, depth + 1)).split())
        marker = f"{number}." if ordered else "-"
        lines.append(f"{'  ' * depth}{marker} {text}".rstrip())
        for sub in nested:
            lines.extend(_list_lines(sub, depth + 1))
        number += 1
    return lines


def _table_lines(node: Tag) -> list[str]:
    rows = []
    for row in node.find_all("tr"):
        cells = [" ".join(_inline_text(cell).split()) for cell in row.find_all(["th", "td"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(cells))
    return rows
