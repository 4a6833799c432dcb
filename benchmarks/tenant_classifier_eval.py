"""A tenant's intent model on its own held-out examples: trained on the `train` rows of
`tenants/<tenant>/intents/examples.csv`, as `supportflow classifier train --tenant` trains it, and
scored on the `heldout` rows, which training never reads. Optionally k-fold CV on the train rows.

Prints held-out accuracy, macro-F1, selective accuracy and coverage at the routing threshold, the
fast-path share, and the routes the classifier gives the held-out messages with the tenant's own
catalog and routing policy (as plain API tickets, sample CRM). Read the tenant README before the
figures: a tenant whose examples were written by one hand scores an upper bound here.

    python -m benchmarks.tenant_classifier_eval --tenant retail [--cv-folds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from encoders.embedding import load_encoder
from integrations.crm import FileCrm
from services.classifier.classify import classify_batch
from services.classifier.intent_catalog import default_catalog
from services.classifier.intent_model import IntentModel, _macro_f1, cross_validate, read_labeled_csv
from services.classifier.routing import DEFAULT_POLICY_PATH, load_policy, route_name
from services.classifier.tenant_data import EXAMPLES_FILE, tenant_catalogs, tenant_policy_paths
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.sample_data import SAMPLE_CRM_PATH
from tooling.settings import FleetSettings


def main(argv: list[str] | None = None) -> int:
    settings = FleetSettings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--tenants-dir", type=Path, default=settings.tenant_data_dir)
    parser.add_argument("--encoder", default=settings.intent_encoder, help="registry name")
    parser.add_argument("--second-encoder", default=settings.intent_second_encoder,
                        help="registry name of the second opinion's encoder ('': none)")
    parser.add_argument("--cv-folds", type=int, default=0, help="also k-fold CV on the train rows (0: no)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=settings.cache_dir / "embeddings", help="embedding cache")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    examples = args.tenants_dir / args.tenant / EXAMPLES_FILE
    train_texts, train_labels = read_labeled_csv(examples, "text", "label", split="train")
    held_texts, held_labels = read_labeled_csv(examples, "text", "label", split="heldout")
    encoder = load_encoder(args.encoder)
    second = load_encoder(args.second_encoder) if args.second_encoder else None
    print(f"{examples}: {len(train_texts)} train rows, {len(held_texts)} held-out rows, "
          f"{len(set(train_labels))} intents", flush=True)

    model = IntentModel.train(train_texts, train_labels, encoder=encoder, second_encoder=second, seed=args.seed,
                              cache_dir=args.cache_dir)
    predictions = model.predict(held_texts)
    predicted = np.array([p.intent for p in predictions])
    confidence = np.array([p.confidence for p in predictions])
    correct = predicted == np.array(held_labels)
    kept = confidence >= args.threshold
    calibrated = np.array([p.confidence if p.calibrated is None else p.calibrated for p in predictions])
    kept_before = calibrated >= args.threshold
    index = {label: i for i, label in enumerate(sorted(set(train_labels) | set(held_labels)))}
    report = {
        "tenant": args.tenant,
        "encoder": encoder.name,
        "second_encoder": second.name if second else None,
        "train_rows": len(train_texts),
        "heldout_rows": len(held_texts),
        "heldout_accuracy": round(float(correct.mean()), 4),
        "heldout_macro_f1": round(_macro_f1(np.array([index[x] for x in held_labels]),
                                            np.array([index[x] for x in predicted]), len(index)), 4),
        "heldout_selective_threshold": args.threshold,
        "heldout_selective_accuracy": round(float(correct[kept].mean()), 4) if kept.any() else None,
        "heldout_coverage": round(float(kept.mean()), 4),
        # The model holds under the threshold the confidences cross-fitting could not back with
        # TrainingConfig.selective_accuracy_target (a cut above 1: every one); before holding:
        "confidence_cut": model.confidence_cut,
        "heldout_selective_accuracy_before_holding": round(float(correct[kept_before].mean()), 4)
        if kept_before.any() else None,
        "heldout_coverage_before_holding": round(float(kept_before.mean()), 4),
        "heldout_fast_path_share": round(float(np.mean([not p.encoded for p in predictions])), 4),
        "heldout_routes": _routes(args.tenants_dir, args.tenant, model, held_texts),
        "training_seconds": model.metadata["training_seconds"],
    }
    if args.cv_folds:
        cv = cross_validate(train_texts, train_labels, encoder=encoder, second_encoder=second, folds=args.cv_folds,
                            seed=args.seed, cache_dir=args.cache_dir).summary(threshold=args.threshold)
        report["train_cv"] = {
            key: None if isinstance(cv[key], float) and np.isnan(cv[key]) else cv[key]
            for key in ("folds", "rows", "accuracy", "macro_f1", "ece", "selective_accuracy", "coverage",
                        "selective_accuracy_before_holding", "coverage_before_holding", "confidence_cuts", "seconds")
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


def _routes(tenants_dir: Path, tenant: str, model: IntentModel, texts: list[str]) -> dict[str, int]:
    """The routes of the held-out messages with the tenant's catalog and policy (or the defaults)."""
    catalog = tenant_catalogs(tenants_dir).get(tenant, default_catalog())
    policy = load_policy(tenant_policy_paths(tenants_dir).get(tenant, DEFAULT_POLICY_PATH))
    tickets = [tk.Ticket(ticket_id=f"heldout-{i}", tenant_id=tenant, channel=tk.CHANNEL_API, body=text)
               for i, text in enumerate(texts)]
    results = classify_batch(tickets, model=model, policy=policy, crm=FileCrm(SAMPLE_CRM_PATH), catalog=catalog)
    return dict(Counter(route_name(c.route) for _, c in results).most_common())


if __name__ == "__main__":
    sys.exit(main())
