"""Delivery: posts each decision's first response back to the channel the ticket came from (a
public reply, an internal note, a follow-up), what agents send from the workspace (an approved
or edited reply, an escalation note) and the result of each action the tenant's system executed
(actions.recorded), and records every delivery on tickets.delivered.
Two consumer loops: the first attempt reads the four decision topics and agent.actions, the retry
reads tickets.delivery_retries, where first attempts put the decisions (and actions) a transient
failure stopped (deliverer.py says what happens to each decision, handlers.py what is posted,
providers/ how).

Agents' actions are read by the first attempts' loop rather than a third one: an action is a first
attempt like a decision (the same lanes, short retry policy and hand-off to the retry topic), a
person waits for it as a customer waits for an automatic answer, and first attempts never wait
long, so a loop of its own would isolate nothing while adding a consumer group to run and watch.

Concurrency: a batch is at most BATCH_SIZE messages and every ticket in it gets its own thread
(threads that mostly wait on a helpdesk); how many calls run at once is bounded per (tenant,
provider) lane by SUPPORTFLOW_DELIVERY_WORKERS (lanes.py), so within a batch a slow or broken
helpdesk holds only its own tenant's tickets. A batch is committed once every delivery in it is
recorded or handed on. First attempts make at most FIRST_PASS_ATTEMPTS calls and wait at most
FIRST_PASS_MAX_RETRY_AFTER_S for a Retry-After, then hand the decision to the retry topic: a failing
helpdesk holds the first attempts' next batch for a few seconds at most, whoever's tickets are in
it. Retries wait until their `retry_at` (RETRY_DELAY_S, or the provider's Retry-After), then get the
full SUPPORTFLOW_DELIVERY_MAX_ATTEMPTS and SUPPORTFLOW_DELIVERY_MAX_RETRY_AFTER_S: a retry that keeps
failing holds up the retries that come after its batch (any tenant's), never a first attempt. Each
pass has its own clients and lanes, so a lane the retries opened does not turn first attempts away.

Needs SUPPORTFLOW_CHANNELS_PATH (supportflow/channels.py) for anything to reach a channel, and
SUPPORTFLOW_DELIVERY_LEDGER_URL shared by the replicas (PostgreSQL) in a deployment; the default is
a SQLite file under the cache dir, fine for one replica with a persistent cache.
"""

from __future__ import annotations

import sys
import threading

from supportflow.channels import ChannelsConfig
from supportflow.eventbus import ConsumerLoop, DeadLetterBudget, Emit, EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts
from supportflow.topics import DECISION_TOPICS, Topic

from services.delivery.deliverer import ChannelClients, ClientFactory, Deliverer, RetryLater
from services.delivery.lanes import ProviderLanes
from services.delivery.ledger import DeliveryLedger
from services.delivery.providers.api_callback import ApiCallbackClient
from services.delivery.providers.base import ChannelClient, RetryPolicy, stoppable_sleep
from services.delivery.providers.freshdesk import FreshdeskClient
from services.delivery.providers.intercom import IntercomClient
from services.delivery.providers.smtp_mail import SmtpMailer
from services.delivery.providers.zendesk import ZendeskClient
from services.delivery.settings import DeliverySettings

SERVICE = "delivery"
RETRY_GROUP = f"{SERVICE}-retries"  # the retry loop's consumer group, beside the first attempts' SERVICE
BATCH_SIZE = 64
# A first attempt holds its batch, and so every tenant's next decisions, while it retries: two calls
# and a short Retry-After at most, then the retry topic takes over with the full policy.
FIRST_PASS_ATTEMPTS = 2
FIRST_PASS_MAX_RETRY_AFTER_S = 1.0
# How long a retry waits at least after its first attempt failed (longer if the provider's
# Retry-After asked for more): an outage is rarely over within a second.
RETRY_DELAY_S = 5.0
# How long a lane whose provider ran out of retries is not called (lanes.py).
LANE_COOLDOWN_S = 30.0
# A helpdesk that refuses every call (revoked credentials) dead-letters that tenant's decisions by
# design, and a big tenant can be most of the traffic: the budget stops the consumer only when
# nearly everything fails, which points at delivery itself (a bad deploy, a broken ledger).
DEAD_LETTERS_IN_A_ROW = 1000
DEAD_LETTER_RATIO = 0.9


