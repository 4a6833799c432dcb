"""The shared gRPC bootstrap on a real loopback server: health follows readiness, reflection lists
the services, client calls always have a deadline, and latency is recorded by status code."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc as svc_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk
from prometheus_client import REGISTRY

from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel

FULL_NAME = "supportflow.contracts.v1.Classifier"


class SlowClassifier(svc_grpc.ClassifierServicer):
    def Classify(self, request, context):
        if request.ticket.body == "slow":
            time.sleep(1.0)
        if request.ticket.body == "bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad ticket")
        return svc.ClassifyResponse(classification=tk.Classification(intent="card_arrival", confidence=0.9))


@pytest.fixture
def served():
    health = Health("test-rpc")
    server, port = create_server(
        "test-rpc", [(svc_grpc.add_ClassifierServicer_to_server, SlowClassifier(), FULL_NAME)], health, 0, host="127.0.0.1"
    )
    server.start()
    yield health, f"127.0.0.1:{port}"
    server.stop(grace=0)


def health_status(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status


def test_health_follows_readiness(served):
    health, address = served
    assert health_status(address, FULL_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
    health.set_ready(True)
    assert health_status(address, FULL_NAME) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(address, "") == health_pb2.HealthCheckResponse.SERVING
    health.set_ready(False, "shutting down")
    assert health_status(address, FULL_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_service(served):
    _, address = served
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=2)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert FULL_NAME in names and "grpc.health.v1.Health" in names


def test_client_calls_get_the_default_deadline(served):
    _, address = served
    stub = svc_grpc.ClassifierStub(open_channel("test-client", address, default_timeout_s=0.2))
    assert stub.Classify(svc.ClassifyRequest(ticket=tk.Ticket(body="fast"))).classification.intent == "card_arrival"
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(svc.ClassifyRequest(ticket=tk.Ticket(body="slow")))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 0.9
    # An explicit deadline wins over the default.
    assert stub.Classify(svc.ClassifyRequest(ticket=tk.Ticket(body="slow")), timeout=3).classification.confidence == 0.9


def test_server_latency_is_recorded_by_status_code(served):
    _, address = served
    stub = svc_grpc.ClassifierStub(open_channel("test-client", address, default_timeout_s=2))
    with pytest.raises(grpc.RpcError):
        stub.Classify(svc.ClassifyRequest(ticket=tk.Ticket(body="bad")))
    count = REGISTRY.get_sample_value(
        "supportflow_grpc_server_handling_seconds_count",
        {"service": "test-rpc", "method": "Classify", "code": "INVALID_ARGUMENT"},
    )
    assert count == 1
