"""The pure parts of benchmarks/retrieval_cv.py: the seeded fold split, the grid (chunking x fusion x
segments x candidates x alpha x weight) and the choice among it."""

from __future__ import annotations

import pytest

from benchmarks.retrieval_cv import (
    SHIPPED_CHUNKING,
    SHIPPED_FUSION,
    Chunking,
    Params,
    choose_params,
    cross_validate,
    fold_split,
    parameter_grid,
)
from services.retriever.articles import MAX_CHUNK_CHARS, MIN_CHUNK_CHARS, KnowledgeArticle, chunk_article
from services.retriever.index import FUSION_TYPES, KnowledgeIndex
from services.retriever.search import CANDIDATES_PER_ARTICLE, MAX_SEGMENTS

IDS = [f"task_{n:03d}" for n in range(31)]


def test_folds_partition_the_cases_in_near_equal_sizes():
    folds = fold_split(IDS, 5, seed=27)
    assert sorted(c for fold in folds for c in fold) == sorted(IDS)
    assert sorted(len(fold) for fold in folds) == [6, 6, 6, 6, 7]


def test_folds_depend_on_the_seed_not_on_the_input_order():
    assert fold_split(IDS, 5, seed=27) == fold_split(list(reversed(IDS)), 5, seed=27)
    assert fold_split(IDS, 5, seed=27) != fold_split(IDS, 5, seed=28)


def test_too_many_folds_is_an_error():
    with pytest.raises(ValueError):
        fold_split(IDS[:3], 5, seed=0)


SHIPPED = Params(0.7, 0.7)
OTHER = Params(0.5, 0.0)


def test_choice_is_by_training_recall_then_mrr_then_the_shipped_pair():
    scores = {
        SHIPPED: {"a": (0.5, 1.0), "b": (0.5, 0.5)},
        OTHER: {"a": (1.0, 0.1), "b": (0.0, 0.1)},
    }
    assert choose_params(scores, ["a"], [OTHER, SHIPPED], SHIPPED) == OTHER  # recall first
    assert choose_params(scores, ["a", "b"], [OTHER, SHIPPED], SHIPPED) == SHIPPED  # equal recall: MRR
    tied = {SHIPPED: {"a": (0.5, 0.5)}, OTHER: {"a": (0.5, 0.5)}}
    assert choose_params(tied, ["a"], [OTHER, SHIPPED], SHIPPED) == SHIPPED


def test_each_fold_is_measured_with_the_pair_chosen_without_it():
    # OTHER wins on a and b, loses on c: the fold holding c out chooses OTHER and is scored by it
    scores = {
        SHIPPED: {"a": (0.5, 0.5), "b": (0.5, 0.5), "c": (0.5, 0.5)},
        OTHER: {"a": (1.0, 1.0), "b": (1.0, 1.0), "c": (0.0, 0.0)},
    }
    results = cross_validate(scores, [["a"], ["b"], ["c"]], [SHIPPED, OTHER], SHIPPED)
    assert [r.chosen for r in results] == [SHIPPED, SHIPPED, OTHER]  # a out: OTHER 0.5 ties, MRR ties
    assert [r.recall for r in results] == [0.5, 0.5, 0.0]
    assert [r.shipped_recall for r in results] == [0.5, 0.5, 0.5]


def test_a_chunking_is_parsed_from_max_colon_min():
    assert Chunking.parse("600:150") == Chunking(600, 150)
    assert str(Chunking(600, 150)) == "600:150"
    for bad in ("600", "600:x", "150:600", "600:600", "600:-1"):
        with pytest.raises(ValueError):
            Chunking.parse(bad)


def test_params_default_to_the_shipped_chunking_and_label_it_only_when_asked():
    assert SHIPPED_CHUNKING == Chunking(MAX_CHUNK_CHARS, MIN_CHUNK_CHARS)
    assert Params(0.7, 0.7) == Params(0.7, 0.7, SHIPPED_CHUNKING) != Params(0.7, 0.7, Chunking(600, 150))
    assert Params(0.7, 0.5).label(with_chunking=False) == "alpha=0.7 w=0.5"
    assert Params(0.7, 0.5, Chunking(600, 150)).label(with_chunking=True) == "chunks=600:150 alpha=0.7 w=0.5"


