"""Delivery: posts each decision's first response back to the channel the ticket came from (a
public reply, an internal note, a follow-up) and records every delivery on tickets.delivered.
One consumer loop reads the four decision topics (deliverer.py says what happens to each
decision, handlers.py what is posted, providers/ how).

Concurrency: a batch is at most BATCH_SIZE decisions and every ticket in it gets its own thread
(threads that mostly wait on a helpdesk); how many calls run at once is bounded per (tenant,
provider) lane by SUPPORTFLOW_DELIVERY_WORKERS (lanes.py), so within a batch a slow or broken
helpdesk holds only its own tenant's tickets. The batch is committed once every delivery in it is
recorded: the next batch waits for a delivery that is still retrying (docs/channels.md).

Needs SUPPORTFLOW_CHANNELS_PATH (supportflow/channels.py) for anything to reach a channel, and
SUPPORTFLOW_DELIVERY_LEDGER_URL shared by the replicas (PostgreSQL) in a deployment; the default is
a SQLite file under the cache dir, fine for one replica with a persistent cache.
"""

from __future__ import annotations

import threading

from supportflow.channels import ChannelsConfig
from supportflow.eventbus import ConsumerLoop, DeadLetterBudget, Emit, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.settings import Settings
from supportflow.topics import DECISION_TOPICS

from services.delivery.deliverer import ChannelClients, ClientFactory, Deliverer
from services.delivery.lanes import ProviderLanes
from services.delivery.ledger import DeliveryLedger
from services.delivery.providers.api_callback import ApiCallbackClient
from services.delivery.providers.base import ChannelClient, RetryPolicy, stoppable_sleep
from services.delivery.providers.freshdesk import FreshdeskClient
from services.delivery.providers.intercom import IntercomClient
from services.delivery.providers.smtp_mail import SmtpMailer
from services.delivery.providers.zendesk import ZendeskClient

SERVICE = "delivery"
BATCH_SIZE = 64
# How long a lane whose provider ran out of retries is not called (lanes.py).
LANE_COOLDOWN_S = 30.0
# A helpdesk that refuses every call (revoked credentials) dead-letters that tenant's decisions by
# design, and a big tenant can be most of the traffic: the budget stops the consumer only when
# nearly everything fails, which points at delivery itself (a bad deploy, a broken ledger).
DEAD_LETTERS_IN_A_ROW = 1000
DEAD_LETTER_RATIO = 0.9


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.delivery_max_attempts, max_retry_after_s=settings.delivery_max_retry_after_s)


def client_factory(channels: ChannelsConfig, settings: Settings, stopping: threading.Event) -> ClientFactory:
    policy = retry_policy(settings)
    timeout_s = settings.delivery_timeout_s
    sleep = stoppable_sleep(stopping)

    def make(tenant_id: str, provider: str) -> ChannelClient:
        tenant = channels.tenant(tenant_id)
        channel = tenant.provider(provider) if tenant is not None else None
        if channel is None:  # plan_delivery never plans one
            raise ValueError(f"tenant {tenant_id} has no {provider} channel")
        if provider == "zendesk":
            return ZendeskClient(channel, policy, timeout_s, sleep=sleep)
        if provider == "intercom":
            return IntercomClient(channel, policy, timeout_s, sleep=sleep)
        if provider == "freshdesk":
            return FreshdeskClient(channel, policy, timeout_s, sleep=sleep)
        if provider == "api":
            return ApiCallbackClient(channel, policy, timeout_s, sleep=sleep)
        return SmtpMailer(channel, policy, timeout_s, sleep=sleep)

    return make


def build_deliverer(
    settings: Settings, publisher: EventPublisher, stopping: threading.Event
) -> tuple[Deliverer, DeliveryLedger]:
    channels = settings.channels()  # a broken channels file fails the start, naming every problem
    ledger = DeliveryLedger(settings.ledger_url)
    clients = ChannelClients(client_factory(channels, settings, stopping))

    def publish(emit: Emit) -> None:
        publisher.publish(emit.topic, emit.key, emit.event)

    lanes = ProviderLanes(settings.delivery_workers, LANE_COOLDOWN_S)
    return Deliverer(channels, ledger, clients, lanes, publish), ledger


def build(settings: Settings, publisher: EventPublisher, health: Health) -> ServiceParts:
    # Set when the service stops (after the consumer had its grace period to finish its batch): a
    # delivery still waiting to retry gives up uncommitted instead of outliving the process.
    stopping = threading.Event()
    deliverer, ledger = build_deliverer(settings, publisher, stopping)
    consumer = ConsumerLoop(
        settings,
        SERVICE,
        {topic: deliverer.on_decided for topic in DECISION_TOPICS.values()},
        publisher,
        health,
        batch_size=BATCH_SIZE,
        workers=BATCH_SIZE,
        budget=DeadLetterBudget(max_consecutive=DEAD_LETTERS_IN_A_ROW, max_ratio=DEAD_LETTER_RATIO),
    )
    # HTTP clients are not closed under deliveries that may still run: the process exit does it.
    return ServiceParts(consumers=[consumer], on_stop=[stopping.set, ledger.close])
