"""gRPC adapter for `Retriever.Search` and `Retriever.SimilarCases`: decode, search, encode.

Weaviate down -> UNAVAILABLE at once (the store has short timeouts and reconnects lazily, so the
next call after it returns succeeds). A tenant that has no index yet -> an empty result. A search
that finds nothing relevant is also published as a KbGapDetected when a publisher is given.
"""

from __future__ import annotations

import logging
from typing import Sequence

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc, ticket_pb2
from supportflow.eventbus import EventPublisher
from supportflow.observability import ticket_context

from services.retriever import metrics
from services.retriever.handlers import kb_gap
from services.retriever.search import (
    ArticleResult,
    CaseStore,
    InvalidTenant,
    SearchFilters,
    Searcher,
    SearchResult,
    StoreUnavailable,
    TextEncoder,
    find_similar_cases,
)

log = logging.getLogger(__name__)

DEFAULT_K = 10
MAX_K = 50
MAX_REQUEST_QUERY_CHARS = 20_000  # beyond this the request is a document, not a query
GAP_QUERY_CHARS = 2_000  # how much of the query a KbGapDetected carries


def _passages(articles: Sequence[ArticleResult]) -> list[ticket_pb2.EvidencePassage]:
    return [
        ticket_pb2.EvidencePassage(
            article_id=p.article_id,
            chunk_id=p.chunk_id,
            title=p.title,
            section=p.section,
            text=p.text,
            score=p.score,
            url=p.url,
            source=p.source,
            is_policy=p.is_policy,
            stale=article.stale,
            intents=p.intents,
        )
        for article in articles
        for p in article.passages
    ]


def search_response(result: SearchResult) -> services_pb2.SearchResponse:
    return services_pb2.SearchResponse(passages=_passages(result.articles), gap=result.gap,
                                       best_score=result.best_score, policy=_passages(result.policy))


def _k(requested: int) -> int:
    return min(requested or DEFAULT_K, MAX_K)


class RetrieverServicer(services_pb2_grpc.RetrieverServicer):
    def __init__(
        self,
        searcher: Searcher,
        cases: CaseStore,
        encoder: TextEncoder,
        publisher: EventPublisher | None = None,
    ) -> None:
        self._searcher = searcher
        self._cases = cases
        self._encoder = encoder
        self._publisher = publisher

    def Search(self, request: services_pb2.SearchRequest, context: grpc.ServicerContext) -> services_pb2.SearchResponse:  # noqa: N802
        with ticket_context(request.ticket_id):
            self._validate(request.tenant_id, request.query or request.intent, context, metrics.SEARCHES)
            filters = SearchFilters(
                locale=request.filters.locale,
                intents=tuple(request.filters.intents),
                sources=tuple(request.filters.sources),
                policy_only=request.filters.policy_only,
            )
            try:
                result = self._searcher.search(
                    request.tenant_id, request.query, _k(request.k), filters=filters, intent=request.intent,
                    with_policy=request.with_policy,
                )
            except InvalidTenant as exc:
                metrics.SEARCHES.labels("invalid").inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except StoreUnavailable as exc:
                metrics.SEARCHES.labels("unavailable").inc()
                context.abort(grpc.StatusCode.UNAVAILABLE, f"knowledge base unavailable: {exc}")
            metrics.SEARCHES.labels("gap" if result.gap else "evidence").inc()
            metrics.BEST_SCORE.observe(result.best_score)
            for article in result.articles:
                if article.passages and article.passages[0].review_by is None:
                    metrics.UNKNOWN_FRESHNESS.labels("hold" if article.stale else "fresh").inc()
            self._publish_gap(request, result)
            return search_response(result)

    def SimilarCases(self, request: services_pb2.SimilarCasesRequest, context: grpc.ServicerContext) -> services_pb2.SimilarCasesResponse:  # noqa: N802
        self._validate(request.tenant_id, request.query, context, metrics.SIMILAR_CASE_SEARCHES)
        try:
            hits = find_similar_cases(self._cases, self._encoder, request.tenant_id, request.query, _k(request.k))
        except InvalidTenant as exc:
            metrics.SIMILAR_CASE_SEARCHES.labels("invalid").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreUnavailable as exc:
            metrics.SIMILAR_CASE_SEARCHES.labels("unavailable").inc()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"case index unavailable: {exc}")
        metrics.SIMILAR_CASE_SEARCHES.labels("ok").inc()
        return services_pb2.SimilarCasesResponse(
            cases=[
                services_pb2.SimilarCase(
                    ticket_id=h.case.ticket_id,
                    problem_statement=h.case.problem_statement,
                    resolution_notes=h.case.resolution_notes,
                    intent=h.case.intent,
                    score=h.score,
                    similarity=h.similarity,
                )
                for h in hits
            ]
        )

    @staticmethod
    def _validate(tenant_id: str, query: str, context: grpc.ServicerContext, counter) -> None:  # type: ignore[no-untyped-def]
        problem = ""
        if not tenant_id:
            problem = "tenant_id is required"
        elif not query.strip():
            problem = "query is empty"
        elif len(query) > MAX_REQUEST_QUERY_CHARS:
            problem = f"query longer than {MAX_REQUEST_QUERY_CHARS} characters"
        if problem:
            counter.labels("invalid").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    def _publish_gap(self, request: services_pb2.SearchRequest, result: SearchResult) -> None:
        emit = kb_gap(request.tenant_id, request.ticket_id, result.query.keywords[:GAP_QUERY_CHARS], request.intent, result)
        if emit is None or self._publisher is None:
            return
        try:
            self._publisher.publish(emit.topic, emit.key, emit.event)
        except Exception:  # noqa: BLE001 - a lost gap report must not fail the customer's search
            log.exception("could not publish a KB gap")
