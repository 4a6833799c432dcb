"""Cross-validated choice of the retriever's parameters on the tau2 banking dev split.

    python benchmarks/retrieval_cv.py [--folds 5] [--seed 27] [--repeats 1] [--chunkings 900:200 ...]
                                      [--fusions relative ranked] [--segments 8 16]
                                      [--candidates-per-article 4 6 8]

The shipped hybrid alpha and re-scoring weight (services/retriever/search.py) were chosen on all
31 dev cases, so recall@10 on those cases (benchmarks/retrieval_eval.py) is an in-sample figure.
This benchmark estimates what choosing them costs out of sample: the cases are split into seeded
folds; for each fold the pair with the best mean recall@10 on the other folds' cases is chosen from
a small grid (ties: MRR, then the shipped pair, then grid order) and measured on the held-out fold.
It prints each fold's choice and held-out recall@10 and MRR, their mean and spread, and the shipped
pair on the same folds (in sample: it was chosen on every fold). The default grid is the sweep of
`retrieval_eval.py --sweep`, the one the shipped pair was chosen from, so the CV figure estimates
what that choice gives on cases it never saw.

`--chunkings MAX:MIN ...` adds the chunking (`chunk_article`'s max_chars and min_chars) to the grid,
which becomes chunking x alpha x weight: the KB is indexed once per chunking, each into its own
fresh tenant (dropped afterwards), and the folds choose among the whole grid. The default is the
shipped chunking alone, which gives the query-time CV above.

`--fusions relative ranked` adds Weaviate's hybrid fusion (services/retriever/index.py `_hybrid`:
relative-score or reciprocal-rank fusion) to the grid, which becomes chunking x fusion x alpha x
weight; each fusion is one more hybrid search per alpha. The default is the shipped relative-score
fusion alone.

`--segments 8 16` adds the cap on query segments (`build_query`'s max_segments: they are averaged
into the search vector and re-score the candidates) and `--candidates-per-article 4 6 8` the
passages fetched per requested article (`candidate_limit`'s per_article), so the grid becomes
chunking x fusion x segments x candidates x alpha x weight. Each value is one more hybrid search
per alpha (a deeper candidate list is not truncated: relative-score fusion normalises over what it
fetched, so a prefix need not rank as a shorter search would); only identical searches are shared.
The defaults are the shipped MAX_SEGMENTS and CANDIDATES_PER_ARTICLE alone. When the grid holds
more than the shipped chunking, fusion, segments and candidates, the CV is also run on the same
folds with the grid cut to those (the query-time grid of alpha x weight), and the difference is
printed.

Only the dev split is pooled: the 66 held-out tau2 cases are withheld for independent evaluation
and never read. Within one chunking only query-time parameters vary (the hybrid candidates are
fetched once per alpha and re-scored for each weight, as `Searcher.candidates` does). The KB-gap
threshold does not change a ranking and is not chosen here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tooling.settings import FleetSettings  # noqa: E402

from benchmarks.retrieval_eval import DEFAULT_KB, DEFAULT_TASKS, load_cases  # noqa: E402
from services.retriever.articles import (  # noqa: E402
    MAX_CHUNK_CHARS,
    MIN_CHUNK_CHARS,
    Chunk,
    KnowledgeArticle,
    chunk_article,
    load_articles,
)
from services.retriever.components import build_components  # noqa: E402
from services.retriever.index import FUSION_TYPES, KnowledgeIndex  # noqa: E402
from services.retriever.search import (  # noqa: E402
    CANDIDATES_PER_ARTICLE,
    DEFAULT_ALPHA,
    DEFAULT_RERANK_WEIGHT,
    MAX_SEGMENTS,
    SearchFilters,
    build_query,
    candidate_limit,
    group_by_article,
    mean_vector,
    rescore_by_segments,
    segment_vectors,
)

GRID_ALPHAS = (0.3, 0.5, 0.7, 0.9)
GRID_WEIGHTS = (0.0, 0.3, 0.5, 0.7)
RECALL_K = 10
MRR_K = 20  # as retrieval_eval: MRR over the deepest list it searches


@dataclass(frozen=True, order=True)
class Chunking:
    """`chunk_article`'s size bounds, in characters of section body."""
    max_chars: int
    min_chars: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_chars < self.max_chars:
            raise ValueError(f"need 0 <= min_chars < max_chars, got {self}")

    def __str__(self) -> str:
        return f"{self.max_chars}:{self.min_chars}"

    @classmethod
    def parse(cls, text: str) -> "Chunking":
        """"900:200" -> Chunking(900, 200)."""
        max_chars, sep, min_chars = text.partition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected MAX:MIN, e.g. 900:200")
        return cls(int(max_chars), int(min_chars))

    def chunker(self) -> Callable[[KnowledgeArticle], list[Chunk]]:
        return partial(chunk_article, max_chars=self.max_chars, min_chars=self.min_chars)


