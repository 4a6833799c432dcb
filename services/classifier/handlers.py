"""The classifier's event handlers: tickets.received -> tickets.classified, and routing overrides
into the policy store. Pure of Kafka and gRPC; `main.py` and `servicer.py` adapt them.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import Emit, InvalidEvent, new_meta, ticket_with_tenant
from supportflow.topics import Topic

from integrations.crm import CustomerDirectory
from services.classifier import metrics
from services.classifier.classify import HardCaseAssist, IntentPrediction, IntentPredictor, classify_ticket
from services.classifier.intent_catalog import IntentCatalog, archetype_name
from services.classifier.routing import InvalidOverride, PolicyStore, route_name

SERVICE = "classifier"


class _PathCountingModel:
    """The intent model, counting predictions by path: the n-gram fast path, the encoder, or the
    second opinion."""

    def __init__(self, model: IntentPredictor) -> None:
        self._model = model

    @property
    def version(self) -> str:
        return self._model.version

    def predict(
        self, texts: list[str], *, second_opinion_allowed: Sequence[bool] | None = None
    ) -> Sequence[IntentPrediction]:
        predictions = self._model.predict(texts, second_opinion_allowed=second_opinion_allowed)
        for prediction in predictions:
            metrics.INTENT_PATH.labels(intent_path(prediction)).inc()
        return predictions


def intent_path(prediction: IntentPrediction) -> str:
    if prediction.second_opinion:
        return "second_opinion"
    return "encoder" if prediction.encoded else "ngram_fast_path"


class TicketTriage:
    """Classifies tickets with their tenant's intent model, catalog and current policy (each the
    deployment's for a tenant without its own), and records what it decided."""

    def __init__(
        self,
        model: IntentPredictor,
        policies: PolicyStore,
        crm: CustomerDirectory,
        *,
        catalog: IntentCatalog | None = None,
        assist: HardCaseAssist | None = None,
        tenant_models: Mapping[str, IntentPredictor] | None = None,
        tenant_catalogs: Mapping[str, IntentCatalog] | None = None,
    ) -> None:
        self._model = model
        self._counted_model = _PathCountingModel(model)
        self._tenant_models = {tenant: _PathCountingModel(m) for tenant, m in (tenant_models or {}).items()}
        self._assist = assist
        self._policies = policies
        self._crm = crm
        self._catalog = catalog
        self._tenant_catalogs = dict(tenant_catalogs or {})

    @property
    def model(self) -> IntentPredictor:
        """The deployment's intent model, for tenants without their own."""
        return self._model

    @property
    def policies(self) -> PolicyStore:
        return self._policies

    def classify(self, ticket: tk.Ticket) -> tuple[tk.NormalizedTicket, tk.Classification]:
        tenant = ticket.tenant_id
        normalized, classification = classify_ticket(
            ticket,
            model=self._tenant_models.get(tenant, self._counted_model),
            policy=self._policies.current(tenant),
            crm=self._crm,
            catalog=self._tenant_catalogs.get(tenant, self._catalog),
            assist=self._assist,
        )
        _record(classification)
        return normalized, classification

    def handle_ticket_received(self, event: ev.TicketReceived) -> list[Emit]:
        if not event.ticket.ticket_id:
            raise InvalidEvent("ticket has no ticket_id")
        ticket = ticket_with_tenant(event.ticket, event.meta)
        tenant = ticket.tenant_id
        normalized, classification = self.classify(ticket)
        classified = ev.TicketClassified(
            meta=new_meta(tenant, SERVICE), ticket=ticket, normalized=normalized, classification=classification
        )
        # The gateway stamps received_at; an event from elsewhere falls back to when it was emitted.
        received_at = ticket.received_at if ticket.HasField("received_at") else event.meta.occurred_at
        classified.timeline.received_at.CopyFrom(received_at)
        classified.timeline.classified_at.GetCurrentTime()
        return [Emit(Topic.TICKETS_CLASSIFIED, ticket.ticket_id, classified)]


def routing_override_handler(policies: PolicyStore) -> Callable[[ev.RoutingOverride], list[Emit]]:
    """Applies each override to `policies`; it publishes nothing (the override event is the audit
    record, and the store logs an audit line). Run it in a broadcast consumer: every replica needs
    every override."""

    def handle_routing_override(event: ev.RoutingOverride) -> list[Emit]:
        try:
            policies.apply_override(event)
        except InvalidOverride as exc:
            raise InvalidEvent(str(exc)) from exc
        return []

    return handle_routing_override


def _record(classification: tk.Classification) -> None:
    metrics.TICKETS_CLASSIFIED.labels(route_name(classification.route), archetype_name(classification.archetype)).inc()
    if classification.intent:
        metrics.CONFIDENCE.observe(classification.confidence)
    for flag in classification.input_flags:
        metrics.INPUT_FLAGS.labels(flag).inc()
    for risk in classification.risk_flags:
        metrics.RISK_FLAGS.labels(tk.RiskFlag.Name(risk).removeprefix("RISK_FLAG_").lower()).inc()
