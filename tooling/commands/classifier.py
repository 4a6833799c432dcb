"""`supportflow classifier train | predict | bench`: the classifier's offline entry points.

`predict` is an evaluation contract and stays stable: one JSON line in, one JSON line out, same
order. An input line is `{"id", "text"}` or a canonical ticket as the gateway accepts it
(`{"id", "subject", "body", "channel", "customer_id", "history", "metadata", ...}`). Every output
line has `id`, `intent`, `confidence`, `archetype`, `urgency`, `route`, `route_reason`,
`risk_flags`, `input_flags`, `missing_identifiers` and more (see `classification_record`). A line
that cannot be read is rejected in its place with `error` (the reason) and the same fields: no
intent (null), confidence 0 and route `escalate`, since a person must look at what the model could
not read (see `rejected_record`). Nothing is dropped and a bad line never stops the run.

Routing uses the shipped policy file without run-time overrides, and tiers come from the shipped
sample CRM, as in a freshly started service.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from encoders.embedding import load_encoder
from integrations.crm import FileCrm
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.sample_data import SAMPLE_CRM_PATH
from tooling.settings import FleetSettings

from services.classifier.classify import classify_batch, classify_ticket
from services.classifier.intent_catalog import archetype_name
from services.classifier.intake import read_ticket
from services.classifier.intent_model import IntentModel, train_from_csv
from services.classifier.routing import DEFAULT_POLICY_PATH, load_policy, route_name
from services.classifier.tenant_data import EXAMPLES_FILE
from services.gateway.intake import PayloadError, ticket_from_payload

PREDICT_BATCH = 64
BENCH_TICKETS = 3_000
BENCH_LATENCY_TICKETS = 1_000
BENCH_SEEN_SAMPLE = 300
CLI_TENANT = "cli"
TRAIN_SPLIT = "train"  # a tenant's examples.csv: the rows to train on; "heldout" ones are for evaluation


@dataclass(frozen=True)
class TrainingSource:
    """What `supportflow classifier train` reads and where it saves the model."""

    data: Path
    label_column: str
    split: str | None
    out: Path


def training_source(
    settings: FleetSettings, *, data: str | None, tenant: str | None, label_column: str | None, split: str | None,
    out: str | None,
) -> TrainingSource:
    """`--data FILE` as given, or `--tenant T`: the train split of the tenant's intents/examples.csv,
    saved by default where the classifier looks for the tenant's model. Raises ValueError when the
    options do not name one CSV and one output folder."""
    if (data is None) == (tenant is None):
        raise ValueError("give either --data FILE or --tenant TENANT")
    if tenant is None:
        if out is None:
            raise ValueError("--out is required with --data")
        return TrainingSource(Path(data), label_column or "category", split, Path(out))
    if not tenant or Path(tenant).name != tenant or tenant.startswith("."):
        raise ValueError(f"--tenant {tenant!r} is not a tenant id")
    examples = settings.tenant_data_dir / tenant / EXAMPLES_FILE
    if not examples.is_file():
        raise ValueError(f"tenant {tenant!r} has no {examples}")
    if out is None and settings.intent_models_dir is None:
        raise ValueError("give --out, or set SUPPORTFLOW_INTENT_MODELS_DIR to save it as the tenant's model")
    return TrainingSource(examples, label_column or "label", split or TRAIN_SPLIT,
                          Path(out) if out is not None else settings.intent_models_dir / tenant)


def train(
    data: str | Path, text_column: str, label_column: str, out: str | Path, *, encoder: str, second_encoder: str,
    split: str | None = None,
) -> dict[str, Any]:
    """Train the intent model on a labeled CSV (its `split` rows only, if given) with the registry's
    `encoder` (and `second_encoder` for a second opinion, unless empty) and save it to `out`;
    returns the training report."""
    return train_from_csv(
        Path(data), text_column, label_column, Path(out), encoder=load_encoder(encoder),
        second_encoder=load_encoder(second_encoder) if second_encoder else None, split=split,
    )


def _enum(enum_type: Any, value: int, prefix: str) -> str:
    return enum_type.Name(value).removeprefix(prefix).lower()


def rejected_record(input_id: Any, error: str) -> dict[str, Any]:
    """The output line of an input that could not be classified: every contract field, and why."""
    return {
        "id": input_id,
        "intent": None,
        "confidence": 0.0,
        "archetype": None,
        "urgency": None,
        "route": route_name(tk.ROUTE_ESCALATE),
        "route_reason": f"rejected: {error}",
        "risk_flags": [],
        "input_flags": [],
        "missing_identifiers": [],
        "error": error,
    }


def classification_record(input_id: Any, normalized: tk.NormalizedTicket, c: tk.Classification) -> dict[str, Any]:
    return {
        "id": input_id,
        "intent": c.intent,
        "confidence": round(c.confidence, 4),
        "top_intents": [{"intent": s.intent, "probability": round(s.probability, 4)} for s in c.top_intents],
        "archetype": archetype_name(c.archetype),
        "urgency": _enum(tk.Urgency, c.urgency, "URGENCY_"),
        "route": route_name(c.route),
        "route_reason": c.route_reason,
        "risk_flags": [_enum(tk.RiskFlag, f, "RISK_FLAG_") for f in c.risk_flags],
        "input_flags": list(c.input_flags),
        "missing_identifiers": list(normalized.missing_identifiers),
        "identifiers": [{"kind": i.kind, "value": i.value} for i in normalized.identifiers],
        "sentiment": c.sentiment,
        "frustration_signals": list(c.frustration_signals),
        "tier": _enum(tk.CustomerTier, c.tier, "CUSTOMER_TIER_"),
        "segment": c.segment,
        "language": normalized.language,
        "problem_statement": normalized.problem_statement,
        "environment": {
            "product": normalized.product,
            "product_version": normalized.product_version,
            "platform": normalized.platform,
        },
        "action_attempted": normalized.action_attempted,
        "expected_outcome": normalized.expected_outcome,
        "actual_outcome": normalized.actual_outcome,
        "timing": normalized.timing,
        "steps_tried": list(normalized.steps_tried),
        "model_version": c.model_version,
    }


def _repair_text(value: Any) -> Any:
    """Lone surrogates (undecodable bytes escaped in JSON) become U+FFFD, which the classifier flags
    as invalid_unicode; protobuf would refuse them outright."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_repair_text(item) for item in value]
    if isinstance(value, dict):
        return {_repair_text(k): _repair_text(v) for k, v in value.items()}
    return value


