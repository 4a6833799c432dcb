"""The investigator's `Investigate` over gRPC, as the plain `investigate(request) -> Investigation`
function the drafter's and the escalator's handlers take.

An investigation is evidence, never a precondition: an investigator that is down, slow or failing
yields an Investigation with no findings and one uncertainty saying why (for the agent who reads
the packet), and the ticket goes on. The investigator answers within its own deadline
(`investigation_deadline_s`) with what it has; the client waits that long plus a margin for the
call itself, then gives up. Every call is counted by caller and outcome
(`supportflow_investigation_calls_total`), so a silent gap is visible.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
from prometheus_client import Counter

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.observability import ThrottledWarnings

log = logging.getLogger(__name__)

Investigate = Callable[[svc.InvestigateRequest], ev.Investigation]

# The investigator stops its lookups at its own deadline and answers with what it has; this covers
# the call itself, so its partial answer still arrives.
CALL_MARGIN_S = 0.5

INVESTIGATION_CALLS = Counter(
    "supportflow_investigation_calls_total",
    "Investigate calls, by calling service (drafter, escalator) and outcome (findings: at least one "
    "finding; empty: no playbook applied or nothing found; unavailable: the call failed or timed out)",
    ["service", "outcome"],
)


def unavailable_investigation(reason: str) -> ev.Investigation:
    """What a failed call leaves: no findings, and why, for the reader of the packet."""
    return ev.Investigation(uncertain=[f"the account systems could not be asked: {reason}"])


def no_investigation(request: svc.InvestigateRequest) -> ev.Investigation:
    """For callers without an investigator (tests, tools): an empty investigation."""
    return ev.Investigation()


def investigator_client(channel: grpc.Channel, deadline_s: float, service: str) -> Investigate:
    stub = services_pb2_grpc.InvestigatorStub(channel)
    timeout = deadline_s + CALL_MARGIN_S
    warnings = ThrottledWarnings(log)

    def investigate(request: svc.InvestigateRequest) -> ev.Investigation:
        try:
            response = stub.Investigate(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "UNKNOWN"
            INVESTIGATION_CALLS.labels(service, "unavailable").inc()
            warnings.warning("investigation unavailable", code, {"code": code, "details": exc.details()})
            return unavailable_investigation(f"investigator {code}")
        investigation = response.investigation
        INVESTIGATION_CALLS.labels(service, "findings" if investigation.findings else "empty").inc()
        return investigation

    return investigate
