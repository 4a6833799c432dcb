"""Learner.GetKpis over gRPC: the KPI panel rows for one tenant, one row per (archetype, segment,
channel) cut and the rollups ("all"); filters by archetype, segment and channel ("all": the rollups).

Before it answers, `before_answer(seconds)` waits until this replica has applied the learner's log
up to its end as of the request (main.py), at most `max_wait_s` and never past the call's own
deadline (less a margin to answer in): any replica asked then gives the same panel."""

from __future__ import annotations

from typing import Callable

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc

from services.learner.config import archetype_name, parse_archetype
from services.learner.handlers import Learner


ANSWER_MARGIN_S = 0.3  # of the call's deadline, kept to compute and send the answer


class LearnerServicer(services_pb2_grpc.LearnerServicer):
    def __init__(self, learner: Learner, default_tenant: str, *,
                 before_answer: Callable[[float], object] | None = None, max_wait_s: float = 5.0) -> None:
        self._learner = learner
        self._default_tenant = default_tenant
        self._before_answer = before_answer
        self._max_wait_s = max_wait_s

    def GetKpis(self, request: services_pb2.GetKpisRequest, context: grpc.ServicerContext) -> services_pb2.GetKpisResponse:  # noqa: N802
        archetype = ""
        if request.archetype:
            try:
                archetype = archetype_name(parse_archetype(request.archetype))
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self._before_answer is not None:
            remaining = context.time_remaining() if context is not None else None
            wait_s = self._max_wait_s if remaining is None else min(self._max_wait_s, remaining - ANSWER_MARGIN_S)
            self._before_answer(max(wait_s, 0.0))
        rows = self._learner.kpi_rows(request.tenant_id or self._default_tenant, archetype, request.segment,
                                      request.channel, fresh=True)
        response = services_pb2.GetKpisResponse(
            rows=[
                services_pb2.KpiRow(archetype=row.archetype, segment=row.segment, channel=row.channel,
                                    values=row.values, tickets=row.tickets)
                for row in rows
            ]
        )
        response.computed_at.GetCurrentTime()
        return response
