"""The demo bank's synthetic records, generated from the demo's tickets and the tenant's scenario
file (`tenants/demo-bank/systems/scenarios.yaml`; its header explains the format).

Each ticket's true intent picks one of the intent's situations, and the ticket's customer gets that
situation's records. The draw is seeded by (seed, customer, intent, how many times that customer
has that intent), not by the ticket id, so two runs of the demo with the same tickets give the same
records whatever their run ids. Customers are the CRM's (tooling/sample_data/sample_crm.json);
a ticket from a customer the CRM does not know gets nothing: the account system does not know them
either.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from tooling.sample_data import SAMPLE_CRM_PATH

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS_PATH = REPO_ROOT / "tenants" / "demo-bank" / "systems" / "scenarios.yaml"
# Fields of a situation's record spec that are not copied onto the record.
_SPEC_ONLY = {"hours_ago", "card", "expected_delivery_hours"}


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the file and the place."""


@dataclass(frozen=True)
class SeedTicket:
    ticket_id: str
    customer_id: str
    intent: str  # the ticket's true intent (the demo's label)


@dataclass
class Bank:
    """Everything the account system serves, by customer id where it belongs to one."""

    now: datetime
    customers: dict[str, dict] = field(default_factory=dict)
    # a customer's email address (lower case) -> their id: channels name the customer by address
    emails: dict[str, str] = field(default_factory=dict)
    cards: dict[str, list[dict]] = field(default_factory=dict)
    transactions: dict[str, list[dict]] = field(default_factory=dict)
    events: dict[str, list[dict]] = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    # ticket id -> {"customer_id", "intent", "case"}: the situation each ticket was given.
    truth: dict[str, dict] = field(default_factory=dict)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_scenarios(path: Path = SCENARIOS_PATH) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("situations"), dict):
        raise ScenarioError(f"{path}: needs a `situations` mapping of intent -> list of situations")
    for intent, options in raw["situations"].items():
        if not isinstance(options, list) or not options:
            raise ScenarioError(f"{path}: situations.{intent}: a non-empty list of situations")
        for index, option in enumerate(options):
            if not isinstance(option, dict) or "case" not in option:
                raise ScenarioError(f"{path}: situations.{intent}.{index}: each situation names its `case`")
            for name in option.get("incidents", []):
                if name not in raw.get("incidents", {}):
                    raise ScenarioError(f"{path}: situations.{intent}.{index}.incidents: no incident {name!r}")
            for name in option.get("changes", []):
                if name not in raw.get("changes", {}):
                    raise ScenarioError(f"{path}: situations.{intent}.{index}.changes: no change {name!r}")
    return raw


