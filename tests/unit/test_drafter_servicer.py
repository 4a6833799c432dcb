"""The gRPC edges in-process (port 0, no other service): `Drafter.Draft`, and the retriever client
turning UNAVAILABLE / DEADLINE_EXCEEDED into TransientError."""

from __future__ import annotations

import time
from typing import Iterator

import grpc
import pytest

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import TransientError
from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel

from services.drafter.handlers import TicketDrafter
from services.drafter.offline import OfflineDrafter
from services.drafter.retriever_client import retriever_search
from services.drafter.servicer import DrafterServicer
from services.drafter.templates import TemplateBook

WIRES = tk.EvidencePassage(
    article_id="lime_green_004", title="Lime Green Account: Wire Transfer Pricing", is_policy=True,
    text="- Domestic outgoing wire: $10.00 per transfer.",
)


class FakeRetriever(services_pb2_grpc.RetrieverServicer):
    def __init__(self) -> None:
        self.mode = "ok"

    def Search(self, request, context):  # noqa: N802
        if self.mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "index down")
        if self.mode == "slow":
            time.sleep(0.5)
        if self.mode == "invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad tenant")
        return svc.SearchResponse(passages=[WIRES], best_score=0.8)


@pytest.fixture()
def retriever() -> Iterator[tuple[FakeRetriever, str]]:
    fake = FakeRetriever()
    health = Health("retriever-test")
    server, port = create_server(
        "retriever-test", [(services_pb2_grpc.add_RetrieverServicer_to_server, fake, "supportflow.contracts.v1.Retriever")],
        health, 0, host="127.0.0.1",
    )
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(0)


def test_retriever_client_maps_outages_to_transient_errors(retriever: tuple[FakeRetriever, str]) -> None:
    fake, address = retriever
    search = retriever_search(open_channel("drafter-test", address, 2.0), 0.2)
    assert search(svc.SearchRequest(tenant_id="t", query="wire")).passages[0].article_id == "lime_green_004"
    for mode in ("unavailable", "slow"):
        fake.mode = mode
        with pytest.raises(TransientError):
            search(svc.SearchRequest(tenant_id="t", query="wire"))
    fake.mode = "invalid"
    with pytest.raises(grpc.RpcError) as raised:
        search(svc.SearchRequest(tenant_id="t", query="wire"))
    assert not isinstance(raised.value, TransientError)


def test_draft_rpc_drafts_with_evidence_from_the_retriever(retriever: tuple[FakeRetriever, str]) -> None:
    fake, address = retriever
    search = retriever_search(open_channel("drafter-test", address, 2.0), 1.0)
    servicer = DrafterServicer(TicketDrafter(search, OfflineDrafter(TemplateBook.load())))
    server, port = create_server(
        "drafter-test", [(services_pb2_grpc.add_DrafterServicer_to_server, servicer, "supportflow.contracts.v1.Drafter")],
        Health("drafter-test"), 0, host="127.0.0.1",
    )
    server.start()
    try:
        stub = services_pb2_grpc.DrafterStub(open_channel("test", f"127.0.0.1:{port}", 5.0))
        request = svc.DraftRequest(
            ticket=tk.Ticket(ticket_id="t-1", tenant_id="rho-bank", channel=tk.CHANNEL_CHAT, body="How much is a domestic wire?"),
            classification=tk.Classification(route=tk.ROUTE_ESCALATE),  # agent assist drafts whatever the route
        )
        response = stub.Draft(request)
        assert response.draft.status == tk.DRAFT_STATUS_READY
        assert "$10.00" in response.draft.text
        assert [p.article_id for p in response.evidence] == ["lime_green_004"]

        with pytest.raises(grpc.RpcError) as invalid:
            stub.Draft(svc.DraftRequest(ticket=tk.Ticket(ticket_id="t-2", body="no tenant")))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        fake.mode = "unavailable"
        with pytest.raises(grpc.RpcError) as unavailable:
            stub.Draft(request)
        assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)
