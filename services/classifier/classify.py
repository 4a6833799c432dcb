"""Classification of a ticket, end to end: intake, input guard, signals, intent model, CRM tier,
intent catalog and routing, combined into (NormalizedTicket, Classification).

Pure orchestration: the intent model, the routing policy and the CRM come in as arguments.
`classify_batch` sends every readable ticket of a batch to the model in one call (the encoder is
far faster per text in batches); `classify_ticket` is a batch of one.

A ticket without readable text gets no intent and is routed to a follow-up. A ticket confidently
written in a language the policy does not support is still given the model's best guess (a hint for
the human who gets it) but is flagged and escalated, never automated on that guess.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from supportflow.contracts.v1 import ticket_pb2 as tk

from integrations.crm import ERROR, CustomerDirectory
from services.classifier import input_guard
from services.classifier.claude_assist import TEXT_FIELDS, Refinement
from services.classifier.intake import TicketReading, missing_identifiers, read_ticket
from services.classifier.intent_catalog import IntentCatalog, default_catalog
from services.classifier.routing import RoutingFacts, RoutingPolicy, decide_route
from services.classifier.signals import read_signals

TOP_INTENTS = 5  # alternatives kept in Classification.top_intents
# Never sent to Claude: an injection attempt, a language we do not serve, unreadable text.
_NEVER_ASSISTED = {input_guard.PROMPT_INJECTION, input_guard.LANGUAGE_UNSUPPORTED, input_guard.BINARY,
                   input_guard.INVALID_UNICODE}


class IntentPrediction(Protocol):
    intent: str
    confidence: float
    top_k: Sequence[tuple[str, float]]
    encoded: bool  # False when the model's n-gram fast path answered without the encoder
    second_opinion: bool  # True when the model's second encoder was consulted too
    calibrated: float | None  # the calibrated probability of `intent`: above `confidence` if held


class HardCaseAssist(Protocol):
    """Refines a low-confidence ticket (services/classifier/claude_assist.py)."""

    def refine(self, ticket: tk.Ticket, candidates: Sequence[str]) -> Refinement | None: ...


class IntentPredictor(Protocol):
    version: str

    def predict(
        self, texts: list[str], *, second_opinion_allowed: Sequence[bool] | None = None
    ) -> Sequence[IntentPrediction]: ...


def classify_ticket(
    ticket: tk.Ticket,
    *,
    model: IntentPredictor,
    policy: RoutingPolicy,
    crm: CustomerDirectory,
    catalog: IntentCatalog | None = None,
    assist: HardCaseAssist | None = None,
) -> tuple[tk.NormalizedTicket, tk.Classification]:
    return classify_batch([ticket], model=model, policy=policy, crm=crm, catalog=catalog, assist=assist)[0]


def classify_batch(
    tickets: Sequence[tk.Ticket],
    *,
    model: IntentPredictor,
    policy: RoutingPolicy,
    crm: CustomerDirectory,
    catalog: IntentCatalog | None = None,
    assist: HardCaseAssist | None = None,
) -> list[tuple[tk.NormalizedTicket, tk.Classification]]:
    """Classify tickets that share one routing policy (one tenant, or the file's policy)."""
    catalog = catalog or default_catalog()
    readings = [read_ticket(ticket) for ticket in tickets]
    readable = [index for index, reading in enumerate(readings) if reading.model_text]
    predictions: dict[int, IntentPrediction] = {}
    if readable:
        # Both encoders read English; a ticket in a language the policy does not support goes to a
        # person anyway, and a second opinion on it would cost ~25 ms for nothing.
        predicted = model.predict(
            [readings[index].model_text for index in readable],
            second_opinion_allowed=[_language_supported(readings[index], policy) for index in readable],
        )
        predictions = dict(zip(readable, predicted))
    return [
        _classification(ticket, reading, predictions.get(index), model.version, policy, crm, catalog, assist)
        for index, (ticket, reading) in enumerate(zip(tickets, readings))
    ]


def _language_supported(reading: TicketReading, policy: RoutingPolicy) -> bool:
    return policy.language_supported(reading.normalized.language, reading.language_confident)


def _classification(
    ticket: tk.Ticket,
    reading: TicketReading,
    prediction: IntentPrediction | None,
    model_version: str,
    policy: RoutingPolicy,
    crm: CustomerDirectory,
    catalog: IntentCatalog,
    assist: HardCaseAssist | None = None,
) -> tuple[tk.NormalizedTicket, tk.Classification]:
    normalized = tk.NormalizedTicket()
    normalized.CopyFrom(reading.normalized)
    flags = set(reading.input_flags)
    if reading.model_text and not _language_supported(reading, policy):
        flags.add(input_guard.LANGUAGE_UNSUPPORTED)
    if reading.injection_styles:
        flags.add(input_guard.PROMPT_INJECTION)
    if input_guard.NO_READABLE_TEXT in ticket.origin.intake_flags:
        flags.add(input_guard.NO_READABLE_TEXT)

    signals = read_signals(reading.signal_text, earlier_customer_turns=reading.earlier_customer_turns)
    risk_flags = list(signals.risk_flags)
    if reading.injection_styles:
        risk_flags.append(tk.RISK_FLAG_PROMPT_INJECTION)

    customer = crm.lookup(ticket.customer_id)
    if customer.outcome == ERROR:
        flags.add(input_guard.TIER_FALLBACK)

    intent, confidence, calibrated, top_intents = "", 0.0, None, []
    if prediction is not None:
        intent, confidence, calibrated = prediction.intent, float(prediction.confidence), prediction.calibrated
        top_intents = [(name, float(probability)) for name, probability in prediction.top_k[:TOP_INTENTS]]
        hard = confidence < policy.confidence_threshold and not flags & _NEVER_ASSISTED
        refinement = assist.refine(ticket, [name for name, _ in top_intents]) if assist and hard else None
        if refinement is not None:
            flags.add(input_guard.CLAUDE_ASSISTED)
            if refinement.intent and refinement.intent != intent:
                # The model's own probability of Claude's pick: still low, so still routed to review.
                intent, confidence, calibrated = refinement.intent, dict(top_intents)[refinement.intent], None
            for name in TEXT_FIELDS:
                if getattr(refinement, name) and not getattr(normalized, name):
                    setattr(normalized, name, getattr(refinement, name))
    archetype = catalog.archetype(intent) if intent else tk.ARCHETYPE_UNSPECIFIED
    normalized.missing_identifiers.extend(
        missing_identifiers(intent, normalized.identifiers, catalog.required_identifiers) if intent else []
    )
    urgency = signals.urgency
    if intent in policy.always_escalate_intents:
        urgency = max(urgency, tk.URGENCY_HIGH)

    input_flags = [flag for flag in input_guard.INPUT_FLAGS if flag in flags]
    decision = decide_route(
        RoutingFacts(
            intent=intent,
            confidence=confidence,
            top_intents=top_intents,
            archetype=archetype,
            tier=customer.record.tier,
            risk_flags=risk_flags,
            missing_identifiers=list(normalized.missing_identifiers),
            input_flags=input_flags,
            language=normalized.language,
            injection_styles=reading.injection_styles,
            calibrated_confidence=calibrated,
        ),
        policy,
    )
    classification = tk.Classification(
        intent=intent,
        confidence=confidence,
        top_intents=[tk.IntentScore(intent=name, probability=p) for name, p in top_intents],
        archetype=archetype,
        urgency=urgency,
        sentiment=signals.sentiment,
        frustration_signals=signals.frustration_signals,
        risk_flags=risk_flags,
        tier=customer.record.tier,
        route=decision.route,
        route_reason=decision.reason,
        model_version=model_version,
        input_flags=input_flags,
        segment=customer.record.segment,
    )
    return normalized, classification
