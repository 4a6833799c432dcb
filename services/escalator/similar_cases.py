"""Similar resolved cases for the context packet, from the retriever's `SimilarCases` over gRPC.

Best effort: an escalation must not wait on, or fail for, its similar cases. A retriever that is
down, slow or failing yields no cases for that packet; the lookup is counted by outcome
(`supportflow_escalator_similar_cases_lookups_total`) so a silent gap is visible, and logged once
a minute per error code.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.observability import ThrottledWarnings

from services.escalator import metrics

log = logging.getLogger(__name__)

SimilarCaseLookup = Callable[[str, str], list[str]]  # (tenant, query) -> resolved ticket ids, best first
DEFAULT_CASES = 3
MAX_QUERY_CHARS = 2000


def no_similar_cases(tenant: str, query: str) -> list[str]:
    return []


def grpc_similar_cases(channel: grpc.Channel, deadline_s: float, k: int = DEFAULT_CASES) -> SimilarCaseLookup:
    stub = services_pb2_grpc.RetrieverStub(channel)
    warnings = ThrottledWarnings(log)

    def lookup(tenant: str, query: str) -> list[str]:
        if not query.strip():
            return []
        try:
            response = stub.SimilarCases(
                svc.SimilarCasesRequest(tenant_id=tenant, query=query[:MAX_QUERY_CHARS], k=k), timeout=deadline_s
            )
        except grpc.RpcError as exc:
            metrics.SIMILAR_CASE_LOOKUPS.labels("error").inc()
            warnings.warning("similar cases unavailable", exc.code().name, {"code": exc.code().name, "details": exc.details()})
            return []
        metrics.SIMILAR_CASE_LOOKUPS.labels("found" if response.cases else "none").inc()
        return [case.ticket_id for case in response.cases]

    return lookup
