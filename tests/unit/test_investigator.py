"""The investigator's pure parts: playbook schema, settlement, completeness, the deadline, the
connectors' retries and circuit breaker, the systems file."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.systems import BreakerSettings, SystemEndpoint, SystemsConfig, SystemsConfigError

from services.investigator.connectors import LookupFailed, TenantConnectors
from services.investigator.connectors.http import HttpSystem, HttpTransactionSystem
from services.investigator.handlers import Investigator
from services.investigator.investigation import Subject, investigate
from services.investigator.playbooks import PlaybookError, load_playbooks, parse_playbook

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)

PLAYBOOK = {
    "name": "movements",
    "intents": ["stuck_movement"],
    "lookups": [
        {"name": "customer", "source": "account", "describe": "the customer's account",
         "facts": {"status": "status"}, "summary": "The account is {status}.",
         "not_found": "Customer {customer_id} is not known."},
        {"name": "movement", "source": "transactions", "kinds": ["movement"], "window_hours": 48,
         "identifiers": {"transaction_id": "id"}, "describe": "the customer's movements",
         "facts": {"amount": "amount", "status": "status", "hold_reason": "hold_reason",
                   "age_hours": {"field": "created_at", "transform": "hours_since"}},
         "summary": "The movement of {amount} is {status}."},
        {"name": "incident", "source": "incidents", "where": {"component": ["movements"]},
         "describe": "open incidents", "facts": {"title": "title"}, "summary": "Open incident: {title}."},
    ],
    "rules": [
        {"name": "incident_delay", "hypothesis": "incident",
         "when": [{"fact": "movement.hold_reason", "equals": "processor_delay"},
                  {"fact": "incident.found", "equals": "true"}],
         "summary": "Delayed by {incident.title}."},
        {"name": "payee_check", "hypothesis": "expected_behaviour", "rejects": ["product_defect"],
         "when": [{"fact": "movement.hold_reason", "equals": "new_payee_check"}],
         "summary": "The movement of {movement.amount} is held for a {movement.hold_reason}."},
        {"name": "old_and_pending", "hypothesis": "product_defect",
         "when": [{"fact": "movement.status", "equals": "pending"}, {"fact": "movement.age_hours", "above": 24}],
         "summary": "Pending for {movement.age_hours} hours."},
    ],
}


def playbook(**changes):
    return parse_playbook(yaml.safe_dump(PLAYBOOK | changes), "movements.yaml")


class FakeSystems:
    """Connectors answering from lists; `slow` seconds of delay, or a failure reason, per system."""

    def __init__(self, customer=None, movements=(), incidents=(), *, slow=None, fail=None):
        self._customer = customer
        self._movements = list(movements)
        self._incidents = list(incidents)
        self._slow = slow or {}
        self._fail = fail or {}

    def _call(self, system, deadline, value):
        if system in self._fail:
            raise LookupFailed(self._fail[system])
        time.sleep(self._slow.get(system, 0))
        return value

    def customer(self, customer_id, *, deadline):
        return self._call("account", deadline, self._customer)

    def cards(self, customer_id, *, deadline):
        return self._call("account", deadline, [])

    def transactions(self, customer_id, *, kinds, since, deadline):
        return self._call("transactions", deadline, self._movements)

    def open_incidents(self, *, deadline):
        return self._call("incidents", deadline, self._incidents)

    def connectors(self):
        return TenantConnectors(account=self, transactions=self, incidents=self)


def at(hours_ago):
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


SUBJECT = Subject("bank", "t-1", "cust-1", "account_specific")


@pytest.fixture(scope="module")
def executor():
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool


def run(systems, executor, *, deadline_s=1.0, subject=SUBJECT, book=None):
    return investigate(book or playbook(), subject, systems.connectors(), deadline_s=deadline_s,
                       executor=executor, now=NOW)


# --- playbook schema


def test_the_shipped_playbooks_load_and_cover_every_account_specific_intent():
    books = load_playbooks(ROOT / "tenants" / "demo-bank" / "playbooks")
    archetypes = yaml.safe_load((ROOT / "services" / "classifier" / "archetypes.yaml").read_text())["intents"]
    account_specific = {intent for intent, archetype in archetypes.items() if archetype == "account_specific"}
    assert account_specific <= set(books.by_intent)
    assert books.for_ticket("an_intent_nobody_wrote", "account_specific").name == "account_specific"
    assert books.for_ticket("an_intent_nobody_wrote", "faq_bounded") is None


@pytest.mark.parametrize("change, expected", [
    ({"rules": [{"name": "r", "hypothesis": "incident", "when": [{"fact": "nowhere.status", "equals": "x"}],
                 "summary": "s"}]}, "rules.0.when.0.fact: no lookup named 'nowhere'"),
    ({"rules": [{"name": "r", "hypothesis": "incident", "when": [{"fact": "movement.colour", "equals": "x"}],
                 "summary": "s"}]}, "lookup 'movement' has no fact 'colour'"),
    ({"rules": [{"name": "r", "hypothesis": "a_guess", "when": [{"fact": "movement.status", "equals": "x"}],
                 "summary": "s"}]}, "rules.0.hypothesis"),
    ({"rules": [{"name": "r", "hypothesis": "incident", "when": [{"fact": "movement.status", "equals": "x",
                                                                  "above": 3}], "summary": "s"}]},
     "exactly one of equals, in, not_in, above, below"),
    ({"rules": [{"name": "r", "hypothesis": "incident", "when": [{"fact": "movement.status", "equals": "x"}],
                 "summary": "Because of {movement.weather}."}]}, "{movement.weather} is not <lookup>.<fact>"),
    ({"lookups": [PLAYBOOK["lookups"][0] | {"summary": "The account is {colour}."}]},
     "summary uses {colour}, which is not a fact of this lookup"),
    ({"lookups": [PLAYBOOK["lookups"][0] | {"source": "mainframe"}], "rules": []}, "lookups.0.source"),
    ({"intents": [], "archetypes": []}, "at least one intent or archetype"),
])
def test_a_broken_playbook_is_refused_naming_the_file_and_the_field(change, expected):
    with pytest.raises(PlaybookError) as error:
        playbook(**change)
    assert str(error.value).startswith("movements.yaml: ")
    assert expected in str(error.value)


def test_an_intent_in_two_files_names_both(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(PLAYBOOK | {"name": "other"}))
    with pytest.raises(PlaybookError, match=r"b\.yaml: 'stuck_movement' is already covered by .*a\.yaml"):
        load_playbooks(tmp_path)


# --- settlement, completeness, the deadline


def test_the_first_matching_rule_settles_the_case_and_writes_its_sentence(executor):
    systems = FakeSystems({"id": "cust-1", "status": "active"}, [
        {"id": "m-2", "kind": "movement", "amount": "120.00", "status": "held", "hold_reason": "new_payee_check",
         "created_at": at(3)},
        {"id": "m-1", "kind": "movement", "amount": "9.00", "status": "completed", "created_at": at(30)},
    ])
    result = run(systems, executor)
    assert result.playbook == "movements"
    assert result.case_type == ev.CASE_TYPE_EXPECTED_BEHAVIOUR
    customer, movement, incident = result.findings
    assert movement.record_id == "m-2" and movement.facts["count"] == "2" and movement.facts["age_hours"] == "3.0"
    assert movement.summary == "The movement of 120.00 is held for a new payee check."
    assert list(movement.supports) == [ev.CASE_TYPE_EXPECTED_BEHAVIOUR]
    assert list(movement.rejects) == [ev.CASE_TYPE_PRODUCT_DEFECT]
    assert movement.observed_at.ToDatetime(tzinfo=timezone.utc) == NOW - timedelta(hours=3)
    assert customer.summary == "The account is active." and not customer.supports
    assert incident.facts["found"] == "false"
    assert result.completeness == 1.0 and result.uncertain == []
    assert 0 < result.first_evidence_ms <= result.elapsed_ms


def test_the_rules_sentence_goes_on_the_record_it_quotes_and_is_marked_as_the_conclusion(executor):
    """A rule gated on the account's status still speaks about the movement: its sentence replaces
    the movement's summary (the right record id beside it), not the account's."""
    gated = {"name": "payee_check_active", "hypothesis": "expected_behaviour",
             "when": [{"fact": "customer.status", "equals": "active"},
                      {"fact": "movement.hold_reason", "equals": "new_payee_check"}],
             "summary": "The movement of {movement.amount} is held for a {movement.hold_reason}."}
    systems = FakeSystems({"id": "cust-1", "status": "active"}, [
        {"id": "m-2", "kind": "movement", "amount": "120.00", "status": "held", "hold_reason": "new_payee_check",
         "created_at": at(3)}])
    customer, movement, _ = run(systems, executor, book=playbook(rules=[gated])).findings
    assert movement.summary == "The movement of 120.00 is held for a new payee check." and movement.record_id == "m-2"
    assert movement.concludes and not customer.concludes
    assert customer.summary == "The account is active." and list(customer.supports) == [ev.CASE_TYPE_EXPECTED_BEHAVIOUR]
    # Named explicitly, the rule's `finding` wins.
    named = run(systems, executor, book=playbook(rules=[gated | {"finding": "customer"}])).findings
    assert named[0].concludes and named[0].summary.startswith("The movement of 120.00") and not named[1].concludes


def test_a_lookup_marked_internal_gives_findings_for_the_agents_only(executor):
    lookups = [dict(spec, internal=True) if spec["name"] == "incident" else spec for spec in PLAYBOOK["lookups"]]
    result = run(FakeSystems({"status": "active"}, []), executor, book=playbook(lookups=lookups))
    assert [f.internal for f in result.findings] == [False, False, True]
    failing = run(FakeSystems({"status": "active"}, [], fail={"incidents": "HTTP 503"}), executor,
                  book=playbook(lookups=lookups))
    assert not failing.findings[2].available and failing.findings[2].internal


def test_an_incident_needs_both_the_record_and_the_open_incident(executor):
    delayed = {"id": "m-1", "amount": "5.00", "status": "pending", "hold_reason": "processor_delay", "created_at": at(30)}
    incident = {"id": "inc-1", "title": "Clearing delays", "component": "movements", "started_at": at(2)}
    other = incident | {"component": "elsewhere"}
    assert run(FakeSystems({"status": "active"}, [delayed], [incident]), executor).case_type == ev.CASE_TYPE_INCIDENT
    # An incident on another component does not explain it: the age rule settles it instead.
    settled = run(FakeSystems({"status": "active"}, [delayed], [other]), executor)
    assert settled.case_type == ev.CASE_TYPE_PRODUCT_DEFECT
    assert settled.findings[1].summary == "Pending for 30.0 hours."


def test_evidence_that_settles_nothing_says_so(executor):
    result = run(FakeSystems({"status": "active"}, [{"id": "m", "status": "completed", "created_at": at(1)}]), executor)
    assert result.case_type == ev.CASE_TYPE_UNSPECIFIED
    assert result.uncertain == ["The evidence does not settle whether this is an incident, expected behaviour "
                                "or a product defect."]


def test_an_unknown_customer_is_a_finding_not_a_failure(executor):
    result = run(FakeSystems(None, []), executor)
    customer = result.findings[0]
    assert customer.available and customer.summary == "Customer cust-1 is not known."
    assert customer.facts["found"] == "false" and result.completeness == 1.0


def test_a_failed_lookup_is_unavailable_with_its_reason_and_lowers_completeness(executor):
    result = run(FakeSystems({"status": "active"}, [], fail={"transactions": "HTTP 503"}), executor)
    movement = result.findings[1]
    assert not movement.available and movement.unavailable_reason == "HTTP 503"
    assert movement.summary == "The customer's movements: not available (HTTP 503)."
    assert result.completeness == pytest.approx(2 / 3)
    assert "The customer's movements could not be checked (HTTP 503)." in result.uncertain
    assert result.case_type == ev.CASE_TYPE_UNSPECIFIED  # no rule can match on missing evidence


def test_a_lookup_past_the_deadline_is_unavailable_and_never_holds_the_answer(executor):
    systems = FakeSystems({"status": "active"}, [], slow={"transactions": 1.5})
    started = time.monotonic()
    result = run(systems, executor, deadline_s=0.2)
    assert time.monotonic() - started < 0.6
    movement = result.findings[1]
    assert not movement.available and movement.unavailable_reason == "timed out after 0.2 s"
    assert result.findings[0].available and result.completeness == pytest.approx(2 / 3)


def test_an_identifier_the_ticket_gives_picks_its_record_and_a_wrong_one_is_said(executor):
    movements = [{"id": "m-new", "status": "completed", "created_at": at(1)},
                 {"id": "M-OLD", "status": "pending", "created_at": at(40)}]
    picked = run(FakeSystems({"status": "active"}, movements), executor,
                 subject=Subject("bank", "t", "cust-1", "account_specific", {"transaction_id": ("m-old",)}))
    assert picked.findings[1].record_id == "M-OLD"
    missed = run(FakeSystems({"status": "active"}, movements), executor,
                 subject=Subject("bank", "t", "cust-1", "account_specific", {"transaction_id": ("x-9",)}))
    assert missed.findings[1].record_id == "m-new"
    assert any("matches the transaction id x-9" in line for line in missed.uncertain)


def test_the_one_record_in_the_window_pins_its_identifier_and_several_pin_nothing(executor):
    one = [{"id": "m-1", "status": "pending", "created_at": at(3)}]
    pinned = run(FakeSystems({"status": "active"}, one), executor)
    assert [(i.kind, i.value) for i in pinned.identified] == [("transaction_id", "m-1")]
    two = one + [{"id": "m-2", "status": "completed", "created_at": at(9)}]
    assert not run(FakeSystems({"status": "active"}, two), executor).identified
    assert not run(FakeSystems({"status": "active"}, []), executor).identified
    # An identifier the ticket already gave is not pinned again.
    given = Subject("bank", "t", "cust-1", "account_specific", {"transaction_id": ("m-1",)})
    assert not run(FakeSystems({"status": "active"}, one), executor, subject=given).identified


def test_no_playbook_or_no_systems_gives_an_empty_investigation(tmp_path):
    folder = tmp_path / "bank" / "playbooks"
    folder.mkdir(parents=True)
    (folder / "movements.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    connected = SystemsConfig.from_yaml("tenants:\n  bank:\n    account: {base_url: 'http://127.0.0.1:9'}\n", {})
    with_systems = Investigator(connected, tmp_path, deadline_s=0.5)
    without = Investigator(SystemsConfig(), tmp_path, deadline_s=0.5)
    try:
        assert with_systems.playbooks("bank").for_ticket("stuck_movement", "").name == "movements"
        assert with_systems.investigate(SUBJECT, "something_else") == ev.Investigation()
        assert with_systems.investigate(SUBJECT, "stuck_movement").playbook == "movements"
        assert without.investigate(SUBJECT, "stuck_movement") == ev.Investigation()
        assert without.investigate(Subject("../../etc", "t", "c", "account_specific"), "x") == ev.Investigation()
    finally:
        with_systems.close()
        without.close()


# --- connectors: retries on transient failures only, the breaker


def http_transactions(handler, *, failures=3, attempts=2):
    transport = httpx.MockTransport(handler)
    endpoint = SystemEndpoint(base_url="http://bank.test", api_key="k", timeout_s=0.5, attempts=attempts)
    system = HttpSystem("bank", "transactions", endpoint, BreakerSettings(failures=failures, reset_s=60),
                        transport=transport)
    return system, HttpTransactionSystem(system)


def test_a_transient_failure_is_retried_and_a_refusal_is_not():
    calls = []

    def flaky(request):
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json={"transactions": [{"id": "m-1"}]})

    _, transactions = http_transactions(flaky)
    assert transactions.transactions("c", kinds=("movement",), since=NOW, deadline=time.monotonic() + 2) == [{"id": "m-1"}]
    assert len(calls) == 2
    assert calls[0].headers["authorization"] == "Bearer k"
    assert calls[0].url.params.get_list("kind") == ["movement"] and calls[0].url.params["since"] == NOW.isoformat()

    refused = []
    _, transactions = http_transactions(lambda request: refused.append(request) or httpx.Response(403))
    with pytest.raises(LookupFailed, match="HTTP 403"):
        transactions.transactions("c", kinds=(), since=None, deadline=time.monotonic() + 2)
    assert len(refused) == 1


def test_the_breaker_opens_after_repeated_failures_and_stops_calling():
    calls = []
    system, transactions = http_transactions(lambda request: calls.append(request) or httpx.Response(503),
                                             failures=3, attempts=1)
    reasons = []
    for _ in range(5):
        with pytest.raises(LookupFailed) as failure:
            transactions.transactions("c", kinds=(), since=None, deadline=time.monotonic() + 1)
        reasons.append(failure.value.reason)
    assert reasons == ["HTTP 503", "HTTP 503", "HTTP 503", "circuit open", "circuit open"]
    assert len(calls) == 3
    assert system.breaker.current_state == "open"


def test_calls_through_one_breaker_run_side_by_side():
    def slow(request):
        time.sleep(0.2)
        return httpx.Response(200, json={"transactions": []})

    _, transactions = http_transactions(slow)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: transactions.transactions("c", kinds=(), since=None, deadline=time.monotonic() + 2),
                      range(4)))
    assert time.monotonic() - started < 0.6  # one at a time would take 0.8 s


# --- the systems file


def test_the_systems_file_reads_credentials_from_the_environment():
    text = "tenants:\n  bank:\n    account: {base_url: 'http://a', api_key: '${BANK_KEY}'}\n"
    config = SystemsConfig.from_yaml(text, {"BANK_KEY": "s3cret"}, "systems.yaml")
    assert config.tenant("bank").account.api_key.get_secret_value() == "s3cret"
    assert config.tenant("bank").connected() == ("account",)
    with pytest.raises(SystemsConfigError, match="systems.yaml: environment variables not set: BANK_KEY"):
        SystemsConfig.from_yaml(text, {}, "systems.yaml")
    with pytest.raises(SystemsConfigError, match=r"systems.yaml: tenants.bank.ledger: Extra inputs"):
        SystemsConfig.from_yaml("tenants:\n  bank:\n    ledger: {base_url: x}\n", {}, "systems.yaml")


# --- actions through the account system's API


def account_actions(handler):
    from services.investigator.connectors.http import HttpAccountSystem

    endpoint = SystemEndpoint(base_url="http://bank.test", timeout_s=0.5, attempts=2)
    system = HttpSystem("bank", "account", endpoint, BreakerSettings(), transport=httpx.MockTransport(handler))
    return HttpAccountSystem(system)


def test_an_action_is_executed_only_when_the_system_confirms_it():
    seen = []

    def confirm(request):
        seen.append(request)
        return httpx.Response(200, json={"status": "frozen", "reference": "chg-1", "result": {"last4": "1234"}})

    answer = account_actions(confirm).run_action("card_freeze", "c 1", {"card_id": "card-9"},
                                                 idempotency_key="act-1", deadline=time.monotonic() + 1)
    assert answer.executed and answer.status == "frozen" and answer.reference == "chg-1"
    assert answer.result == {"last4": "1234", "card_id": "card-9"}
    assert seen[0].url.raw_path == b"/v1/customers/c%201/cards/card-9/freeze"  # ids are quoted into the path
    assert seen[0].headers["idempotency-key"] == "act-1"

    unconfirmed = account_actions(lambda request: httpx.Response(200, json={})).run_action(
        "card_freeze", "c", {"card_id": "card-9"}, idempotency_key="a", deadline=time.monotonic() + 1)
    assert not unconfirmed.executed and unconfirmed.reason == "the system did not confirm the change"
    refused = account_actions(lambda request: httpx.Response(409, json={"error": "the card is blocked"})).run_action(
        "card_unfreeze", "c", {"card_id": "card-9"}, idempotency_key="a", deadline=time.monotonic() + 1)
    assert not refused.executed and refused.reason == "the card is blocked"
    down = account_actions(lambda request: httpx.Response(503)).run_action(
        "password_reset", "c", {}, idempotency_key="a", deadline=time.monotonic() + 1)
    assert not down.executed and down.reason == "HTTP 503"


def test_every_allowed_tool_has_an_endpoint():
    from services.investigator.connectors.http import HttpAccountSystem
    from services.investigator.handlers import ALLOWED_TOOLS

    assert set(HttpAccountSystem.ACTIONS) == set(ALLOWED_TOOLS)


def test_an_action_names_its_record_or_finds_the_only_open_card():
    def cards(request):
        if request.method == "GET":
            return httpx.Response(200, json={"cards": [{"id": "card-old", "status": "closed"},
                                                       {"id": "card-new", "status": "active"}]})
        return httpx.Response(200, json={"status": "ordered", "reference": "card-3"})

    replaced = account_actions(cards).run_action("card_replacement", "c", {}, idempotency_key="a",
                                                 deadline=time.monotonic() + 1)
    assert replaced.executed and replaced.result["card_id"] == "card-new"
    never_called = account_actions(lambda request: pytest.fail("no call without a transfer id"))
    answer = never_called.run_action("transfer_cancel", "c", {}, idempotency_key="a", deadline=time.monotonic() + 1)
    assert not answer.executed and answer.reason == "transfer_id is required"
    assert "not an allow-listed action" in never_called.run_action(
        "close_account", "c", {}, idempotency_key="a", deadline=time.monotonic() + 1).reason