SHIPPED_CHUNKING = Chunking(MAX_CHUNK_CHARS, MIN_CHUNK_CHARS)
SHIPPED_FUSION = "relative"  # KnowledgeIndex.hybrid's default, the one the retriever searches with


@dataclass(frozen=True, order=True)
class Params:
    alpha: float
    rerank_weight: float
    chunking: Chunking = SHIPPED_CHUNKING
    fusion: str = SHIPPED_FUSION
    segments: int = MAX_SEGMENTS  # build_query's max_segments
    candidates: int = CANDIDATES_PER_ARTICLE  # candidate_limit's per_article

    def __str__(self) -> str:
        return self.label(with_chunking=True, with_fusion=True, with_segments=True, with_candidates=True)

    def label(self, *, with_chunking: bool, with_fusion: bool = False, with_segments: bool = False,
              with_candidates: bool = False) -> str:
        """The query-time pair, preceded by the chunking, the fusion, the segment cap and the
        candidates per article only when the grid has more than one of them (the output stays as
        it was)."""
        parts = ([f"chunks={self.chunking}"] * with_chunking + [f"fusion={self.fusion}"] * with_fusion
                 + [f"segments={self.segments}"] * with_segments + [f"cands={self.candidates}"] * with_candidates)
        return " ".join([*parts, f"alpha={self.alpha} w={self.rerank_weight}"])


def parameter_grid(chunkings: Sequence[Chunking], alphas: Sequence[float], weights: Sequence[float],
                   fusions: Sequence[str] = (SHIPPED_FUSION,), segments: Sequence[int] = (MAX_SEGMENTS,),
                   candidates: Sequence[int] = (CANDIDATES_PER_ARTICLE,)) -> tuple[Params, ...]:
    """Chunking x fusion x segments x candidates x alpha x weight, in that order (the order breaks
    the last ties)."""
    return tuple(Params(a, w, c, f, s, n) for c in chunkings for f in fusions for s in segments for n in candidates
                 for a in alphas for w in weights)


SHIPPED = Params(DEFAULT_ALPHA, DEFAULT_RERANK_WEIGHT, SHIPPED_CHUNKING)
# params -> case id -> (recall@10, reciprocal rank of the first gold article)
CaseScores = Mapping[Params, Mapping[str, tuple[float, float]]]


def fold_split(case_ids: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    """Seeded k-fold partition: the ids shuffled (from sorted order, so the input order does not
    matter), then dealt round-robin; fold sizes differ by at most one."""
    if not 2 <= folds <= len(case_ids):
        raise ValueError(f"need 2 <= folds <= {len(case_ids)} cases, got {folds}")
    order = sorted(case_ids)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::folds]) for i in range(folds)]


def mean_scores(per_case: Mapping[str, tuple[float, float]], ids: Sequence[str]) -> tuple[float, float]:
    """(mean recall@10, MRR) over the given cases."""
    return (float(np.mean([per_case[i][0] for i in ids])), float(np.mean([per_case[i][1] for i in ids])))


