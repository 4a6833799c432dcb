"""Channel adapters: each verifies its provider's own authentication and maps the provider's
payload to the canonical ticket with `origin` filled, and to the outcomes it carries (status
changes, satisfaction ratings, customer replies: `outcomes`). docs/channels.md is the contract.

Pure: they import neither Kafka nor an HTTP or SMTP server. `WEBHOOKS` lists the helpdesks that
call `POST /v1/channels/{provider}/{tenant}`; mail comes in through `email_message`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.gateway.channels import freshdesk, intercom, zendesk
from services.gateway.channels.outcomes import ChannelOutcome, ChannelOutcomes, RefusedOutcome
from services.gateway.channels.payload import (
    AuthenticationError,
    ChannelTicket,
    Ignored,
    email_ticket_id,
    pipeline_ticket_id,
)


@dataclass(frozen=True)
class WebhookAdapter:
    provider: str
    # (the tenant's provider settings, raw body, request headers, now in Unix seconds); raises AuthenticationError
    authenticate: Callable[[Any, bytes, Mapping[str, str], float], None]
    # (settings, tenant, raw body, headers, received_at); raises PayloadError naming the field
    read: Callable[[Any, str, bytes, Mapping[str, str], Timestamp | None], ChannelTicket | Ignored]
    # (the same); the outcomes the delivery carries, those it could not read among them
    outcomes: Callable[[Any, str, bytes, Mapping[str, str], Timestamp | None], ChannelOutcomes]


WEBHOOKS: dict[str, WebhookAdapter] = {
    module.PROVIDER: WebhookAdapter(module.PROVIDER, module.authenticate, module.ticket_from_webhook,
                                    module.outcomes_from_webhook)
    for module in (zendesk, intercom, freshdesk)
}

__all__ = [
    "WEBHOOKS",
    "AuthenticationError",
    "ChannelOutcome",
    "ChannelOutcomes",
    "RefusedOutcome",
    "ChannelTicket",
    "Ignored",
    "WebhookAdapter",
    "email_ticket_id",
    "pipeline_ticket_id",
]
