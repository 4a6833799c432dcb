"""Evidence search: query understanding, grouping passages by article, freshness and the KB-gap
decision. The core is pure; `Searcher` ties it to an index adapter and an encoder.

Query understanding. A raw ticket is a poor query: greetings, signatures, quoted replies and
pleasantries dilute BM25, and the sentence encoder reads only its first 128 word pieces. Callers
that have the classifier's normalized problem statement send it as the query, with the intent,
which is added as words ("card_payment_fee_charged" -> "card payment fee charged"); raw text is
stripped of its noise first (a problem statement has none, so it passes unchanged). A long query
is cut into segments that are embedded separately and averaged, so the vector reflects the whole
ticket, not its first paragraph.

Scores. Weaviate's hybrid search (relative-score fusion of BM25 and vector results) finds the
candidate passages. Each candidate is then re-scored with its *segment similarity*: the best cosine
similarity between any query segment and the passage (a long ticket asks several things; a passage
that answers one of them well should not be diluted by the others). The final passage score mixes
the two (`rerank_weight`). The fused score is normalised per query, so it cannot tell "good match"
from "best of a bad lot"; the gap decision therefore uses the best segment similarity, an absolute
measure.

Intents. A tenant's help centre may tag its articles with the intents they answer (labels
`intent:<name>`): its authors' own statement that the article is the answer to that question.
When the caller passes the ticket's predicted intent, the search also looks among the articles
tagged with it (the same query, filtered), and those articles come first in the result, ordered
among themselves by their scores, and scored at least as well as the best passage found (readers
of the evidence weigh passages by score); the other articles follow by score, so the canonical
policy article and neighbouring topics are still there to quote from. A predicted intent the KB has
tagged articles for is not a KB gap, whatever the similarity: the KB says it covers it. Articles
without intents, and every search without an intent, rank exactly as before, so a KB with no
intent tags (the Rho-Bank sample) is unaffected. What this trusts is the classifier: a wrong intent
puts a wrong article first. Tickets are answered without an agent only when the intent's
confidence clears the routing threshold (98% selective accuracy, docs/intent-model.md), and every
other draft is read by an agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Protocol, Sequence

import numpy as np

from services.retriever.articles import KnowledgePolicy

# Chosen on the tau2 banking dev split only (benchmarks/retrieval_eval.py prints the sweeps).
DEFAULT_ALPHA = 0.7  # 0 = BM25 only, 1 = vectors only
DEFAULT_RERANK_WEIGHT = 0.7  # share of the segment similarity in a passage's final score
# Best segment similarity below this -> KB gap. On dev, answerable tickets score 0.597-0.806 and
# the one ticket the KB cannot answer 0.555; the threshold sits between them.
DEFAULT_GAP_THRESHOLD = 0.58
# A similar case whose problem statement is less alike than this is not shown. Chosen on Banking77
# train only, half of it as resolved history (100, 500 or 5,000 cases), half as tickets: the cases
# a floor of 0.6 hides would have had the ticket's intent 20%, 50% and 39% of the time, so they are
# mostly unlike; at 0.65 the hidden ones would be alike 58% of the time with the large history.
# benchmarks/similar_cases_floor.py prints the sweep.
DEFAULT_CASE_MIN_SIMILARITY = 0.6
PASSAGES_PER_ARTICLE = 2
# Passages fetched per requested article: articles have 2-3 chunks on average, and grouping needs
# enough candidates to still find k distinct articles. Every candidate comes with its vector, so
# the count is much of a search's cost: 80 for k=10 (the evaluated setting), 32 for the drafter's 4.
# 8, chosen by cross-validation over 4 and 8 (benchmarks/retrieval_cv.py --candidates-per-article
# 4 8: 8 in 97 of 100 folds; docs/retrieval.md), for about 6% fewer queries/s.
CANDIDATES_PER_ARTICLE = 8
MIN_CANDIDATES = 12
SEGMENT_CHARS = 450  # a query segment the encoder reads whole (MiniLM stops at 128 word pieces)
# Chosen by cross-validation over the tau2 dev cases (benchmarks/retrieval_cv.py --segments 8 16:
# 16 in all 100 folds); with MAX_QUERY_CHARS a query has at most ~11 segments of this size.
MAX_SEGMENTS = 16
MAX_QUERY_CHARS = 4000  # BM25 text cap: beyond it a ticket is a transcript, not a question


class StoreUnavailable(RuntimeError):
    """The search store (Weaviate) did not answer: down, unreachable or timed out."""


class InvalidTenant(ValueError):
    """A tenant id the store cannot hold as its own isolated tenant."""


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchFilters:
    locale: str = ""
    intents: tuple[str, ...] = ()  # articles tagged with any of these
    sources: tuple[str, ...] = ()  # help_center, internal_policy, ...
    policy_only: bool = False


@dataclass(frozen=True)
class SearchQuery:
    """What is sent to the index: text for BM25 and the segments whose embeddings form the vector."""

    keywords: str
    segments: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.keywords.strip()


@dataclass(frozen=True)
class PassageHit:
    """One chunk as the index returned it."""

    article_id: str
    chunk_id: str
    title: str
    section: str
    text: str
    score: float  # what ranks the passage: fused hybrid score, then the re-scored value
    similarity: float | None = None  # best cosine(query segment, passage) once re-scored
    url: str = ""
    source: str = ""
    owner: str = ""
    is_policy: bool | None = None  # None: the knowledge base does not say (the tenant's KnowledgePolicy decides)
    review_by: datetime | None = None
    updated_at: datetime | None = None
    intents: tuple[str, ...] = ()  # the article's intent tags (none: untagged, not "no intent")
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    def rescored(self, score: float, similarity: float | None) -> PassageHit:
        """A copy with another score. dataclasses.replace costs ~25 us a call, and a search makes
        ~80 of these; copying the field dict is the same thing for this plain (non-slots) class."""
        copy = object.__new__(PassageHit)
        copy.__dict__.update(self.__dict__, score=score, similarity=similarity)
        return copy


@dataclass(frozen=True)
class ArticleResult:
    article_id: str
    title: str
    score: float
    passages: tuple[PassageHit, ...]
    stale: bool


@dataclass(frozen=True)
class SearchResult:
    articles: tuple[ArticleResult, ...]
    gap: bool
    best_score: float  # the gap signal: best segment similarity (0 when nothing was found)
    query: SearchQuery
    # `with_policy`: the best canonical article for the query when `articles` holds none (else empty).
    policy: tuple[ArticleResult, ...] = ()


# ---------------------------------------------------------------------------------------------
# Query understanding

_QUOTED_REPLY = re.compile(
    r"^\s*(?:On .{3,200}wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+|_{5,})\s*$", re.I | re.M
)
_SIGN_OFF = re.compile(
    r"^\s*(?:--\s*|(?:best|kind|warm)?\s*regards,?.*|best,?|cheers,?|thanks?(?: you)?(?: so much)?[,!.]?"
    r"|many thanks[,!.]?|sincerely,?.*|sent from my \w+.*)\s*$",
    re.I,
)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|greetings)\b[^\n.!?]{0,40}[,!.:\n-]\s*",
    re.I,
)
_PLEASANTRY = re.compile(
    r"(?:i hope (?:you are|you're|this finds you) [^.!?\n]*[.!?]"
    r"|thanks? (?:you )?(?:in advance|for (?:your|the) (?:help|time|assistance|support))[^.!?\n]*[.!?]?"
    r"|(?:any|your) help (?:would be|is) (?:much |greatly )?appreciated[.!?]?"
    r"|please (?:help|advise)[.!?]?)",
    re.I,
)
_MARKUP = re.compile(r"[*_`#>|]+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def strip_ticket_noise(text: str) -> str:
    """The customer's actual words: no greeting, sign-off, signature, quoted reply or pleasantry."""
    match = _QUOTED_REPLY.search(text)
    if match:
        text = text[: match.start()]
    lines = text.splitlines()
    # A sign-off line ends the message: what follows is a name, a title, a phone number.
    for index, line in enumerate(lines):
        if _SIGN_OFF.match(line):
            lines = lines[:index]
            break
    text = "\n".join(line for line in lines if not line.lstrip().startswith(">"))
    text = _GREETING.sub("", text, count=1)
    text = _PLEASANTRY.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    text = _SPACES.sub(" ", text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()


def intent_phrase(intent: str) -> str:
    """A taxonomy label as words: "card_payment_fee_charged" -> "card payment fee charged"."""
    return re.sub(r"[\s_?\-]+", " ", intent).strip().lower()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def segment_text(text: str, max_chars: int = SEGMENT_CHARS, max_segments: int = MAX_SEGMENTS) -> tuple[str, ...]:
    """Consecutive sentences packed into segments of at most `max_chars` (a longer sentence is cut)."""
    segments: list[str] = []
    current = ""
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        while len(sentence) > max_chars:
            if current:
                segments.append(current)
                current = ""
            segments.append(sentence[:max_chars])
            sentence = sentence[max_chars:].strip()
        candidate = f"{current} {sentence}".strip()
        if len(candidate) > max_chars:
            segments.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        segments.append(current)
    return tuple(segments[:max_segments])


def build_query(text: str, *, intent: str = "", max_segments: int = MAX_SEGMENTS) -> SearchQuery:
    """The search query for a ticket text (a problem statement or a raw message) without its noise,
    with the intent added as words, in at most `max_segments` segments."""
    base = strip_ticket_noise(text)
    phrase = intent_phrase(intent) if intent else ""
    if phrase and phrase not in base.lower():
        base = f"{base}\n{phrase}" if base else phrase
    base = base[:MAX_QUERY_CHARS]
    return SearchQuery(keywords=base, segments=segment_text(base, max_segments=max_segments) if base else ())


def segment_vectors(encoder: TextEncoder, query: SearchQuery) -> np.ndarray:
    return np.asarray(encoder.encode(list(query.segments)), dtype=np.float32)


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of the segments' embeddings: the query vector for the vector search."""
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def rescore_by_segments(hits: Sequence[PassageHit], segments: np.ndarray, weight: float) -> list[PassageHit]:
    """Each hit's similarity becomes its best cosine with any query segment, and its score
    (1 - weight) * fused score + weight * that similarity. Hits without a vector keep their score."""
    rescored = list(hits)
    with_vectors = [i for i, hit in enumerate(hits) if hit.vector is not None]
    if not with_vectors:
        return rescored
    vectors = np.stack([np.asarray(hits[i].vector, dtype=np.float32) for i in with_vectors])
    norms = np.linalg.norm(vectors, axis=1)
    best = (vectors @ np.asarray(segments, dtype=np.float32).T).max(axis=1)
    similarities = np.divide(best, norms, out=np.zeros_like(best), where=norms > 0)
    for i, similarity in zip(with_vectors, similarities.tolist()):
        hit = hits[i]
        rescored[i] = hit.rescored((1 - weight) * hit.score + weight * similarity, similarity)
    return rescored


def tagged_with(hit: PassageHit, intent: str) -> bool:
    """Whether the hit's article is tagged with `intent` (labels compared as words: "card_arrival"
    matches "Card-Arrival")."""
    wanted = intent_phrase(intent) if intent else ""
    return bool(wanted) and any(intent_phrase(tag) == wanted for tag in hit.intents)


def lift_tagged(hits: Sequence[PassageHit], intent: str) -> list[PassageHit]:
    """Passages of articles tagged with `intent` score at least as well as the best passage: a
    reader of the evidence (the drafter weighs passages by score) then treats the article its
    authors wrote for the question as the best match. Similarities stay as measured."""
    top = max((hit.score for hit in hits), default=0.0)
    return [hit.rescored(max(hit.score, top), hit.similarity) if tagged_with(hit, intent) else hit for hit in hits]


def merge_hits(*groups: Sequence[PassageHit]) -> list[PassageHit]:
    """The hits of several queries, each passage once (its first occurrence)."""
    seen: set[str] = set()
    merged = []
    for hits in groups:
        for hit in hits:
            if hit.chunk_id not in seen:
                seen.add(hit.chunk_id)
                merged.append(hit)
    return merged


# ---------------------------------------------------------------------------------------------
# Grouping, freshness, gap


def group_by_article(
    hits: Sequence[PassageHit],
    k: int,
    *,
    passages_per_article: int = PASSAGES_PER_ARTICLE,
    now: datetime | None = None,
    first: Callable[[PassageHit], bool] = lambda hit: False,
    policy: KnowledgePolicy = KnowledgePolicy(),
) -> tuple[ArticleResult, ...]:
    """The k best distinct articles, each scored by its best passage and carrying its best
    `passages_per_article` passages, best article first (ties keep the index's order); articles
    whose passages satisfy `first` come before the others. What the knowledge base leaves unknown
    (a review date, whether an article is policy) is read through the tenant's `policy`."""
    now = now or datetime.now(timezone.utc)
    by_article: dict[str, list[PassageHit]] = {}
    for hit in sorted(hits, key=lambda h: (not first(h), -h.score)):
        by_article.setdefault(hit.article_id, []).append(hit)
    results = []
    for article_id, passages in by_article.items():
        best = passages[0]
        results.append(
            ArticleResult(
                article_id=article_id,
                title=best.title,
                score=best.score,
                passages=tuple(_policy_known(hit, policy) for hit in passages[:passages_per_article]),
                stale=policy.stale(best.review_by, now),
            )
        )
        if len(results) == k:
            break
    return tuple(results)


def _policy_known(hit: PassageHit, policy: KnowledgePolicy) -> PassageHit:
    return hit if hit.is_policy is not None else replace(hit, is_policy=policy.canonical(None))


def candidate_limit(k: int, per_article: int = CANDIDATES_PER_ARTICLE) -> int:
    """Passages to fetch for k distinct articles, `per_article` each."""
    return max(MIN_CANDIDATES, k * per_article)


def is_gap(best_similarity: float, threshold: float = DEFAULT_GAP_THRESHOLD) -> bool:
    return best_similarity < threshold


def best_similarity(hits: Sequence[PassageHit]) -> float:
    similarities = [h.similarity for h in hits if h.similarity is not None]
    return max(similarities, default=0.0)


# ---------------------------------------------------------------------------------------------
# The search itself


class PassageIndex(Protocol):
    """What Searcher needs from the store (services/retriever/index.py implements it). Hits must
    carry their passage vectors."""

    def hybrid(
        self, tenant: str, keywords: str, vector: np.ndarray, *, alpha: float, limit: int, filters: SearchFilters
    ) -> list[PassageHit]: ...


@dataclass
class Searcher:
    index: PassageIndex
    encoder: TextEncoder
    alpha: float = DEFAULT_ALPHA
    rerank_weight: float = DEFAULT_RERANK_WEIGHT
    gap_threshold: float = DEFAULT_GAP_THRESHOLD
    passages_per_article: int = PASSAGES_PER_ARTICLE
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    # tenant -> what its knowledge base's unknown metadata means (articles.TenantKnowledgePolicies)
    knowledge_policy: Callable[[str], KnowledgePolicy] = field(default=lambda tenant: KnowledgePolicy())
    def candidates(
        self, tenant: str, query: SearchQuery, k: int, filters: SearchFilters = SearchFilters(),
        segments: np.ndarray | None = None,
    ) -> list[PassageHit]:
        """Re-scored candidate passages for a query, enough to fill k distinct articles
        (`segments`: the query's segment vectors when the caller has them already)."""
        segments = segment_vectors(self.encoder, query) if segments is None else segments
        hits = self.index.hybrid(
            tenant,
            query.keywords,
            mean_vector(segments),
            alpha=self.alpha,
            limit=candidate_limit(k),
            filters=filters,
        )
        return rescore_by_segments(hits, segments, self.rerank_weight)

    def search(
        self,
        tenant: str,
        text: str,
        k: int = 10,
        *,
        filters: SearchFilters = SearchFilters(),
        intent: str = "",
        with_policy: bool = False,
    ) -> SearchResult:
        query = build_query(text, intent=intent)
        if query.empty or k <= 0:  # nothing to look for is not a gap in the KB
            return SearchResult(articles=(), gap=False, best_score=0.0, query=query)
        segments = segment_vectors(self.encoder, query)  # once, for both searches below
        hits = self.candidates(tenant, query, k, filters, segments)
        tagged: list[PassageHit] = []
        if intent and not filters.intents:
            tagged = self.candidates(tenant, query, k, replace(filters, intents=(intent,)), segments)
        hits = lift_tagged(merge_hits(tagged, hits), intent)
        best = best_similarity(hits)
        articles = group_by_article(hits, k, passages_per_article=self.passages_per_article, now=self.clock(),
                                    first=lambda hit: tagged_with(hit, intent), policy=self.knowledge_policy(tenant))
        covered = any(tagged_with(hit, intent) for hit in tagged)
        policy: tuple[ArticleResult, ...] = ()
        if with_policy and not filters.policy_only and not any(p.is_policy for a in articles for p in a.passages):
            canonical = self.candidates(tenant, query, 1, replace(filters, intents=(), policy_only=True), segments)
            policy = group_by_article(canonical, 1, passages_per_article=self.passages_per_article, now=self.clock(),
                                      policy=self.knowledge_policy(tenant))
        return SearchResult(articles=articles, gap=is_gap(best, self.gap_threshold) and not covered, best_score=best,
                            query=query, policy=policy)


# ---------------------------------------------------------------------------------------------
# Similar resolved cases


@dataclass(frozen=True)
class ResolvedCase:
    ticket_id: str
    problem_statement: str
    resolution_notes: str
    intent: str = ""
    article_ids: tuple[str, ...] = ()


class InvalidCase(ValueError):
    """A resolved case without the ticket id or the problem statement it is stored and found by."""


def resolved_case(
    ticket_id: str, problem_statement: str, resolution_notes: str = "", intent: str = "", article_ids: Sequence[str] = ()
) -> ResolvedCase:
    """A ResolvedCase from untrusted fields (an event, an imported file), whitespace trimmed."""
    ticket_id, problem_statement = ticket_id.strip(), problem_statement.strip()
    if not ticket_id:
        raise InvalidCase("a resolved case needs a ticket_id")
    if not problem_statement:
        raise InvalidCase(f"case {ticket_id} has no problem statement")
    return ResolvedCase(
        ticket_id=ticket_id,
        problem_statement=problem_statement,
        resolution_notes=resolution_notes.strip(),
        intent=intent.strip(),
        article_ids=tuple(article_ids),
    )


@dataclass(frozen=True)
class CaseHit:
    case: ResolvedCase
    score: float  # the fused hybrid score: it orders one query's hits (the best is 1.0), no more
    similarity: float  # cosine of the query vector and the case's problem statement


class CaseStore(Protocol):
    def search(self, tenant: str, keywords: str, vector: np.ndarray, *, k: int, alpha: float) -> list[CaseHit]: ...


def find_similar_cases(
    store: CaseStore,
    encoder: TextEncoder,
    tenant: str,
    text: str,
    k: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_similarity: float = DEFAULT_CASE_MIN_SIMILARITY,
) -> list[CaseHit]:
    """Resolved cases like `text` (same query understanding as the article search), best first:
    at most k, none under `min_similarity`. Twice k are fetched so the floor can drop some and
    still leave k."""
    query = build_query(text)
    if query.empty or k <= 0:
        return []
    hits = store.search(tenant, query.keywords, mean_vector(segment_vectors(encoder, query)), k=2 * k, alpha=alpha)
    return [hit for hit in hits if hit.similarity >= min_similarity][:k]