def choose_params(scores: CaseScores, train_ids: Sequence[str], grid: Sequence[Params],
                  shipped: Params) -> Params:
    """The grid pair with the best mean recall@10 on the training cases; ties go to the better MRR,
    then to the shipped pair, then to the first in grid order."""
    def key(params: Params) -> tuple[float, float, bool]:
        recall, mrr = mean_scores(scores[params], train_ids)
        return (round(recall, 9), round(mrr, 9), params == shipped)
    return max(grid, key=key)  # max keeps the first of equal keys


@dataclass(frozen=True)
class FoldResult:
    chosen: Params
    train_recall: float
    recall: float
    mrr: float
    shipped_recall: float
    shipped_mrr: float


def cross_validate(scores: CaseScores, folds: Sequence[Sequence[str]], grid: Sequence[Params],
                   shipped: Params) -> list[FoldResult]:
    results = []
    for i, held_out in enumerate(folds):
        train = [c for j, fold in enumerate(folds) if j != i for c in fold]
        chosen = choose_params(scores, train, grid, shipped)
        recall, mrr = mean_scores(scores[chosen], held_out)
        shipped_recall, shipped_mrr = mean_scores(scores[shipped], held_out)
        results.append(FoldResult(chosen, mean_scores(scores[chosen], train)[0], recall, mrr,
                                  shipped_recall, shipped_mrr))
    return results


