"""Help-centre sync: a tenant's Zendesk Help Center into its knowledge index, incrementally,
deletions included.

Which articles the sync owns: the tenant's indexed articles whose source is `help_center` and whose
id is a Zendesk article id (digits). Articles from elsewhere (the sample KB's `doc_...` ids, a
Markdown folder with other ids, internal policy) are never compared, changed or deleted by it.

The cursor is read from the index, not kept beside it: the newest `updated_at` among the owned
articles (each article's version being the oldest `updated_at` of its chunks, see
`KnowledgeIndex.article_versions`). Nothing else remembers where the last sync stopped, so a wiped
index, a sync that failed half-way or a direct `kb ingest` of the same articles are all picked up
from what the index really holds.

A sync (the default, `full`):
1. cursor = newest indexed version (none: first sync).
2. The change feed: the incremental export from the cursor (whole seconds, inclusive, so the
   articles of the cursor's second come back and count as unchanged); not read on a first sync.
3. The full listing of the channel's locale, every sync. It is the only place Zendesk shows that
   an article is gone (deleted, archived, unpublished: absent from it), it costs ceil(N/100)
   requests, and stale knowledge is worse than a few requests: a withdrawn policy must stop being
   quoted at the next sync, not at a weekly full crawl. It gives the changed articles in the
   channel's locale (the change feed is not per locale), and it repairs: a listed article the index
   lacks, or holds with another `updated_at` than listed, is re-indexed even if the feed missed it
   (a revision restored with its old date, an operator's `kb ingest` of newer copies that moved the
   cursor, a sync stopped half-way).
4. Re-index what changed, oldest first, so a sync that stops half-way leaves the cursor before the
   first change it did not write; delete every owned article absent from the listing or turned
   into a draft.

A second sync with nothing changed re-indexes nothing: one feed page and the listing are read.

`changes_only` skips the listing: the feed alone (one request when nothing changed), its articles
in the channel's locale re-indexed, those turned into drafts deleted; deleted and archived articles
are not seen (they leave the feed) until the next full sync. For a frequent cheap sync between full
ones on a very large help centre.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Iterable, Iterator, Protocol

from supportflow.channels import ZendeskChannel

from services.retriever import metrics
from services.retriever.articles import ArticleError, KnowledgeArticle
from services.retriever.help_center import SOURCE, HelpCenterClient, article_from_zendesk
from services.retriever.settings import RetrieverSettings

log = logging.getLogger(__name__)


class ArticleSource(Protocol):
    """What the sync reads from the help centre (HelpCenterClient)."""

    locale: str

    def articles(self) -> Iterator[dict]: ...

    def changed_articles(self, since: datetime) -> Iterator[dict]: ...


class SyncedIndex(Protocol):
    """What the sync needs from the knowledge index (KnowledgeIndex)."""

    def article_versions(self, tenant_id: str, source: str) -> dict[str, datetime | None]: ...

    def upsert(self, tenant_id: str, articles: Iterable[KnowledgeArticle]) -> object: ...

    def delete(self, tenant_id: str, article_id: str) -> int: ...


@dataclass(frozen=True)
class SyncSummary:
    tenant: str
    mode: str  # "full" or "changes_only"
    fetched: int  # articles the change feed returned (the full listing on a first sync)
    listed: int  # published articles in the full listing (0: not read)
    indexed: int  # articles (re-)indexed
    unchanged: int  # fetched articles whose indexed version was already current
    deleted: int  # articles removed from the index (absent from the listing, or now drafts)
    skipped: int  # articles that cannot be indexed (no Zendesk id, neither title nor body), logged
    cursor: datetime | None  # newest indexed updated_at after the sync
    seconds: float = 0.0

    def as_dict(self) -> dict:
        summary = asdict(self)
        summary["cursor"] = self.cursor.isoformat() if self.cursor else None
        return summary


def is_zendesk_id(article_id: str) -> bool:
    return article_id.isdigit()


def sync_articles(index: SyncedIndex, source: ArticleSource, tenant: str, *, full: bool = True) -> SyncSummary:
    """One sync of `source` into `index` for `tenant` (the steps are in the module docstring)."""
    started = time.perf_counter()
    versions = {a: v for a, v in index.article_versions(tenant, SOURCE).items() if is_zendesk_id(a)}
    cursor = max((v for v in versions.values() if v is not None), default=None)

    feed = _Listing()
    if cursor is not None:
        feed = _read(source.changed_articles(cursor))
    elif not full:
        raise ValueError("a changes-only sync needs a cursor: run a full sync first")

    if full:
        listing = _read(source.articles())
        fetched = feed.ids if cursor is not None else listing.ids
        candidates, exists = listing.published, listing.ids - listing.drafts
        gone = sorted(set(versions) - exists)
        skipped = listing.skipped
    else:
        locale = source.locale.lower()
        fetched = feed.ids
        candidates = {i: a for i, a in feed.published.items() if not a.locale or a.locale.lower() == locale}
        gone = sorted(feed.drafts & set(versions))
        skipped = feed.skipped

    to_index = [
        article for article_id, article in candidates.items()
        if article_id not in versions or _changed(article.updated_at, versions[article_id])
    ]
    # Oldest first: the cursor (the newest version indexed) never passes a change not yet written.
    to_index.sort(key=lambda a: (a.updated_at is not None, a.updated_at or datetime.min, a.article_id))

    if to_index:
        index.upsert(tenant, to_index)
        metrics.ARTICLES_INDEXED.labels("upsert").inc(len(to_index))
    for article_id in gone:
        index.delete(tenant, article_id)
        metrics.ARTICLES_INDEXED.labels("delete").inc()

    current = {a: v for a, v in versions.items() if a not in gone} | {a.article_id: a.updated_at for a in to_index}
    summary = SyncSummary(
        tenant=tenant,
        mode="full" if full else "changes_only",
        fetched=len(fetched),
        listed=len(candidates) if full else 0,
        indexed=len(to_index),
        unchanged=len(fetched & set(versions) - {a.article_id for a in to_index} - set(gone)),
        deleted=len(gone),
        skipped=skipped,
        cursor=max((v for v in current.values() if v is not None), default=None),
        seconds=round(time.perf_counter() - started, 2),
    )
    log.info("help centre synced", extra={"fields": summary.as_dict()})
    return summary


@dataclass
class _Listing:
    """Articles as one listing gave them: the published ones by id (the newest copy of an id seen
    twice), the ids of drafts, every id seen (unreadable ones included: an article we cannot read
    now is not an article deleted upstream, so its indexed version stays)."""

    published: dict[str, KnowledgeArticle] = field(default_factory=dict)
    drafts: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    skipped: int = 0


def _read(raws: Iterable[dict]) -> _Listing:
    listing = _Listing()
    for raw in raws:
        article_id = str(raw.get("id") or "").strip()
        if not is_zendesk_id(article_id):
            listing.skipped += 1
            log.warning("help-centre article skipped: id %r is not a Zendesk article id", article_id)
            continue
        listing.ids.add(article_id)
        if raw.get("draft") is True:
            listing.drafts.add(article_id)
            continue
        try:
            article = article_from_zendesk(raw)
        except ArticleError as exc:
            listing.skipped += 1
            log.warning("help-centre article skipped: %s", exc)
            continue
        previous = listing.published.get(article_id)
        if previous is None or _newer(article.updated_at, previous.updated_at):
            listing.published[article_id] = article
    listing.drafts -= set(listing.published)  # a published copy later in the feed wins
    return listing


def _changed(listed: datetime | None, indexed: datetime | None) -> bool:
    """Whether the listed version is another one than the indexed: its `updated_at` differs, later
    or (a revision restored, a clock set back) earlier. A version without a date (Zendesk always
    sends one) is indexed once, when it is missing, and replaced only by a dated one."""
    return listed is not None and listed != indexed


def _newer(candidate: datetime | None, than: datetime | None) -> bool:
    return candidate is not None and (than is None or candidate > than)


def sync_help_center(settings: RetrieverSettings, tenant: str, channel: ZendeskChannel, *, full: bool = True) -> dict:
    """Sync `tenant`'s Zendesk Help Center (its `zendesk` channel) into the retriever's index;
    returns the summary as a dict (fetched, listed, indexed, unchanged, deleted, skipped, cursor)."""
    from services.retriever.components import build_components

    parts = build_components(settings, query_timeout_s=30.0)
    try:
        with HelpCenterClient.from_channel(channel) as client:
            return sync_articles(parts.knowledge, client, tenant, full=full).as_dict()
    finally:
        parts.close()
