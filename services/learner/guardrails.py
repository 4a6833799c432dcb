"""Guardrails that turn KPI slips into actions, per (tenant, archetype). Pure: state lives in the
`Guardrails` object the caller owns.

- Evidence: the latest `window` CSAT scores at the guardrail latency (one per ticket, the latest
  wins) and hallucinated-policy QA results, both since the guardrail was last (re-)armed.
- Slip = baseline - mean CSAT over that window, in points; no verdict below `min_samples`.
- slip >= alert_slip_points (2): the alert is raised (the caller sets a metric and logs); it is
  lowered once the slip is back under alert_clear_slip_points (1), so a mean hovering at the
  threshold does not flap.
- slip >= override_slip_points (4), or any hallucinated-policy QA result: EXACTLY ONE
  RoutingOverride (SET_AUTOMATION to DRAFT_FOR_REVIEW, issued_by "learner:guardrail") for the
  archetype; the guardrail is then latched and emits nothing more until the override is cleared.
- Cleared: a RoutingOverride for the same tenant and archetype from anyone else with action CLEAR,
  KILL_SWITCH_OFF or SET_AUTOMATION (a human deciding the archetype's automation level) re-arms
  the guardrail with fresh evidence, so the slip that caused the override cannot fire it again.
  The learner reads `routing.overrides` from the beginning at start-up, so its own past overrides
  and their clears rebuild the latches after a restart.
"""

from __future__ import annotations

import collections
import uuid
from dataclasses import dataclass, field

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import CsatBaselines, GuardrailConfig, archetype_name, parse_archetype

ISSUER = "learner:guardrail"
PRODUCER = "learner"
TRIGGER_CSAT = "csat_slip"
TRIGGER_HALLUCINATION = "hallucinated_policy"
_CLEARING_ACTIONS = (ev.OVERRIDE_ACTION_CLEAR, ev.OVERRIDE_ACTION_KILL_SWITCH_OFF, ev.OVERRIDE_ACTION_SET_AUTOMATION)


@dataclass
class _ArchetypeGuard:
    scores: collections.OrderedDict[str, float] = field(default_factory=collections.OrderedDict)
    alerting: bool = False
    latched: bool = False
    generation: int = 0  # how many times it was re-armed; part of the override id


@dataclass(frozen=True)
class AlertChange:
    tenant: str
    archetype: str
    raised: bool  # False: the slip recovered
    slip: float
    mean: float
    baseline: float
    samples: int


@dataclass(frozen=True)
class GuardrailStatus:
    tenant: str
    archetype: str
    samples: int
    slip: float | None  # None below min_samples
    alerting: bool
    overridden: bool


@dataclass
class GuardrailOutcome:
    overrides: list[tuple[str, ev.RoutingOverride]] = field(default_factory=list)  # (trigger, event)
    alerts: list[AlertChange] = field(default_factory=list)


class Guardrails:
    def __init__(self, config: GuardrailConfig, baselines: CsatBaselines) -> None:
        self._config = config
        self._baselines = baselines
        self._guards: dict[tuple[str, str], _ArchetypeGuard] = collections.defaultdict(_ArchetypeGuard)
        self._observed: set[str] = set()  # override ids already applied

    @property
    def latency(self) -> int:
        return self._config.latency

    def observe_csat(self, tenant: str, archetype: str, ticket_id: str, score: float) -> GuardrailOutcome:
        """A CSAT at the guardrail latency for a ticket of this archetype."""
        guard = self._guards[(tenant, archetype)]
        guard.scores.pop(ticket_id, None)
        guard.scores[ticket_id] = score
        while len(guard.scores) > self._config.window:
            guard.scores.popitem(last=False)
        outcome = GuardrailOutcome()
        slip, mean, baseline = self._slip(archetype, guard)
        if slip is None:
            return outcome
        if guard.alerting:
            alerting = slip >= self._config.alert_clear_slip_points
        else:
            alerting = slip >= self._config.alert_slip_points
        if alerting != guard.alerting:
            guard.alerting = alerting
            outcome.alerts.append(AlertChange(tenant, archetype, alerting, slip, mean, baseline, len(guard.scores)))
        if slip >= self._config.override_slip_points:
            reason = (
                f"CSAT {mean:.2f} over the latest {len(guard.scores)} surveys is {slip:.2f} points below the "
                f"baseline {baseline:.2f} (override threshold {self._config.override_slip_points:g})"
            )
            self._override(tenant, archetype, guard, TRIGGER_CSAT, reason, outcome)
        return outcome

    def observe_hallucination(self, tenant: str, archetype: str, ticket_id: str, note: str) -> GuardrailOutcome:
        """A QA result that found hallucinated policy (a P0) on a ticket of this archetype."""
        outcome = GuardrailOutcome()
        reason = f"QA found hallucinated policy on ticket {ticket_id}" + (f": {note}" if note else "")
        self._override(tenant, archetype, self._guards[(tenant, archetype)], TRIGGER_HALLUCINATION, reason, outcome)
        return outcome

    def observe_override(self, event: ev.RoutingOverride) -> None:
        """Any routing override, including the learner's own (read back from the topic). Each one
        counts once: a learner restored from a snapshot reads the topic from its beginning again, and
        a clearing override applied twice would drop the scores gathered since it."""
        if event.archetype == tk.ARCHETYPE_UNSPECIFIED:
            return
        if event.override_id:
            if event.override_id in self._observed:
                return
            self._observed.add(event.override_id)
        guard = self._guards[(event.meta.tenant_id, archetype_name(event.archetype))]
        if event.issued_by == ISSUER:
            if event.action == ev.OVERRIDE_ACTION_SET_AUTOMATION:
                guard.latched = True
            return
        if event.action in _CLEARING_ACTIONS and guard.latched:
            guard.latched = False
            guard.alerting = False
            guard.generation += 1
            guard.scores.clear()

    def status(self) -> list[GuardrailStatus]:
        rows = []
        for (tenant, archetype), guard in sorted(self._guards.items()):
            slip, _, _ = self._slip(archetype, guard)
            rows.append(GuardrailStatus(tenant, archetype, len(guard.scores), slip, guard.alerting, guard.latched))
        return rows

    def _slip(self, archetype: str, guard: _ArchetypeGuard) -> tuple[float | None, float, float]:
        baseline = self._baselines.baseline(archetype, self._config.latency)
        if baseline is None or len(guard.scores) < self._config.min_samples:
            return None, 0.0, baseline or 0.0
        mean = sum(guard.scores.values()) / len(guard.scores)
        return baseline - mean, mean, baseline

    def _override(
        self, tenant: str, archetype: str, guard: _ArchetypeGuard, trigger: str, reason: str, outcome: GuardrailOutcome
    ) -> None:
        if guard.latched or archetype == "unspecified":  # nothing to route back for an unknown archetype
            return
        guard.latched = True
        override_id = uuid.uuid5(
            uuid.NAMESPACE_URL, f"supportflow:guardrail:{tenant}:{archetype}:{guard.generation}"
        ).hex
        event = ev.RoutingOverride(
            meta=new_meta(tenant, PRODUCER),
            override_id=override_id,
            archetype=parse_archetype(archetype),
            action=ev.OVERRIDE_ACTION_SET_AUTOMATION,
            route=tk.ROUTE_DRAFT_FOR_REVIEW,
            reason=reason,
            issued_by=ISSUER,
        )
        outcome.overrides.append((trigger, event))