def load_crm(path: Path = SAMPLE_CRM_PATH) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _draw(value: Any, rng: random.Random) -> Any:
    """[low, high] numbers: one between them; a list of words: one of them; else the value."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return rng.uniform(float(value[0]), float(value[1]))
    if isinstance(value, list) and value:
        return rng.choice(value)
    return value


def _money(value: Any) -> str:
    return f"{float(value):.2f}"


def _record_id(prefix: str, rng: random.Random) -> str:
    return f"{prefix}-{rng.randrange(16 ** 10):010x}"


class _Builder:
    def __init__(self, scenarios: dict, crm: dict[str, dict], seed: int, now: datetime) -> None:
        self.scenarios = scenarios
        self.crm = crm
        self.seed = seed
        self.bank = Bank(now=now)
        self.currency = str(scenarios.get("currency", "EUR"))

    def at(self, hours_ago: float) -> str:
        return iso(self.bank.now - timedelta(hours=hours_ago))

    def customer(self, customer_id: str) -> dict | None:
        if customer_id in self.bank.customers:
            return self.bank.customers[customer_id]
        known = self.crm.get(customer_id)
        if known is None:
            return None
        rng = random.Random(f"{self.seed}:customer:{customer_id}")
        defaults = self.scenarios.get("customer_defaults", {})
        state = known.get("account_state", {})
        since = state.get("customer_since", "2020-01-01")
        record = {
            "id": customer_id,
            "tier": known.get("tier", "standard"),
            "segment": known.get("segment", ""),
            "status": state.get("account_status", "active"),
            "kyc": state.get("kyc", "verified"),
            "created_at": f"{since}T09:00:00Z",
            "updated_at": self.at(rng.uniform(24, 2000)),
            "limits": dict(defaults.get("limits", {})),
            "balance": {"available": _money(_draw(defaults.get("balance", [100, 1000]), rng)), "currency": self.currency},
        }
        self.bank.customers[customer_id] = record
        for email in known.get("emails") or []:
            self.bank.emails.setdefault(str(email).strip().lower(), customer_id)
        self.bank.cards[customer_id] = []
        self.bank.transactions[customer_id] = []
        self.bank.events[customer_id] = []
        if defaults.get("card"):
            self.add_card(customer_id, defaults["card"], rng)
        return record

    def current_card(self, customer_id: str) -> dict | None:
        cards = self.bank.cards.get(customer_id) or []
        return max(cards, key=lambda card: card["created_at"]) if cards else None

    def add_card(self, customer_id: str, spec: dict, rng: random.Random) -> dict:
        hours_ago = float(_draw(spec.get("hours_ago", [100, 1000]), rng))
        card = {"id": _record_id("card", rng), "last4": f"{rng.randrange(10000):04d}",
                "created_at": self.at(hours_ago), "updated_at": self.at(hours_ago)}
        card |= {k: _draw(v, rng) for k, v in spec.items() if k not in _SPEC_ONLY}
        if "expected_delivery_hours" in spec:
            card["expected_delivery"] = self.at(hours_ago - float(spec["expected_delivery_hours"]))
        self.bank.cards[customer_id].append(card)
        return card

    def record(self, customer_id: str, spec: dict, prefix: str, rng: random.Random) -> dict:
        hours_ago = float(_draw(spec.get("hours_ago", [1, 48]), rng))
        record = {"id": _record_id(prefix, rng), "created_at": self.at(hours_ago), "updated_at": self.at(hours_ago)}
        for key, value in spec.items():
            if key in _SPEC_ONLY:
                continue
            drawn = _draw(value, rng)
            record[key] = _money(drawn) if key in ("amount", "dispensed_amount", "fee") else (
                f"{drawn:.2f}" if isinstance(drawn, float) else drawn)
        if spec.get("card") == "current":
            card = self.current_card(customer_id)
            if card is not None:
                record["card_id"], record["card_last4"] = card["id"], card["last4"]
        if prefix == "tx":
            record.setdefault("currency", self.currency)
        return record

    def shared(self, kind: str, name: str) -> None:
        table = self.bank.incidents if kind == "incidents" else self.bank.changes
        if any(item["name"] == name for item in table):
            return
        spec = self.scenarios[kind][name]
        moment = self.at(float(spec.get("hours_ago", 1)))
        item = {"id": f"{'inc' if kind == 'incidents' else 'chg'}-{name.replace('_', '-')}", "name": name}
        item |= {k: v for k, v in spec.items() if k != "hours_ago"}
        if kind == "incidents":
            item |= {"status": "open", "started_at": moment, "created_at": moment}
        else:
            item |= {"created_at": moment}
        table.append(item)

    def apply(self, ticket: SeedTicket, occurrence: int) -> None:
        options = self.scenarios["situations"].get(ticket.intent)
        customer = self.customer(ticket.customer_id)
        if not options or customer is None:
            return
        rng = random.Random(f"{self.seed}:{ticket.customer_id}:{ticket.intent}:{occurrence}")
        situation = rng.choices(options, weights=[float(o.get("weight", 1)) for o in options])[0]
        customer.update(situation.get("customer", {}))
        for spec in situation.get("cards", []):
            self.add_card(ticket.customer_id, spec, rng)
        for spec in situation.get("transactions", []):
            self.bank.transactions[ticket.customer_id].append(self.record(ticket.customer_id, spec, "tx", rng))
        for spec in situation.get("events", []):
            self.bank.events[ticket.customer_id].append(self.record(ticket.customer_id, spec, "evt", rng))
        for name in situation.get("incidents", []):
            self.shared("incidents", name)
        for name in situation.get("changes", []):
            self.shared("changes", name)
        self.bank.truth[ticket.ticket_id] = {"customer_id": ticket.customer_id, "intent": ticket.intent,
                                             "case": situation["case"]}


def generate(tickets: list[SeedTicket], scenarios: dict, *, seed: int = 7, crm: dict[str, dict] | None = None,
             now: datetime | None = None) -> Bank:
    builder = _Builder(scenarios, load_crm() if crm is None else crm, seed, now or datetime.now(timezone.utc))
    for customer_id in sorted(builder.crm):
        builder.customer(customer_id)
    seen: dict[tuple[str, str], int] = {}
    for ticket in tickets:
        key = (ticket.customer_id, ticket.intent)
        seen[key] = seen.get(key, 0) + 1
        builder.apply(ticket, seen[key])
    return builder.bank


def read_tickets(path: Path) -> list[SeedTicket]:
    """JSON lines {"id", "customer_id", "label"} (the demo's tickets: tooling/round_trip.py)."""
    tickets = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            tickets.append(SeedTicket(str(record["id"]), str(record["customer_id"]), str(record.get("label", ""))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ScenarioError(f"{path}:{number}: a ticket is {{id, customer_id, label}}: {exc}") from exc
    return tickets


def write_tickets(path: Path, tickets: list) -> Path:  # noqa: ANN001 - tooling.round_trip.DemoTicket
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": t.id, "customer_id": t.customer_id, "label": t.label}) + "\n"
                            for t in tickets), encoding="utf-8")
    return path