def _read_line(line: str) -> tuple[Any, tk.Ticket | None, str]:
    """(input id, ticket, error): a ticket, or the reason there is none."""
    if not line.strip():
        return None, None, "empty line"
    try:
        payload = _repair_text(json.loads(line))
    except json.JSONDecodeError as exc:
        return None, None, f"not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, None, "a line must be a JSON object"
    input_id = payload.get("id", payload.get("ticket_id"))
    if not any(key in payload for key in ("text", "body", "subject")):
        return input_id, None, "no text, body or subject field"
    try:
        return input_id, ticket_from_payload(payload, default_tenant=CLI_TENANT), ""
    except PayloadError as exc:
        return input_id, None, str(exc)


def predict(model_dir: str, in_stream: Iterable[str], out_stream: TextIO) -> int:
    """Classify JSON lines from `in_stream` into `out_stream`; returns the number of lines written."""
    model = IntentModel.load(Path(model_dir))
    policy, crm = load_policy(DEFAULT_POLICY_PATH), FileCrm(SAMPLE_CRM_PATH)
    written = 0
    pending: list[tuple[Any, tk.Ticket | None, str]] = []

    def flush() -> None:
        nonlocal written
        tickets = [ticket for _, ticket, _ in pending if ticket is not None]
        try:
            results = iter(classify_batch(tickets, model=model, policy=policy, crm=crm))
        except Exception:  # noqa: BLE001 - retried one by one below, so one bad ticket fails alone
            results = None
        for input_id, ticket, error in pending:
            if ticket is None:
                record = rejected_record(input_id, error)
            else:
                try:
                    normalized, c = next(results) if results else classify_ticket(ticket, model=model, policy=policy, crm=crm)
                    record = classification_record(input_id, normalized, c)
                except Exception as exc:  # noqa: BLE001 - the contract: an error line, never a crash
                    record = rejected_record(input_id, f"classification failed: {type(exc).__name__}: {exc}")
            out_stream.write(json.dumps(record) + "\n")
            written += 1
        out_stream.flush()
        pending.clear()

    for line in in_stream:
        pending.append(_read_line(line))
        if len(pending) >= PREDICT_BATCH:
            flush()
    flush()
    return written