def retry_policy(settings: DeliverySettings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.delivery_max_attempts, max_retry_after_s=settings.delivery_max_retry_after_s)


def first_pass_policy(settings: DeliverySettings) -> RetryPolicy:
    return RetryPolicy(max_attempts=min(FIRST_PASS_ATTEMPTS, settings.delivery_max_attempts),
                       max_retry_after_s=min(FIRST_PASS_MAX_RETRY_AFTER_S, settings.delivery_max_retry_after_s))


def client_factory(channels: ChannelsConfig, settings: DeliverySettings, policy: RetryPolicy,
                   stopping: threading.Event) -> ClientFactory:
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


def build_deliverers(
    settings: DeliverySettings, publisher: EventPublisher, stopping: threading.Event
) -> tuple[Deliverer, Deliverer, DeliveryLedger]:
    """(first attempts, retries, their shared ledger)."""
    channels = settings.channels()  # a broken channels file fails the start, naming every problem
    ledger = DeliveryLedger(settings.ledger_url)

    def publish(emit: Emit) -> None:
        publisher.publish(emit.topic, emit.key, emit.event)

    def clients(policy: RetryPolicy) -> ChannelClients:
        return ChannelClients(client_factory(channels, settings, policy, stopping))

    def lanes() -> ProviderLanes:
        return ProviderLanes(settings.delivery_workers, LANE_COOLDOWN_S)

    first = Deliverer(channels, ledger, clients(first_pass_policy(settings)), lanes(), publish,
                      retry_later=RetryLater(RETRY_DELAY_S, settings.delivery_max_retry_after_s))
    retrying = Deliverer(channels, ledger, clients(retry_policy(settings)), lanes(), publish,
                         wait=stoppable_sleep(stopping))
    return first, retrying, ledger


def build(settings: DeliverySettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    # Set when the service stops (after the consumers had their grace period to finish their batch):
    # a delivery still waiting to retry gives up uncommitted instead of outliving the process.
    stopping = threading.Event()
    first, retrying, ledger = build_deliverers(settings, publisher, stopping)
    first_attempts = ConsumerLoop(
        settings,
        SERVICE,
        {topic: first.on_decided for topic in DECISION_TOPICS.values()}
        | {Topic.AGENT_ACTIONS: first.on_action, Topic.ACTIONS_RECORDED: first.on_action_recorded},
        publisher,
        health,
        batch_size=BATCH_SIZE,
        workers=BATCH_SIZE,
        budget=DeadLetterBudget(max_consecutive=DEAD_LETTERS_IN_A_ROW, max_ratio=DEAD_LETTER_RATIO),
    )
    retries = ConsumerLoop(
        settings,
        SERVICE,
        {Topic.DELIVERY_RETRIES: retrying.on_retry},
        publisher,
        health,
        group=f"{settings.topic_prefix}{RETRY_GROUP}",
        batch_size=BATCH_SIZE,
        workers=BATCH_SIZE,
        # Everything here already failed once: during an outage nearly all of it is dead-lettered,
        # which says nothing about delivery itself (the first attempts' budget watches that).
        budget=DeadLetterBudget(max_consecutive=sys.maxsize, max_ratio=1.0),
    )
    # HTTP clients are not closed under deliveries that may still run: the process exit does it.
    return ServiceParts(consumers=[first_attempts, retries], on_stop=[stopping.set, ledger.close])


if __name__ == "__main__":
    from supportflow.service import main

    main("delivery", DeliverySettings)
