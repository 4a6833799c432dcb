"""Investigator metrics. Label values come from fixed sets (systems, outcomes, archetypes, tools)
or from the systems file (tenants: as many as are configured)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOOKUPS = Counter(
    "supportflow_investigator_lookups_total",
    "Calls to the tenants' systems of record by system and outcome "
    "(ok, not_found, refused, timeout, error, circuit_open; deadline: abandoned at the investigation's deadline)",
    ["system", "outcome"],
)
LOOKUP_SECONDS = Histogram(
    "supportflow_investigator_lookup_seconds",
    "Latency of one call to a system of record, retries included",
    ["system"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5),
)
BREAKER_STATE = Gauge(
    "supportflow_investigator_breaker_state",
    "Circuit breaker per tenant and system: 0 closed, 1 half-open (trial calls), 2 open",
    ["tenant", "system"],
)
INVESTIGATIONS = Counter(
    "supportflow_investigator_investigations_total",
    "Investigations by outcome (settled, unsettled, no_playbook, no_systems, invalid)",
    ["outcome"],
)
FIRST_EVIDENCE_SECONDS = Histogram(
    "supportflow_investigator_first_evidence_seconds",
    "From the start of an investigation to its first finding from a system, by the ticket's archetype",
    ["archetype"],
    buckets=(0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0),
)
COMPLETENESS = Histogram(
    "supportflow_investigator_evidence_completeness",
    "Share of a playbook's lookups that answered, by the ticket's archetype",
    ["archetype"],
    buckets=(0.0, 0.25, 0.5, 0.67, 0.75, 0.9, 1.0),
)
ACTIONS = Counter(
    "supportflow_investigator_actions_total",
    "RunAction calls by tool and outcome (executed, refused, failed, invalid)",
    ["tool", "outcome"],
)
PLAYBOOK_ERRORS = Counter(
    "supportflow_investigator_playbook_errors_total",
    "Tenants whose playbooks could not be loaded (each investigation for them is empty and says why in the log)",
)
