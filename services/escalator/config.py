"""The escalator's configuration: `escalation.yaml` (queues, case types, incident detection, proposed
tools) and `action_limits.yaml` (the tool allow-list and its limits), both shipped in the package
and replaceable by a path."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

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
    # How far back a starting escalator re-reads tickets.classified to rebuild its windows.
    replay_s: float = 21600.0


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
    proposed_tools: Mapping[str, str]
    # How long a ticket answered automatically is remembered: a new message under its id within
    # that time is the customer writing back (answered.py). 0: only the channel's history says so.
    answered_memory_s: float = 604800.0

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
                    replay_s=float(incidents.get("replay_s", 21600)),
                ),
                proposed_tools={str(k): str(v) for k, v in (data.get("proposed_tools") or {}).items()},
                answered_memory_s=float(data.get("answered_memory_s", 604800)),
            )
        except KeyError as exc:
            raise ConfigError(f"escalation config lacks {exc.args[0]!r}") from exc
        if config.incidents.min_tickets < 2 or config.incidents.window_s <= 0:
            raise ConfigError("incidents need min_tickets >= 2 and a positive window_s")
        if config.incidents.replay_s < 0:
            raise ConfigError("incidents.replay_s must be >= 0 (0: no replay at start)")
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
