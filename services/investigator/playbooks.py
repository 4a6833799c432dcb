"""Investigation playbooks: a tenant's data (`tenants/<tenant>/playbooks/*.yaml`), not code.

A playbook names the intents (or archetypes) it applies to, the lookups to run (which system,
which records, over which window, keyed by the ticket's customer and its identifiers), which
record fields become facts, and rules that map conditions on those facts to a hypothesis, with the
sentence a person reads. It asks for the minimum evidence that settles the case, not everything.

    name: transfers
    intents: [pending_transfer, failed_transfer]
    lookups:
      - name: transfer
        source: transactions               # account | transactions | product_events | changes | incidents
        kinds: [transfer]                  # record kinds the system is asked for
        window_hours: 336
        identifiers: {transaction_id: id}  # a normalized identifier kind -> the record field it must match
        where: {status: [pending, held]}   # only records whose field has one of these values
        describe: the customer's recent transfers
        facts: {amount: amount, status: status, hold_reason: hold_reason,
                age_hours: {field: created_at, transform: hours_since}}
        summary: "The transfer of {amount} {currency} is {status}."
        not_found: "No transfer in the last 14 days."
    rules:
      - name: new_payee_check
        when:
          - {fact: transfer.hold_reason, equals: new_payee_check}
        hypothesis: expected_behaviour
        rejects: [product_defect]
        summary: "The transfer of {transfer.amount} is held for a new-payee check, as for every first transfer."

Every lookup's finding carries the facts `found` ("true"/"false") and `count` (matching records)
besides the ones it names. Rules are tried in order: the first that matches settles the case type;
a later one that matches with another hypothesis is reported as uncertain. A file that breaks the
schema is refused with its name and the field (PlaybookError).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.systems import SystemName

Hypothesis = Literal["expected_behaviour", "configuration_mistake", "product_defect", "incident", "policy_exception"]
CASE_TYPES: dict[str, int] = {
    "expected_behaviour": ev.CASE_TYPE_EXPECTED_BEHAVIOUR,
    "configuration_mistake": ev.CASE_TYPE_CONFIGURATION_MISTAKE,
    "product_defect": ev.CASE_TYPE_PRODUCT_DEFECT,
    "incident": ev.CASE_TYPE_INCIDENT,
    "policy_exception": ev.CASE_TYPE_POLICY_EXCEPTION,
}
HYPOTHESIS_WORDS = {
    "expected_behaviour": "expected behaviour",
    "configuration_mistake": "a customer or configuration mistake",
    "product_defect": "a product defect",
    "incident": "an incident",
    "policy_exception": "a policy exception",
}
# Facts every finding carries, whatever its lookup names.
IMPLICIT_FACTS = ("found", "count")
# Placeholders a lookup's sentences may use besides its facts.
LOOKUP_PLACEHOLDERS = ("customer_id", "window_hours", "window_days", "describe")
ACCOUNT_RESOURCES = ("customer", "cards")

_NAME = r"^[a-z][a-z0-9_]*$"


class PlaybookError(ValueError):
    """A playbook file cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FactSpec(_Strict):
    field: str  # dotted path into the record ("limits.daily_atm")
    # value: as recorded; hours_since: hours from that timestamp to now; date: the day only
    transform: Literal["value", "hours_since", "date"] = "value"


class Lookup(_Strict):
    name: str = Field(pattern=_NAME)
    source: SystemName
    resource: str = ""  # account system: "customer" (default) or "cards"
    kinds: list[str] = Field(default_factory=list)
    window_hours: float | None = Field(default=None, gt=0)
    identifiers: dict[str, str] = Field(default_factory=dict)
    where: dict[str, list[str]] = Field(default_factory=dict)
    describe: str
    facts: dict[str, str | FactSpec] = Field(default_factory=dict)
    summary: str
    not_found: str = ""
    observed_at: str = "created_at"
    record_id: str = "id"
    # For the agents only: the finding reaches the packet and the workspace but never a reply to
    # the customer (the bank's own deploys and configuration changes, say).
    internal: bool = False

    @field_validator("facts")
    @classmethod
    def _fact_names(cls, facts: dict[str, str | FactSpec]) -> dict[str, str | FactSpec]:
        for name in facts:
            if not re.match(_NAME, name):
                raise ValueError(f"fact name {name!r} must be lower_snake_case")
            if name in IMPLICIT_FACTS:
                raise ValueError(f"fact name {name!r} is reserved (every finding carries it)")
        return facts

    @model_validator(mode="after")
    def _resource_fits_source(self) -> "Lookup":
        if self.source == "account":
            if (self.resource or "customer") not in ACCOUNT_RESOURCES:
                raise ValueError(f"resource must be one of {', '.join(ACCOUNT_RESOURCES)} for the account system")
        elif self.resource:
            raise ValueError(f"resource is for the account system only, not {self.source}")
        known = set(self.facts) | set(IMPLICIT_FACTS) | set(LOOKUP_PLACEHOLDERS)
        for label, template in (("summary", self.summary), ("not_found", self.not_found)):
            for placeholder in _placeholders(template, label):
                if placeholder not in known:
                    raise ValueError(f"{label} uses {{{placeholder}}}, which is not a fact of this lookup")
        return self

    def fact_specs(self) -> dict[str, FactSpec]:
        return {name: spec if isinstance(spec, FactSpec) else FactSpec(field=spec) for name, spec in self.facts.items()}


