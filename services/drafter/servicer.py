"""gRPC `Drafter.Draft`: a draft on demand for agent assist, whatever the ticket's route. A thin
adapter over `TicketDrafter.draft`, which the Kafka path uses too, so both draft alike."""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.eventbus import InvalidEvent, TransientError
from supportflow.observability import ticket_context

from services.drafter.handlers import TicketDrafter


class DrafterServicer(services_pb2_grpc.DrafterServicer):
    def __init__(self, drafter: TicketDrafter) -> None:
        self._drafter = drafter

    def Draft(self, request: services_pb2.DraftRequest, context: grpc.ServicerContext) -> services_pb2.DraftResponse:  # noqa: N802
        ticket = request.ticket
        if not request.HasField("ticket") or not ticket.ticket_id or not ticket.tenant_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "DraftRequest.ticket needs ticket_id and tenant_id")
        with ticket_context(ticket.ticket_id):
            try:
                outcome = self._drafter.draft(ticket, request.normalized, request.classification)
            except InvalidEvent as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except TransientError as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return services_pb2.DraftResponse(draft=outcome.draft, evidence=outcome.evidence)
