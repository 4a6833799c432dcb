"""gRPC `Classifier.Classify`: the synchronous path for chat and agent assist. A thin adapter over
`TicketTriage.classify`, which the Kafka path uses too, so both answer alike."""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.observability import ticket_context

from services.classifier.handlers import TicketTriage


class ClassifierServicer(services_pb2_grpc.ClassifierServicer):
    def __init__(self, triage: TicketTriage) -> None:
        self._triage = triage

    def Classify(self, request: services_pb2.ClassifyRequest, context: grpc.ServicerContext) -> services_pb2.ClassifyResponse:  # noqa: N802
        if not request.HasField("ticket"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ClassifyRequest.ticket is required")
        with ticket_context(request.ticket.ticket_id):
            normalized, classification = self._triage.classify(request.ticket)
        return services_pb2.ClassifyResponse(normalized=normalized, classification=classification)
