"""Query understanding, grouping, re-scoring and the gap decision (services/retriever/search.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from services.retriever.search import (
    CANDIDATES_PER_ARTICLE,
    DEFAULT_CASE_MIN_SIMILARITY,
    MAX_QUERY_CHARS,
    MAX_SEGMENTS,
    MIN_CANDIDATES,
    PassageHit,
    ResolvedCase,
    CaseHit,
    SearchFilters,
    Searcher,
    best_similarity,
    build_query,
    candidate_limit,
    find_similar_cases,
    group_by_article,
    intent_phrase,
    is_gap,
    mean_vector,
    rescore_by_segments,
    segment_text,
    strip_ticket_noise,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)

EMAIL = """Hi team,

I hope you are doing well. My card payment abroad was charged a 3% fee and I don't understand why.
Thanks in advance for your help!

Best regards,
Jane Doe
Senior Accountant, ACME
+1 555 0100

On Mon, 3 Nov 2025, Rho-Bank Support wrote:
> Thanks for contacting us about your account.
"""


def test_noise_is_stripped_from_a_chatty_email():
    cleaned = strip_ticket_noise(EMAIL)
    assert cleaned == "My card payment abroad was charged a 3% fee and I don't understand why."


def test_stripping_keeps_a_plain_question_intact():
    text = "Why was my transfer to Germany declined yesterday?"
    assert strip_ticket_noise(text) == text


def test_intent_phrase_spells_labels_as_words():
    assert intent_phrase("card_payment_fee_charged") == "card payment fee charged"
    assert intent_phrase("reverted_card_payment?") == "reverted card payment"


def test_a_problem_statement_passes_unchanged_and_the_intent_is_added_as_words():
    query = build_query("Foreign card payment fee of 3%", intent="card_payment_fee_charged")
    assert query.keywords == "Foreign card payment fee of 3%\ncard payment fee charged"
    assert query.segments == ("Foreign card payment fee of 3% card payment fee charged",)


def test_intent_is_not_repeated_when_already_in_the_text():
    query = build_query("exchange rate question", intent="exchange_rate")
    assert query.keywords == "exchange rate question"


def test_long_ticket_is_capped_and_segmented():
    sentence = "My savings account interest was lower than the advertised rate this month. "
    query = build_query(sentence * 200)
    assert len(query.keywords) <= MAX_QUERY_CHARS
    assert 8 < len(query.segments) <= MAX_SEGMENTS  # the character cap bounds them first
    assert all(len(s) <= 450 for s in query.segments)


def test_the_segment_cap_is_a_parameter_with_the_shipped_default():
    sentence = "My savings account interest was lower than the advertised rate this month. "
    text = sentence * 200
    assert build_query(text) == build_query(text, max_segments=MAX_SEGMENTS)
    fewer = build_query(text, max_segments=8)
    assert fewer.keywords == build_query(text).keywords
    assert fewer.segments == build_query(text).segments[:8] and len(build_query(text).segments) > 8
    assert build_query(text, max_segments=2).segments == build_query(text).segments[:2]


def test_segments_pack_sentences_and_cut_overlong_ones():
    assert segment_text("One. Two. Three.", max_chars=10) == ("One. Two.", "Three.")
    assert segment_text("x" * 25, max_chars=10) == ("x" * 10, "x" * 10, "x" * 5)


def test_empty_query_is_empty():
    assert build_query("Hi,\nThanks!").empty


def hit(article, score, *, chunk=0, similarity=None, review_by=None, vector=None):
    return PassageHit(article_id=article, chunk_id=f"{article}#{chunk}", title=f"T {article}", section="",
                      text=f"text {article} {chunk}", score=score, similarity=similarity, review_by=review_by,
                      vector=None if vector is None else np.asarray(vector, dtype=np.float32))


def test_grouping_gives_k_distinct_articles_best_first_with_best_passages():
    hits = [hit("a", 0.9, chunk=0), hit("b", 0.8), hit("a", 0.7, chunk=1), hit("a", 0.6, chunk=2), hit("c", 0.5)]
    groups = group_by_article(hits, 2, passages_per_article=2, now=NOW)
    assert [g.article_id for g in groups] == ["a", "b"]
    assert [p.chunk_id for p in groups[0].passages] == ["a#0", "a#1"]
    assert groups[0].score == 0.9


def test_grouping_sorts_by_score_not_input_order():
    groups = group_by_article([hit("low", 0.1), hit("high", 0.9)], 5, now=NOW)
    assert [g.article_id for g in groups] == ["high", "low"]


def test_stale_when_review_date_has_passed():
    groups = group_by_article(
        [hit("old", 0.9, review_by=NOW - timedelta(days=1)), hit("fresh", 0.8, review_by=NOW + timedelta(days=1)),
         hit("undated", 0.7)], 3, now=NOW)
    assert [(g.article_id, g.stale) for g in groups] == [("old", True), ("fresh", False), ("undated", False)]


def test_an_undated_article_is_held_when_the_tenant_says_so_and_unmarked_ones_follow_its_policy():
    from dataclasses import replace

    from services.retriever.articles import KnowledgePolicy

    hits = [hit("undated", 0.9), replace(hit("marked", 0.8, review_by=NOW + timedelta(days=1)), is_policy=False)]
    careful = group_by_article(hits, 2, now=NOW, policy=KnowledgePolicy(unknown_freshness="hold", unmarked_policy="canonical"))
    assert [(g.article_id, g.stale, g.passages[0].is_policy) for g in careful] == [("undated", True, True), ("marked", False, False)]
    default = group_by_article(hits, 2, now=NOW)
    assert [(g.article_id, g.stale, g.passages[0].is_policy) for g in default] == [("undated", False, False), ("marked", False, False)]


def test_rescoring_uses_the_best_matching_segment():
    segments = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    hits = [hit("x", 0.2, vector=[0.0, 1.0]), hit("y", 0.9, vector=[0.6, 0.8]), hit("z", 0.5)]
    rescored = {h.article_id: h for h in rescore_by_segments(hits, segments, weight=0.5)}
    assert rescored["x"].similarity == 1.0  # matches the second segment exactly
    assert abs(rescored["x"].score - 0.6) < 1e-6
    assert abs(rescored["y"].similarity - 0.8) < 1e-6
    assert rescored["z"].score == 0.5 and rescored["z"].similarity is None  # no vector: unchanged


def test_gap_decision_and_best_similarity():
    assert best_similarity([hit("a", 1, similarity=0.3), hit("b", 1, similarity=0.7), hit("c", 1)]) == 0.7
    assert best_similarity([]) == 0.0
    assert is_gap(0.2, 0.5) and not is_gap(0.5, 0.5)


def test_candidate_limit_grows_with_k():
    assert candidate_limit(1) == MIN_CANDIDATES < candidate_limit(3) < candidate_limit(4) < candidate_limit(10) < candidate_limit(50)
    assert candidate_limit(10) == 80 and candidate_limit(10, 4) == 40


def test_candidates_per_article_is_a_parameter_with_the_shipped_default():
    assert candidate_limit(10) == candidate_limit(10, CANDIDATES_PER_ARTICLE)
    assert candidate_limit(10, 6) == 60 and candidate_limit(20, 8) == 160
    assert candidate_limit(1, 8) == candidate_limit(1) == MIN_CANDIDATES  # the floor still holds


class FakeEncoder:
    dim = 2

    def encode(self, texts):
        # "card" texts point one way, everything else the other
        return np.array([[1.0, 0.0] if "card" in t else [0.0, 1.0] for t in texts], dtype=np.float32)


class FakeIndex:
    def __init__(self, hits):
        self.hits = hits
        self.calls = []

    def hybrid(self, tenant, keywords, vector, *, alpha, limit, filters):
        self.calls.append((tenant, keywords, tuple(np.round(vector, 3)), alpha, limit, filters))
        return list(self.hits)


def test_searcher_builds_the_query_passes_filters_and_decides_the_gap():
    index = FakeIndex([hit("card-fees", 0.9, vector=[1.0, 0.0]), hit("other", 0.8, vector=[0.0, 1.0])])
    searcher = Searcher(index, FakeEncoder(), alpha=0.6, gap_threshold=0.5, clock=lambda: NOW)
    filters = SearchFilters(locale="en", policy_only=True)
    result = searcher.search("acme", "Hello,\nmy card was charged twice", 10, filters=filters, intent="transaction_charged_twice")
    tenant, keywords, vector, alpha, limit, passed = index.calls[0]
    assert tenant == "acme" and alpha == 0.6 and limit == candidate_limit(10) and passed == filters
    assert keywords == "my card was charged twice\ntransaction charged twice"
    assert [a.article_id for a in result.articles] == ["card-fees", "other"]
    assert result.best_score == 1.0 and not result.gap


class CountingEncoder(FakeEncoder):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return super().encode(texts)


def test_a_search_with_an_intent_encodes_the_query_once_for_both_of_its_searches():
    """The ordinary search and the one among the intent's tagged articles share the query's vectors."""
    encoder = CountingEncoder()
    index = FakeIndex([hit("card-fees", 0.9, vector=[1.0, 0.0])])
    Searcher(index, encoder, clock=lambda: NOW).search("acme", "How much is a card replacement?", 4,
                                                       intent="card_fees")
    assert len(index.calls) == 2 and index.calls[1][5].intents == ("card_fees",)
    assert encoder.texts == ["How much is a card replacement? card fees"]  # its one segment


class PolicyIndex(FakeIndex):
    """Answers a policy-only search with the policy article, any other with `hits`."""

    def __init__(self, hits, policy):
        super().__init__(hits)
        self.policy = policy

    def hybrid(self, tenant, keywords, vector, *, alpha, limit, filters):
        self.calls.append((tenant, keywords, tuple(np.round(vector, 3)), alpha, limit, filters))
        return list(self.policy if filters.policy_only else self.hits)


def test_with_policy_the_best_policy_article_comes_from_the_same_encoding_when_the_results_lack_one():
    from dataclasses import replace

    encoder = CountingEncoder()
    fees = replace(hit("fees", 0.7, vector=[1.0, 0.0]), is_policy=True)
    index = PolicyIndex([hit("card-howto", 0.9, vector=[1.0, 0.0])], [fees])
    result = Searcher(index, encoder, clock=lambda: NOW).search("acme", "Why was my card charged?", 4,
                                                                intent="card_fees", with_policy=True)
    assert [a.article_id for a in result.articles] == ["card-howto"]
    assert [a.article_id for a in result.policy] == ["fees"] and result.policy[0].passages[0].is_policy
    policy_search = [call[5] for call in index.calls if call[5].policy_only]
    assert len(policy_search) == 1 and policy_search[0].intents == ()  # any canonical article, not the intent's
    assert len(encoder.texts) == 1  # the query encoded once for all three searches
    # Without the flag, or with a canonical passage among the results already: no policy search.
    for with_policy, hits in ((False, [hit("card-howto", 0.9, vector=[1.0, 0.0])]), (True, [fees])):
        index = PolicyIndex(hits, [fees])
        result = Searcher(index, FakeEncoder(), clock=lambda: NOW).search("acme", "card charge", 4,
                                                                          with_policy=with_policy)
        assert result.policy == () and not any(call[5].policy_only for call in index.calls)


def test_searcher_reports_a_gap_when_nothing_is_similar_enough():
    index = FakeIndex([hit("unrelated", 0.9, vector=[0.0, 1.0])])
    result = Searcher(index, FakeEncoder(), gap_threshold=0.5).search("acme", "card question", 5)
    assert result.gap and result.best_score == 0.0


def test_an_empty_query_does_not_search_and_is_not_a_gap():
    index = FakeIndex([hit("a", 1.0)])
    result = Searcher(index, FakeEncoder()).search("acme", "Thanks!", 5)
    assert result.articles == () and not result.gap and index.calls == []


def test_mean_vector_is_normalised():
    assert np.allclose(mean_vector(np.array([[1.0, 0.0], [0.0, 1.0]])), [2 ** -0.5, 2 ** -0.5])


class CaseStoreStub:
    def __init__(self, *hits):
        self.hits = list(hits)
        self.args = None

    def search(self, tenant, keywords, vector, *, k, alpha):
        self.args = (tenant, keywords, k)
        return self.hits[:k]


def case_hit(ticket_id, score, similarity):
    return CaseHit(ResolvedCase(ticket_id, f"problem {ticket_id}", "resolved"), score, similarity)


def test_similar_cases_use_the_understood_query():
    store = CaseStoreStub(case_hit("t1", 0.9, 0.8))
    hits = find_similar_cases(store, FakeEncoder(), "acme", "Hi,\nmy card is blocked", 3)
    assert store.args == ("acme", "my card is blocked", 6)  # twice k, so the floor can drop some
    assert hits[0].case.ticket_id == "t1"
    assert find_similar_cases(store, FakeEncoder(), "acme", "Thanks!", 3) == []


def test_similar_cases_under_the_floor_are_left_out_and_k_still_filled():
    store = CaseStoreStub(
        case_hit("keyword-only", 1.0, DEFAULT_CASE_MIN_SIMILARITY - 0.2),
        case_hit("a", 0.8, 0.9),
        case_hit("b", 0.7, DEFAULT_CASE_MIN_SIMILARITY),
        case_hit("c", 0.6, 0.75),
    )
    hits = find_similar_cases(store, FakeEncoder(), "acme", "my card is blocked", 2)
    assert [h.case.ticket_id for h in hits] == ["a", "b"]
    unlike = CaseStoreStub(case_hit("x", 1.0, 0.3), case_hit("y", 0.5, 0.2))
    assert find_similar_cases(unlike, FakeEncoder(), "acme", "my card is blocked", 3) == []
    assert len(find_similar_cases(unlike, FakeEncoder(), "acme", "my card is blocked", 3, min_similarity=0.0)) == 2
