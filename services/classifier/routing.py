"""The routing policy: a YAML file (routing_policy.yaml documents every key and the rule order),
run-time overrides on top of it, and `decide_route`, the pure function that applies both to one
classified ticket.

`PolicyStore` keeps the policy current without a restart: a tenant with its own file
(`tenants/<tenant>/routing_policy.yaml`, see tenant_data.py) follows it, every other tenant the
deployment's; it re-reads each file when its mtime changes (checked at most every
`check_interval_s`), keeps the last good policy when the new file is invalid, and applies
`RoutingOverride` events. Overrides are scoped: an event whose tenant is empty
or "*" applies to every tenant, any other to that tenant only; a tenant's override wins over a
global one, field by field (automation level, kill switch). CLEAR removes the scope's override for
the archetype. Every applied override is written as one JSON audit log line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from integrations.crm import TIERS
from services.classifier import input_guard, metrics
from services.classifier.intent_catalog import ARCHETYPES, archetype_name

log = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "routing_policy.yaml"
DEFAULT_CHECK_INTERVAL_S = 5.0
ALL_TENANTS = "*"

ROUTES: dict[str, int] = {
    "auto_respond": tk.ROUTE_AUTO_RESPOND,
    "draft_for_review": tk.ROUTE_DRAFT_FOR_REVIEW,
    "ask_follow_up": tk.ROUTE_ASK_FOLLOW_UP,
    "escalate": tk.ROUTE_ESCALATE,
}
# Automation levels, most automated first; a cap keeps a route at or after its position.
AUTOMATION_LEVELS = (tk.ROUTE_AUTO_RESPOND, tk.ROUTE_DRAFT_FOR_REVIEW, tk.ROUTE_ESCALATE)
RISK_FLAGS: dict[str, int] = {
    "security": tk.RISK_FLAG_SECURITY,
    "billing_dispute": tk.RISK_FLAG_BILLING_DISPUTE,
    "legal": tk.RISK_FLAG_LEGAL,
    "churn": tk.RISK_FLAG_CHURN,
}


def route_name(route: int) -> str:
    return tk.Route.Name(route).removeprefix("ROUTE_").lower()


def _enum_key(mapping: Mapping[str, int], value: int) -> str:
    return next(name for name, member in mapping.items() if member == value)


class PolicyError(ValueError):
    """The policy file is invalid; the message says where."""


class InvalidOverride(ValueError):
    """A RoutingOverride event that cannot be applied (no archetype, unknown action, bad route)."""


@dataclass(frozen=True)
class ArchetypeRouting:
    automation: int  # one of AUTOMATION_LEVELS
    kill_switch: bool
    automation_source: str = "policy file"
    kill_switch_source: str = "policy file"


@dataclass(frozen=True)
class RoutingPolicy:
    confidence_threshold: float
    supported_languages: frozenset[str]
    always_escalate_intents: frozenset[str]
    always_escalate_min_probability: float
    escalate_on_risk_flags: frozenset[int]
    prompt_injection_route: int
    tier_max_automation: Mapping[int, int]
    archetypes: Mapping[int, ArchetypeRouting]
    revision: str = ""  # hash of the file it came from, for logs
    # Identifiers the intent needs that the ticket lacks: ask the customer at once, or let the
    # investigation look for the one record first (the drafter asks only if it finds none or several).
    missing_identifiers: str = "ask_first"

    def language_supported(self, language: str, confident: bool) -> bool:
        """Only a confident detection rejects: a short English message must not be misjudged."""
        return not confident or language in self.supported_languages


# --- the file ---------------------------------------------------------------------------------------

_KEYS = {
    "confidence_threshold",
    "supported_languages",
    "always_escalate_intents",
    "always_escalate_min_probability",
    "escalate_on_risk_flags",
    "prompt_injection_route",
    "tier_overrides",
    "archetypes",
    "missing_identifiers",
}
MISSING_IDENTIFIER_CHOICES = ("ask_first", "investigate_first")


def parse_policy(document: Any, revision: str = "") -> RoutingPolicy:
    if not isinstance(document, dict):
        raise PolicyError("the policy must be a mapping")
    unknown = set(document) - _KEYS
    if unknown:
        raise PolicyError(f"unknown keys {sorted(unknown)}; expected {sorted(_KEYS)}")

    def probability(name: str, default: float) -> float:
        value = document.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise PolicyError(f"{name} must be a number between 0 and 1, got {value!r}")
        return float(value)

    def names(name: str) -> list[str]:
        value = document.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PolicyError(f"{name} must be a list of names")
        return value

    def automation(where: str, value: Any, allowed: Sequence[int] = AUTOMATION_LEVELS) -> int:
        route = ROUTES.get(value) if isinstance(value, str) else None
        if route not in allowed:
            raise PolicyError(f"{where} must be one of {', '.join(route_name(r) for r in allowed)}, got {value!r}")
        return route

    flags = names("escalate_on_risk_flags")
    bad_flags = [f for f in flags if f not in RISK_FLAGS]
    if bad_flags:
        raise PolicyError(f"escalate_on_risk_flags: unknown flags {bad_flags}; expected {', '.join(RISK_FLAGS)}")

    tiers = document.get("tier_overrides") or {}
    if not isinstance(tiers, dict):
        raise PolicyError("tier_overrides must map tier names to {max_automation: ...}")
    tier_caps = {}
    for tier, rule in tiers.items():
        if tier not in TIERS:
            raise PolicyError(f"tier_overrides: unknown tier {tier!r}; expected {', '.join(TIERS)}")
        if not isinstance(rule, dict) or set(rule) != {"max_automation"}:
            raise PolicyError(f"tier_overrides.{tier} must be {{max_automation: <level>}}")
        tier_caps[TIERS[tier]] = automation(f"tier_overrides.{tier}.max_automation", rule["max_automation"])

    archetype_rules = document.get("archetypes")
    if not isinstance(archetype_rules, dict) or set(archetype_rules) != set(ARCHETYPES):
        raise PolicyError(f"archetypes must have exactly these entries: {', '.join(ARCHETYPES)}")
    archetypes = {}
    for name, rule in archetype_rules.items():
        if not isinstance(rule, dict) or not set(rule) <= {"automation", "kill_switch"} or "automation" not in rule:
            raise PolicyError(f"archetypes.{name} must be {{automation: <level>, kill_switch: true|false}}")
        kill_switch = rule.get("kill_switch", False)
        if not isinstance(kill_switch, bool):
            raise PolicyError(f"archetypes.{name}.kill_switch must be true or false")
        archetypes[ARCHETYPES[name]] = ArchetypeRouting(automation(f"archetypes.{name}.automation", rule["automation"]), kill_switch)

    missing_identifiers = document.get("missing_identifiers", "ask_first")
    if missing_identifiers not in MISSING_IDENTIFIER_CHOICES:
        raise PolicyError(f"missing_identifiers must be one of {', '.join(MISSING_IDENTIFIER_CHOICES)}, "
                          f"got {missing_identifiers!r}")
    languages = names("supported_languages")
    if not languages:
        raise PolicyError("supported_languages must name at least one language")
    return RoutingPolicy(
        confidence_threshold=probability("confidence_threshold", 0.7),
        supported_languages=frozenset(languages),
        always_escalate_intents=frozenset(names("always_escalate_intents")),
        always_escalate_min_probability=probability("always_escalate_min_probability", 1.0),
        escalate_on_risk_flags=frozenset(RISK_FLAGS[f] for f in flags),
        prompt_injection_route=automation(
            "prompt_injection_route",
            document.get("prompt_injection_route", "escalate"),
            (tk.ROUTE_DRAFT_FOR_REVIEW, tk.ROUTE_ESCALATE),
        ),
        tier_max_automation=tier_caps,
        archetypes=archetypes,
        revision=revision,
        missing_identifiers=missing_identifiers,
    )


def load_policy(path: Path) -> RoutingPolicy:
    try:
        raw = Path(path).read_bytes()
        document = yaml.safe_load(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    try:
        return parse_policy(document, revision=hashlib.sha256(raw).hexdigest()[:12])
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from exc


# --- overrides --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchetypeOverride:
    """What one scope (a tenant, or every tenant) has overridden for one archetype."""

    automation: int | None = None
    automation_source: str = ""
    kill_switch: bool | None = None
    kill_switch_source: str = ""

    def apply_to(self, rule: ArchetypeRouting) -> ArchetypeRouting:
        if self.automation is not None:
            rule = replace(rule, automation=self.automation, automation_source=self.automation_source)
        if self.kill_switch is not None:
            rule = replace(rule, kill_switch=self.kill_switch, kill_switch_source=self.kill_switch_source)
        return rule


OverrideKey = tuple[str, int]  # (tenant or ALL_TENANTS, archetype)


def override_scope(event: ev.RoutingOverride) -> str:
    tenant = event.meta.tenant_id.strip()
    return tenant if tenant and tenant != ALL_TENANTS else ALL_TENANTS


def apply_override(
    overrides: Mapping[OverrideKey, ArchetypeOverride], event: ev.RoutingOverride
) -> dict[OverrideKey, ArchetypeOverride]:
    """The override table after `event`; raises InvalidOverride for an event that means nothing."""
    if event.archetype not in ARCHETYPES.values():
        raise InvalidOverride(f"override {event.override_id or '(no id)'} names no archetype")
    key = (override_scope(event), event.archetype)
    source = f"override {event.override_id or '(no id)'} by {event.issued_by or 'unknown'}"
    if event.reason:
        source += f": {event.reason}"
    current = overrides.get(key, ArchetypeOverride())
    updated = dict(overrides)
    if event.action == ev.OVERRIDE_ACTION_SET_AUTOMATION:
        if event.route not in AUTOMATION_LEVELS:
            raise InvalidOverride(
                f"override {event.override_id}: SET_AUTOMATION needs a route among "
                f"{', '.join(route_name(r) for r in AUTOMATION_LEVELS)}, got {tk.Route.Name(event.route)}"
            )
        updated[key] = replace(current, automation=event.route, automation_source=source)
    elif event.action in (ev.OVERRIDE_ACTION_KILL_SWITCH_ON, ev.OVERRIDE_ACTION_KILL_SWITCH_OFF):
        on = event.action == ev.OVERRIDE_ACTION_KILL_SWITCH_ON
        updated[key] = replace(current, kill_switch=on, kill_switch_source=source)
    elif event.action == ev.OVERRIDE_ACTION_CLEAR:
        updated.pop(key, None)
    else:
        raise InvalidOverride(f"override {event.override_id}: unknown action {event.action}")
    return updated


def effective_policy(
    policy: RoutingPolicy, overrides: Mapping[OverrideKey, ArchetypeOverride], tenant: str
) -> RoutingPolicy:
    """The file's policy with the overrides for every tenant, then those for `tenant`, on top."""
    archetypes = dict(policy.archetypes)
    for scope in (ALL_TENANTS, tenant):
        for archetype, rule in archetypes.items():
            override = overrides.get((scope, archetype))
            if override is not None:
                archetypes[archetype] = override.apply_to(rule)
    return replace(policy, archetypes=archetypes)


