"""The escalator's configuration: `escalation.yaml` (queues, case types, incident detection, proposed
tools, tenants' opt-ins to answer on evidence) and `action_limits.yaml` (the tool allow-list and its limits), both shipped in the package
and replaceable by a path."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

DEFAULT_ESCALATION_CONFIG = "escalation.yaml"
DEFAULT_ACTION_LIMITS = "action_limits.yaml"

CASE_TYPES = {
    "expected_behaviour": ev.CASE_TYPE_EXPECTED_BEHAVIOUR,
    "configuration_mistake": ev.CASE_TYPE_CONFIGURATION_MISTAKE,
    "product_defect": ev.CASE_TYPE_PRODUCT_DEFECT,
    "incident": ev.CASE_TYPE_INCIDENT,
    "policy_exception": ev.CASE_TYPE_POLICY_EXCEPTION,
}
TIERS = {
    "standard": tk.CUSTOMER_TIER_STANDARD,
    "premium": tk.CUSTOMER_TIER_PREMIUM,
    "enterprise": tk.CUSTOMER_TIER_ENTERPRISE,
}


class ConfigError(ValueError):
    """The configuration file is malformed; raised at start-up."""


def risk_flag_name(flag: int) -> str:
    """`RISK_FLAG_BILLING_DISPUTE` -> `billing_dispute`."""
    return tk.RiskFlag.Name(flag).removeprefix("RISK_FLAG_").lower()


def tier_name(tier: int) -> str:
    return tk.CustomerTier.Name(tier).removeprefix("CUSTOMER_TIER_").lower()


def _risk_flag(name: str) -> int:
    try:
        return tk.RiskFlag.Value("RISK_FLAG_" + name.upper())
    except ValueError as exc:
        raise ConfigError(f"unknown risk flag {name!r}") from exc


def _case_type(name: str) -> int:
    if name not in CASE_TYPES:
        raise ConfigError(f"unknown case type {name!r}; expected one of {', '.join(CASE_TYPES)}")
    return CASE_TYPES[name]


def _tier(name: str) -> int:
    if name not in TIERS:
        raise ConfigError(f"unknown tier {name!r}; expected one of {', '.join(TIERS)}")
    return TIERS[name]


def _read_yaml(path: Path | None, default_name: str) -> dict[str, Any]:
    if path is None:
        text = resources.files(__package__).joinpath(default_name).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path or default_name}: expected a mapping at the top level")
    return data


@dataclass(frozen=True)
class IncidentConfig:
    window_s: float = 600.0
    min_tickets: int = 5
    intents: frozenset[str] = frozenset()
    # How long a ticket's link to its incident (and the fact that it was counted) is remembered.
    links_memory_s: float = 21600.0


ARCHETYPES = {
    "repetitive": tk.ARCHETYPE_REPETITIVE,
    "faq_bounded": tk.ARCHETYPE_FAQ_BOUNDED,
    "account_specific": tk.ARCHETYPE_ACCOUNT_SPECIFIC,
}
# The classifier's route reason names where an archetype's automation level came from; this is the
# ending of a level the routing policy file set (an override, such as a guardrail's pull-back to
# draft-for-review, names the override instead).
POLICY_FILE_ROUTE_SOURCE = "(policy file)"


@dataclass(frozen=True)
class FindingField:
    """Where a proposal's parameter comes from: a field of the one available finding of a source
    (and lookup) of the investigation: `record_id`, or the name of one of its facts."""

    source: str
    lookup: str = ""  # "": any lookup of the source
    field: str = "record_id"

    def value_in(self, findings: Sequence[ev.Finding]) -> str:
        """The value when exactly one available finding matches and has it; "" otherwise (none, or
        several: the evidence does not say which)."""
        matching = [f for f in findings if f.available and f.source == self.source
                    and (not self.lookup or f.lookup == self.lookup)]
        if len(matching) != 1:
            return ""
        found = matching[0]
        return (found.record_id if self.field == "record_id" else found.facts.get(self.field, "")).strip()


@dataclass(frozen=True)
class ProposedTool:
    """The tool proposed for an intent, and its parameters from the investigation's findings (never
    from the ticket's text)."""

    tool: str
    params_from_findings: Mapping[str, FindingField] = field(default_factory=dict)

    def params(self, investigation: ev.Investigation | None) -> dict[str, str]:
        findings = list(investigation.findings) if investigation is not None else []
        values = {name: where.value_in(findings) for name, where in self.params_from_findings.items()}
        return {name: value for name, value in values.items() if value}


