"""Drafter: tickets.classified (AI routes) -> tickets.drafted, plus the synchronous `Draft` RPC.

Evidence comes from the retriever over gRPC and the customer's records from the investigator's
`Investigate` (every call has a deadline; an unavailable investigator leaves the draft without
account findings, never the ticket without a draft); the generator is Claude
when SUPPORTFLOW_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY) is set and the extractive offline
drafter otherwise (SUPPORTFLOW_DRAFTER_SENTENCE_EMBEDDINGS adds the sentence encoder to its picks).
"""

from __future__ import annotations

import logging

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.investigation import investigator_client
from supportflow.observability import Health
from supportflow.rpc import open_channel
from supportflow.service import ServiceParts
from supportflow.topics import Topic

from services.drafter.generators import generator_from_settings
from services.drafter.handlers import SERVICE, TicketDrafter
from services.drafter.retriever_client import retriever_search
from services.drafter.servicer import DrafterServicer
from services.drafter.settings import DrafterSettings

log = logging.getLogger(__name__)


def build(settings: DrafterSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    channel = open_channel(SERVICE, settings.retriever_addr, settings.grpc_deadline_s)
    investigator = open_channel(SERVICE, settings.investigator_addr, settings.investigation_deadline_s)
    generator = generator_from_settings(settings)
    drafter = TicketDrafter(
        retriever_search(channel, settings.grpc_deadline_s), generator, k=settings.drafter_evidence_k,
        investigate=investigator_client(investigator, settings.investigation_deadline_s, SERVICE),
    )
    log.info("drafter ready", extra={"fields": {"generator": generator.name, "retriever": settings.retriever_addr,
                                                "investigator": settings.investigator_addr}})
    consumer = ConsumerLoop(settings, SERVICE, {Topic.TICKETS_CLASSIFIED: drafter.handle_classified}, publisher, health,
                            workers=settings.drafter_workers)
    return ServiceParts(
        consumers=[consumer],
        grpc=[(services_pb2_grpc.add_DrafterServicer_to_server, DrafterServicer(drafter), "supportflow.contracts.v1.Drafter")],
        on_stop=[channel.close, investigator.close],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("drafter", DrafterSettings)