# --- the decision -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingFacts:
    """Everything routing looks at, gathered by `classify`."""

    intent: str
    confidence: float
    top_intents: Sequence[tuple[str, float]]
    archetype: int
    tier: int
    risk_flags: Sequence[int]
    missing_identifiers: Sequence[str]
    input_flags: Sequence[str]
    language: str = "en"
    injection_styles: Sequence[str] = ()
    # The intent model's calibrated probability, when it held `confidence` under the threshold.
    calibrated_confidence: float | None = None


@dataclass(frozen=True)
class RouteDecision:
    route: int
    reason: str


def decide_route(facts: RoutingFacts, policy: RoutingPolicy) -> RouteDecision:
    """Route one ticket; the reason names every rule that decided it, in words an agent reads."""
    injection = input_guard.PROMPT_INJECTION in facts.input_flags or tk.RISK_FLAG_PROMPT_INJECTION in facts.risk_flags
    rule = policy.archetypes.get(facts.archetype)

    escalations: list[str] = []
    if injection and policy.prompt_injection_route == tk.ROUTE_ESCALATE:
        escalations.append(_injection_reason(facts))
    if input_guard.NO_READABLE_TEXT in facts.input_flags:
        escalations.append("the channel found no readable text in the message (attachments or images only?): a person reads it")
    if input_guard.LANGUAGE_UNSUPPORTED in facts.input_flags:
        escalations.append(
            f"language {facts.language!r} is not supported (supported: {', '.join(sorted(policy.supported_languages))})"
        )
    escalating_intents = [
        intent
        for intent, probability in facts.top_intents
        if intent in policy.always_escalate_intents
        and (intent == facts.intent or probability >= policy.always_escalate_min_probability)
    ]
    if facts.intent in policy.always_escalate_intents and facts.intent not in escalating_intents:
        escalating_intents.insert(0, facts.intent)
    if escalating_intents:
        escalations.append(f"always-escalate intent {', '.join(escalating_intents)}")
    flags = [_enum_key(RISK_FLAGS, f) for f in facts.risk_flags if f in policy.escalate_on_risk_flags]
    if flags:
        escalations.append(f"risk flags: {', '.join(flags)}")
    if rule is not None and rule.kill_switch:
        escalations.append(f"kill switch on for archetype {archetype_name(facts.archetype)} ({rule.kill_switch_source})")
    if escalations:
        return RouteDecision(tk.ROUTE_ESCALATE, "; ".join(escalations))

    if injection:
        return RouteDecision(policy.prompt_injection_route, _injection_reason(facts) + ": an agent reviews, nothing is automated")
    if not facts.intent:
        return RouteDecision(
            tk.ROUTE_ASK_FOLLOW_UP, f"no readable text ({', '.join(facts.input_flags) or 'empty'}): ask the customer to describe the problem"
        )
    if facts.confidence < policy.confidence_threshold:
        reason = f"confidence {facts.confidence:.3f} in {facts.intent} is below the threshold {policy.confidence_threshold:.2f}"
        if facts.calibrated_confidence is not None and facts.calibrated_confidence > facts.confidence:
            reason += (
                f" (held there from a calibrated {facts.calibrated_confidence:.3f}: the model's answers that sure"
                " were not right often enough to automate)"
            )
        return RouteDecision(tk.ROUTE_DRAFT_FOR_REVIEW, reason)
    needs = f"{facts.intent} needs one of: {', '.join(facts.missing_identifiers)}"
    if facts.missing_identifiers and policy.missing_identifiers == "ask_first":
        return RouteDecision(tk.ROUTE_ASK_FOLLOW_UP, needs)
    looked_for = f"{needs}, which the investigation looks for first; " if facts.missing_identifiers else ""
    if rule is None:
        return RouteDecision(tk.ROUTE_DRAFT_FOR_REVIEW,
                             f"{looked_for}no routing rule for archetype {archetype_name(facts.archetype)}")

    route = rule.automation
    reason = f"{looked_for}archetype {archetype_name(facts.archetype)}: {route_name(route)} ({rule.automation_source})"
    cap = policy.tier_max_automation.get(facts.tier)
    if cap is not None and _more_automated(route, cap):
        route = cap
        reason += f"; {_enum_key(TIERS, facts.tier)} tier allows at most {route_name(cap)}"
    if input_guard.TRUNCATED in facts.input_flags and _more_automated(route, tk.ROUTE_DRAFT_FOR_REVIEW):
        route = tk.ROUTE_DRAFT_FOR_REVIEW
        reason += "; the ticket was truncated, so an agent reviews what was not read"
    return RouteDecision(route, reason)