class Condition(_Strict):
    fact: str  # "<lookup>.<fact>"
    equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> "Condition":
        tests = [name for name in ("equals", "in_", "not_in", "above", "below") if getattr(self, name) is not None]
        if len(tests) != 1:
            raise ValueError("a condition has exactly one of equals, in, not_in, above, below")
        if self.fact.count(".") != 1:
            raise ValueError(f"fact {self.fact!r} must read <lookup>.<fact>")
        return self

    @property
    def lookup(self) -> str:
        return self.fact.split(".", 1)[0]

    @property
    def fact_name(self) -> str:
        return self.fact.split(".", 1)[1]


class Rule(_Strict):
    name: str = Field(pattern=_NAME)
    when: list[Condition] = Field(min_length=1)
    hypothesis: Hypothesis
    rejects: list[Hypothesis] = Field(default_factory=list)
    summary: str
    # The lookup whose finding the summary replaces; default: the first one the summary quotes (the
    # record the sentence is about), else the first one the conditions name.
    finding: str = ""


class Playbook(_Strict):
    name: str = Field(pattern=_NAME)
    intents: list[str] = Field(default_factory=list)
    archetypes: list[Literal["repetitive", "faq_bounded", "account_specific"]] = Field(default_factory=list)
    lookups: list[Lookup] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Playbook":
        if not self.intents and not self.archetypes:
            raise ValueError("a playbook applies to at least one intent or archetype")
        lookups = {lookup.name: lookup for lookup in self.lookups}
        if len(lookups) != len(self.lookups):
            raise ValueError("lookup names must be unique")
        for index, rule in enumerate(self.rules):
            where = f"rules.{index}"
            for position, condition in enumerate(rule.when):
                lookup = lookups.get(condition.lookup)
                if lookup is None:
                    raise ValueError(f"{where}.when.{position}.fact: no lookup named {condition.lookup!r}")
                if condition.fact_name not in set(lookup.facts) | set(IMPLICIT_FACTS):
                    raise ValueError(f"{where}.when.{position}.fact: lookup {lookup.name!r} has no fact "
                                     f"{condition.fact_name!r}")
            if rule.finding and rule.finding not in lookups:
                raise ValueError(f"{where}.finding: no lookup named {rule.finding!r}")
            for placeholder in _placeholders(rule.summary, f"{where}.summary"):
                lookup_name, _, fact = placeholder.partition(".")
                lookup = lookups.get(lookup_name)
                if lookup is None or fact not in set(lookup.facts) | set(IMPLICIT_FACTS):
                    raise ValueError(f"{where}.summary: {{{placeholder}}} is not <lookup>.<fact> of this playbook")
        return self

    def rule_finding(self, rule: Rule) -> str:
        if rule.finding:
            return rule.finding
        quoted = [name.partition(".")[0] for name in _placeholders(rule.summary, rule.name)]
        return quoted[0] if quoted else rule.when[0].lookup


def _placeholders(template: str, label: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise ValueError(f"{label}: not a sentence template: {exc}") from exc


@dataclass
class TenantPlaybooks:
    """One tenant's playbooks, found by intent first, then by archetype."""

    by_intent: dict[str, Playbook] = field(default_factory=dict)
    by_archetype: dict[str, Playbook] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # playbook name -> its file

    def for_ticket(self, intent: str, archetype: str) -> Playbook | None:
        return self.by_intent.get(intent) or self.by_archetype.get(archetype)

    def __len__(self) -> int:
        return len(self.files)


def parse_playbook(text: str, origin: str) -> Playbook:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{origin}: not YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PlaybookError(f"{origin}: a playbook is a mapping (name, intents, lookups, rules)")
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise PlaybookError(f"{origin}: {problems}") from exc


def load_playbooks(folder: Path) -> TenantPlaybooks:
    """Every `*.yaml` in `folder` (missing folder: none). An intent or archetype claimed by two
    files, or two playbooks with one name, is an error naming both files."""
    found = TenantPlaybooks()
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.yaml")):
        playbook = parse_playbook(path.read_text(encoding="utf-8"), str(path))
        if playbook.name in found.files:
            raise PlaybookError(f"{path}: name: {playbook.name!r} is already the name of {found.files[playbook.name]}")
        for key, table in [(intent, found.by_intent) for intent in playbook.intents] + [
                (archetype, found.by_archetype) for archetype in playbook.archetypes]:
            if key in table:
                raise PlaybookError(f"{path}: {key!r} is already covered by {found.files[table[key].name]}")
            table[key] = playbook
        found.files[playbook.name] = path
    return found
