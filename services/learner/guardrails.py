"""Guardrails that turn the rolling figures into actions, per (tenant, archetype). Pure: state lives
in the `Guardrails` object the caller owns.

- CSAT, per watched latency (at resolution and delayed): the latest `window` surveys (one per
  ticket, the latest wins) given within `rolling_days` of the newest, since the guardrail was last
  (re-)armed. Slip = baseline - their mean, in points; no verdict below `min_samples` or without a
  baseline for the tenant (tenant data).
- Slip >= alert_slip_points (2) at either latency opens a review: the caller logs it, sets
  `supportflow_learner_guardrail_review_open` and shows `guardrail_review_open` = 1 on the
  archetype's GetKpis rows (the workspace reads them). It closes once both latencies are back
  under alert_clear_slip_points (1), so a mean hovering at the threshold does not flap.
- Pulled back to draft-for-review (EXACTLY ONE RoutingOverride: SET_AUTOMATION to DRAFT_FOR_REVIEW,
  issued_by "learner:guardrail", with the reason) on the first of: a slip >= override_slip_points (4);
  a QA verdict of a P0 class (refund_pricing, warranty_service_level; or hallucinated policy with
  no class, until someone classifies it); context loss above context_loss_max_rate (5%) over the
  latest handoffs of the archetype, once there are context_loss_min_handoffs of them. The guardrail
  is then latched and emits nothing more until the override is cleared.
- Cleared: a RoutingOverride for the same tenant and archetype from anyone else with action CLEAR,
  KILL_SWITCH_OFF or SET_AUTOMATION re-arms the guardrail with fresh evidence. Overrides reach the
  learner on its log (main.py) with the evidence, so latches survive a restart.
"""

from __future__ import annotations

import collections
import uuid
from dataclasses import dataclass, field
from typing import Callable

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import LATENCY_NAMES, GuardrailConfig, archetype_name, parse_archetype
from services.learner.entries import EntryMap
from services.learner.state import StateError

ISSUER = "learner:guardrail"
PRODUCER = "learner"
TRIGGER_CSAT = "csat_slip"
TRIGGER_HALLUCINATION = "hallucinated_policy_p0"
TRIGGER_CONTEXT_LOSS = "context_loss"
_CLEARING_ACTIONS = (ev.OVERRIDE_ACTION_CLEAR, ev.OVERRIDE_ACTION_KILL_SWITCH_OFF, ev.OVERRIDE_ACTION_SET_AUTOMATION)
DAY_S = 86400.0

BaselineOf = Callable[[str, str, int], "float | None"]  # (tenant, archetype, latency) -> points


@dataclass
class _ArchetypeGuard:
    # latency -> ticket -> (score, given at)
    scores: dict[int, collections.OrderedDict[str, tuple[float, float]]] = field(
        default_factory=lambda: collections.defaultdict(collections.OrderedDict))
    handoffs: collections.OrderedDict[str, bool] = field(default_factory=collections.OrderedDict)
    reviewing: bool = False
    latched: bool = False
    generation: int = 0  # how many times it was re-armed; part of the override id
    # Derived from the windows, kept so that a survey or a handoff costs O(1) instead of a pass over
    # its window; None (or absent) means "count again from the window". Not part of the state.
    newest: dict[int, float] = field(default_factory=dict)  # latency -> newest given-at in its window
    oldest: dict[int, float] = field(default_factory=dict)  # latency -> at most the oldest given-at
    handoffs_lost: int | None = None  # how many of the handoffs lost context

    def forget_derived(self) -> None:
        self.newest.clear()
        self.oldest.clear()
        self.handoffs_lost = None


def _guard_state(guard: _ArchetypeGuard) -> dict:
    return {
        "scores": [[latency, [[ticket, score, at] for ticket, (score, at) in window.items()]]
                   for latency, window in guard.scores.items()],
        "handoffs": [[ticket, lost] for ticket, lost in guard.handoffs.items()],
        "reviewing": guard.reviewing, "latched": guard.latched, "generation": guard.generation,
    }


