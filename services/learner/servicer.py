"""Learner.GetKpis over gRPC: the KPI panel rows for one tenant, one row per (archetype, segment,
channel) cut and the rollups ("all"); filters by archetype, segment and channel ("all": the rollups)."""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc

from services.learner.config import archetype_name, parse_archetype
from services.learner.handlers import Learner


class LearnerServicer(services_pb2_grpc.LearnerServicer):
    def __init__(self, learner: Learner, default_tenant: str) -> None:
        self._learner = learner
        self._default_tenant = default_tenant

    def GetKpis(self, request: services_pb2.GetKpisRequest, context: grpc.ServicerContext) -> services_pb2.GetKpisResponse:  # noqa: N802
        archetype = ""
        if request.archetype:
            try:
                archetype = archetype_name(parse_archetype(request.archetype))
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = self._learner.kpi_rows(request.tenant_id or self._default_tenant, archetype, request.segment,
                                      request.channel)
        response = services_pb2.GetKpisResponse(
            rows=[
                services_pb2.KpiRow(archetype=row.archetype, segment=row.segment, channel=row.channel,
                                    values=row.values, tickets=row.tickets)
                for row in rows
            ]
        )
        response.computed_at.GetCurrentTime()
        return response
