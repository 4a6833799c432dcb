"""Help-center passages for the packet of a ticket that never reached the drafter (escalated by the
classifier: an always-escalate intent, a risk flag, a prompt injection), from the retriever's
`Search` over gRPC, so the person it goes to sees what the help center says as a drafted ticket's
reviewer does.

Best effort, like similar cases: a retriever that is down, slow or failing, or a search under its
gap threshold (nothing close enough), yields no passages for that packet, and the lookup is counted
by outcome (`supportflow_escalator_article_lookups_total`).
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.observability import ThrottledWarnings

from services.escalator import metrics
from services.escalator.similar_cases import MAX_QUERY_CHARS

log = logging.getLogger(__name__)

ArticleLookup = Callable[[str, str, str], list[tk.EvidencePassage]]  # (tenant, query, intent) -> passages
DEFAULT_PASSAGES = 3


def no_articles(tenant: str, query: str, intent: str) -> list[tk.EvidencePassage]:
    return []


def grpc_articles(channel: grpc.Channel, deadline_s: float, k: int = DEFAULT_PASSAGES) -> ArticleLookup:
    stub = services_pb2_grpc.RetrieverStub(channel)
    warnings = ThrottledWarnings(log)

    def lookup(tenant: str, query: str, intent: str) -> list[tk.EvidencePassage]:
        if not query.strip():
            return []
        try:
            response = stub.Search(svc.SearchRequest(tenant_id=tenant, query=query[:MAX_QUERY_CHARS], k=k, intent=intent),
                                   timeout=deadline_s)
        except grpc.RpcError as exc:
            metrics.ARTICLE_LOOKUPS.labels("error").inc()
            warnings.warning("help-center passages unavailable", exc.code().name,
                             {"code": exc.code().name, "details": exc.details()})
            return []
        if response.gap or not response.passages:
            metrics.ARTICLE_LOOKUPS.labels("none").inc()
            return []
        metrics.ARTICLE_LOOKUPS.labels("found").inc()
        return list(response.passages[:k])

    return lookup
