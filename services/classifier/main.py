"""Classifier: tickets.received -> tickets.classified, plus the synchronous `Classify` RPC.

Two consumer loops: tickets in the service's consumer group (replicas share the partitions), and
routing overrides in a broadcast group (every replica applies every override; on start a replica
replays the topic from the beginning, which rebuilds the override table).
"""

from __future__ import annotations

import logging
from pathlib import Path

from integrations.claude import claude_client
from integrations.crm import crm_from_settings
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import SettingsError
from supportflow.topics import Topic

from services.classifier.claude_assist import ClaudeAssist
from services.classifier.handlers import SERVICE, TicketTriage, routing_override_handler
from services.classifier.intent_catalog import IntentCatalog, default_catalog
from services.classifier.intent_model import IntentModel
from services.classifier.routing import DEFAULT_POLICY_PATH, PolicyStore
from services.classifier.servicer import ClassifierServicer
from services.classifier.settings import ClassifierSettings
from services.classifier.tenant_data import tenant_catalogs, tenant_model_dirs, tenant_policy_paths

log = logging.getLogger(__name__)



def load_intent_model(model_dir: Path | None) -> IntentModel:
    """The trained model, or a start-up failure that says how to get one."""
    how = (
        "train one with `supportflow classifier train --data FILE.csv --text-column text "
        "--label-column category --out DIR` and set SUPPORTFLOW_INTENT_MODEL_DIR=DIR"
    )
    if model_dir is None:
        raise SettingsError(f"SUPPORTFLOW_INTENT_MODEL_DIR is not set: {how}")
    if not Path(model_dir).is_dir():
        raise SettingsError(f"SUPPORTFLOW_INTENT_MODEL_DIR={model_dir} does not exist: {how}")
    return IntentModel.load(Path(model_dir))


def load_tenant_models(models_dir: Path | None) -> dict[str, IntentModel]:
    """Every tenant's own intent model under SUPPORTFLOW_INTENT_MODELS_DIR; one that cannot be
    loaded stops the start, naming its folder."""
    models = {}
    for tenant, model_dir in tenant_model_dirs(models_dir).items():
        try:
            models[tenant] = IntentModel.load(model_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"{model_dir}: tenant {tenant!r}'s intent model cannot be loaded: {exc}") from exc
    return models


def build_triage(settings: ClassifierSettings) -> TicketTriage:
    """The intent models, catalogs and routing policies that the settings name (the deployment's,
    and each tenant's own: tenant_data.py), and the CRM, ready to classify."""
    model = load_intent_model(settings.intent_model_dir)
    tenant_models = load_tenant_models(settings.intent_models_dir)
    # The first real ticket should not pay for loading: warm the fast path and the encoders.
    for loaded in (model, *tenant_models.values()):
        loaded.predict(["warm-up: where is my card?"])
        for encoder in filter(None, (loaded.encoder, loaded.second_encoder)):
            encoder.encode(["warm-up: where is my card?"])
    catalogs = tenant_catalogs(settings.tenant_data_dir)
    policies = PolicyStore(settings.routing_policy_path or DEFAULT_POLICY_PATH,
                           tenant_paths=tenant_policy_paths(settings.tenant_data_dir))
    for tenant in sorted({""} | set(tenant_models) | set(catalogs) | set(policies.tenants)):
        tenant_model = tenant_models.get(tenant, model)
        catalog = catalogs.get(tenant, default_catalog())
        for problem in (threshold_mismatch(tenant_model, policies.current(tenant).confidence_threshold),
                        catalog_gaps(tenant_model, catalog)):
            if problem:
                log.warning(f"tenant {tenant}: {problem}" if tenant else problem)
        if tenant:
            log.info("tenant classifier data", extra={"fields": {
                "tenant": tenant, "model_version": tenant_model.version, "own_model": tenant in tenant_models,
                "own_catalog": tenant in catalogs, "policy": str(policies.path_for(tenant))}})
    return TicketTriage(model, policies, crm_from_settings(settings), assist=claude_assist(settings),
                        tenant_models=tenant_models, tenant_catalogs=catalogs)


def catalog_gaps(model: IntentModel, catalog: IntentCatalog) -> str | None:
    """Which of the model's intents the catalog does not describe, if any: they get its default
    archetype and need no identifiers, the mark of a model and a catalog of different taxonomies."""
    unknown = [label for label in model.labels if label not in catalog.archetypes]
    if not unknown:
        return None
    return (
        f"{len(unknown)} of the intent model's {len(model.labels)} intents are not in the intent catalog "
        f"(e.g. {', '.join(unknown[:3])}): they get the default archetype and need no identifiers"
    )


def threshold_mismatch(model: IntentModel, policy_threshold: float) -> str | None:
    """Why routing may not keep the model's promise, if it may not: the model holds the
    confidences it cannot back under the threshold it was trained for, not under the policy's."""
    trained_for = model.config.routing_threshold
    if model.confidence_cut is None or abs(policy_threshold - trained_for) < 1e-9:
        return None
    return (
        f"the routing policy's confidence threshold is {policy_threshold:.2f}, but the intent model holds the "
        f"confidences it cannot back with {model.config.selective_accuracy_target:.0%} accuracy under "
        f"{trained_for:.2f}: train it with TrainingConfig.routing_threshold={policy_threshold:.2f}"
    )


def claude_assist(settings: ClassifierSettings) -> ClaudeAssist | None:
    """Claude for low-confidence tickets when an API key is set (and the budget is not 0)."""
    if not settings.anthropic_api_key or settings.classifier_claude_assist_per_minute <= 0:
        return None
    client = claude_client(settings.anthropic_api_key, settings.anthropic_base_url,
                           timeout_s=settings.classifier_claude_timeout_s, max_retries=0)
    return ClaudeAssist(client, model=settings.anthropic_model, per_minute=settings.classifier_claude_assist_per_minute,
                        timeout_s=settings.classifier_claude_timeout_s)


def build(settings: ClassifierSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    triage = build_triage(settings)
    model, policies = triage.model, triage.policies
    log.info("intent model loaded", extra={"fields": {"model_version": model.version, "dir": str(settings.intent_model_dir)}})
    overrides = ConsumerLoop(
        settings,
        SERVICE,
        {Topic.ROUTING_OVERRIDES: routing_override_handler(policies)},
        publisher,
        health,
        group=f"{settings.topic_prefix}{SERVICE}-overrides",
        broadcast=True,
    )
    tickets = ConsumerLoop(settings, SERVICE, {Topic.TICKETS_RECEIVED: triage.handle_ticket_received}, publisher, health,
                           workers=settings.classifier_workers)
    return ServiceParts(
        consumers=[overrides, tickets],
        grpc=[(services_pb2_grpc.add_ClassifierServicer_to_server, ClassifierServicer(triage), "supportflow.contracts.v1.Classifier")],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("classifier", ClassifierSettings)
