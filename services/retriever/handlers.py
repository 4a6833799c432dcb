"""What the retriever does with events, and the KB-gap event it produces.

- `kb.articles` (KbArticleChanged): upsert the article's chunks, or delete them.
- `tickets.resolved` (TicketResolved): index the case for similar-case search.
- A search that finds nothing relevant becomes a KbGapDetected on `kb.gaps` (built here, published
  by the servicer since Search is an RPC).

Both consumers are idempotent: re-applying an article change or a resolution rewrites the same
objects (deterministic ids). A store outage is a TransientError (retried, then the consumer stops
without committing); a malformed event is an InvalidEvent (dead-lettered).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Iterable, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent, TransientError, new_meta
from supportflow.topics import Topic

from services.retriever import metrics
from services.retriever.articles import DEFAULT_LOCALE, DEFAULT_SOURCE, KnowledgeArticle
from services.retriever.search import InvalidCase, InvalidTenant, ResolvedCase, SearchResult, StoreUnavailable, resolved_case

log = logging.getLogger(__name__)

SERVICE = "retriever"


class ArticleStore(Protocol):
    def upsert(self, tenant_id: str, articles: Iterable[KnowledgeArticle]) -> object: ...

    def delete(self, tenant_id: str, article_id: str) -> int: ...


class CaseWriter(Protocol):
    def upsert(self, tenant_id: str, case: ResolvedCase) -> None: ...


def _timestamp(value: Timestamp, present: bool) -> datetime | None:
    return value.ToDatetime(tzinfo=timezone.utc) if present else None


def article_from_event(event: ev.KbArticleChanged) -> KnowledgeArticle:
    if not event.article_id:
        raise InvalidEvent("KbArticleChanged without article_id")
    if not event.title.strip() and not event.content.strip():
        raise InvalidEvent(f"article {event.article_id} has neither title nor content")
    return KnowledgeArticle(
        article_id=event.article_id,
        title=event.title.strip() or event.article_id,
        content=event.content,
        url=event.url,
        source=event.source or DEFAULT_SOURCE,
        owner=event.owner,
        updated_at=_timestamp(event.updated_at, event.HasField("updated_at")),
        review_by=_timestamp(event.review_by, event.HasField("review_by")),
        intents=tuple(event.intents),
        locale=event.locale or DEFAULT_LOCALE,
        # proto3 has no "unset" for a bool: false is "not marked", which the tenant's policy reads.
        is_policy=True if event.is_policy else None,
    )


def _tenant_of(event: ev.KbArticleChanged | ev.TicketResolved) -> str:
    if not event.meta.tenant_id:
        raise InvalidEvent("event has no meta.tenant_id")
    return event.meta.tenant_id


class KbArticleHandler:
    def __init__(self, store: ArticleStore) -> None:
        self._store = store

    def handle(self, event: ev.KbArticleChanged) -> list[Emit]:
        tenant = _tenant_of(event)
        try:
            if event.deleted:
                if not event.article_id:
                    raise InvalidEvent("KbArticleChanged(deleted) without article_id")
                removed = self._store.delete(tenant, event.article_id)
                metrics.ARTICLES_INDEXED.labels("delete").inc()
                log.info("article deleted", extra={"fields": {"article_id": event.article_id, "chunks": removed}})
            else:
                self._store.upsert(tenant, [article_from_event(event)])
                metrics.ARTICLES_INDEXED.labels("upsert").inc()
        except InvalidTenant as exc:
            raise InvalidEvent(str(exc)) from exc
        except StoreUnavailable as exc:
            raise TransientError(str(exc)) from exc
        return []


class ResolvedCaseHandler:
    def __init__(self, store: CaseWriter) -> None:
        self._store = store

    def handle(self, event: ev.TicketResolved) -> list[Emit]:
        tenant = _tenant_of(event)
        try:
            case = resolved_case(
                event.ticket_id, event.problem_statement, event.resolution_notes, event.intent, event.article_ids
            )
        except InvalidCase as exc:
            raise InvalidEvent(f"TicketResolved: {exc}") from exc
        try:
            self._store.upsert(tenant, case)
        except InvalidTenant as exc:
            raise InvalidEvent(str(exc)) from exc
        except StoreUnavailable as exc:
            raise TransientError(str(exc)) from exc
        metrics.CASES_INDEXED.inc()
        return []


def kb_gap(tenant_id: str, ticket_id: str, query: str, intent: str, result: SearchResult) -> Emit | None:
    """The KbGapDetected for a search that found nothing relevant (None when it did), keyed by
    ticket id (by tenant when the search was not about a ticket); counted per intent."""
    if not result.gap:
        return None
    metrics.KB_GAPS.labels(metrics.bounded_intent(intent)).inc()
    event = ev.KbGapDetected(
        meta=new_meta(tenant_id, SERVICE),
        ticket_id=ticket_id,
        query=query,
        intent=intent,
        best_score=result.best_score,
    )
    return Emit(Topic.KB_GAPS, ticket_id or tenant_id, event)
