"""What the demo and the end-to-end test need before services start: a trained intent model and
the sample knowledge base indexed in Weaviate. Both are built once and reused from the cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Iterable

from tooling.sample_data import path as sample_path
from tooling.sample_tickets import FRESH_MODULUS, HOLDOUT_MODULUS, training_rows
from tooling.settings import FleetSettings

Progress = Callable[[str], None]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:12]


def _training_recipe(settings: FleetSettings) -> bytes:
    """What a trained intent model depends on beside its data: a new artifact format or training
    recipe retrains the cached models."""
    from dataclasses import asdict

    from services.classifier.intent_model import ARTIFACT_FORMAT, TrainingConfig

    return json.dumps(
        [ARTIFACT_FORMAT, asdict(TrainingConfig()), settings.intent_encoder, settings.intent_second_encoder]
    ).encode()


def ensure_demo_intent_model(settings: FleetSettings, progress: Progress = lambda _: None) -> Path:
    """The demo's Banking77 intent model (trained without the demo's held-out tickets)."""
    from services.classifier.intent_model import IntentModel
    from encoders.embedding import intent_encoders

    if settings.intent_model_dir is not None:
        return settings.intent_model_dir
    data = sample_path("banking77_train.csv.gz").read_bytes()
    recipe = _training_recipe(settings)
    kept_out = f"{HOLDOUT_MODULUS}/{FRESH_MODULUS}".encode()
    target = settings.cache_dir / "models" / f"intent-banking77-{_digest(data, kept_out, recipe)}"
    if (target / "model.json").exists():
        return target
    rows = training_rows()
    progress(f"training the intent model on {len(rows)} Banking77 messages (first run only) ...")
    encoder, second_encoder = intent_encoders(settings.intent_encoder, settings.intent_second_encoder)
    model = IntentModel.train(
        [r["text"] for r in rows], [r["category"] for r in rows],
        encoder=encoder, second_encoder=second_encoder, cache_dir=settings.cache_dir / "embeddings",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    model.save(staging)
    staging.rename(target)
    return target


def ensure_tenant_intent_models(settings: FleetSettings, tenants: Iterable[str], progress: Progress = lambda _: None) -> Path | None:
    """The intent models of those of `tenants` whose folder has intents/examples.csv, trained on its
    train rows as `supportflow classifier train --tenant` does, under one models root
    (SUPPORTFLOW_INTENT_MODELS_DIR); a model is trained again when its examples change. None when no
    tenant has examples; the root that is set, when one is."""
    from services.classifier.intent_model import MANIFEST
    from services.classifier.tenant_data import EXAMPLES_FILE
    from tooling.commands import classifier as commands

    if settings.intent_models_dir is not None:
        return settings.intent_models_dir
    examples = {t: settings.tenant_data_dir / t / EXAMPLES_FILE for t in sorted(set(tenants))}
    examples = {t: path for t, path in examples.items() if path.is_file()}
    if not examples:
        return None
    root = settings.cache_dir / "models" / f"intent-tenants-{_digest(_training_recipe(settings))}"
    for tenant, path in examples.items():
        target = root / tenant
        if (target / MANIFEST).exists():
            trained_on = json.loads((target / MANIFEST).read_text("utf-8"))["metadata"].get("source", {})
            if trained_on.get("file_sha256") == hashlib.sha256(path.read_bytes()).hexdigest() \
                    and trained_on.get("split") == commands.TRAIN_SPLIT:
                continue
        progress(f"training {tenant}'s intent model on the train rows of {path} ...")
        staging = root / f".{tenant}.partial"  # hidden: the classifier skips it
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
        source = commands.training_source(settings, data=None, tenant=tenant, label_column=None, split=None,
                                          out=str(staging))
        commands.train(source.data, "text", source.label_column, source.out, encoder=settings.intent_encoder,
                       second_encoder=settings.intent_second_encoder, split=source.split)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return root


def ensure_sample_cases(settings: FleetSettings, progress: Progress = lambda _: None) -> dict:
    """Import the default tenant's resolved cases (tenants/<tenant>/resolved_cases.jsonl) unless this
    Weaviate already has them, so escalation packets can name similar cases from the first ticket
    on, and delete the tenant's other cases: those the demo's simulated outcomes added in earlier
    runs (tooling/demo_outcomes.py). Every run then starts from the same history; a tenant without
    the file starts with none (another tenant's cases are never borrowed)."""
    from tooling.commands import retriever as retriever_cli
    from tooling.round_trip import resolved_cases_path
    from services.retriever.case_files import load_cases

    data = resolved_cases_path(settings.default_tenant)
    if not data.is_file():
        return {"tenant": settings.default_tenant, "cases": 0,
                "other_cases_deleted": retriever_cli.keep_only_cases(settings, settings.default_tenant, [])}
    summary = _index_sample_once(
        settings, "cases", data, "the sample resolved cases",
        indexed=retriever_cli.indexed_cases, ingest=retriever_cli.ingest_cases, progress=progress,
    )
    history = [case.ticket_id for case in load_cases(data)]
    return summary | {"other_cases_deleted": retriever_cli.keep_only_cases(settings, settings.default_tenant, history)}


def ensure_sample_kb(settings: FleetSettings, progress: Progress = lambda _: None) -> dict:
    """Index the Rho-Bank sample KB for the default tenant unless this Weaviate already has it."""
    from tooling.commands import retriever as retriever_cli

    return _index_sample_once(
        settings, "kb", sample_path("kb_articles.jsonl.gz"), "the sample knowledge base",
        indexed=retriever_cli.indexed_chunks, ingest=retriever_cli.ingest, progress=progress,
    )


def _index_sample_once(
    settings: FleetSettings,
    kind: str,
    data: Path,
    what: str,
    *,
    indexed: Callable[[FleetSettings, str], int],
    ingest: Callable[[Path, str, FleetSettings], dict],
    progress: Progress,
) -> dict:
    """Index `data` for the default tenant unless a marker says this version already is (and the
    tenant is not empty, in case Weaviate's data was wiped); returns the ingest summary."""
    tenant = settings.default_tenant
    marker = settings.cache_dir / "state" / "weaviate" / f"{kind}-{tenant}-{_digest(data.read_bytes())}.json"
    if marker.exists() and indexed(settings, tenant) > 0:
        return json.loads(marker.read_text()) | {"indexed_earlier": True}
    progress(f"indexing {what} into Weaviate (tenant {tenant}) ...")
    summary = ingest(data, tenant, settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(summary))
    return summary
