"""gRPC adapter for `Investigator.Investigate` and `Investigator.RunAction`: decode, call the
handlers, encode. A request that names no tenant (or, for an action, no action id or customer) is
INVALID_ARGUMENT; everything else answers, with what the systems said or why they could not, before
the caller's own deadline when that is shorter than the investigation's."""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc, ticket_pb2
from supportflow.observability import ticket_context

from services.investigator.handlers import ActionRequest, InvalidRequest, Investigator
from services.investigator.investigation import Subject


def archetype_name(value: int) -> str:
    """ARCHETYPE_ACCOUNT_SPECIFIC -> "account_specific" (the playbooks' and the metrics' word)."""
    return ticket_pb2.Archetype.Name(value).removeprefix("ARCHETYPE_").lower()


def subject_of(request: services_pb2.InvestigateRequest) -> Subject:
    identifiers: dict[str, list[str]] = {}
    for identifier in request.normalized.identifiers:
        identifiers.setdefault(identifier.kind, []).append(identifier.value)
    return Subject(
        tenant_id=request.ticket.tenant_id,
        ticket_id=request.ticket.ticket_id,
        customer_id=request.ticket.customer_id,
        archetype=archetype_name(request.classification.archetype),
        identifiers={kind: tuple(values) for kind, values in identifiers.items()},
    )


class InvestigatorServicer(services_pb2_grpc.InvestigatorServicer):
    def __init__(self, investigator: Investigator) -> None:
        self._investigator = investigator

    def Investigate(self, request: services_pb2.InvestigateRequest, context: grpc.ServicerContext) -> services_pb2.InvestigateResponse:  # noqa: N802
        with ticket_context(request.ticket.ticket_id):
            try:
                investigation = self._investigator.investigate(subject_of(request), request.classification.intent,
                                                               caller_remaining_s=context.time_remaining())
            except InvalidRequest as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return services_pb2.InvestigateResponse(investigation=investigation)

    def RunAction(self, request: services_pb2.RunActionRequest, context: grpc.ServicerContext) -> services_pb2.RunActionResponse:  # noqa: N802
        with ticket_context(request.ticket_id):
            try:
                outcome = self._investigator.run_action(ActionRequest(
                    tenant_id=request.tenant_id, action_id=request.action_id, tool=request.tool,
                    customer_id=request.customer_id, params=dict(request.params), ticket_id=request.ticket_id),
                    caller_remaining_s=context.time_remaining())
            except InvalidRequest as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return services_pb2.RunActionResponse(executed=outcome.executed, status=outcome.status,
                                                  reference=outcome.reference, reason=outcome.reason,
                                                  result=outcome.result)
