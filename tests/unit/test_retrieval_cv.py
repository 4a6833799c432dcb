"""The pure parts of benchmarks/retrieval_cv.py: the seeded fold split and the grid choice."""

from __future__ import annotations

import pytest

from benchmarks.retrieval_cv import Params, choose_params, cross_validate, fold_split

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
