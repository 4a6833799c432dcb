"""Retriever: evidence search (gRPC Search, SimilarCases) over Weaviate; consumes `kb.articles` and
`tickets.resolved`; reports KB gaps on `kb.gaps`.

Once Weaviate answers, a background thread loads the default tenant's chunks into the chunk cache,
so the first tickets after a start do not each wait for their candidates' content."""

from __future__ import annotations

import logging
import threading
import time

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import ConsumerLoop, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.topics import Topic

from services.retriever.components import build_components
from services.retriever.handlers import SERVICE, KbArticleHandler, ResolvedCaseHandler
from services.retriever.readiness import WeaviateReadinessWatch
from services.retriever.servicer import RetrieverServicer
from services.retriever.settings import RetrieverSettings

# How long start-up waits for Weaviate before carrying on not ready (the watch keeps probing).
WEAVIATE_START_WAIT_S = 60.0

log = logging.getLogger(__name__)


def build(settings: RetrieverSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    parts = build_components(settings)
    servicer = RetrieverServicer(parts.searcher, parts.cases, parts.encoder, publisher)
    consumer = ConsumerLoop(
        settings,
        SERVICE,
        {
            Topic.KB_ARTICLES: KbArticleHandler(parts.knowledge).handle,
            Topic.TICKETS_RESOLVED: ResolvedCaseHandler(parts.cases).handle,
        },
        publisher,
        health,
    )
    watch = WeaviateReadinessWatch(parts.connection.is_ready, health)

    def warm_cache() -> None:
        started = time.monotonic()
        try:
            loaded = parts.knowledge.warm(settings.default_tenant)
        except Exception as exc:  # noqa: BLE001 - a cold cache is slower, never wrong
            log.warning("chunk cache not warmed", extra={"fields": {"error": str(exc)}})
            return
        log.info("chunk cache warmed", extra={"fields": {
            "tenant": settings.default_tenant, "chunks": loaded, "seconds": round(time.monotonic() - started, 2)}})

    def start() -> None:
        if watch.wait_until_available(WEAVIATE_START_WAIT_S):
            threading.Thread(target=warm_cache, name="retriever-warm-cache", daemon=True).start()
        watch.start()

    def stop() -> None:
        watch.stop()
        parts.close()

    return ServiceParts(
        consumers=[consumer],
        grpc=[(services_pb2_grpc.add_RetrieverServicer_to_server, servicer, "supportflow.contracts.v1.Retriever")],
        on_start=[start],
        on_stop=[stop],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("retriever", RetrieverSettings)
