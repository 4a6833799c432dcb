"""Learner.GetKpis over gRPC: the KPI panel rows for one tenant, one row per (archetype, segment,
channel) cut and the rollups ("all"); filters by archetype, segment and channel ("all": the rollups).

A replica answers for the tenants of the shards it holds (shards.py): `learner_of(tenant)` gives
the shard's Learner, or None, and then `elsewhere(request, tenant, seconds)` asks the replica that
holds it (panel_owners.py), looking again while the shard moves, until the deadline. A question
that was itself routed here is not routed again: UNAVAILABLE, and the asker looks again. Before it answers, `before_answer(tenant, seconds)` waits
until the shard has applied its partition of the log up to its end as of the request (main.py), at
most `max_wait_s` and never past the call's own deadline (less a margin to answer in): any replica
asked then gives the same panel."""

from __future__ import annotations

import time
from typing import Callable

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc

from services.learner.config import archetype_name, parse_archetype
from services.learner.handlers import Learner
from services.learner.panel_owners import was_routed


ANSWER_MARGIN_S = 0.3  # of the call's deadline, kept to compute and send the answer
LOOK_AGAIN_S = 0.2

Elsewhere = Callable[[services_pb2.GetKpisRequest, str, float], "services_pb2.GetKpisResponse | None"]


class LearnerServicer(services_pb2_grpc.LearnerServicer):
    def __init__(self, learner_of: Callable[[str], Learner | None], default_tenant: str, *,
                 before_answer: Callable[[str, float], object] | None = None, max_wait_s: float = 5.0,
                 elsewhere: Elsewhere | None = None) -> None:
        self._learner_of = learner_of
        self._default_tenant = default_tenant
        self._before_answer = before_answer
        self._max_wait_s = max_wait_s
        self._elsewhere = elsewhere

    def GetKpis(self, request: services_pb2.GetKpisRequest, context: grpc.ServicerContext) -> services_pb2.GetKpisResponse:  # noqa: N802
        archetype = ""
        if request.archetype:
            try:
                archetype = archetype_name(parse_archetype(request.archetype))
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        tenant = request.tenant_id or self._default_tenant
        remaining = context.time_remaining() if context is not None else None
        wait_s = self._max_wait_s if remaining is None else min(self._max_wait_s, remaining - ANSWER_MARGIN_S)
        deadline = time.monotonic() + max(wait_s, 0.0)
        learner = self._learner_of(tenant)
        while learner is None:  # the shard is elsewhere, or moving: ask, and look again until the deadline
            if self._elsewhere is None or was_routed(context):
                context.abort(grpc.StatusCode.UNAVAILABLE, f"the shard of {tenant!r} is not on this learner replica")
            try:
                answer = self._elsewhere(request, tenant, deadline - time.monotonic())
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details())
            if answer is not None:
                return answer
            if time.monotonic() + LOOK_AGAIN_S >= deadline:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"no learner replica answers for the shard of {tenant!r}")
            time.sleep(LOOK_AGAIN_S)
            learner = self._learner_of(tenant)
        if self._before_answer is not None:
            self._before_answer(tenant, max(deadline - time.monotonic(), 0.0))
        rows = learner.kpi_rows(tenant, archetype, request.segment, request.channel)
        response = services_pb2.GetKpisResponse(
            rows=[
                services_pb2.KpiRow(archetype=row.archetype, segment=row.segment, channel=row.channel,
                                    values=row.values, tickets=row.tickets)
                for row in rows
            ]
        )
        response.computed_at.GetCurrentTime()
        return response
