"""The demo bank's account system's records agree with the demo's tickets (tooling/demo_systems)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from tooling.demo_systems.records import ScenarioError, SeedTicket, generate, load_scenarios

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
CRM = {"cust-0001": {"tier": "premium", "account_state": {"account_status": "active", "kyc": "verified"}},
       "cust-0002": {"tier": "standard", "account_state": {}}}


def test_each_ticket_s_customer_holds_what_its_intent_implies():
    scenarios = load_scenarios()
    tickets = [SeedTicket("t-1", "cust-0001", "pending_top_up"), SeedTicket("t-2", "cust-0002", "failed_transfer"),
               SeedTicket("t-3", "cust-0404", "pending_top_up"), SeedTicket("t-4", "cust-0002", "hostile:injection")]
    bank = generate(tickets, scenarios, seed=7, crm=CRM, now=NOW)
    (top_up,) = bank.transactions["cust-0001"]
    assert top_up["kind"] == "top_up" and top_up["status"] == "pending" and top_up["created_at"] < "2026-12-06T12"
    (transfer,) = bank.transactions["cust-0002"]
    assert transfer["kind"] == "transfer" and transfer["status"] in ("failed", "declined")
    assert bank.customers["cust-0001"]["tier"] == "premium"
    assert "cust-0404" not in bank.customers  # the CRM does not know them: neither does the account system
    assert set(bank.truth) == {"t-1", "t-2"}
    cases = {option["case"] for option in scenarios["situations"]["pending_top_up"]}
    assert bank.truth["t-1"]["case"] in cases


def test_the_records_depend_on_the_seed_not_on_the_run_s_ticket_ids():
    scenarios = load_scenarios()
    one = generate([SeedTicket("run-a-1", "cust-0001", "declined_card_payment")], scenarios, seed=7, crm=CRM, now=NOW)
    two = generate([SeedTicket("run-b-9", "cust-0001", "declined_card_payment")], scenarios, seed=7, crm=CRM, now=NOW)
    assert one.transactions == two.transactions and one.cards == two.cards
    payment = one.transactions["cust-0001"][0]
    assert payment["card_id"] == one.cards["cust-0001"][0]["id"]  # paid with the customer's card


def test_the_situations_mix_hypotheses():
    cases = [option["case"] for options in load_scenarios()["situations"].values() for option in options]
    assert {"expected_behaviour", "configuration_mistake", "product_defect", "incident", "policy_exception"} <= set(cases)


def test_a_situation_naming_an_unknown_incident_is_refused(tmp_path):
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump({"situations": {"x": [{"case": "incident", "incidents": ["nope"]}]}}))
    with pytest.raises(ScenarioError, match="situations.x.0.incidents: no incident 'nope'"):
        load_scenarios(path)


def test_the_account_system_finds_a_customer_by_the_email_address_a_channel_names_them_by():
    from starlette.testclient import TestClient

    from tooling.demo_systems.account_system import AccountSystem

    crm = {"cust-0001": CRM["cust-0001"] | {"emails": ["Ana@Customers.example"]}}
    bank = generate([SeedTicket("t-1", "cust-0001", "pending_top_up")], load_scenarios(), seed=7, crm=crm, now=NOW)
    client = TestClient(AccountSystem(bank, latency_ms=(0.0, 0.0)).app)
    by_id = client.get("/v1/customers/cust-0001/transactions").json()
    assert client.get("/v1/customers/ana@customers.example/transactions").json() == by_id
    assert by_id["transactions"][0]["kind"] == "top_up"
    assert client.get("/v1/customers/someone@else.example").status_code == 404
