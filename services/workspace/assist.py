"""The workspace's gRPC clients: Drafter.Draft for an agent's new draft (the agent-assist path) and
Learner.GetKpis for the leads' KPI panel. Each call has a deadline; a call that fails or runs out
of time raises ServiceUnavailable, and the page says so instead of waiting or failing."""

from __future__ import annotations

import time

import grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.workspace import metrics


class ServiceUnavailable(Exception):
    """The other service did not answer in time, or answered with an error."""


class DrafterClient:
    def __init__(self, channel: grpc.Channel, deadline_s: float) -> None:
        self._stub = services_pb2_grpc.DrafterStub(channel)
        self._deadline_s = deadline_s

    def draft(self, request: svc.DraftRequest) -> tk.Draft:
        started = time.perf_counter()
        try:
            response = self._stub.Draft(request, timeout=self._deadline_s)
        except grpc.RpcError as exc:
            metrics.REDRAFTS.labels("unavailable").inc()
            raise ServiceUnavailable(f"the drafter: {exc.code().name} {exc.details() or ''}".strip()) from exc
        finally:
            metrics.REDRAFT_SECONDS.observe(time.perf_counter() - started)
        return response.draft


class KpiClient:
    def __init__(self, channel: grpc.Channel, deadline_s: float) -> None:
        self._stub = services_pb2_grpc.LearnerStub(channel)
        self._deadline_s = deadline_s

    def kpis(self, request: svc.GetKpisRequest) -> svc.GetKpisResponse:
        try:
            response = self._stub.GetKpis(request, timeout=self._deadline_s)
        except grpc.RpcError as exc:
            metrics.KPI_FETCHES.labels("unavailable").inc()
            raise ServiceUnavailable(f"the learner: {exc.code().name} {exc.details() or ''}".strip()) from exc
        metrics.KPI_FETCHES.labels("ok").inc()
        return response
