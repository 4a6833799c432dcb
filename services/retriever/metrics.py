"""Retriever metrics. Label values come from fixed sets; intents come from the trained taxonomy
(bounded, but data), so they pass through `bounded_intent` which caps how many distinct values a
process will ever export."""

from __future__ import annotations

import re
import threading

from prometheus_client import Counter, Histogram

SEARCHES = Counter(
    "supportflow_retriever_searches_total",
    "Search calls by outcome (evidence, gap, unavailable, invalid)",
    ["outcome"],
)
SIMILAR_CASE_SEARCHES = Counter(
    "supportflow_retriever_similar_case_searches_total",
    "SimilarCases calls by outcome (ok, unavailable, invalid)",
    ["outcome"],
)
KB_GAPS = Counter("supportflow_retriever_kb_gaps_total", "Searches where nothing relevant scored above the gap threshold", ["intent"])
BEST_SCORE = Histogram(
    "supportflow_retriever_best_score",
    "Best segment similarity per search (the KB-gap signal)",
    buckets=(0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9),
)
ARTICLES_INDEXED = Counter(
    "supportflow_retriever_articles_indexed_total", "Knowledge-article changes applied (upsert, delete)", ["operation"]
)
# Articles served whose review date the knowledge base does not carry, by what the tenant's
# knowledge.yaml made of them (fresh, hold): freshness unknown is counted as such, never invented.
UNKNOWN_FRESHNESS = Counter(
    "supportflow_retriever_unknown_freshness_total",
    "Articles served without a review date, by the tenant's treatment (fresh, hold)",
    ["treated"],
)
CASES_INDEXED = Counter("supportflow_retriever_cases_indexed_total", "Resolved cases indexed for similar-case search")

MAX_INTENT_LABELS = 200
_INTENT_LABEL = re.compile(r"^[A-Za-z0-9_?\-]{1,64}$")
_seen_intents: set[str] = set()
_lock = threading.Lock()


def bounded_intent(intent: str) -> str:
    """The intent as a label value: "unknown" when empty, "other" when malformed or once
    MAX_INTENT_LABELS distinct intents have been exported."""
    if not intent:
        return "unknown"
    if not _INTENT_LABEL.match(intent):
        return "other"
    with _lock:
        if intent in _seen_intents:
            return intent
        if len(_seen_intents) >= MAX_INTENT_LABELS:
            return "other"
        _seen_intents.add(intent)
        return intent