def test_the_grid_runs_chunking_then_alpha_then_weight():
    small, large = Chunking(450, 100), Chunking(1400, 300)
    assert parameter_grid([small, large], [0.5, 0.7], [0.0]) == (
        Params(0.5, 0.0, small), Params(0.7, 0.0, small), Params(0.5, 0.0, large), Params(0.7, 0.0, large))


def test_a_chunkings_chunker_is_chunk_article_with_its_sizes():
    paragraphs = "\n\n".join(f"Paragraph {n}: " + "words " * 40 for n in range(10))
    article = KnowledgeArticle(article_id="a", title="T", content=paragraphs)
    for chunking in (Chunking(450, 100), SHIPPED_CHUNKING, Chunking(2000, 440)):
        chunks = chunking.chunker()(article)
        assert chunks == chunk_article(article, max_chars=chunking.max_chars, min_chars=chunking.min_chars)
        assert max(len(c.text) for c in chunks) <= chunking.max_chars
    assert SHIPPED_CHUNKING.chunker()(article) == chunk_article(article)
    assert len(Chunking(450, 100).chunker()(article)) > len(Chunking(2000, 440).chunker()(article))


def test_ties_across_chunkings_go_to_the_shipped_parameters_then_grid_order():
    other_chunking = Params(0.7, 0.7, Chunking(600, 150))
    tied = {SHIPPED: {"a": (0.5, 0.5)}, other_chunking: {"a": (0.5, 0.5)}, OTHER: {"a": (0.5, 0.5)}}
    assert choose_params(tied, ["a"], [other_chunking, OTHER, SHIPPED], SHIPPED) == SHIPPED
    assert choose_params(tied, ["a"], [other_chunking, OTHER], SHIPPED) == other_chunking
    better = {**tied, other_chunking: {"a": (0.5, 0.6)}}  # equal recall, better MRR
    assert choose_params(better, ["a"], [SHIPPED, other_chunking], SHIPPED) == other_chunking


def test_params_default_to_the_shipped_fusion_and_label_it_only_when_asked():
    assert SHIPPED_FUSION == "relative" == KnowledgeIndex.hybrid.__kwdefaults__["fusion"]
    assert set(FUSION_TYPES) == {"relative", "ranked"}
    assert Params(0.7, 0.7) == Params(0.7, 0.7, SHIPPED_CHUNKING, "relative") != Params(0.7, 0.7, fusion="ranked")
    ranked = Params(0.7, 0.5, Chunking(600, 150), "ranked")
    assert ranked.label(with_chunking=False) == "alpha=0.7 w=0.5"
    assert ranked.label(with_chunking=False, with_fusion=True) == "fusion=ranked alpha=0.7 w=0.5"
    assert ranked.label(with_chunking=True, with_fusion=True) == "chunks=600:150 fusion=ranked alpha=0.7 w=0.5"
    assert str(ranked) == f"chunks=600:150 fusion=ranked segments={MAX_SEGMENTS} cands={CANDIDATES_PER_ARTICLE} alpha=0.7 w=0.5"


