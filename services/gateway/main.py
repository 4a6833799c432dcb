"""Gateway: channel intake over HTTP (JSON webhooks and API) into `tickets.received`."""

from __future__ import annotations

from supportflow.eventbus import EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings

from services.gateway.http_api import GatewayApp, serve


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    app = GatewayApp(
        publisher,
        default_tenant=settings.default_tenant,
        webhook_secret=settings.gateway_webhook_secret,
        max_body_bytes=settings.gateway_max_body_bytes,
    )
    parts = ServiceParts()
    servers = []

    def start() -> None:
        servers.append(serve(app, settings.gateway_http_port))

    def stop() -> None:
        for server in servers:
            server.shutdown()

    parts.on_start.append(start)
    parts.on_stop.append(stop)
    return parts