def spread(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"mean {statistics.fmean(values):.3f}  std {std:.3f}  min-max {min(values):.3f}-{max(values):.3f}"


def score_cases(knowledge: KnowledgeIndex, encoder, tenant: str, chunking: Chunking, cases,
                alphas: Sequence[float], weights: Sequence[float],
                fusions: Sequence[str] = (SHIPPED_FUSION,), segment_caps: Sequence[int] = (MAX_SEGMENTS,),
                candidates: Sequence[int] = (CANDIDATES_PER_ARTICLE,),
                ) -> dict[Params, dict[str, tuple[float, float]]]:
    """Every case under every grid cell, on a tenant indexed with `chunking`: one hybrid search per
    (fusion, alpha, segment cap, candidate count), re-scored per weight. Identical searches (a case
    with no more segments than the smaller cap, or the same limit from another k) are run once."""
    scores: dict[Params, dict[str, tuple[float, float]]] = {
        Params(a, w, chunking, f, s, n): {}
        for f in fusions for s in segment_caps for n in candidates for a in alphas for w in weights}
    searched: dict[tuple, list] = {}
    for cap in segment_caps:
        queries = [build_query(text, max_segments=cap) for _, text, _ in cases]
        segments = [segment_vectors(encoder, q) for q in queries]
        for fusion in fusions:
            for per_article in candidates:
                for alpha in alphas:
                    for (case_id, _, gold), query, segs in zip(cases, queries, segments):
                        raw = {}
                        for k in (RECALL_K, MRR_K):
                            limit = candidate_limit(k, per_article)
                            key = (case_id, query, fusion, alpha, limit)
                            if key not in searched:
                                searched[key] = knowledge.hybrid(tenant, query.keywords, mean_vector(segs), alpha=alpha,
                                                                 limit=limit, filters=SearchFilters(), fusion=fusion)
                            raw[k] = searched[key]
                        for weight in weights:
                            top = {k: [a.article_id for a in group_by_article(rescore_by_segments(hits, segs, weight), k)]
                                   for k, hits in raw.items()}
                            recall = len(set(top[RECALL_K]) & gold) / len(gold)
                            reciprocal = next((1 / (i + 1) for i, a in enumerate(top[MRR_K]) if a in gold), 0.0)
                            scores[Params(alpha, weight, chunking, fusion, cap, per_article)][case_id] = (recall,
                                                                                                          reciprocal)
    return scores


def _chunking_arg(text: str) -> Chunking:
    try:
        return Chunking.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, default=DEFAULT_TASKS)
    parser.add_argument("--kb", type=Path, default=DEFAULT_KB)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--repeats", type=int, default=1,
                        help="also repeat the CV over this many partitions (seeds seed, seed+1, ...)")
    parser.add_argument("--alphas", type=float, nargs="+", default=GRID_ALPHAS)
    parser.add_argument("--weights", type=float, nargs="+", default=GRID_WEIGHTS,
                        help="re-scoring weights (0 = no re-scoring)")
    parser.add_argument("--chunkings", type=_chunking_arg, nargs="+", default=(SHIPPED_CHUNKING,),
                        metavar="MAX:MIN", help=f"chunk_article's max_chars:min_chars, one re-index each "
                                                f"(default: the shipped {SHIPPED_CHUNKING})")
    parser.add_argument("--fusions", choices=tuple(FUSION_TYPES), nargs="+", default=(SHIPPED_FUSION,),
                        help=f"Weaviate's hybrid fusion, one search per alpha each (default: the shipped "
                             f"{SHIPPED_FUSION})")
    parser.add_argument("--segments", type=int, nargs="+", default=(MAX_SEGMENTS,), metavar="N",
                        help=f"query segments kept (build_query's max_segments), one search per alpha each "
                             f"(default: the shipped {MAX_SEGMENTS})")
    parser.add_argument("--candidates-per-article", type=int, nargs="+", default=(CANDIDATES_PER_ARTICLE,),
                        metavar="N", help=f"passages fetched per requested article (candidate_limit's "
                                          f"per_article), one search per alpha each (default: the shipped "
                                          f"{CANDIDATES_PER_ARTICLE})")
    args = parser.parse_args()
    if min(args.segments) < 1 or min(args.candidates_per_article) < 1:
        parser.error("--segments and --candidates-per-article need values >= 1")
    alphas, weights = tuple(args.alphas), tuple(args.weights)
    chunkings = tuple(dict.fromkeys(args.chunkings))
    fusions = tuple(dict.fromkeys(args.fusions))
    segment_caps = tuple(dict.fromkeys(args.segments))
    candidates = tuple(dict.fromkeys(args.candidates_per_article))
    grid = parameter_grid(chunkings, alphas, weights, fusions, segment_caps, candidates)
    # the query-time grid: what the CV chooses among without the chunking, fusion, segments and
    # candidates axes
    base_grid = tuple(p for p in grid if (p.chunking, p.fusion, p.segments, p.candidates)
                      == (SHIPPED.chunking, SHIPPED.fusion, SHIPPED.segments, SHIPPED.candidates))
    # the shipped parameters are always scored, for the comparison, but chosen only if in the grid
    scored_alphas = alphas + (SHIPPED.alpha,) * (SHIPPED.alpha not in alphas)
    scored_weights = weights + (SHIPPED.rerank_weight,) * (SHIPPED.rerank_weight not in weights)
    scored_chunkings = chunkings + (SHIPPED.chunking,) * (SHIPPED.chunking not in chunkings)
    scored_fusions = fusions + (SHIPPED.fusion,) * (SHIPPED.fusion not in fusions)
    scored_segments = segment_caps + (SHIPPED.segments,) * (SHIPPED.segments not in segment_caps)
    scored_candidates = candidates + (SHIPPED.candidates,) * (SHIPPED.candidates not in candidates)
    with_chunking = len(scored_chunkings) > 1
    with_fusion = len(scored_fusions) > 1
    with_segments = len(scored_segments) > 1
    with_candidates = len(scored_candidates) > 1
    with_search_axes = with_fusion or with_segments or with_candidates  # more than one search per alpha
    compare_base = bool(base_grid) and base_grid != grid

    def label(params: Params) -> str:
        return params.label(with_chunking=with_chunking, with_fusion=with_fusion, with_segments=with_segments,
                            with_candidates=with_candidates)

    cases = load_cases(args.tasks)
    ids = [case_id for case_id, _, _ in cases]
    articles = load_articles(args.kb)
    settings = FleetSettings.from_env()
    parts = build_components(settings, query_timeout_s=10.0)
    scores: dict[Params, dict[str, tuple[float, float]]] = {}
    chunk_counts: dict[Chunking, int] = {}
    tenants: list[str] = []
    try:
        for chunking in scored_chunkings:
            knowledge = KnowledgeIndex(parts.connection, parts.encoder, collection=parts.knowledge.collection_name,
                                       chunker=chunking.chunker())
            tenant = f"eval-{uuid.uuid4().hex[:10]}"
            tenants.append(tenant)
            started = time.perf_counter()
            report = knowledge.upsert(tenant, articles)
            chunk_counts[chunking] = report.chunks
            print(f"indexed {report.articles} articles as {report.chunks} chunks ({chunking}) in tenant {tenant} "
                  f"({time.perf_counter() - started:.0f} s)")
            started = time.perf_counter()
            scores.update(score_cases(knowledge, parts.encoder, tenant, chunking, cases, scored_alphas,
                                      scored_weights, scored_fusions, scored_segments, scored_candidates))
            cells = len(scored_fusions) * len(scored_segments) * len(scored_candidates) * len(scored_alphas) \
                * len(scored_weights)
            print(f"scored {len(cases)} cases x {cells} "
                  f"{'cells' if with_search_axes else 'pairs'} ({time.perf_counter() - started:.0f} s)")
    finally:
        for tenant in tenants:
            parts.knowledge.drop_tenant(tenant)
        parts.close()
    print()

    print(f"pooled: {len(cases)} cases of {args.tasks.name} (the held-out tau2 cases are withheld, not read)")
    chunking_axis = f"chunking {tuple(str(c) for c in chunkings)} x " if with_chunking else ""
    fusion_axis = f"fusion {fusions} x " if with_fusion else ""
    segments_axis = f"segments {segment_caps} x " if with_segments else ""
    candidates_axis = f"candidates per article {candidates} x " if with_candidates else ""
    print(f"grid: {chunking_axis}{fusion_axis}{segments_axis}{candidates_axis}alpha {alphas} x re-scoring weight "
          f"{weights}; shipped {label(SHIPPED)}")
    print(f"in sample, R@10 on all {len(ids)} cases (the shipped pair was chosen on them):")
    settings_beyond_pair = [(c, f, s, n) for c in scored_chunkings for f in scored_fusions for s in scored_segments
                            for n in scored_candidates]
    for chunking, fusion, cap, per_article in settings_beyond_pair:
        if with_chunking or with_search_axes:
            print("  " + " ".join([f"chunks={chunking} ({chunk_counts[chunking]} chunks)"] * with_chunking
                                  + [f"fusion={fusion}"] * with_fusion + [f"segments={cap}"] * with_segments
                                  + [f"cands={per_article}"] * with_candidates))
        print("  " + " " * 10 + "".join(f"{'w=' + str(w):>8}" for w in scored_weights))
        for a in scored_alphas:
            print(f"  alpha={a:<4}" + "".join(
                f"{mean_scores(scores[Params(a, w, chunking, fusion, cap, per_article)], ids)[0]:>8.3f}"
                for w in scored_weights))
    if with_chunking or with_search_axes:
        print(f"  at the shipped alpha={SHIPPED.alpha} w={SHIPPED.rerank_weight}:")
        for chunking, fusion, cap, per_article in settings_beyond_pair:
            recall, mrr = mean_scores(
                scores[Params(SHIPPED.alpha, SHIPPED.rerank_weight, chunking, fusion, cap, per_article)], ids)
            print("    " + "".join([f"chunks={str(chunking):<10} {chunk_counts[chunking]:>5} chunks  "] * with_chunking
                                   + [f"fusion={fusion:<9}"] * with_fusion + [f"segments={cap:<4}"] * with_segments
                                   + [f"cands={per_article:<4}"] * with_candidates)
                  + f"R@10 {recall:.3f}  MRR {mrr:.3f}")
    in_sample = choose_params(scores, ids, grid, SHIPPED)
    print(f"  best in the grid: {label(in_sample)}\n")

    width = max(18, *(len(label(p)) for p in grid))
    folds = fold_split(ids, args.folds, args.seed)
    results = cross_validate(scores, folds, grid, SHIPPED)
    print(f"{args.folds}-fold CV, seed {args.seed}: parameters chosen on the other folds, measured on the held-out one")
    print(f"{'fold':>4} {'cases':>5}  {'chosen':<{width}} {'train R@10':>10} {'held-out R@10':>13} {'MRR':>6}"
          f"   shipped: {'R@10':>6} {'MRR':>6}")
    for n, (fold, r) in enumerate(zip(folds, results), 1):
        print(f"{n:>4} {len(fold):>5}  {label(r.chosen):<{width}} {r.train_recall:>10.3f} {r.recall:>13.3f} {r.mrr:>6.3f}"
              f"            {r.shipped_recall:>6.3f} {r.shipped_mrr:>6.3f}")
    print(f"CV-chosen held-out R@10: {spread([r.recall for r in results])}; "
          f"MRR mean {statistics.fmean(r.mrr for r in results):.3f}")
    # the shipped pair was chosen on all the dev cases, held-out folds included: in sample
    print(f"shipped   held-out R@10: {spread([r.shipped_recall for r in results])}; "
          f"MRR mean {statistics.fmean(r.shipped_mrr for r in results):.3f}")
    out_of_fold = {c: scores[r.chosen][c] for fold, r in zip(folds, results) for c in fold}
    print("  (the shipped pair was chosen on all these cases, each held-out fold included: in sample)")
    print(f"pooled out of fold (each case scored once, by its fold's choice): "
          f"R@10={mean_scores(out_of_fold, ids)[0]:.3f} MRR={mean_scores(out_of_fold, ids)[1]:.3f}")
    if compare_base:
        base = cross_validate(scores, folds, base_grid, SHIPPED)
        print(f"the query-time grid alone (chunks={SHIPPED.chunking}, fusion={SHIPPED.fusion}, "
              f"segments={SHIPPED.segments}, cands={SHIPPED.candidates}) on the same folds: "
              f"held-out R@10 {spread([r.recall for r in base])}; "
              f"MRR mean {statistics.fmean(r.mrr for r in base):.3f}")

    if args.repeats > 1:
        print(f"\n{args.repeats} partitions (seeds {args.seed}-{args.seed + args.repeats - 1}), "
              f"mean held-out R@10 of each partition's {args.folds} folds:")
        cv_means, shipped_means, base_means, choices = [], [], [], {}
        for seed in range(args.seed, args.seed + args.repeats):
            partition = fold_split(ids, args.folds, seed)
            repeat = cross_validate(scores, partition, grid, SHIPPED)
            cv_means.append(statistics.fmean(r.recall for r in repeat))
            shipped_means.append(statistics.fmean(r.shipped_recall for r in repeat))
            if compare_base:
                base_means.append(statistics.fmean(r.recall for r in cross_validate(scores, partition, base_grid,
                                                                                    SHIPPED)))
            for r in repeat:
                choices[r.chosen] = choices.get(r.chosen, 0) + 1
        print(f"  CV-chosen: {spread(cv_means)}")
        print(f"  shipped:   {spread(shipped_means)}")
        if compare_base:
            differences = [full - base for full, base in zip(cv_means, base_means)]
            print(f"  query-time grid alone, same folds: {spread(base_means)}")
            print(f"  difference, this grid minus the query-time grid, per partition: {spread(differences)}; "
                  f"better in {sum(d > 1e-9 for d in differences)}, worse in {sum(d < -1e-9 for d in differences)} "
                  f"of {len(differences)}")
        print("  chosen pairs over all folds: " + ", ".join(
            f"{label(p)} x{n}" for p, n in sorted(choices.items(), key=lambda item: -item[1])))
        for shown, what, field_name, values in (
                (with_chunking, "chunkings", "chunking", chunkings), (with_fusion, "fusions", "fusion", fusions),
                (with_segments, "segment caps", "segments", segment_caps),
                (with_candidates, "candidates per article", "candidates", candidates)):
            if shown:
                print(f"  chosen {what} over all folds: " + ", ".join(
                    f"{v} x{sum(n for p, n in choices.items() if getattr(p, field_name) == v)}" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
