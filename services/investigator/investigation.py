"""Running a playbook for one ticket: its lookups at once through the tenant's connectors, the
whole bounded by one deadline; the answers as findings; the case type settled by the playbook's
rules; completeness, time to first evidence and what stays uncertain.

Pure of gRPC and Kafka: the servicer decodes the request into a `Subject` and encodes nothing.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.investigator import metrics
from services.investigator.connectors import LookupFailed, Record, TenantConnectors
from services.investigator.connectors.http import seconds
from services.investigator.playbooks import CASE_TYPES, HYPOTHESIS_WORDS, Condition, Lookup, Playbook, Rule

# Sources whose records belong to one customer: without a customer id there is nothing to ask.
CUSTOMER_SCOPED = ("account", "transactions", "product_events")
UNKNOWN = "unknown"
_CODE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


@dataclass(frozen=True)
class Subject:
    """What the investigation is about, taken from the ticket and its normalized form."""

    tenant_id: str
    ticket_id: str
    customer_id: str
    archetype: str  # "account_specific", ... ("unspecified" when the classifier gave none)
    identifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> values, as normalized


@dataclass
class _Answer:
    records: list[Record] | None  # None: not available
    reason: str = ""
    answered_ms: float = 0.0


def fetch(lookup: Lookup, subject: Subject, connectors: TenantConnectors, *, deadline: float,
          now: datetime) -> list[Record]:
    """The records one lookup asks its system for (before `where` and identifiers narrow them)."""
    if lookup.source in CUSTOMER_SCOPED and not subject.customer_id:
        raise LookupFailed("the ticket names no customer", outcome="refused")
    since = now - timedelta(hours=lookup.window_hours) if lookup.window_hours else None
    kinds = tuple(lookup.kinds)
    if lookup.source == "account":
        if connectors.account is None:
            raise LookupFailed("the account system is not connected", outcome="refused")
        if (lookup.resource or "customer") == "customer":
            customer = connectors.account.customer(subject.customer_id, deadline=deadline)
            return [customer] if customer is not None else []
        return connectors.account.cards(subject.customer_id, deadline=deadline)
    if lookup.source == "transactions":
        if connectors.transactions is None:
            raise LookupFailed("the transactions system is not connected", outcome="refused")
        return connectors.transactions.transactions(subject.customer_id, kinds=kinds, since=since, deadline=deadline)
    if lookup.source == "product_events":
        if connectors.product_events is None:
            raise LookupFailed("product events are not connected", outcome="refused")
        return connectors.product_events.events(subject.customer_id, kinds=kinds, since=since, deadline=deadline)
    if lookup.source == "changes":
        if connectors.changes is None:
            raise LookupFailed("the change log is not connected", outcome="refused")
        return connectors.changes.changes(kinds=kinds, since=since, deadline=deadline)
    if connectors.incidents is None:
        raise LookupFailed("the status source is not connected", outcome="refused")
    return connectors.incidents.open_incidents(deadline=deadline)


def field_value(record: Record, path: str) -> object:
    value: object = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(as_text(item) for item in value)
    return str(value)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def matching(lookup: Lookup, records: list[Record], subject: Subject) -> tuple[list[Record], list[str]]:
    """Records that pass `where` and, when the ticket carries them, its identifiers; newest first.
    An identifier that matches no record is ignored (the customer may have mistyped it) and said."""
    kept = [r for r in records
            if all(as_text(field_value(r, name)) in allowed for name, allowed in lookup.where.items())]
    unmatched: list[str] = []
    for kind, record_field in lookup.identifiers.items():
        wanted = {value.strip().lower() for value in subject.identifiers.get(kind, ()) if value.strip()}
        if not wanted:
            continue
        narrowed = [r for r in kept if as_text(field_value(r, record_field)).strip().lower() in wanted]
        if narrowed:
            kept = narrowed
        else:
            unmatched.append(f"no record in {lookup.describe} matches the {kind.replace('_', ' ')} "
                             f"{', '.join(sorted(wanted))} the customer gave")
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    kept.sort(key=lambda r: parse_time(field_value(r, lookup.observed_at)) or epoch, reverse=True)
    return kept, unmatched


def pinned(lookup: Lookup, records: list[Record], subject: Subject) -> list[tk.Identifier]:
    """The identifiers of the one record a lookup found, for the kinds it names and the ticket lacks:
    with one candidate in the window there is nothing to ask the customer. Several candidates pin
    nothing (the finding describes the newest, and which one the customer means stays open)."""
    if len(records) != 1:
        return []
    return [tk.Identifier(kind=kind, value=as_text(field_value(records[0], record_field)))
            for kind, record_field in lookup.identifiers.items()
            if not subject.identifiers.get(kind) and as_text(field_value(records[0], record_field))]


def facts_of(lookup: Lookup, records: list[Record], now: datetime) -> dict[str, str]:
    facts = {"found": "true" if records else "false", "count": str(len(records))}
    if not records:
        return facts
    latest = records[0]
    for name, spec in lookup.fact_specs().items():
        value = field_value(latest, spec.field)
        if spec.transform == "hours_since":
            moment = parse_time(value)
            text = f"{(now - moment).total_seconds() / 3600:.1f}" if moment else ""
        elif spec.transform == "date":
            moment = parse_time(value)
            text = moment.date().isoformat() if moment else ""
        else:
            text = as_text(value)
        if text:
            facts[name] = text
    return facts


class _Readable(dict):
    """Facts for a sentence: a code such as new_payee_check reads "new payee check"; a fact the
    record lacks reads "unknown"."""

    def __missing__(self, key: str) -> str:
        return UNKNOWN

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key) if key in self else self.__missing__(key)
        return value.replace("_", " ") if isinstance(value, str) and _CODE.match(value) else value


class _Lookup:
    """One lookup's facts for a rule's sentence: {transfer.amount} reads the `amount` fact."""

    __slots__ = ("_facts",)

    def __init__(self, facts: dict[str, str]) -> None:
        self._facts = _Readable(facts)

    def __getattr__(self, key: str) -> str:
        return self._facts[key]


def render(template: str, values: dict) -> str:
    return template.format_map(_Readable(values))


def _holds(condition: Condition, facts: dict[str, str] | None) -> bool:
    if facts is None:
        return False  # the lookup did not answer: nothing can be concluded from it
    value = facts.get(condition.fact_name)
    if value is None:
        return False
    if condition.equals is not None:
        return value.lower() == condition.equals.lower()
    if condition.in_ is not None:
        return value.lower() in {option.lower() for option in condition.in_}
    if condition.not_in is not None:
        return value.lower() not in {option.lower() for option in condition.not_in}
    try:
        number = float(value)
    except ValueError:
        return False
    if condition.above is not None:
        return number > condition.above
    return condition.below is not None and number < condition.below


def matched_rules(playbook: Playbook, facts_by_lookup: dict[str, dict[str, str] | None]) -> list[Rule]:
    return [rule for rule in playbook.rules
            if all(_holds(c, facts_by_lookup.get(c.lookup)) for c in rule.when)]


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def settle(playbook: Playbook, findings: dict[str, ev.Finding],
           facts_by_lookup: dict[str, dict[str, str] | None]) -> tuple[int, list[str]]:
    """Apply the first matching rule to the findings (supports, rejects, its sentence); returns the
    case type and what the rules leave uncertain."""
    matched = matched_rules(playbook, facts_by_lookup)
    uncertain: list[str] = []
    if not matched:
        if playbook.rules:
            options = list(dict.fromkeys(HYPOTHESIS_WORDS[rule.hypothesis] for rule in playbook.rules))
            uncertain.append(f"The evidence does not settle whether this is {_either(options)}.")
        return ev.CASE_TYPE_UNSPECIFIED, uncertain
    settled = matched[0]
    case_type = CASE_TYPES[settled.hypothesis]
    concluding_lookup = playbook.rule_finding(settled)
    for lookup_name in dict.fromkeys([*(c.lookup for c in settled.when), concluding_lookup]):
        finding = findings[lookup_name]
        if case_type not in finding.supports:
            finding.supports.append(case_type)
        for rejected in settled.rejects:
            if CASE_TYPES[rejected] not in finding.rejects:
                finding.rejects.append(CASE_TYPES[rejected])
    namespaces = {name: _Lookup(facts or {}) for name, facts in facts_by_lookup.items()}
    concluding = findings[concluding_lookup]
    concluding.summary = render(settled.summary, namespaces)
    concluding.concludes = True
    for other in matched[1:]:
        if other.hypothesis != settled.hypothesis:
            uncertain.append(f"The evidence also fits {HYPOTHESIS_WORDS[other.hypothesis]} ({other.name.replace('_', ' ')}).")
            break
    return case_type, uncertain


def _capitalised(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(timezone.utc).replace(tzinfo=None))
    return stamp


def investigate(playbook: Playbook, subject: Subject, connectors: TenantConnectors, *, deadline_s: float,
                executor: Executor, clock: Callable[[], float] = time.monotonic,
                now: datetime | None = None) -> ev.Investigation:
    """Run `playbook` for `subject`; returns within `deadline_s` (plus bookkeeping), whatever the
    systems do: a lookup still running then is reported as not available."""
    started = clock()
    deadline = started + deadline_s
    now = now or datetime.now(timezone.utc)

    def timed(lookup: Lookup) -> _Answer:
        try:
            records = fetch(lookup, subject, connectors, deadline=deadline, now=now)
        except LookupFailed as exc:
            return _Answer(None, exc.reason)
        return _Answer(records, answered_ms=(clock() - started) * 1000.0)

    futures: dict[str, Future[_Answer]] = {lookup.name: executor.submit(timed, lookup) for lookup in playbook.lookups}
    wait(list(futures.values()), timeout=max(0.0, deadline - clock()))

    findings: dict[str, ev.Finding] = {}
    facts_by_lookup: dict[str, dict[str, str] | None] = {}
    uncertain: list[str] = []
    answered: list[float] = []
    identified: list[tk.Identifier] = []
    for lookup in playbook.lookups:
        future = futures[lookup.name]
        answer = future.result() if future.done() else None
        placeholders = {"customer_id": subject.customer_id or UNKNOWN, "describe": lookup.describe,
                        "window_hours": seconds(lookup.window_hours or 0),
                        "window_days": seconds((lookup.window_hours or 0) / 24)}
        if answer is None or answer.records is None:
            reason = answer.reason if answer is not None else f"timed out after {seconds(deadline_s)} s"
            if answer is None:
                metrics.LOOKUPS.labels(lookup.source, "deadline").inc()
            findings[lookup.name] = ev.Finding(
                source=lookup.source, lookup=lookup.name, available=False, unavailable_reason=reason,
                internal=lookup.internal, summary=_capitalised(f"{lookup.describe}: not available ({reason})."))
            facts_by_lookup[lookup.name] = None
            uncertain.append(_capitalised(f"{lookup.describe} could not be checked ({reason})."))
            continue
        answered.append(answer.answered_ms)
        records, unmatched = matching(lookup, answer.records, subject)
        uncertain.extend(_capitalised(sentence + ".") for sentence in unmatched)
        facts = facts_of(lookup, records, now)
        facts_by_lookup[lookup.name] = facts
        finding = ev.Finding(source=lookup.source, lookup=lookup.name, available=True, facts=facts,
                             internal=lookup.internal)
        identified += pinned(lookup, records, subject)
        if records:
            finding.summary = render(lookup.summary, placeholders | facts)
            finding.record_id = as_text(field_value(records[0], lookup.record_id))
            observed = _timestamp(parse_time(field_value(records[0], lookup.observed_at)))
            if observed is not None:
                finding.observed_at.CopyFrom(observed)
        else:
            finding.summary = render(lookup.not_found or f"Nothing found among {lookup.describe}.", placeholders | facts)
        findings[lookup.name] = finding

    case_type, unsettled = settle(playbook, findings, facts_by_lookup)
    elapsed_ms = (clock() - started) * 1000.0
    completeness = len(answered) / len(playbook.lookups)
    first_evidence_ms = min(answered) if answered else 0.0
    if answered:
        metrics.FIRST_EVIDENCE_SECONDS.labels(subject.archetype).observe(first_evidence_ms / 1000.0)
    metrics.COMPLETENESS.labels(subject.archetype).observe(completeness)
    metrics.INVESTIGATIONS.labels("settled" if case_type else "unsettled").inc()
    return ev.Investigation(
        playbook=playbook.name,
        findings=[findings[lookup.name] for lookup in playbook.lookups],
        case_type=case_type,
        completeness=completeness,
        first_evidence_ms=first_evidence_ms,
        elapsed_ms=elapsed_ms,
        uncertain=unsettled + uncertain,
        identified=identified,
    )
