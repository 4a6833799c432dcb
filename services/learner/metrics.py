"""Learner metrics. The KPI panel and the guardrail state are read from the learner at scrape time
(a collector), so a series exists exactly while its value is defined.

KPI gauges, one per KPI in `services/learner/kpis.py` (definitions there), labels tenant,
archetype (repetitive, faq_bounded, account_specific, unspecified) and segment (the CRM's
segments, "unknown", and "all" for the archetype over its segments: never sum over segment):

    supportflow_learner_<kpi>    e.g. supportflow_learner_deflection_rate,
                                      supportflow_learner_time_to_decision_p95_seconds

Guardrails, labels tenant and archetype:

    supportflow_learner_guardrail_csat_slip_points   baseline - mean CSAT over the window (absent below min_samples)
    supportflow_learner_guardrail_csat_samples       CSAT surveys in the guardrail window
    supportflow_learner_guardrail_alert              1 while the slip is >= the alert threshold (2 points)
    supportflow_learner_guardrail_override_active    1 while the guardrail's override is in force (until cleared)
    supportflow_learner_guardrail_overrides_total    overrides issued, + label trigger (csat_slip, hallucinated_policy)
    supportflow_learner_hallucinated_policy_total    QA results that found hallucinated policy (P0)

Feedback plumbing:

    supportflow_learner_feedback_total{kind, outcome}   feedback events by kind (csat, draft_verdict, repeat_contact,
                                                         context_loss, misroute, qa, resolution, kb_gap) and outcome
                                                         (attached, pending: its ticket is not decided yet)
    supportflow_learner_agent_actions_total{action}      agents' actions from the workspace (approve, edit_and_send,
                                                         reject, flag_context_loss: counted as the feedback above;
                                                         escalate)
    supportflow_learner_pending_feedback                 feedback waiting for its ticket's decision
    supportflow_learner_feedback_dropped_total           pending feedback dropped at the bound

Snapshots (services/learner/snapshots.py), when a snapshot folder is set:

    supportflow_learner_snapshots_total{outcome}         snapshots saved or failed (full or read-only disk)

Cardinality: tenants x 4 archetypes x (segments + 2) series per KPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supportflow.contracts.v1 import events_pb2 as ev

from services.learner.kpis import KPI_NAMES, kpi_definitions

if TYPE_CHECKING:
    from services.learner.handlers import Learner

PREFIX = "supportflow_learner_"

FEEDBACK = Counter(
    "supportflow_learner_feedback_total", "Feedback events by kind and outcome (attached, pending)", ["kind", "outcome"]
)
HALLUCINATED_POLICY = Counter(
    "supportflow_learner_hallucinated_policy_total",
    "QA results that found hallucinated policy (P0)",
    ["tenant", "archetype"],
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

AGENT_ACTIONS = Counter(
    "supportflow_learner_agent_actions_total",
    "Agents' actions read from agent.actions, by action (approve, edit_and_send, reject, flag_context_loss: counted "
    "as feedback, see supportflow_learner_feedback_total; escalate: not a verdict)",
    ["action"],
)


def action_label(kind: int) -> str:
    try:
        return ev.AgentActionKind.Name(kind).removeprefix("AGENT_ACTION_KIND_").lower()
    except ValueError:
        return "unspecified"


def kpi_metric_name(kpi: str) -> str:
    return PREFIX + kpi


def metric_names() -> list[str]:
    """Every metric name the learner exposes (as written in PromQL: counters with _total)."""
    return (
        [kpi_metric_name(kpi) for kpi in KPI_NAMES]
        + [PREFIX + name for name in (
            "guardrail_csat_slip_points", "guardrail_csat_samples", "guardrail_alert",
            "guardrail_override_active", "pending_feedback",
        )]
        + ["supportflow_learner_feedback_dropped_total", "supportflow_learner_feedback_total",
           "supportflow_learner_hallucinated_policy_total", "supportflow_learner_guardrail_overrides_total",
           "supportflow_learner_kb_proposals_total", "supportflow_learner_snapshots_total",
           "supportflow_learner_agent_actions_total"]
    )


class LearnerCollector(Collector):
    """Exposes the KPI panel and guardrail state of one Learner."""

    def __init__(self, learner: "Learner") -> None:
        self._learner = learner

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snapshot = self._learner.snapshot()
        definitions = kpi_definitions()
        labels = ["tenant", "archetype", "segment"]
        for kpi in KPI_NAMES:
            family = GaugeMetricFamily(kpi_metric_name(kpi), f"KPI {kpi}: {definitions[kpi]}", labels=labels)
            for tenant, rows in snapshot.rows.items():
                for row in rows:
                    if kpi in row.values:
                        family.add_metric([tenant, row.archetype, row.segment], row.values[kpi])
            yield family

        guard_labels = ["tenant", "archetype"]
        slip = GaugeMetricFamily(PREFIX + "guardrail_csat_slip_points",
                                 "CSAT baseline minus the mean over the guardrail window, in points", labels=guard_labels)
        samples = GaugeMetricFamily(PREFIX + "guardrail_csat_samples",
                                    "CSAT surveys in the guardrail window", labels=guard_labels)
        alert = GaugeMetricFamily(PREFIX + "guardrail_alert",
                                  "1 while the CSAT slip is at or above the alert threshold", labels=guard_labels)
        active = GaugeMetricFamily(PREFIX + "guardrail_override_active",
                                   "1 while the guardrail's routing override is in force", labels=guard_labels)
        for status in snapshot.guardrails:
            key = [status.tenant, status.archetype]
            if status.slip is not None:
                slip.add_metric(key, status.slip)
            samples.add_metric(key, status.samples)
            alert.add_metric(key, 1.0 if status.alerting else 0.0)
            active.add_metric(key, 1.0 if status.overridden else 0.0)
        yield from (slip, samples, alert, active)

        yield GaugeMetricFamily(PREFIX + "pending_feedback", "Feedback waiting for its ticket's decision",
                                value=snapshot.pending_feedback)
        yield CounterMetricFamily(PREFIX + "feedback_dropped", "Pending feedback dropped at the bound",
                                  value=snapshot.dropped_feedback)
