"""Classifier evaluation on the demo's held-out slice of Banking77 *train* (the official test split is
withheld and never used): intent accuracy and calibration, what routing does with the predictions,
how precise the automated routes are, and how often the lexicon signals fire on ordinary messages.

    python benchmarks/classifier_routing_eval.py [--model DIR] [--json]

Without --model it trains the demo model (Banking77 train minus the held-out slice) into a
temporary directory first. Nothing here is tuned: the policy is the shipped file.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.embedding import intent_encoders  # noqa: E402
from integrations.crm import FileCrm  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from tooling.sample_data import SAMPLE_CRM_PATH, banking77_rows  # noqa: E402
from tooling.sample_tickets import is_held_out, training_rows  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

from services.classifier.classify import classify_batch  # noqa: E402
from services.classifier.input_guard import injection_styles  # noqa: E402
from services.classifier.intent_catalog import archetype_name  # noqa: E402
from services.classifier.intent_model import IntentModel  # noqa: E402
from services.classifier.routing import DEFAULT_POLICY_PATH, load_policy, route_name  # noqa: E402
from services.classifier.signals import read_signals  # noqa: E402

BATCH = 64
CALIBRATION_BINS = 10


def dressed(text: str, rng: random.Random) -> str:
    """The message as an email would carry it: greeting, sign-off, phone signature."""
    greeting = rng.choice(["Hi team,", "Hello,", "Dear Sir or Madam,", "Hey there,"])
    closing = rng.choice(["Thanks,\nAna", "Kind regards,\nJonas Weber", "Cheers,\nHiro\n\nSent from my iPhone"])
    return f"{greeting}\n\n{text}\n\n{closing}"


def expected_calibration_error(confidences: list[float], correct: list[bool]) -> float:
    total, error = len(confidences), 0.0
    for low in range(CALIBRATION_BINS):
        members = [i for i, c in enumerate(confidences) if low / CALIBRATION_BINS <= c < (low + 1) / CALIBRATION_BINS
                   or (low == CALIBRATION_BINS - 1 and c == 1.0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            error += len(members) / total * abs(accuracy - confidence)
    return round(error, 4)


def evaluate(model: IntentModel, rows: list[dict[str, str]], *, dress: bool) -> dict:
    rng = random.Random(7)
    policy, crm = load_policy(DEFAULT_POLICY_PATH), FileCrm(SAMPLE_CRM_PATH)
    tickets = [
        tk.Ticket(ticket_id=f"h{i}", tenant_id="eval", customer_id=f"cust-{1 + i % 50:04d}",
                  channel=tk.CHANNEL_EMAIL if dress else tk.CHANNEL_CHAT,
                  body=dressed(row["text"], rng) if dress else row["text"])
        for i, row in enumerate(rows)
    ]
    started = time.perf_counter()
    results = []
    for start in range(0, len(tickets), BATCH):
        results += classify_batch(tickets[start : start + BATCH], model=model, policy=policy, crm=crm)
    elapsed = time.perf_counter() - started

    labels = [row["category"] for row in rows]
    classifications = [c for _, c in results]
    correct = [c.intent == label for c, label in zip(classifications, labels)]
    confidences = [c.confidence for c in classifications]
    routes = collections.Counter(route_name(c.route) for c in classifications)
    by_route: dict[str, list[bool]] = collections.defaultdict(list)
    by_archetype: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for c, ok in zip(classifications, correct):
        by_route[route_name(c.route)].append(ok)
        by_archetype[archetype_name(c.archetype)][route_name(c.route)] += 1
    threshold = policy.confidence_threshold
    confident = [ok for ok, conf in zip(correct, confidences) if conf >= threshold]
    return {
        "tickets": len(rows),
        "dressed_as_email": dress,
        "intent_accuracy": round(sum(correct) / len(correct), 4),
        "expected_calibration_error": expected_calibration_error(confidences, correct),
        f"share_with_confidence_at_least_{threshold}": round(len(confident) / len(correct), 4),
        f"accuracy_when_confidence_at_least_{threshold}": round(sum(confident) / max(len(confident), 1), 4),
        "routes": dict(routes.most_common()),
        "intent_accuracy_by_route": {r: round(sum(v) / len(v), 4) for r, v in sorted(by_route.items())},
        "routes_by_archetype": {a: dict(c.most_common()) for a, c in sorted(by_archetype.items())},
        "tickets_per_s": round(len(rows) / elapsed, 1),
    }


def signal_rates(rows: list[dict[str, str]]) -> dict:
    """How often each lexicon signal fires on ordinary Banking77 messages (all of train)."""
    injections = sum(1 for row in rows if injection_styles(row["text"]))
    risk = collections.Counter()
    risk_by_intent: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        for flag in read_signals(row["text"]).risk_flags:
            name = tk.RiskFlag.Name(flag).removeprefix("RISK_FLAG_").lower()
            risk[name] += 1
            risk_by_intent[name][row["category"]] += 1
    return {
        "messages": len(rows),
        "prompt_injection_flagged": injections,
        "risk_flags": dict(risk.most_common()),
        "risk_flag_top_intents": {name: dict(c.most_common(4)) for name, c in risk_by_intent.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model directory (default: train the demo model first)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    all_rows = banking77_rows()
    held_out = [row for row in all_rows if is_held_out(row["text"])]
    if args.model:
        model = IntentModel.load(Path(args.model))
        trained_on = "given model"
    else:
        train = training_rows()
        started = time.perf_counter()
        encoder, second_encoder = intent_encoders(FleetSettings())
        model = IntentModel.train([r["text"] for r in train], [r["category"] for r in train],
                                  encoder=encoder, second_encoder=second_encoder, seed=0)
        trained_on = f"{len(train)} Banking77 train rows (minus the held-out slice) in {time.perf_counter() - started:.0f} s"
        with tempfile.TemporaryDirectory() as directory:  # a save/load round trip, as the service does
            model.save(Path(directory))
            model = IntentModel.load(Path(directory))

    report = {
        "model": trained_on,
        "held_out_plain": evaluate(model, held_out, dress=False),
        "held_out_dressed": evaluate(model, held_out, dress=True),
        "signals_on_banking77_train": signal_rates(all_rows),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for section, values in report.items():
            print(f"== {section}")
            print(json.dumps(values, indent=2) if isinstance(values, dict) else values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