def _guard_from_state(values: object) -> _ArchetypeGuard:
    if not isinstance(values, dict):
        raise StateError("a guardrail's state that is not an object")
    try:
        guard = _ArchetypeGuard(reviewing=bool(values["reviewing"]), latched=bool(values["latched"]),
                                generation=int(values["generation"]))
        for latency, window in values["scores"]:
            guard.scores[int(latency)] = collections.OrderedDict(
                (str(ticket), (float(score), float(at))) for ticket, score, at in window)
        guard.handoffs = collections.OrderedDict((str(ticket), bool(lost)) for ticket, lost in values["handoffs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"a guardrail's state that cannot be read: {exc!r}") from exc
    return guard


@dataclass(frozen=True)
class ReviewChange:
    tenant: str
    archetype: str
    opened: bool  # False: the slip recovered, the review closes
    latency: str  # the latency with the largest slip
    slip: float
    mean: float
    baseline: float
    samples: int
    at: float  # when the survey that changed it was given


@dataclass(frozen=True)
class GuardrailStatus:
    tenant: str
    archetype: str
    samples: int  # at-resolution surveys in the window
    slip: float | None  # the largest slip over the watched latencies; None below min_samples
    reviewing: bool
    overridden: bool
    context_loss_rate: float | None  # over the handoff window; None below context_loss_min_handoffs


@dataclass
class GuardrailOutcome:
    overrides: list[tuple[str, ev.RoutingOverride]] = field(default_factory=list)  # (trigger, event)
    reviews: list[ReviewChange] = field(default_factory=list)


class Guardrails:
    def __init__(self, config: GuardrailConfig, baseline_of: BaselineOf) -> None:
        self._config = config
        self._baseline_of = baseline_of
        self._guards: EntryMap[tuple[str, str], _ArchetypeGuard] = EntryMap("guardrail", _guard_state, _guard_from_state)
        self._observed: EntryMap[str, bool] = EntryMap("override-seen", bool, bool)  # override ids applied

    def _guard(self, tenant: str, archetype: str) -> _ArchetypeGuard:
        """The guard of (tenant, archetype), marked as changed: every caller may change it."""
        guard = self._guards.get((tenant, archetype))
        if guard is None:
            guard = self._guards[(tenant, archetype)] = _ArchetypeGuard()
        else:
            self._guards.touch((tenant, archetype))
        return guard

    def entry_maps(self) -> list[EntryMap]:
        return [self._guards, self._observed]

    @property
    def latencies(self) -> tuple[int, ...]:
        return self._config.latencies

    def observe_csat(self, tenant: str, archetype: str, ticket_id: str, latency: int, score: float,
                     given_at: float) -> GuardrailOutcome:
        """A CSAT survey at one of the watched latencies for a ticket of this archetype."""
        outcome = GuardrailOutcome()
        if latency not in self._config.latencies:
            return outcome
        guard = self._guard(tenant, archetype)
        window = guard.scores[latency]
        replaced = window.pop(ticket_id, None)
        window[ticket_id] = (score, given_at)
        newest = guard.newest.get(latency)
        if newest is None or (replaced is not None and replaced[1] >= newest):
            newest = max(at for _, at in window.values())
        else:
            newest = max(newest, given_at)
        cutoff = newest - self._config.rolling_days * DAY_S
        oldest = min(guard.oldest.get(latency, given_at), given_at)
        if latency not in guard.oldest or oldest < cutoff:  # something may have aged out: look
            for old in [t for t, (_, at) in window.items() if at < cutoff]:
                del window[old]
            oldest = min((at for _, at in window.values()), default=newest)
        while len(window) > self._config.window:
            _, (_, at) = window.popitem(last=False)
            if at >= newest:  # the newest left (surveys out of order): count again
                newest = max((at for _, at in window.values()), default=newest)
        guard.newest[latency], guard.oldest[latency] = newest, oldest
        slips = self._slips(tenant, archetype, guard)
        if not slips:
            return outcome
        worst_latency, (slip, mean, baseline, samples) = max(slips.items(), key=lambda item: item[1][0])
        if guard.reviewing:
            reviewing = slip >= self._config.alert_clear_slip_points
        else:
            reviewing = slip >= self._config.alert_slip_points
        if reviewing != guard.reviewing:
            guard.reviewing = reviewing
            outcome.reviews.append(ReviewChange(tenant, archetype, reviewing, LATENCY_NAMES[worst_latency],
                                                slip, mean, baseline, samples, given_at))
        if slip >= self._config.override_slip_points:
            reason = (
                f"{LATENCY_NAMES[worst_latency]} CSAT {mean:.2f} over the latest {samples} surveys is {slip:.2f} "
                f"points below the baseline {baseline:.2f} (override threshold {self._config.override_slip_points:g})"
            )
            self._override(tenant, archetype, guard, TRIGGER_CSAT, reason, outcome)
        return outcome

    def is_p0(self, qa_class: str, severity: str) -> bool:
        return qa_class in self._config.p0_classes or qa_class == "unclassified" or severity.strip().upper() == "P0"

    def observe_qa(self, tenant: str, archetype: str, ticket_id: str, qa_class: str, severity: str,
                   note: str) -> GuardrailOutcome:
        """A QA verdict on a ticket of this archetype; a P0 pulls the archetype back."""
        outcome = GuardrailOutcome()
        if not self.is_p0(qa_class, severity):
            return outcome
        reason = f"QA found hallucinated policy ({qa_class}, P0) on ticket {ticket_id}" + (f": {note}" if note else "")
        self._override(tenant, archetype, self._guard(tenant, archetype), TRIGGER_HALLUCINATION, reason, outcome)
        return outcome

    def observe_handoff(self, tenant: str, archetype: str, ticket_id: str, context_loss: bool) -> GuardrailOutcome:
        """A handoff (review or escalation) of this archetype, or its context-loss flag arriving."""
        outcome = GuardrailOutcome()
        guard = self._guard(tenant, archetype)
        if guard.handoffs_lost is None:
            guard.handoffs_lost = sum(guard.handoffs.values())
        if ticket_id in guard.handoffs:
            before = guard.handoffs[ticket_id]
            guard.handoffs[ticket_id] = before or context_loss
            guard.handoffs_lost += guard.handoffs[ticket_id] - before
        else:
            guard.handoffs[ticket_id] = context_loss
            guard.handoffs_lost += context_loss
            while len(guard.handoffs) > self._config.context_loss_window:
                guard.handoffs_lost -= guard.handoffs.popitem(last=False)[1]
        rate = self._context_loss_rate(guard)
        if rate is not None and rate > self._config.context_loss_max_rate:
            reason = (f"context loss on {rate:.1%} of the latest {len(guard.handoffs)} handoffs "
                      f"(threshold {self._config.context_loss_max_rate:.0%})")
            self._override(tenant, archetype, guard, TRIGGER_CONTEXT_LOSS, reason, outcome)
        return outcome

    def observe_override(self, event: ev.RoutingOverride) -> None:
        """Any routing override, including the learner's own (read back from the topic). Each one
        counts once, by id."""
        if event.archetype == tk.ARCHETYPE_UNSPECIFIED:
            return
        if event.override_id:
            if event.override_id in self._observed:
                return
            self._observed[event.override_id] = True
        guard = self._guard(event.meta.tenant_id, archetype_name(event.archetype))
        if event.issued_by == ISSUER:
            if event.action == ev.OVERRIDE_ACTION_SET_AUTOMATION:
                guard.latched = True
            return
        if event.action in _CLEARING_ACTIONS and guard.latched:
            guard.latched = False
            guard.reviewing = False
            guard.generation += 1
            guard.scores.clear()
            guard.handoffs.clear()
            guard.forget_derived()

    def status(self) -> list[GuardrailStatus]:
        rows = []
        for (tenant, archetype), guard in sorted(self._guards.items()):
            slips = self._slips(tenant, archetype, guard)
            worst = max((s[0] for s in slips.values()), default=None)
            rows.append(GuardrailStatus(tenant, archetype, len(guard.scores.get(ev.CSAT_LATENCY_AT_RESOLUTION, {})),
                                        worst, guard.reviewing, guard.latched, self._context_loss_rate(guard)))
        return rows

    def _context_loss_rate(self, guard: _ArchetypeGuard) -> float | None:
        if len(guard.handoffs) < self._config.context_loss_min_handoffs:
            return None
        if guard.handoffs_lost is None:
            guard.handoffs_lost = sum(guard.handoffs.values())
        return guard.handoffs_lost / len(guard.handoffs)

    def _slips(self, tenant: str, archetype: str, guard: _ArchetypeGuard) -> dict[int, tuple[float, float, float, int]]:
        """latency -> (slip, mean, baseline, samples) for each latency with a verdict."""
        slips = {}
        for latency, window in guard.scores.items():
            baseline = self._baseline_of(tenant, archetype, latency)
            if baseline is None or len(window) < self._config.min_samples:
                continue
            mean = sum(score for score, _ in window.values()) / len(window)
            slips[latency] = (baseline - mean, mean, baseline, len(window))
        return slips

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