def _latency_summary(latencies_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies_ms)
    return {
        "tickets": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max": round(ordered[-1], 2),
    }


def bench(model_dir: str, out_stream: TextIO = sys.stdout, *, workers: int = 2) -> dict[str, Any]:
    """Throughput (batches of PREDICT_BATCH on `workers` threads, as the service's consumer runs
    them) and single-ticket latency of the whole classify path, on demo tickets (held-out
    Banking77 messages dressed as email/chat/form, with hostile and oversized ones)."""
    from concurrent.futures import ThreadPoolExecutor

    from supportflow.service import limit_blas_threads
    from tooling.sample_tickets import demo_tickets

    limit_blas_threads()  # as every service process does (supportflow/service.py)
    model = IntentModel.load(Path(model_dir))
    policy, crm = load_policy(DEFAULT_POLICY_PATH), FileCrm(SAMPLE_CRM_PATH)
    tickets = [ticket_from_payload(p, default_tenant=CLI_TENANT) for p in demo_tickets(BENCH_TICKETS, run_id="bench")]
    classify_batch(tickets[:PREDICT_BATCH], model=model, policy=policy, crm=crm)  # warm-up

    batches = [tickets[start : start + PREDICT_BATCH] for start in range(0, len(tickets), PREDICT_BATCH)]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda batch: classify_batch(batch, model=model, policy=policy, crm=crm), batches))
    batched_s = time.perf_counter() - started

    latencies_ms, ordinary_ms = [], []
    for ticket in tickets[:BENCH_LATENCY_TICKETS]:
        started = time.perf_counter()
        classify_ticket(ticket, model=model, policy=policy, crm=crm)
        elapsed_ms = (time.perf_counter() - started) * 1000
        latencies_ms.append(elapsed_ms)
        if ":" not in ticket.metadata.get("demo_label", ""):  # not hostile, oversized or foreign
            ordinary_ms.append(elapsed_ms)

    # A model trained on the messages the demo tickets are made of answers most of them from the
    # fast path: say so, since such figures overstate what new tickets get.
    sample = [read_ticket(t).model_text for t in tickets[:BENCH_SEEN_SAMPLE]]
    seen = model.seen_in_training([text for text in sample if text])
    report = {
        "tickets": len(tickets),
        "tickets_seen_in_training": round(float(seen.mean()), 3) if seen.size else 0.0,
        "batch_size": PREDICT_BATCH,
        "workers": workers,
        "batched_tickets_per_s": round(len(tickets) / batched_s, 1),
        # Every 100th demo ticket is a 100,000-character paste: it sits right at p99, so the
        # latency of ordinary tickets is given apart too.
        "single_ticket_latency_ms": _latency_summary(latencies_ms),
        "ordinary_ticket_latency_ms": _latency_summary(ordinary_ms),
        "model_version": model.version,
        "cpus": os.cpu_count(),
    }
    out_stream.write(json.dumps(report, indent=2) + "\n")
    if report["tickets_seen_in_training"] > 0.05:
        out_stream.write(
            f"note: {report['tickets_seen_in_training']:.0%} of these tickets are texts the model was trained on; "
            "new tickets are slower (the demo's model holds them out)\n"
        )
    return report
