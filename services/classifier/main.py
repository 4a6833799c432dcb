"""Classifier: tickets.received -> tickets.classified, plus the synchronous `Classify` RPC.

Two consumer loops: tickets in the service's consumer group (replicas share the partitions), and
routing overrides in a broadcast group (every replica applies every override; on start a replica
replays the topic from the beginning, which rebuilds the override table).
"""

from __future__ import annotations

import logging
from pathlib import Path

from supportflow.claude import claude_client
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.crm import crm_from_settings
from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings, SettingsError
from supportflow.topics import Topic

from services.classifier.claude_assist import ClaudeAssist
from services.classifier.handlers import SERVICE, TicketTriage, routing_override_handler
from services.classifier.intent_model import IntentModel
from services.classifier.routing import DEFAULT_POLICY_PATH, PolicyStore
from services.classifier.servicer import ClassifierServicer

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


def build_triage(settings: Settings) -> TicketTriage:
    """The intent model, routing policy and CRM that the settings name, ready to classify."""
    model = load_intent_model(settings.intent_model_dir)
    # The first real ticket should not pay for loading: warm the fast path and the encoders.
    model.predict(["warm-up: where is my card?"])
    for encoder in filter(None, (model.encoder, model.second_encoder)):
        encoder.encode(["warm-up: where is my card?"])
    policies = PolicyStore(settings.routing_policy_path or DEFAULT_POLICY_PATH)
    mismatch = threshold_mismatch(model, policies.current().confidence_threshold)
    if mismatch:
        log.warning(mismatch)
    return TicketTriage(model, policies, crm_from_settings(settings), assist=claude_assist(settings))


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


def claude_assist(settings: Settings) -> ClaudeAssist | None:
    """Claude for low-confidence tickets when an API key is set (and the budget is not 0)."""
    if not settings.anthropic_api_key or settings.classifier_claude_assist_per_minute <= 0:
        return None
    client = claude_client(settings.anthropic_api_key, settings.anthropic_base_url,
                           timeout_s=settings.classifier_claude_timeout_s, max_retries=0)
    return ClaudeAssist(client, model=settings.anthropic_model, per_minute=settings.classifier_claude_assist_per_minute,
                        timeout_s=settings.classifier_claude_timeout_s)


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
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

    main("classifier")
