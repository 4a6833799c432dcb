"""Help-centre sync without Zendesk or Weaviate: the article mapping (labels, HTML), the client's
paging and retries over httpx.MockTransport, the sync's decisions on fakes, the predicted intent's articles first in
search, and the `kb sync` command's errors (services/retriever/help_center.py, sync.py, search.py)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from services.retriever.articles import ArticleError, chunk_article, load_articles
from services.retriever.help_center import (
    HelpCenterClient,
    HelpCenterError,
    HelpCenterUnavailable,
    RetryPolicy,
    article_from_zendesk,
    html_to_markdown,
    label_metadata,
)
from services.retriever.search import PassageHit, Searcher, group_by_article, merge_hits, tagged_with
from services.retriever.sync import sync_articles

BASE = "https://demobank.zendesk.com"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)

# The shape List Articles returns (https://developer.zendesk.com/api-reference/help_center/help-center-api/articles/).
ZENDESK_ARTICLE = {
    "id": 360012345678,
    "url": f"{BASE}/api/v2/help_center/en-us/articles/360012345678.json",
    "html_url": "https://help.demo-bank.example/hc/en-us/articles/360012345678-When-will-my-card-arrive",
    "author_id": 1902246513,
    "comments_disabled": True,
    "draft": False,
    "promoted": False,
    "position": 0,
    "vote_sum": 3,
    "vote_count": 5,
    "section_id": 360003012345,
    "created_at": "2025-10-01T08:00:00Z",
    "updated_at": "2026-03-02T09:30:00Z",
    "edited_at": "2026-03-02T09:30:00Z",
    "name": "When will my card arrive?",
    "title": "When will my card arrive?",
    "source_locale": "en-us",
    "locale": "en-us",
    "outdated": False,
    "outdated_locales": [],
    "permission_group_id": 1234567,
    "content_tag_ids": [],
    "label_names": ["cards", "intent:card_arrival", "Intent:card_delivery_estimate", "policy", "review-by:2026-09-30"],
    "user_segment_id": None,
    "body": (
        '<p>We post every new card the working day after you order it.</p>'
        '<h2 id="h_01">Delivery times</h2>'
        '<ul><li>UK: <strong>3 to 5</strong> working days</li><li>EEA: 5 to 10 working days</li></ul>'
        '<h2 id="h_02">Tracking your card</h2>'
        '<ol><li>Open the app</li><li>Tap <a href="/cards">Cards</a> &gt; Delivery</li></ol>'
        "<p>Not there after 10 working days?<br>Contact us and we will send a replacement&nbsp;free.</p>"
    ),
}


def zendesk_article(article_id: int, updated_at: datetime, **fields) -> dict:
    return {**ZENDESK_ARTICLE, "id": article_id, "title": f"Article {article_id}",
            "html_url": f"https://help.demo-bank.example/hc/en-us/articles/{article_id}",
            "updated_at": updated_at.isoformat().replace("+00:00", "Z"), **fields}


# ---------------------------------------------------------------------------------------------
# Mapping


def test_a_zendesk_article_maps_with_its_labels_and_its_sections():
    article = article_from_zendesk(ZENDESK_ARTICLE)
    assert article.article_id == "360012345678"
    assert article.title == "When will my card arrive?"
    assert article.url == ZENDESK_ARTICLE["html_url"]
    assert article.updated_at == T0
    assert article.locale == "en-us" and article.source == "help_center"
    assert article.intents == ("card_arrival", "card_delivery_estimate")
    assert article.is_policy is True
    assert article.review_by == datetime(2026, 9, 30, tzinfo=timezone.utc)
    assert article.owner == ""  # Zendesk has no owning team: not invented
    assert article.content == (
        "We post every new card the working day after you order it.\n\n"
        "## Delivery times\n\n- UK: 3 to 5 working days\n- EEA: 5 to 10 working days\n\n"
        "## Tracking your card\n\n1. Open the app\n2. Tap Cards > Delivery\n\n"
        "Not there after 10 working days?\nContact us and we will send a replacement free."
    )
    sections = [chunk.section for chunk in chunk_article(article, min_chars=10)]
    assert sections == ["", "Delivery times", "Tracking your card"]


@pytest.mark.parametrize("labels", [None, [], ["cards", "featured"], ["intent:", "policy-draft", "reviewed"]])
def test_an_article_without_the_labels_keeps_its_metadata_unknown(labels):
    article = article_from_zendesk({**ZENDESK_ARTICLE, "label_names": labels})
    assert article.intents == () and article.is_policy is None and article.review_by is None


def test_a_review_by_label_that_is_not_a_date_gives_no_date_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        metadata = label_metadata(["review-by:next spring", "review-by:2026-12-01", "review-by:2026-10-01"], "42")
    assert metadata.review_by == datetime(2026, 10, 1, tzinfo=timezone.utc)  # the earlier of two dates
    assert "review-by:next spring" in caplog.text


def test_unusable_articles_are_refused():
    with pytest.raises(ArticleError):
        article_from_zendesk({"title": "no id"})
    with pytest.raises(ArticleError):
        article_from_zendesk({"id": 7, "title": "", "body": "<p> </p>"})
    assert article_from_zendesk({"id": 7, "title": "Title only", "body": None}).content == ""


def test_html_becomes_markdown_like_text():
    html = (
        "<div><h3>Fees</h3><table><tr><th>Item</th><th>Fee</th></tr><tr><td>Replacement card</td><td>£5.00</td></tr>"
        "</table></div><ul><li><p>Freeze the card</p><ul><li>in the app</li></ul></li></ul>"
        '<pre><code>step  1\nstep  2</code></pre><script>track()</script><!-- hidden --><img alt="Cards tab">'
    )
    assert html_to_markdown(html) == (
        "### Fees\n\nItem | Fee\nReplacement card | £5.00\n\n- Freeze the card\n  - in the app\n\n"
        "```\nstep  1\nstep  2\n```\n\nCards tab"
    )
    assert html_to_markdown("") == "" and html_to_markdown("   ") == ""


def test_the_demo_help_centre_markdown_format_loads_with_its_front_matter(tmp_path):
    (tmp_path / "card-delivery.md").write_text(
        "---\nid: 3600100007\ntitle: Card delivery\nintents: [card_arrival, card_delivery_estimate]\n"
        "updated_at: 2026-11-02T09:30:00Z\nreview_by: 2027-05-01\nis_policy: false\nlocale: en-us\n---\n"
        "## Delivery times\n- UK: 3 to 5 working days.\n", encoding="utf-8")
    (tmp_path / "fees.md").write_text(
        "---\nid: 3600100001\ntitle: Fees\nintents: []\nupdated_at: 2026-11-02T09:30:00Z\nreview_by: 2027-05-01\n"
        "is_policy: true\nlocale: en-us\n---\n## Cards\n- Replacement card: £5.00.\n", encoding="utf-8")
    delivery, fees = load_articles(tmp_path)
    assert delivery.article_id == "3600100007" and delivery.intents == ("card_arrival", "card_delivery_estimate")
    assert delivery.is_policy is False and delivery.locale == "en-us" and delivery.source == "help_center"
    assert delivery.updated_at == datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
    assert delivery.review_by == datetime(2027, 5, 1, tzinfo=timezone.utc)
    assert fees.intents == () and fees.is_policy is True


# ---------------------------------------------------------------------------------------------
# Client: paging and retries over httpx.MockTransport


class FakeZendesk:
    """Answers the two listings from a list of articles, paged; `script` replaces answers first."""

    def __init__(self, articles: list[dict], page_size: int = 2, script: list[httpx.Response] | None = None):
        self.articles = articles
        self.page_size = page_size
        self.script = list(script or [])
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)
        query = parse_qs(urlsplit(str(request.url)).query)
        if request.url.path == "/api/v2/help_center/en-us/articles.json":
            page = int(query.get("page", ["1"])[0])
            items = self.articles[(page - 1) * self.page_size: page * self.page_size]
            more = page * self.page_size < len(self.articles)
            next_page = f"{BASE}/api/v2/help_center/en-us/articles.json?page={page + 1}&per_page=100" if more else None
            return httpx.Response(200, json={"articles": items, "next_page": next_page, "count": len(self.articles)})
        if request.url.path == "/api/v2/help_center/incremental/articles.json":
            start = int(query["start_time"][0])
            changed = sorted((a for a in self.articles if _unix(a["updated_at"]) >= start),
                             key=lambda a: _unix(a["updated_at"]))
            if len(changed) > self.page_size:  # as Zendesk: the next page starts at this page's end_time
                end_time = _unix(changed[self.page_size - 1]["updated_at"])
                items = [a for a in changed[: self.page_size] if _unix(a["updated_at"]) < end_time]
                next_page = f"{BASE}/api/v2/help_center/incremental/articles.json?start_time={end_time}"
            else:  # the last page points at itself
                items, end_time, next_page = changed, start, str(request.url)
            return httpx.Response(200, json={"articles": items, "next_page": next_page, "end_time": end_time,
                                             "count": len(items)})
        return httpx.Response(404, json={"error": "RecordNotFound", "description": "Not found"})


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def client_for(server, sleeps: list | None = None, **options) -> HelpCenterClient:
    return HelpCenterClient(BASE, "supportflow@demo-bank.example", "tok3n", transport=httpx.MockTransport(server),
                            sleep=(sleeps.append if sleeps is not None else lambda _: None), **options)


def test_the_listing_follows_next_page_with_token_auth():
    articles = [zendesk_article(100 + i, T0 + timedelta(minutes=i)) for i in range(5)]
    server = FakeZendesk(articles)
    with client_for(server) as client:
        got = list(client.articles())
    assert [a["id"] for a in got] == [100, 101, 102, 103, 104]
    assert len(server.requests) == 3
    first = server.requests[0]
    assert first.url.path == "/api/v2/help_center/en-us/articles.json" and first.url.params["per_page"] == "100"
    expected = "Basic " + base64.b64encode(b"supportflow@demo-bank.example/token:tok3n").decode()
    assert all(r.headers["Authorization"] == expected for r in server.requests)


def test_the_change_feed_starts_at_the_cursor_second_and_stops_at_the_last_page():
    articles = [zendesk_article(200 + i, T0 + timedelta(minutes=i)) for i in range(5)]
    server = FakeZendesk(articles)
    with client_for(server) as client:
        got = [a["id"] for a in client.changed_articles(T0 + timedelta(minutes=2, microseconds=900_000))]
    assert got == [202, 203, 204]
    assert server.requests[0].url.params["start_time"] == str(int((T0 + timedelta(minutes=2)).timestamp()))
    assert len(server.requests) == 2  # the last page's next_page points at itself: not asked again


def test_429_is_retried_after_retry_after_and_5xx_with_backoff():
    ok = httpx.Response(200, json={"articles": [ZENDESK_ARTICLE], "next_page": None})
    server = FakeZendesk([], script=[
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "TooManyRequests"}),
        httpx.Response(503, text="Service Unavailable"),
        ok,
    ])
    sleeps: list[float] = []
    with client_for(server, sleeps) as client:
        assert [a["id"] for a in client.articles()] == [ZENDESK_ARTICLE["id"]]
    assert len(server.requests) == 3
    assert sleeps[0] == 7.0 and 0 < sleeps[1] <= RetryPolicy().max_backoff_s


def test_a_long_retry_after_is_capped_and_retries_end():
    server = FakeZendesk([], script=[httpx.Response(429, headers={"Retry-After": "3600"})] * 3)
    sleeps: list[float] = []
    with client_for(server, sleeps, retry=RetryPolicy(max_attempts=3, max_retry_after_s=30)) as client:
        with pytest.raises(HelpCenterUnavailable, match="HTTP 429"):
            list(client.articles())
    assert sleeps == [30, 30] and len(server.requests) == 3


def test_transport_errors_are_retried():
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200, json={"articles": [], "next_page": None})

    with client_for(flaky) as client:
        assert list(client.articles()) == []
    assert len(calls) == 2


def test_a_refusal_is_permanent_and_names_zendesks_reason():
    server = FakeZendesk([], script=[httpx.Response(401, json={"error": "Couldn't authenticate you"})])
    with client_for(server) as client, pytest.raises(HelpCenterError, match="401 Couldn't authenticate you") as caught:
        list(client.articles())
    assert not isinstance(caught.value, HelpCenterUnavailable) and len(server.requests) == 1


def test_a_next_page_on_another_host_is_not_followed_with_the_credentials():
    elsewhere = "https://elsewhere.example/api/v2/help_center/en-us/articles.json?page=2"
    server = FakeZendesk([], script=[httpx.Response(200, json={"articles": [ZENDESK_ARTICLE], "next_page": elsewhere})])
    with client_for(server) as client, pytest.raises(HelpCenterError, match="not on"):
        list(client.articles())
    assert len(server.requests) == 1


def test_an_answer_without_articles_is_an_error():
    server = FakeZendesk([], script=[httpx.Response(200, json={"sections": []})])
    with client_for(server) as client, pytest.raises(HelpCenterError, match="no 'articles'"):
        list(client.articles())


# ---------------------------------------------------------------------------------------------
# Sync decisions, on a fake index and a fake help centre


class FakeIndex:
    def __init__(self):
        self.articles: dict[str, object] = {}  # id -> KnowledgeArticle
        self.upserts: list[list[str]] = []
        self.deletes: list[str] = []

    def article_versions(self, tenant_id, source):
        return {a.article_id: a.updated_at for a in self.articles.values() if a.source == source}

    def upsert(self, tenant_id, articles):
        articles = list(articles)
        self.upserts.append([a.article_id for a in articles])
        self.articles.update({a.article_id: a for a in articles})

    def delete(self, tenant_id, article_id):
        self.deletes.append(article_id)
        return 1 if self.articles.pop(article_id, None) else 0


class FakeHelpCentre:
    locale = "en-us"

    def __init__(self, articles: list[dict]):
        self.by_id = {a["id"]: a for a in articles}
        self.calls: list[str] = []

    def articles(self):
        self.calls.append("list")
        return iter(list(self.by_id.values()))

    def changed_articles(self, since):
        self.calls.append(f"changes since {since.isoformat()}")
        start = int(since.timestamp())
        return iter([a for a in self.by_id.values() if _unix(a["updated_at"]) >= start])

    def touch(self, article_id, when):
        self.by_id[article_id] = {**self.by_id[article_id], "updated_at": when.isoformat().replace("+00:00", "Z")}


def four_articles():
    return [zendesk_article(300 + i, T0 + timedelta(hours=i)) for i in range(4)]


def test_first_sync_indexes_everything_then_nothing_until_something_changes():
    index, centre = FakeIndex(), FakeHelpCentre(four_articles())
    first = sync_articles(index, centre, "demo-bank")
    assert (first.fetched, first.indexed, first.unchanged, first.deleted) == (4, 4, 0, 0)
    assert first.cursor == T0 + timedelta(hours=3) and centre.calls == ["list"]
    assert index.upserts == [["300", "301", "302", "303"]]  # oldest first

    second = sync_articles(index, centre, "demo-bank")
    assert (second.indexed, second.deleted) == (0, 0)
    assert second.fetched == 1 and second.unchanged == 1  # the cursor's own second comes back
    assert centre.calls[1:] == [f"changes since {(T0 + timedelta(hours=3)).isoformat()}", "list"]

    centre.touch(301, T0 + timedelta(days=1))
    third = sync_articles(index, centre, "demo-bank")
    assert (third.fetched, third.indexed, third.unchanged) == (2, 1, 1)  # 301, and 303 again
    assert index.upserts[-1] == ["301"] and third.cursor == T0 + timedelta(days=1)


def test_an_article_gone_upstream_or_turned_draft_is_deleted_and_others_are_left_alone():
    index, centre = FakeIndex(), FakeHelpCentre(four_articles())
    sync_articles(index, centre, "demo-bank")
    from services.retriever.articles import KnowledgeArticle

    index.articles["doc_cards_01"] = KnowledgeArticle("doc_cards_01", "Sample KB article", "text", source="help_center")
    index.articles["9001"] = KnowledgeArticle("9001", "Internal note", "text", source="internal_policy")
    del centre.by_id[302]
    centre.by_id[303] = {**centre.by_id[303], "draft": True, "updated_at": "2026-03-09T00:00:00Z"}
    summary = sync_articles(index, centre, "demo-bank")
    assert summary.deleted == 2 and sorted(index.deletes) == ["302", "303"]
    assert {"doc_cards_01", "9001", "300", "301"} == set(index.articles)


def test_the_listing_repairs_what_the_change_feed_cannot_see():
    index, centre = FakeIndex(), FakeHelpCentre(four_articles())
    sync_articles(index, centre, "demo-bank")
    del index.articles["300"]  # lost from the index: older than the cursor, the feed never returns it
    index.articles["301"] = article_from_zendesk(zendesk_article(301, T0 - timedelta(days=9)))  # an old copy
    summary = sync_articles(index, centre, "demo-bank")
    assert summary.indexed == 2 and sorted(index.upserts[-1]) == ["300", "301"]
    centre.touch(302, T0 - timedelta(days=30))  # an earlier revision restored, with its own date
    assert sync_articles(index, centre, "demo-bank").indexed == 1 and index.upserts[-1] == ["302"]


def test_an_unreadable_article_is_skipped_but_not_deleted():
    index, centre = FakeIndex(), FakeHelpCentre(four_articles())
    sync_articles(index, centre, "demo-bank")
    centre.by_id[300] = {**centre.by_id[300], "title": "", "body": "", "updated_at": "2026-04-01T00:00:00Z"}
    summary = sync_articles(index, centre, "demo-bank")
    assert summary.skipped == 1 and summary.deleted == 0 and "300" in index.articles


def test_changes_only_reads_the_feed_alone():
    index, centre = FakeIndex(), FakeHelpCentre(four_articles())
    with pytest.raises(ValueError, match="full sync first"):
        sync_articles(index, centre, "demo-bank", full=False)
    sync_articles(index, centre, "demo-bank")
    del centre.by_id[300]
    centre.touch(302, T0 + timedelta(days=2))
    centre.by_id[303] = {**centre.by_id[303], "draft": True, "updated_at": "2026-03-09T00:00:00Z"}
    centre.by_id[304] = zendesk_article(304, T0 + timedelta(days=3), locale="de")  # another locale: not ours
    centre.calls.clear()
    summary = sync_articles(index, centre, "demo-bank", full=False)
    assert centre.calls == [f"changes since {(T0 + timedelta(hours=3)).isoformat()}"]
    assert summary.indexed == 1 and index.upserts[-1] == ["302"]
    assert index.deletes == ["303"] and "300" in index.articles  # deletions wait for a full sync
    assert summary.mode == "changes_only" and summary.listed == 0


# ---------------------------------------------------------------------------------------------
# The predicted intent as one retrieval signal (search.py)


def passage(article_id, score, intents=(), similarity=0.7, vector=None):
    return PassageHit(article_id=article_id, chunk_id=f"{article_id}#0", title=article_id, section="", text="t",
                      score=score, similarity=similarity, intents=tuple(intents),
                      vector=None if vector is None else np.asarray(vector, dtype=np.float32))


def test_articles_tagged_with_the_predicted_intent_come_first_then_the_rest_by_score():
    hits = [passage("untagged", 0.900), passage("tagged", 0.40, ["Card-Arrival"]), passage("other", 0.5, ["x"])]
    ordered = group_by_article(hits, 3, first=lambda hit: tagged_with(hit, "card_arrival"))
    assert [a.article_id for a in ordered] == ["tagged", "untagged", "other"]
    assert [a.article_id for a in group_by_article(hits, 3)] == ["untagged", "other", "tagged"]


def test_merging_keeps_each_passage_once():
    a, b = passage("a", 0.8), passage("b", 0.7)
    assert [h.article_id for h in merge_hits([a], [b, a])] == ["a", "b"]


class _Encoder:
    dim = 2

    def encode(self, texts):
        return np.array([[1.0, 0.0] for _ in texts], dtype=np.float32)


class _Index:
    """Answers the plain query with `hits` and a query filtered by intents with the hits tagged so."""

    def __init__(self, hits):
        self.hits = hits
        self.filters = []

    def hybrid(self, tenant, keywords, vector, *, alpha, limit, filters):
        self.filters.append(filters)
        if filters.intents:
            return [h for h in self.hits if any(tagged_with(h, i) for i in filters.intents)]
        return [h for h in self.hits if h.score >= 0.5]  # the tagged article is not among the plain top hits


def test_the_searcher_puts_the_intent_s_articles_first_and_they_are_no_gap():
    hits = [passage("untagged", 0.6, vector=[0.5, 0.866]),  # cosine 0.5 with the query
            passage("tagged", 0.3, ["card_arrival"], vector=[0.2, 0.98])]
    index = _Index(hits)
    searcher = Searcher(index, _Encoder(), gap_threshold=0.9)
    plain = searcher.search("acme", "where is my card", 2)
    assert [a.article_id for a in plain.articles] == ["untagged"] and plain.gap  # below the gap threshold
    assert len(index.filters) == 1  # no intent: one query, as before
    tagged = searcher.search("acme", "where is my card", 2, intent="card_arrival")
    assert [a.article_id for a in tagged.articles] == ["tagged", "untagged"]
    assert tagged.articles[0].score == pytest.approx(tagged.articles[1].score)  # lifted to the best score
    assert not tagged.gap  # the KB's authors tagged an article with the intent
    assert index.filters[-1].intents == ("card_arrival",)
    other = searcher.search("acme", "where is my card", 2, intent="card_linking")
    assert [a.article_id for a in other.articles] == ["untagged"] and other.gap  # no article for that intent


# ---------------------------------------------------------------------------------------------
# `supportflow kb sync`: what it says when the tenant's help centre is not configured


def run_cli(monkeypatch, *argv, channels_path=None):
    from tooling import cli

    monkeypatch.delenv("SUPPORTFLOW_CHANNELS_PATH", raising=False)
    if channels_path is not None:
        monkeypatch.setenv("SUPPORTFLOW_CHANNELS_PATH", str(channels_path))
    return cli.main(list(argv))


def test_kb_sync_without_a_channels_file_says_what_to_set(monkeypatch):
    with pytest.raises(SystemExit, match="no channels file: set SUPPORTFLOW_CHANNELS_PATH"):
        run_cli(monkeypatch, "kb", "sync", "--tenant", "demo-bank")


def test_kb_sync_for_a_tenant_without_zendesk_says_so(monkeypatch, tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text(json.dumps({"tenants": {"demo-bank": {"email": {"address": "s@demo.example", "smtp_host": "h"}}}}))
    with pytest.raises(SystemExit, match="'demo-bank' has no zendesk channel in"):
        run_cli(monkeypatch, "kb", "sync", "--tenant", "demo-bank", channels_path=path)
    with pytest.raises(SystemExit, match="'acme' is not in"):
        run_cli(monkeypatch, "kb", "sync", "--tenant", "acme", channels_path=path)
    path.write_text("tenants: {demo-bank: {zendesk: {base_url: x}}}")
    with pytest.raises(SystemExit, match="zendesk"):
        run_cli(monkeypatch, "kb", "sync", "--tenant", "demo-bank", channels_path=path)