def test_the_grid_runs_chunking_then_fusion_then_alpha_then_weight():
    small, large = Chunking(450, 100), Chunking(1400, 300)
    assert parameter_grid([small, large], [0.5, 0.7], [0.0, 0.3], ["relative", "ranked"]) == (
        Params(0.5, 0.0, small, "relative"), Params(0.5, 0.3, small, "relative"),
        Params(0.7, 0.0, small, "relative"), Params(0.7, 0.3, small, "relative"),
        Params(0.5, 0.0, small, "ranked"), Params(0.5, 0.3, small, "ranked"),
        Params(0.7, 0.0, small, "ranked"), Params(0.7, 0.3, small, "ranked"),
        Params(0.5, 0.0, large, "relative"), Params(0.5, 0.3, large, "relative"),
        Params(0.7, 0.0, large, "relative"), Params(0.7, 0.3, large, "relative"),
        Params(0.5, 0.0, large, "ranked"), Params(0.5, 0.3, large, "ranked"),
        Params(0.7, 0.0, large, "ranked"), Params(0.7, 0.3, large, "ranked"))
    # without fusions the grid is the shipped fusion's, as before the axis existed
    assert parameter_grid([small], [0.5], [0.0, 0.3]) == parameter_grid([small], [0.5], [0.0, 0.3], ["relative"])


def test_ties_across_fusions_go_to_the_shipped_fusion():
    ranked = Params(SHIPPED.alpha, SHIPPED.rerank_weight, fusion="ranked")
    tied = {SHIPPED: {"a": (0.5, 0.5)}, ranked: {"a": (0.5, 0.5)}}
    assert choose_params(tied, ["a"], [ranked, SHIPPED], SHIPPED) == SHIPPED
    better = {**tied, ranked: {"a": (0.6, 0.1)}}
    assert choose_params(better, ["a"], [SHIPPED, ranked], SHIPPED) == ranked


def test_params_default_to_the_shipped_segments_and_candidates_and_label_them_only_when_asked():
    assert (Params(0.7, 0.7).segments, Params(0.7, 0.7).candidates) == (MAX_SEGMENTS, CANDIDATES_PER_ARTICLE) == (16, 8)
    assert Params(0.7, 0.7) == Params(0.7, 0.7, SHIPPED_CHUNKING, SHIPPED_FUSION, 16, 8)
    assert Params(0.7, 0.7) != Params(0.7, 0.7, segments=8) != Params(0.7, 0.7, candidates=6)
    wide = Params(0.7, 0.5, segments=8, candidates=6)
    assert wide.label(with_chunking=False, with_fusion=False) == "alpha=0.7 w=0.5"
    assert wide.label(with_chunking=False, with_segments=True) == "segments=8 alpha=0.7 w=0.5"
    assert wide.label(with_chunking=False, with_candidates=True) == "cands=6 alpha=0.7 w=0.5"
    assert str(wide) == "chunks=900:200 fusion=relative segments=8 cands=6 alpha=0.7 w=0.5"


def test_the_grid_runs_fusion_then_segments_then_candidates_then_alpha_then_weight():
    grid = parameter_grid([SHIPPED_CHUNKING], [0.5, 0.7], [0.0], ["relative", "ranked"], [16, 8], [8, 6])
    assert grid == tuple(Params(a, 0.0, SHIPPED_CHUNKING, f, s, n) for f in ("relative", "ranked") for s in (16, 8)
                         for n in (8, 6) for a in (0.5, 0.7))
    assert grid[:3] == (Params(0.5, 0.0), Params(0.7, 0.0), Params(0.5, 0.0, candidates=6))
    # without the new axes the grid is the shipped segments' and candidates', as before they existed
    assert parameter_grid([SHIPPED_CHUNKING], [0.5], [0.0, 0.3], ["ranked"]) == parameter_grid(
        [SHIPPED_CHUNKING], [0.5], [0.0, 0.3], ["ranked"], [MAX_SEGMENTS], [CANDIDATES_PER_ARTICLE])


def test_ties_across_segments_and_candidates_go_to_the_shipped_parameters():
    more = Params(SHIPPED.alpha, SHIPPED.rerank_weight, segments=8, candidates=4)
    tied = {SHIPPED: {"a": (0.5, 0.5)}, more: {"a": (0.5, 0.5)}}
    assert choose_params(tied, ["a"], [more, SHIPPED], SHIPPED) == SHIPPED
    better = {**tied, more: {"a": (0.5, 0.6)}}
    assert choose_params(better, ["a"], [SHIPPED, more], SHIPPED) == more
