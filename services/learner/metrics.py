"""Learner metrics. The KPI panel and the guardrail state are read from the learner at scrape time
(a collector), so a series exists exactly while its value is defined.

KPI gauges, one per KPI and companion value in `services/learner/kpis.py` (definitions there and in
docs/kpi-panel.md), labels tenant, archetype (repetitive, faq_bounded, account_specific,
unspecified), segment (the CRM's segments, "unknown", and "all") and channel (zendesk, intercom,
freshdesk, email, api, ..., and "all"): "all" rows are rollups, never sum over them.

    supportflow_learner_<kpi>    e.g. supportflow_learner_csat_protected_deflection,
                                      supportflow_learner_time_to_first_useful_response_p95

Guardrails, labels tenant and archetype:

    supportflow_learner_guardrail_csat_slip_points     baseline - mean CSAT over the window, the worse of the watched
                                                        latencies (absent below min_samples or without a baseline)
    supportflow_learner_guardrail_csat_samples         at-resolution CSAT surveys in the guardrail window
    supportflow_learner_guardrail_review_open          1 while a review is open (slip >= 2 points, until under 1)
    supportflow_learner_guardrail_context_loss_rate    context loss over the latest handoffs (absent below the minimum)
    supportflow_learner_guardrail_override_active      1 while the guardrail's override is in force (until cleared)
    supportflow_learner_guardrail_reviews_opened_total reviews opened
    supportflow_learner_guardrail_overrides_total      overrides issued, + label trigger (csat_slip,
                                                        hallucinated_policy_p0, context_loss)
    supportflow_learner_qa_hallucinated_policy_total      QA verdicts that found hallucinated policy, + label severity_class
    supportflow_learner_qa_samples_total               tickets sampled into the QA queue (qa.samples)

Outcome plumbing:

    supportflow_learner_feedback_total{kind, outcome}   outcomes by kind (the feedback kinds, kb_gap, delivery,
                                                         agent_escalation) and outcome (attached; pending: the
                                                         ticket is not decided yet, the outcome is held)
    supportflow_learner_invalid_outcomes_total{reason}  outcomes refused and dead-lettered (csat_out_of_range, ...)
    supportflow_learner_agent_actions_total{action}      agents' actions from the workspace
    supportflow_learner_pending_feedback                 outcomes held for their ticket's decision
    supportflow_learner_feedback_dropped_total           held outcomes dropped at the bound

Snapshots (services/learner/snapshots.py, in Kafka), unless SUPPORTFLOW_LEARNER_SNAPSHOTS is false:

    supportflow_learner_snapshots_total{outcome}         snapshots saved or failed (Kafka unreachable)

The log in shards (learner.events, main.py, shards.py, standby.py):

    supportflow_learner_log_duplicates_total             events of the log skipped as already applied (by id)
    supportflow_learner_panel_waits_total{outcome}       GetKpis waits for this replica to apply the log up to
                                                         its end: caught_up, or timed_out (answered with what
                                                         it had), or unavailable (the end could not be read)
    supportflow_learner_shards_held                      shards this replica holds (applies, serves)
    supportflow_learner_shards_taken_total{source}       shards taken, by where their state came from: standby
                                                         (a warm copy), snapshot (then the log after it), log
    supportflow_learner_standby_shards                   warm copies kept (SUPPORTFLOW_LEARNER_STANDBY)
    supportflow_learner_standby_behind_records           records the copies have yet to apply to reach their holders
    supportflow_learner_standby_errors_total             failures of the copies' loop (logged; it starts again)

Cardinality: tenants x 4 archetypes x (segments + 1) x (channels + 1) series per KPI.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supportflow.contracts.v1 import events_pb2 as ev

from services.learner.kpis import COMPANION_NAMES, KPI_NAMES, kpi_definitions

if TYPE_CHECKING:
    from services.learner.handlers import Learner

PREFIX = "supportflow_learner_"

FEEDBACK = Counter(
    "supportflow_learner_feedback_total", "Feedback events by kind and outcome (attached, pending)", ["kind", "outcome"]
)
HALLUCINATED_POLICY = Counter(
    "supportflow_learner_qa_hallucinated_policy_total",
    "QA verdicts that found hallucinated policy, by severity class",
    ["tenant", "archetype", "severity_class"],
)
REVIEWS_OPENED = Counter(
    "supportflow_learner_guardrail_reviews_opened_total",
    "Guardrail reviews opened (a CSAT slip of 2+ points in an archetype)",
    ["tenant", "archetype"],
)
QA_SAMPLES = Counter("supportflow_learner_qa_samples_total", "Tickets sampled into the QA queue", ["tenant"])
INVALID_OUTCOMES = Counter(
    "supportflow_learner_invalid_outcomes_total", "Outcomes refused (dead-lettered with the reason)", ["reason"]
)
GUARDRAIL_OVERRIDES = Counter(
    "supportflow_learner_guardrail_overrides_total",
    "Routing overrides issued by the guardrails",
    ["tenant", "archetype", "trigger"],
)

KB_PROPOSALS = Counter(
    "supportflow_learner_kb_proposals_total",
    "KB article drafts proposed from resolved tickets the knowledge base did not back",
    ["tenant"],
)

SNAPSHOTS = Counter("supportflow_learner_snapshots_total", "Learner snapshots by outcome (saved, failed)", ["outcome"])
LOG_DUPLICATES = Counter("supportflow_learner_log_duplicates_total",
                         "Events of learner.events skipped as already applied (the same event id passed on twice)")
SHARDS_TAKEN = Counter("supportflow_learner_shards_taken_total",
                       "Shards this replica took, by where their state came from (standby: its warm copy; "
                       "snapshot: the shard's snapshot, then the log after it; log: the log from its beginning)",
                       ["source"])
SHARDS_HELD = Gauge("supportflow_learner_shards_held", "Shards this replica holds (applies and serves)")
STANDBY_SHARDS = Gauge("supportflow_learner_standby_shards", "Shards this replica keeps as warm standbys")
STANDBY_BEHIND = Gauge("supportflow_learner_standby_behind_records",
                       "Records the warm standbys have yet to apply to reach where the shards' holders have applied")
STANDBY_ERRORS = Counter("supportflow_learner_standby_errors_total",
                         "Failures of the warm standbys' loop (each logged; it starts again after a second)")
PANEL_WAITS = Counter("supportflow_learner_panel_waits_total",
                      "GetKpis waits for the log to be applied up to its end, by outcome (caught_up, timed_out, "
                      "unavailable)", ["outcome"])

AGENT_ACTIONS = Counter(
    "supportflow_learner_agent_actions_total",
    "Agents' actions read from agent.actions, by action (counted as the outcome they amount to, see "
    "supportflow_learner_feedback_total)",
    ["action"],
)


def action_label(kind: int) -> str:
    try:
        return ev.AgentActionKind.Name(kind).removeprefix("AGENT_ACTION_KIND_").lower()
    except ValueError:
        return "unspecified"


# The guardrail's own values are exposed by their own families below, per archetype.
EXPOSED_VALUES = KPI_NAMES + tuple(name for name in COMPANION_NAMES if not name.startswith("guardrail_"))


def kpi_metric_name(kpi: str) -> str:
    return PREFIX + kpi


def metric_names() -> list[str]:
    """Every metric name the learner exposes (as written in PromQL: counters with _total)."""
    return (
        [kpi_metric_name(kpi) for kpi in EXPOSED_VALUES]
        + [PREFIX + name for name in (
            "guardrail_csat_slip_points", "guardrail_csat_samples", "guardrail_review_open",
            "guardrail_context_loss_rate", "guardrail_override_active", "pending_feedback",
        )]
        + ["supportflow_learner_feedback_dropped_total", "supportflow_learner_feedback_total",
           "supportflow_learner_qa_hallucinated_policy_total", "supportflow_learner_guardrail_overrides_total",
           "supportflow_learner_guardrail_reviews_opened_total", "supportflow_learner_qa_samples_total",
           "supportflow_learner_invalid_outcomes_total",
           "supportflow_learner_kb_proposals_total", "supportflow_learner_snapshots_total",
           "supportflow_learner_agent_actions_total", "supportflow_learner_log_duplicates_total",
           "supportflow_learner_panel_waits_total", "supportflow_learner_shards_held",
           "supportflow_learner_shards_taken_total", "supportflow_learner_standby_shards",
           "supportflow_learner_standby_behind_records", "supportflow_learner_standby_errors_total"]
    )


class LearnerCollector(Collector):
    """Exposes the KPI panel and guardrail state of the Learners `learners()` gives (the shards
    this replica holds: each tenant's series come from the replica that holds its shard).

    The panels of every tenant held are computed at most once per THROTTLE times what the last
    computation took (the series are up to that old), so that scrapes, however frequent, take at
    most about a tenth of one core whatever the number of tenants (a throttle per tenant, as there
    was, let each tenant's panels take a tenth)."""

    THROTTLE = 10

    def __init__(self, learners: Callable[[], list["Learner"]], clock: Callable[[], float] = time.monotonic) -> None:
        self._learners = learners
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[GaugeMetricFamily | CounterMetricFamily] | None = None
        self._computed_at = 0.0
        self._cost_s = 0.0

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            now = self._clock()
            if self._families is None or now - self._computed_at >= self._cost_s * self.THROTTLE:
                self._families = list(self._compute())
                self._computed_at = now
                self._cost_s = self._clock() - now
            families = self._families
        yield from families

    def _compute(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snapshots = [learner.snapshot() for learner in self._learners()]
        rows = {tenant: tenant_rows for snapshot in snapshots for tenant, tenant_rows in snapshot.rows.items()}
        guardrails = [status for snapshot in snapshots for status in snapshot.guardrails]
        definitions = kpi_definitions()
        labels = ["tenant", "archetype", "segment", "channel"]
        for kpi in EXPOSED_VALUES:
            family = GaugeMetricFamily(kpi_metric_name(kpi), f"KPI {kpi}: {definitions[kpi]}", labels=labels)
            for tenant, tenant_rows in rows.items():
                for row in tenant_rows:
                    if kpi in row.values:
                        family.add_metric([tenant, row.archetype, row.segment, row.channel], row.values[kpi])
            yield family

        guard_labels = ["tenant", "archetype"]
        slip = GaugeMetricFamily(PREFIX + "guardrail_csat_slip_points",
                                 "CSAT baseline minus the mean over the guardrail window, in points", labels=guard_labels)
        samples = GaugeMetricFamily(PREFIX + "guardrail_csat_samples",
                                    "CSAT surveys in the guardrail window", labels=guard_labels)
        review = GaugeMetricFamily(PREFIX + "guardrail_review_open",
                                   "1 while a guardrail review is open (CSAT slip of 2+ points)", labels=guard_labels)
        context_loss = GaugeMetricFamily(PREFIX + "guardrail_context_loss_rate",
                                         "Context loss over the latest handoffs of the archetype", labels=guard_labels)
        active = GaugeMetricFamily(PREFIX + "guardrail_override_active",
                                   "1 while the guardrail's routing override is in force", labels=guard_labels)
        for status in guardrails:
            key = [status.tenant, status.archetype]
            if status.slip is not None:
                slip.add_metric(key, status.slip)
            samples.add_metric(key, status.samples)
            review.add_metric(key, 1.0 if status.reviewing else 0.0)
            if status.context_loss_rate is not None:
                context_loss.add_metric(key, status.context_loss_rate)
            active.add_metric(key, 1.0 if status.overridden else 0.0)
        yield from (slip, samples, review, context_loss, active)

        yield GaugeMetricFamily(PREFIX + "pending_feedback", "Outcomes held for their ticket's decision",
                                value=sum(snapshot.pending_feedback for snapshot in snapshots))
        yield CounterMetricFamily(PREFIX + "feedback_dropped", "Held outcomes dropped at the bound",
                                  value=sum(snapshot.dropped_feedback for snapshot in snapshots))