def _more_automated(route: int, than: int) -> bool:
    return AUTOMATION_LEVELS.index(route) < AUTOMATION_LEVELS.index(than)


def _injection_reason(facts: RoutingFacts) -> str:
    styles = f" ({', '.join(facts.injection_styles)})" if facts.injection_styles else ""
    return f"prompt injection{styles} in the ticket"


# --- the store --------------------------------------------------------------------------------------


class _PolicyFile:
    """One policy file and the last good policy read from it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.signature = self._signature()
        self.policy = load_policy(self.path)  # a bad file fails start-up

    def _signature(self) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of the file, None when it is missing."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; True when a new policy is in force."""
        signature = self._signature()
        if signature == self.signature:
            return False
        # Remembered even when the new file is bad, so that it is reported once, not every check.
        self.signature = signature
        try:
            if signature is None:
                raise PolicyError(f"{self.path}: file is missing")
            policy = load_policy(self.path)
        except PolicyError as exc:
            metrics.POLICY_RELOADS.labels("invalid").inc()
            log.error(
                "routing policy file is invalid; keeping the last good policy",
                extra={"fields": {"error": str(exc), "revision_in_force": self.policy.revision}},
            )
            return False
        self.policy = policy
        metrics.POLICY_RELOADS.labels("loaded").inc()
        log.info("routing policy reloaded", extra={"fields": {"path": str(self.path), "revision": policy.revision}})
        return True


