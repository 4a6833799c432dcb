"""The retriever's `Search` over gRPC, as the plain `search(request) -> response` function the
handlers take. A retriever that is down or too slow is a transient fault (the consumer retries
with backoff, then stops without committing); any other status is a real error and propagates."""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import TransientError

from services.drafter.handlers import Search

TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})


def retriever_search(channel: grpc.Channel, deadline_s: float) -> Search:
    stub = services_pb2_grpc.RetrieverStub(channel)

    def search(request: svc.SearchRequest) -> svc.SearchResponse:
        try:
            return stub.Search(request, timeout=deadline_s)
        except grpc.RpcError as exc:
            if exc.code() in TRANSIENT_CODES:
                raise TransientError(f"retriever {exc.code().name}: {exc.details()}") from exc
            raise

    return search
