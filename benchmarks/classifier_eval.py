"""Stratified k-fold cross-validation of the intent model on a labeled CSV (default: Banking77).

Prints accuracy, macro-F1, expected calibration error (15 equal-width bins; also before the model
held the confidences it cannot back under the routing threshold), and the selective accuracy and
coverage of predictions at or above a confidence threshold (default 0.7). Every fold
trains the full recipe, inner calibration included, on the other folds only, so no number here
has seen its own rows. Only the train split is read: the Banking77 test split is withheld.

    python -m benchmarks.classifier_eval [--csv PATH] [--folds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.classifier.intent_model import TrainingConfig, cross_validate, read_labeled_csv
from encoders.embedding import load_encoder
from tooling.settings import FleetSettings

DEFAULT_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77" / "train.csv"
)
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "supportflow" / "embeddings"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--encoder", default=FleetSettings().intent_encoder, help="registry name")
    parser.add_argument(
        "--second-encoder", default=FleetSettings().intent_second_encoder,
        help="registry name of the second opinion's encoder ('': none)",
    )
    parser.add_argument(
        "--second-opinion-below", type=float, default=TrainingConfig.second_opinion_below,
        help="first-stack confidence below which the second encoder is consulted",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache")
    parser.add_argument("--json", type=Path, help="also write the metrics to this file")
    parser.add_argument(
        "--fast-path-confidence",
        type=float,
        default=TrainingConfig.fast_path_confidence,
        help="n-gram fast path threshold (0 or more than 1: no fast path)",
    )
    args = parser.parse_args(argv)

    texts, labels = read_labeled_csv(args.csv, args.text_column, args.label_column)
    print(
        f"{args.csv}: {len(texts)} rows, {len(set(labels))} labels; {args.folds}-fold CV",
        flush=True,
    )
    result = cross_validate(
        texts,
        labels,
        encoder=load_encoder(args.encoder),
        second_encoder=load_encoder(args.second_encoder) if args.second_encoder else None,
        folds=args.folds,
        seed=args.seed,
        cache_dir=args.cache_dir,
        config=TrainingConfig(
            fast_path_confidence=args.fast_path_confidence
            if 0 < args.fast_path_confidence <= 1
            else None,
            second_opinion_below=args.second_opinion_below,
        ),
    )
    summary = result.summary(threshold=args.threshold)
    print(f"accuracy            {summary['accuracy']:.4f}")
    print(f"macro_f1            {summary['macro_f1']:.4f}")
    print(f"ece_15_bins         {summary['ece']:.4f}  (before holding: {summary['ece_before_holding']:.4f})")
    print(
        f"selective_accuracy  {summary['selective_accuracy']:.4f}  (confidence >= {args.threshold})"
    )
    print(f"coverage            {summary['coverage']:.4f}")
    print(
        f"before holding      {summary['selective_accuracy_before_holding']:.4f} at coverage "
        f"{summary['coverage_before_holding']:.4f}"
    )
    cuts = ", ".join("none" if c is None else f"{c:.3f}" for c in summary["confidence_cuts"])
    print(
        f"held                {summary['held_from_threshold_share']:.4f}  (calibrated at or above "
        f"{args.threshold}, held under it: below each fold's cut, {cuts})"
    )
    fast_accuracy = summary["fast_path_accuracy"]
    print(
        f"fast_path_share     {summary['fast_path_share']:.4f}  (answered by n-grams alone, "
        f"accuracy {'n/a' if fast_accuracy is None else f'{fast_accuracy:.4f}'})"
    )
    print(f"second_opinion      {summary['second_opinion_share']:.4f}  (share also read by the second encoder)")
    for threshold, row in summary["selective_by_threshold"].items():
        accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        coverage = row["coverage"]
        print(
            f"  confidence >= {threshold}: selective accuracy {accuracy}, coverage {coverage:.4f}"
        )
    print(f"seconds             {summary['seconds']:.0f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