class PolicyStore:
    """The current routing policy per tenant: the tenant's own file if it has one (`tenant_paths`),
    else the deployment's, each hot-reloaded, plus run-time overrides. One override table serves
    every file: an override for every tenant reaches each tenant's policy, whichever file it has."""

    def __init__(
        self,
        path: Path = DEFAULT_POLICY_PATH,
        *,
        tenant_paths: Mapping[str, Path] | None = None,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._default = _PolicyFile(path)
        self._tenant_files = {tenant: _PolicyFile(tenant_path) for tenant, tenant_path in (tenant_paths or {}).items()}
        self._overrides: dict[OverrideKey, ArchetypeOverride] = {}
        self._by_tenant: dict[str, RoutingPolicy] = {}
        self._next_check = clock() + check_interval_s
        for tenant, file in [("", self._default), *self._tenant_files.items()]:
            log.info("routing policy loaded",
                     extra={"fields": {"tenant": tenant or ALL_TENANTS, "path": str(file.path), "revision": file.policy.revision}})

    @property
    def path(self) -> Path:
        """The deployment's policy file: the one a tenant without its own follows."""
        return self._default.path

    @property
    def tenants(self) -> list[str]:
        """The tenants with a policy file of their own."""
        return sorted(self._tenant_files)

    def path_for(self, tenant: str) -> Path:
        """The policy file `tenant` follows."""
        return self._file(tenant).path

    def current(self, tenant: str = "") -> RoutingPolicy:
        if self._clock() >= self._next_check:
            with self._lock:
                if self._clock() >= self._next_check:
                    self._next_check = self._clock() + self._interval
                    reloaded = [file.reload_if_changed() for file in (self._default, *self._tenant_files.values())]
                    if any(reloaded):
                        self._by_tenant = {}
        policy = self._by_tenant.get(tenant)
        if policy is None:
            with self._lock:
                policy = effective_policy(self._file(tenant).policy, self._overrides, tenant)
                self._by_tenant[tenant] = policy
        return policy

    def _file(self, tenant: str) -> _PolicyFile:
        return self._tenant_files.get(tenant, self._default)

    def apply_override(self, event: ev.RoutingOverride) -> None:
        """Apply one override event (raises InvalidOverride) and write its audit line."""
        with self._lock:
            self._overrides = apply_override(self._overrides, event)
            self._by_tenant = {}
        action = ev.OverrideAction.Name(event.action).removeprefix("OVERRIDE_ACTION_").lower()
        metrics.OVERRIDES_APPLIED.labels(archetype_name(event.archetype), action).inc()
        log.info(
            "routing override applied",
            extra={
                "fields": {
                    "audit": "routing_override",
                    "override_id": event.override_id,
                    "event_id": event.meta.event_id,
                    "scope": override_scope(event),
                    "archetype": archetype_name(event.archetype),
                    "action": action,
                    "route": route_name(event.route) if event.route else "",
                    "reason": event.reason,
                    "issued_by": event.issued_by,
                }
            },
        )
