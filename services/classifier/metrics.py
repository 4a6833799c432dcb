"""Classifier metrics. Label values come from fixed sets: routes, archetypes, risk flags and input
flags as named in the contracts and in `input_guard.INPUT_FLAGS`."""

from prometheus_client import Counter, Histogram

TICKETS_CLASSIFIED = Counter(
    "supportflow_classifier_tickets_classified_total",
    "Tickets classified, by route and archetype",
    ["route", "archetype"],
)
CONFIDENCE = Histogram(
    "supportflow_classifier_confidence",
    "Calibrated confidence of the top intent (a shift means drift)",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
INTENT_PATH = Counter(
    "supportflow_classifier_intent_predictions_total",
    "Intent predictions by path: ngram_fast_path (n-grams alone were sure), encoder, or "
    "second_opinion (the second encoder was consulted too)",
    ["path"],
)
CLAUDE_ASSIST = Counter(
    "supportflow_classifier_claude_assist_total",
    "Low-confidence tickets sent to Claude, by outcome (ok, skipped_budget, timeout, overloaded, "
    "rate_limited, connection, malformed, api_error)",
    ["outcome"],
)
INPUT_FLAGS = Counter(
    "supportflow_classifier_input_flags_total", "Tickets carrying each input flag", ["flag"]
)
RISK_FLAGS = Counter(
    "supportflow_classifier_risk_flags_total", "Tickets carrying each risk flag", ["flag"]
)
POLICY_RELOADS = Counter(
    "supportflow_classifier_policy_reloads_total",
    "Routing policy file re-reads by outcome (loaded, invalid: the last good policy stays)",
    ["outcome"],
)
OVERRIDES_APPLIED = Counter(
    "supportflow_classifier_routing_overrides_total",
    "Run-time routing overrides applied, by archetype and action",
    ["archetype", "action"],
)
