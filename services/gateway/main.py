"""Gateway: channel intake into `tickets.received`. HTTP (the signed JSON API and the helpdesks'
webhooks, uvicorn) and, when `gateway_smtp_port` is set, SMTP for the tenants' support mailboxes."""

from __future__ import annotations

import logging

from supportflow.eventbus import EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts

from services.gateway.http_api import GatewayApp, serve
from services.gateway.settings import GatewaySettings
from services.gateway.smtp_intake import MailIntake, serve_smtp

log = logging.getLogger(__name__)


def build(settings: GatewaySettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    # Read once at start: a channels file that cannot be used stops the gateway here, loudly.
    channels = settings.channels()
    app = GatewayApp(
        publisher,
        default_tenant=settings.default_tenant,
        webhook_secret=settings.gateway_webhook_secret,
        max_body_bytes=settings.gateway_max_body_bytes,
        max_webhook_bytes=settings.gateway_max_webhook_bytes,
        channels=channels,
        topic_prefix=settings.topic_prefix,
    )
    mail = MailIntake(channels, app.publish_ticket, app.publish_outcomes)
    parts = ServiceParts()
    servers: list = []

    def start() -> None:
        servers.append(serve(app, settings.gateway_http_port))
        if settings.gateway_smtp_port > 0:
            servers.append(serve_smtp(mail, settings.gateway_smtp_port, settings.gateway_smtp_host,
                                      max_mail_bytes=settings.gateway_max_mail_bytes))
        elif any(tenant.email is not None for tenant in channels.tenants.values()):
            log.warning("tenants have support mailboxes but SUPPORTFLOW_GATEWAY_SMTP_PORT is 0: no mail is received")

    def stop() -> None:
        while servers:
            servers.pop().shutdown()

    parts.on_start.append(start)
    parts.on_stop.append(stop)
    return parts


if __name__ == "__main__":
    from supportflow.service import main

    main("gateway", GatewaySettings)