def _proposed_tools(data: Any) -> Mapping[str, ProposedTool]:
    if not isinstance(data, dict):
        raise ConfigError("`proposed_tools` must map intents to a tool")
    tools: dict[str, ProposedTool] = {}
    for intent, spec in data.items():
        where = f"proposed_tools.{intent}"
        if isinstance(spec, str):
            tools[str(intent)] = ProposedTool(spec)
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("tool"), str):
            raise ConfigError(f"{where}: a tool name, or {{tool, params_from_findings}}")
        params: dict[str, FindingField] = {}
        for name, source in (spec.get("params_from_findings") or {}).items():
            if not isinstance(source, dict) or not source.get("source") or set(source) - {"source", "lookup", "field"}:
                raise ConfigError(f"{where}.params_from_findings.{name}: {{source, lookup, field}} with a source")
            params[str(name)] = FindingField(str(source["source"]), str(source.get("lookup", "")),
                                             str(source.get("field", "record_id")))
        tools[str(intent)] = ProposedTool(spec["tool"], params)
    return tools


@dataclass(frozen=True)
class EvidenceRouting:
    """A tenant's opt-in to answer an archetype's draft-for-review tickets automatically when the
    investigation settles them (escalation.yaml `tenants.<tenant>.archetypes.<archetype>.auto_respond_when`)."""

    case_types: tuple[int, ...]  # the case types the evidence may settle on
    min_evidence_completeness: float  # share of the playbook's lookups that must have answered
    max_evidence_age_s: float = 600.0  # evidence gathered longer ago than this is stale


def _evidence_routing(tenants: Any) -> Mapping[tuple[str, int], EvidenceRouting]:
    if not isinstance(tenants, dict):
        raise ConfigError("`tenants` must map tenant ids to their settings")
    rules: dict[tuple[str, int], EvidenceRouting] = {}
    for tenant, block in tenants.items():
        archetypes = (block or {}).get("archetypes") or {}
        if not isinstance(archetypes, dict):
            raise ConfigError(f"tenants.{tenant}.archetypes must map archetype names to settings")
        for name, settings in archetypes.items():
            if name not in ARCHETYPES:
                raise ConfigError(f"tenants.{tenant}: unknown archetype {name!r}; expected one of {', '.join(ARCHETYPES)}")
            when = (settings or {}).get("auto_respond_when")
            if when is None:
                continue
            where = f"tenants.{tenant}.archetypes.{name}.auto_respond_when"
            unknown = sorted(set(when) - {"case_types", "min_evidence_completeness", "max_evidence_age_s"})
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
            try:
                names = when["case_types"]
                rule = EvidenceRouting(
                    case_types=tuple(_case_type(str(name)) for name in ([names] if isinstance(names, str) else names)),
                    min_evidence_completeness=float(when["min_evidence_completeness"]),
                    max_evidence_age_s=float(when.get("max_evidence_age_s", 600)),
                )
            except KeyError as exc:
                raise ConfigError(f"{where} lacks {exc.args[0]!r}") from exc
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            if not rule.case_types:
                raise ConfigError(f"{where}: case_types names no case type")
            if not 0 < rule.min_evidence_completeness <= 1:
                raise ConfigError(f"{where}: min_evidence_completeness must be in (0, 1]")
            if rule.max_evidence_age_s <= 0:
                raise ConfigError(f"{where}: max_evidence_age_s must be > 0")
            rules[(str(tenant), ARCHETYPES[name])] = rule
    return rules


