"""Article-level retrieval quality on the tau2 banking dev split (31 cases), against real Weaviate.

    python benchmarks/retrieval_eval.py [--sweep]

Indexes the 698-article Rho-Bank KB in a fresh tenant, runs every case's ticket text
(`user_scenario.instructions`, flattened) through query understanding, and prints recall@5/10/20
and MRR for BM25 alone, vectors alone, hybrid, and hybrid with segment re-scoring (the default).

It also prints what the KB-gap threshold is chosen from: the gap signal (best segment similarity)
of the answerable cases and of the dev cases the KB cannot answer (their only gold document is the
human-transfer procedure and their only gold action a transfer to a human; task_012 asks about
travel notifications, which no article covers). `DEFAULT_GAP_THRESHOLD` is the midpoint between
the highest unanswerable and the lowest answerable score. For reference it also prints the signal
with each case's gold article families removed (a simulated gap) and the threshold that best
separates that ablation, which is much weaker evidence: the bank's other product articles stay
similar to any banking question.

Only the dev split is used: the held-out cases are never read.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tooling.settings import FleetSettings  # noqa: E402

from services.retriever.articles import load_articles  # noqa: E402
from services.retriever.components import build_components  # noqa: E402
from services.retriever.search import (  # noqa: E402
    PassageHit,
    Searcher,
    SearchQuery,
    best_similarity,
    build_query,
    candidate_limit,
    group_by_article,
    mean_vector,
    segment_vectors,
)

DEFAULT_TASKS = Path("/work/shared/datasets/tau2_banking_knowledge/tasks_dev.json")
DEFAULT_KB = ROOT / "tooling" / "sample_data" / "kb_articles.jsonl.gz"


def flatten(value: object) -> str:
    """tau2 instructions are a string or a (nested) dict of strings: join them in order."""
    if isinstance(value, dict):
        return "\n".join(flatten(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(flatten(v) for v in value)
    return str(value)


TRANSFER_ACTIONS = {"transfer_to_human_agents", "request_human_agent_transfer"}


def load_cases(path: Path) -> list[tuple[str, str, set[str]]]:
    tasks = json.loads(path.read_text(encoding="utf-8"))
    return [(t["id"], flatten(t["user_scenario"]["instructions"]), set(t["required_documents"])) for t in tasks]


def unanswerable_ids(path: Path) -> set[str]:
    """Cases whose whole resolution is a hand-over: one gold document, only transfer actions."""
    tasks = json.loads(path.read_text(encoding="utf-8"))
    return {
        t["id"] for t in tasks
        if len(t["required_documents"]) == 1
        and {a["name"] for a in t.get("evaluation_criteria", {}).get("actions", [])} <= TRANSFER_ACTIONS
    }


def article_family(article_id: str) -> str:
    """doc_credit_cards_platinum_rewards_card_003 -> doc_credit_cards_platinum_rewards_card"""
    return re.sub(r"_\d+$", "", article_id)


CUTOFFS = (5, 10, 20)
# (query, query vector, k) -> candidate passages, fetched as production fetches them for k articles
Retrieve = Callable[[SearchQuery, np.ndarray, int], list[PassageHit]]


def evaluate(retrieve: Retrieve, queries: list[SearchQuery], vectors: list[np.ndarray],
             golds: list[set[str]]) -> dict[str, float]:
    """recall@k for each cut-off (a search for k articles each time) and MRR over the deepest list."""
    result = {}
    for k in CUTOFFS:
        rankings = [[a.article_id for a in group_by_article(retrieve(q, v, k), k)] for q, v in zip(queries, vectors)]
        result[f"R@{k}"] = float(np.mean([len(set(r) & g) / len(g) for r, g in zip(rankings, golds)]))
    reciprocal = [next((1 / (i + 1) for i, a in enumerate(r) if a in g), 0.0) for r, g in zip(rankings, golds)]
    result["MRR"] = float(np.mean(reciprocal))
    return result


def print_row(name: str, figures: dict[str, float]) -> None:
    print(f"{name:34s} " + "  ".join(f"{k}={v:.3f}" for k, v in figures.items()), flush=True)


def choose_gap_threshold(present: list[float], ablated: list[float]) -> tuple[float, float]:
    """The threshold t (gap when best < t) with the best balanced accuracy, and that accuracy."""
    candidates = sorted(set(np.round(present + ablated, 3)))
    best_t, best_acc = 0.0, 0.0
    for t in candidates:
        kept = np.mean([p >= t for p in present])
        caught = np.mean([a < t for a in ablated])
        if (kept + caught) / 2 > best_acc:
            best_t, best_acc = float(t), float((kept + caught) / 2)
    return best_t, best_acc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, default=DEFAULT_TASKS)
    parser.add_argument("--kb", type=Path, default=DEFAULT_KB)
    parser.add_argument("--sweep", action="store_true", help="also print alpha x re-scoring weight")
    args = parser.parse_args()

    settings = FleetSettings.from_env()
    parts = build_components(settings, query_timeout_s=10.0)
    tenant = f"eval-{uuid.uuid4().hex[:10]}"
    cases = load_cases(args.tasks)
    golds = [gold for _, _, gold in cases]
    try:
        started = time.perf_counter()
        report = parts.knowledge.upsert(tenant, load_articles(args.kb))
        print(f"indexed {report.articles} articles as {report.chunks} chunks in tenant {tenant} "
              f"({time.perf_counter() - started:.0f} s)\n")

        queries = [build_query(text) for _, text, _ in cases]
        vectors = [mean_vector(segment_vectors(parts.encoder, q)) for q in queries]
        print(f"dev split: {len(cases)} cases, {sum(map(len, golds))} gold links; article-level, passages grouped")
        print_row("bm25 (Weaviate bm25)", evaluate(
            lambda q, v, k: parts.knowledge.bm25(tenant, q.keywords, limit=candidate_limit(k)), queries, vectors, golds))
        print_row("vector (mean of segment vectors)", evaluate(
            lambda q, v, k: parts.knowledge.near_vector(tenant, v, limit=candidate_limit(k)), queries, vectors, golds))
        plain = Searcher(parts.knowledge, parts.encoder, rerank_weight=0.0)
        print_row(f"hybrid alpha={plain.alpha}", evaluate(
            lambda q, v, k: plain.candidates(tenant, q, k), queries, vectors, golds))
        searcher = parts.searcher
        print_row(f"hybrid + segment re-scoring w={searcher.rerank_weight}", evaluate(
            lambda q, v, k: searcher.candidates(tenant, q, k), queries, vectors, golds))

        if args.sweep:
            print("\nsweep (hybrid alpha x re-scoring weight):")
            for alpha in (0.3, 0.5, 0.7, 0.9):
                for weight in (0.0, 0.3, 0.5, 0.7):
                    variant = Searcher(parts.knowledge, parts.encoder, alpha=alpha, rerank_weight=weight)
                    print_row(f"  alpha={alpha} w={weight}", evaluate(
                        lambda q, v, k: variant.candidates(tenant, q, k), queries, vectors, golds))

        hits_per_case = [searcher.candidates(tenant, q, 10) for q in queries]
        unanswerable = unanswerable_ids(args.tasks)
        signal = {cid: best_similarity(h) for (cid, _, _), h in zip(cases, hits_per_case)}
        answerable = [v for cid, v in signal.items() if cid not in unanswerable]
        gaps = [v for cid, v in signal.items() if cid in unanswerable]
        print("\nKB-gap signal (best segment similarity):")
        print(f"  answerable cases ({len(answerable)}): min={min(answerable):.3f}  "
              f"median={np.median(answerable):.3f}  max={max(answerable):.3f}")
        print(f"  unanswerable cases {sorted(unanswerable)}: " + ", ".join(f"{v:.3f}" for v in gaps))
        if gaps and max(gaps) < min(answerable):
            print(f"  midpoint threshold: {(max(gaps) + min(answerable)) / 2:.3f}")
        ablated = [
            best_similarity([x for x in h if article_family(x.article_id) not in {article_family(a) for a in g}])
            for h, g in zip(hits_per_case, golds)
        ]
        threshold, accuracy = choose_gap_threshold(answerable, ablated)
        print(f"  gold families removed: median={np.median(ablated):.3f}; best separating threshold "
              f"{threshold:.3f} (balanced accuracy {accuracy:.2f})")
        flagged = sorted(cid for cid, v in signal.items() if v < searcher.gap_threshold)
        print(f"  in use: {searcher.gap_threshold:.3f}, flags {flagged}")
    finally:
        parts.knowledge.drop_tenant(tenant)
        parts.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
