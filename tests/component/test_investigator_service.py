"""The investigator's gRPC server against the demo bank's real account system (its own process):
findings for a seeded customer, a failing or slow system answered as "not available (reason)"
within the deadline, and actions idempotent by action id."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc, ticket_pb2
from supportflow.observability import Health
from supportflow.rpc import create_server
from supportflow.systems import load_systems

from services.investigator.handlers import Investigator
from services.investigator.playbooks import CASE_TYPES
from services.investigator.servicer import InvestigatorServicer
from tooling.demo_systems import AccountSystemProcess, systems_file

ROOT = Path(__file__).resolve().parents[2]
TENANT = "demo-bank"
DEADLINE_S = 1.5


@dataclass(frozen=True)
class Ticket:
    id: str
    customer_id: str
    label: str


# Several customers per intent, so the seeded draw gives each situation a chance.
TICKETS = [Ticket(f"t-{intent}-{n}", f"cust-{n:04d}", intent)
           for n, intent in enumerate(["pending_top_up", "pending_transfer", "cancel_transfer", "pending_transfer",
                                       "cancel_transfer", "declined_card_payment", "card_arrival", "pending_transfer",
                                       "cancel_transfer", "pending_transfer"], start=1)]


@pytest.fixture(scope="module")
def account_system(tmp_path_factory):
    system = AccountSystemProcess(tmp_path_factory.mktemp("account-system"), TICKETS, latency_ms=(5, 20))
    with system:
        yield system


@pytest.fixture()
def investigator_stub(account_system, tmp_path_factory):
    """A fresh investigator per test: its circuit breakers start closed."""
    path = systems_file(tmp_path_factory.mktemp("systems") / "systems.yaml", {TENANT: account_system})
    investigator = Investigator(load_systems(path, os.environ), ROOT / "tenants", deadline_s=DEADLINE_S)
    health = Health("investigator")
    server, port = create_server("investigator", [(services_pb2_grpc.add_InvestigatorServicer_to_server,
                                                   InvestigatorServicer(investigator),
                                                   "supportflow.contracts.v1.Investigator")],
                                 health, 0, host="127.0.0.1")
    server.start()
    health.set_ready(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield services_pb2_grpc.InvestigatorStub(channel)
    channel.close()
    server.stop(0)
    investigator.close()


@pytest.fixture(autouse=True)
def healthy_system(account_system):
    account_system.set_fault({})
    yield
    account_system.set_fault({})


def investigate(stub, ticket: Ticket, *, intent: str | None = None, timeout: float = 10) -> ev.Investigation:
    request = services_pb2.InvestigateRequest(
        ticket=ticket_pb2.Ticket(ticket_id=ticket.id, tenant_id=TENANT, customer_id=ticket.customer_id),
        classification=ticket_pb2.Classification(intent=intent or ticket.label,
                                                 archetype=ticket_pb2.ARCHETYPE_ACCOUNT_SPECIFIC))
    return stub.Investigate(request, timeout=timeout).investigation


def test_a_seeded_customer_gets_findings_that_settle_the_seeded_case(investigator_stub, account_system):
    truth = account_system.truth()
    agreed = 0
    for ticket in TICKETS[:2]:
        result = investigate(investigator_stub, ticket)
        assert result.playbook in ("top_ups", "transfers")
        assert result.completeness == 1.0 and all(f.available for f in result.findings)
        assert 0 < result.first_evidence_ms < DEADLINE_S * 1000
        movement = result.findings[1]
        assert movement.facts["found"] == "true" and movement.record_id.startswith("tx-")
        assert movement.facts["amount"] in movement.summary
        agreed += result.case_type == CASE_TYPES[truth[ticket.id]["case"]]
    assert agreed == 2


def test_an_unknown_customer_is_said_and_no_playbook_is_empty(investigator_stub):
    unknown = investigate(investigator_stub, Ticket("t-x", "cust-9999", "pending_top_up"))
    assert unknown.findings[0].summary == "No account was found for cust-9999."
    assert investigate(investigator_stub, Ticket("t-y", "cust-0001", "change_pin"),
                       intent="change_pin").playbook in ("", "account_specific")


def test_a_failing_system_is_not_available_with_its_reason_and_then_the_circuit_opens(investigator_stub,
                                                                                      account_system):
    account_system.set_fault({"status": 503})
    reasons = set()
    for _ in range(7):  # one call per system each time; a system's breaker opens after 5 failed calls
        started = time.monotonic()
        result = investigate(investigator_stub, TICKETS[0])
        assert time.monotonic() - started < DEADLINE_S + 0.5
        assert result.completeness == 0.0 and result.case_type == ev.CASE_TYPE_UNSPECIFIED
        reasons |= {f.unavailable_reason for f in result.findings if not f.available}
        assert all(f.summary.endswith(f"not available ({f.unavailable_reason}).") for f in result.findings)
    assert {"HTTP 503", "circuit open"} <= reasons


def test_a_slow_system_is_cut_before_the_caller_s_deadline(investigator_stub, account_system):
    account_system.set_fault({"delay_s": 3.0})
    started = time.monotonic()
    # The callers' gRPC deadline is the investigation deadline itself: the answer must beat it.
    result = investigate(investigator_stub, TICKETS[2], intent="pending_transfer", timeout=DEADLINE_S)
    assert time.monotonic() - started < DEADLINE_S
    assert not any(f.available for f in result.findings)
    # The second try of each call has what is left (about 0.55 s); the investigation stops at 1.4 s.
    assert all(f.unavailable_reason.startswith("timed out after ") or f.unavailable_reason == "no time left before "
               "the deadline" for f in result.findings), [f.unavailable_reason for f in result.findings]
    shorter = investigate(investigator_stub, TICKETS[2], intent="pending_transfer", timeout=0.5)
    assert shorter.findings and not any(f.available for f in shorter.findings)
    assert any(reason.startswith("The customer's transfers") for reason in result.uncertain)


def _cancellable_transfer(account_system) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {account_system.api_key}"}
    for ticket in TICKETS:
        found = httpx.get(f"{account_system.url}/v1/customers/{ticket.customer_id}/transactions",
                          params={"kind": "transfer"}, headers=headers, timeout=5).json()["transactions"]
        for transfer in found:
            if transfer.get("cancellable") and transfer["status"] in ("pending", "held"):
                return ticket.customer_id, transfer["id"]
    raise AssertionError("no cancellable transfer was seeded")


def test_run_action_is_idempotent_by_action_id_and_refused_once_not_cancellable(investigator_stub, account_system):
    customer_id, transfer_id = _cancellable_transfer(account_system)

    def cancel(action_id: str) -> services_pb2.RunActionResponse:
        return investigator_stub.RunAction(services_pb2.RunActionRequest(
            tenant_id=TENANT, action_id=action_id, tool="transfer_cancel", customer_id=customer_id,
            params={"transfer_id": transfer_id}, ticket_id="t-action"), timeout=10)

    first = cancel("act-1")
    assert first.executed and first.status == "cancelled" and first.reference.startswith("chg-")
    again = cancel("act-1")
    assert again == first  # the same action id gets the first answer, and nothing runs twice
    later = cancel("act-2")
    assert not later.executed and "can no longer be cancelled" in later.reason
    writes = httpx.get(f"{account_system.url}/_sim/writes", timeout=5).json()["writes"]
    assert [w["key"] for w in writes if transfer_id in w["path"]] == ["act-1", "act-2"]

    refused = investigator_stub.RunAction(services_pb2.RunActionRequest(
        tenant_id=TENANT, action_id="act-3", tool="refund_everything", customer_id=customer_id), timeout=10)
    assert not refused.executed and "not an allow-listed action" in refused.reason
    with pytest.raises(grpc.RpcError) as missing:
        investigator_stub.RunAction(services_pb2.RunActionRequest(tenant_id=TENANT, tool="card_freeze",
                                                                  customer_id=customer_id), timeout=10)
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