@dataclass(frozen=True)
class EscalationConfig:
    default_queue: str
    incident_queue: str
    risk_flag_queues: tuple[tuple[int, str], ...]  # in precedence order
    intent_queues: Mapping[str, str]
    default_case_type: int
    policy_exception_risk_flags: frozenset[int]
    intent_case_types: Mapping[str, int]
    incidents: IncidentConfig
    proposed_tools: Mapping[str, ProposedTool]  # intent -> the tool proposed when such a ticket is decided
    # How long a ticket answered automatically is remembered: a new message under its id within
    # that time is the customer writing back (answered.py). 0: only the channel's history says so.
    answered_memory_s: float = 604800.0
    # (tenant, archetype) -> when its draft-for-review tickets are answered on evidence; none by default.
    evidence_routing: Mapping[tuple[str, int], EvidenceRouting] = field(default_factory=dict)

    def evidence_rule(self, tenant: str, archetype: int) -> EvidenceRouting | None:
        return self.evidence_routing.get((tenant, archetype))

    @classmethod
    def load(cls, path: Path | None = None) -> "EscalationConfig":
        """The shipped `escalation.yaml`, or the file at `path`."""
        data = _read_yaml(path, DEFAULT_ESCALATION_CONFIG)
        try:
            incidents = data.get("incidents") or {}
            config = cls(
                default_queue=str(data["default_queue"]),
                incident_queue=str(data["incident_queue"]),
                risk_flag_queues=tuple(
                    (_risk_flag(flag), str(queue)) for flag, queue in (data.get("risk_flag_queues") or {}).items()
                ),
                intent_queues={str(k): str(v) for k, v in (data.get("intent_queues") or {}).items()},
                default_case_type=_case_type(str(data["default_case_type"])),
                policy_exception_risk_flags=frozenset(
                    _risk_flag(flag) for flag in data.get("policy_exception_risk_flags") or []
                ),
                intent_case_types={
                    str(k): _case_type(str(v)) for k, v in (data.get("intent_case_types") or {}).items()
                },
                incidents=IncidentConfig(
                    window_s=float(incidents.get("window_s", 600)),
                    min_tickets=int(incidents.get("min_tickets", 5)),
                    intents=frozenset(str(i) for i in incidents.get("intents") or []),
                    links_memory_s=float(incidents.get("links_memory_s", 21600)),
                ),
                proposed_tools=_proposed_tools(data.get("proposed_tools") or {}),
                answered_memory_s=float(data.get("answered_memory_s", 604800)),
                evidence_routing=_evidence_routing(data.get("tenants") or {}),
            )
        except KeyError as exc:
            raise ConfigError(f"escalation config lacks {exc.args[0]!r}") from exc
        if config.incidents.min_tickets < 2 or config.incidents.window_s <= 0:
            raise ConfigError("incidents need min_tickets >= 2 and a positive window_s")
        if config.incidents.links_memory_s < config.incidents.window_s:
            raise ConfigError("incidents.links_memory_s must be at least window_s")
        if config.answered_memory_s < 0:
            raise ConfigError("answered_memory_s must be >= 0 (0: remember no answered ticket)")
        return config


@dataclass(frozen=True)
class ToolLimits:
    """What one allow-listed tool may do. Amounts are in the account currency's major unit. Every tool
    needs the customer's confirmation: that is not configurable."""

    tool: str
    tiers: frozenset[int]
    max_per_customer_per_day: int
    params: frozenset[str]  # every parameter the tool accepts; anything else is refused
    required_params: frozenset[str]
    max_amount_by_tier: Mapping[int, Decimal]  # empty: the tool moves no money
    allowed_values: Mapping[str, frozenset[str]]  # e.g. plan -> {standard, premium}


@dataclass(frozen=True)
class ActionLimits:
    tools: Mapping[str, ToolLimits]
    principals: tuple[str, ...]  # prefixes of `requested_by` allowed to ask for an action
    confirmers: tuple[str, ...] = ("customer:", "agent:")  # prefixes of `confirmed_by`
    proposal_ttl_s: float = 86400.0  # a proposal not confirmed within this lapses

    @classmethod
    def load(cls, path: Path | None = None) -> "ActionLimits":
        data = _read_yaml(path, DEFAULT_ACTION_LIMITS)
        tools: dict[str, ToolLimits] = {}
        for name, spec in (data.get("tools") or {}).items():
            try:
                max_amount = {
                    _tier(tier): Decimal(str(amount)) for tier, amount in (spec.get("max_amount") or {}).items()
                }
            except InvalidOperation as exc:
                raise ConfigError(f"tool {name}: max_amount must be numbers") from exc
            required = frozenset(spec.get("required_params") or [])
            accepted = frozenset(spec.get("params") or []) | required
            if max_amount and "amount" not in required:
                raise ConfigError(f"tool {name}: a tool with max_amount must require `amount`")
            tools[str(name)] = ToolLimits(
                tool=str(name),
                tiers=frozenset(_tier(t) for t in spec.get("tiers") or []),
                max_per_customer_per_day=int(spec["max_per_customer_per_day"]),
                params=accepted,
                required_params=required,
                max_amount_by_tier=max_amount,
                allowed_values={
                    str(k): frozenset(str(v) for v in values) for k, values in (spec.get("allowed_values") or {}).items()
                },
            )
        principals = tuple(str(p) for p in data.get("principals") or [])
        confirmers = tuple(str(p) for p in data.get("confirmers") or [])
        if not tools or not principals or not confirmers:
            raise ConfigError("action limits need at least one tool, one principal and one confirmer prefix")
        if any(not prefix.strip() for prefix in principals + confirmers):
            raise ConfigError("an empty principal or confirmer prefix would let anyone in")
        proposal_ttl_s = float(data.get("proposal_ttl_s", 86400))
        if proposal_ttl_s <= 0:
            raise ConfigError("proposal_ttl_s must be > 0")
        return cls(tools=tools, principals=principals, confirmers=confirmers, proposal_ttl_s=proposal_ttl_s)
