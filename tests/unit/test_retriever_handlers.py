"""Event handlers, the KB-gap event, the servicer's mapping and the readiness watch, with fakes."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2
from supportflow.eventbus import InvalidEvent, TransientError, new_meta
from supportflow.observability import Health
from supportflow.topics import Topic

from services.retriever import metrics
from services.retriever.handlers import KbArticleHandler, ResolvedCaseHandler, article_from_event, kb_gap
from services.retriever.readiness import NOT_READY_REASON, WeaviateReadinessWatch
from services.retriever.search import (
    ArticleResult,
    InvalidTenant,
    PassageHit,
    SearchQuery,
    SearchResult,
    StoreUnavailable,
)
from services.retriever.servicer import MAX_K, RetrieverServicer, search_response


class FakeStore:
    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.upserts: list = []
        self.deletes: list = []

    def upsert(self, tenant, payload):
        if self.fail:
            raise self.fail
        self.upserts.append((tenant, payload))

    def delete(self, tenant, article_id):
        if self.fail:
            raise self.fail
        self.deletes.append((tenant, article_id))
        return 3


def article_event(**fields) -> ev.KbArticleChanged:
    event = ev.KbArticleChanged(meta=new_meta("acme", "test"), **fields)
    return event


def test_article_event_becomes_an_article_with_metadata():
    event = article_event(article_id="a1", title="Fees", content="## Wire\n$25", source="internal_policy",
                          intents=["transfer_fee_charged"], locale="fr", is_policy=True)
    event.review_by.FromDatetime(datetime(2026, 5, 1))
    article = article_from_event(event)
    assert article.source == "internal_policy" and article.locale == "fr" and article.is_policy
    assert article.intents == ("transfer_fee_charged",)
    assert article.review_by == datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert article.updated_at is None  # absent timestamps stay absent, not 1970


def test_upsert_and_delete_go_to_the_store_under_the_event_tenant():
    store = FakeStore()
    handler = KbArticleHandler(store)
    assert handler.handle(article_event(article_id="a1", title="T", content="c")) == []
    assert handler.handle(article_event(article_id="a1", deleted=True)) == []
    assert store.upserts[0][0] == "acme" and store.upserts[0][1][0].article_id == "a1"
    assert store.deletes == [("acme", "a1")]


@pytest.mark.parametrize("event", [
    ev.KbArticleChanged(meta=ev.EventMeta(event_id="e"), article_id="a1", title="T"),  # no tenant
    article_event(title="T", content="c"),  # no article id
    article_event(article_id="a1"),  # no title, no content
    article_event(deleted=True),
])
def test_malformed_article_events_are_invalid(event):
    with pytest.raises(InvalidEvent):
        KbArticleHandler(FakeStore()).handle(event)


def test_store_outage_is_transient_and_bad_tenant_is_invalid():
    with pytest.raises(TransientError):
        KbArticleHandler(FakeStore(StoreUnavailable("down"))).handle(article_event(article_id="a", title="T"))
    with pytest.raises(InvalidEvent):
        KbArticleHandler(FakeStore(InvalidTenant("bad"))).handle(article_event(article_id="a", title="T"))


def test_resolved_ticket_is_indexed_as_a_case():
    store = FakeStore()
    event = ev.TicketResolved(meta=new_meta("acme", "test"), ticket_id="t9", problem_statement=" Card blocked ",
                              resolution_notes="Unblocked in admin", intent="card_not_working", article_ids=["a1"])
    assert ResolvedCaseHandler(store).handle(event) == []
    tenant, case = store.upserts[0]
    assert tenant == "acme" and case.ticket_id == "t9" and case.problem_statement == "Card blocked"
    assert case.article_ids == ("a1",)


def test_resolved_ticket_without_problem_statement_is_invalid_and_outage_transient():
    with pytest.raises(InvalidEvent):
        ResolvedCaseHandler(FakeStore()).handle(ev.TicketResolved(meta=new_meta("acme", "t"), ticket_id="t1"))
    with pytest.raises(TransientError):
        ResolvedCaseHandler(FakeStore(StoreUnavailable("down"))).handle(
            ev.TicketResolved(meta=new_meta("acme", "t"), ticket_id="t1", problem_statement="x"))


def result(gap: bool, best: float = 0.2) -> SearchResult:
    passage = PassageHit("a1", "a1#0", "Title", "Fees", "The fee is $5.", 0.9, 0.8, url="u", source="help_center",
                         is_policy=True)
    articles = () if gap else (ArticleResult("a1", "Title", 0.9, (passage,), stale=True),)
    return SearchResult(articles=articles, gap=gap, best_score=best, query=SearchQuery("q", ("q",)))


def test_gap_event_is_keyed_by_ticket_and_counted_per_intent():
    before = metrics.KB_GAPS.labels("card_arrival")._value.get()
    emit = kb_gap("acme", "t1", "where is my card", "card_arrival", result(gap=True, best=0.31))
    assert emit.topic is Topic.KB_GAPS and emit.key == "t1"
    assert emit.event.meta.tenant_id == "acme" and emit.event.best_score == pytest.approx(0.31)
    assert emit.event.query == "where is my card" and emit.event.intent == "card_arrival"
    assert metrics.KB_GAPS.labels("card_arrival")._value.get() == before + 1
    assert kb_gap("acme", "t1", "q", "x", result(gap=False)) is None
    assert kb_gap("acme", "", "q", "x", result(gap=True)).key == "acme"


def test_intent_labels_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "_seen_intents", set())
    monkeypatch.setattr(metrics, "MAX_INTENT_LABELS", 2)
    assert [metrics.bounded_intent(i) for i in ("a", "b", "c", "a", "", "bad label!")] == ["a", "b", "other", "a", "unknown", "other"]


def test_search_response_flattens_articles_into_passages():
    response = search_response(result(gap=False, best=0.8))
    assert [p.article_id for p in response.passages] == ["a1"]
    passage = response.passages[0]
    assert passage.stale and passage.is_policy and passage.section == "Fees" and passage.url == "u"
    assert not response.gap and response.best_score == pytest.approx(0.8)


class Aborted(Exception):
    pass


class FakeContext:
    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted(details)


class FakeSearcher:
    def __init__(self, outcome):
        self.outcome = outcome
        self.calls = []

    def search(self, tenant, text, k, *, filters, intent, with_policy=False):
        self.calls.append((tenant, text, k, filters, intent))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class FakePublisher:
    def __init__(self):
        self.published = []

    def publish(self, topic, key, event):
        self.published.append((topic, key, event))


def test_servicer_maps_a_store_outage_to_unavailable():
    context = FakeContext()
    servicer = RetrieverServicer(FakeSearcher(StoreUnavailable("connection refused")), None, None)
    with pytest.raises(Aborted):
        servicer.Search(services_pb2.SearchRequest(tenant_id="acme", query="q"), context)
    assert context.code is grpc.StatusCode.UNAVAILABLE and "connection refused" in context.details


@pytest.mark.parametrize("request_", [
    services_pb2.SearchRequest(query="q"),
    services_pb2.SearchRequest(tenant_id="acme", query="   "),
])
def test_servicer_refuses_requests_without_tenant_or_query(request_):
    context = FakeContext()
    with pytest.raises(Aborted):
        RetrieverServicer(FakeSearcher(result(False)), None, None).Search(request_, context)
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT


def test_servicer_publishes_gaps_and_caps_k():
    publisher = FakePublisher()
    searcher = FakeSearcher(result(gap=True))
    request = services_pb2.SearchRequest(tenant_id="acme", query="q", k=1000, ticket_id="t1", intent="card_arrival")
    request.filters.policy_only = True
    response = RetrieverServicer(searcher, None, None, publisher).Search(request, FakeContext())
    assert response.gap
    assert searcher.calls[0][2] == MAX_K and searcher.calls[0][3].policy_only and searcher.calls[0][4] == "card_arrival"
    [(topic, key, event)] = publisher.published
    assert topic is Topic.KB_GAPS and key == "t1" and event.ticket_id == "t1"


def test_readiness_watch_takes_readiness_down_and_gives_it_back():
    available = {"up": True}
    health = Health("retriever-test")
    watch = WeaviateReadinessWatch(lambda: available["up"], health, interval_s=60)
    available["up"] = False
    watch.check_once()
    assert not health.ready and health.reason == "starting"  # not armed before the service is ready
    health.set_ready(True)
    watch.check_once()
    assert not health.ready and health.reason == NOT_READY_REASON
    available["up"] = True
    watch.check_once()
    assert health.ready


def test_readiness_watch_never_overrides_a_shutdown():
    health = Health("retriever-test")
    watch = WeaviateReadinessWatch(lambda: True, health, interval_s=60)
    health.set_ready(True)
    health.set_ready(False, "shutting down")
    watch.check_once()
    assert not health.ready and health.reason == "shutting down"


def test_servicer_counts_articles_served_without_a_review_date_by_their_treatment():
    held = metrics.UNKNOWN_FRESHNESS.labels("hold")._value.get()
    fresh = metrics.UNKNOWN_FRESHNESS.labels("fresh")._value.get()
    response = RetrieverServicer(FakeSearcher(result(False)), None, None).Search(
        services_pb2.SearchRequest(tenant_id="acme", query="q"), FakeContext())
    assert response.passages[0].stale  # the tenant's policy held the undated article
    assert metrics.UNKNOWN_FRESHNESS.labels("hold")._value.get() == held + 1
    assert metrics.UNKNOWN_FRESHNESS.labels("fresh")._value.get() == fresh
