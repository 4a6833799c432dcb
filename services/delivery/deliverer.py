"""Delivers one decision: plan it (handlers.py), check and claim it in the ledger, post it through
its (tenant, provider) lane, record it. The ConsumerLoop calls `on_decided` from its worker
threads, one ticket per thread.

Once per decision: the ledger is checked first (done: nothing is posted; the DeliveryRecorded is
published again from the ledger, with the same derived event id, in case the process died before
it reached Kafka), the decision is marked started before posting and done once the provider
acknowledged. Found started (or failed), the thread is read back first and a message with the same
text is recorded ALREADY_DELIVERED instead of posting it again (mail cannot be read back: it is
re-sent with the same Message-ID).

Failures. A permanent refusal (a 4xx) and a provider that stayed unavailable through every retry
are handled alike: the ledger marks the decision failed, a DeliveryRecorded FAILED with the
provider's reason is published, and the decision goes to its topic's dead-letter twin
(InvalidEvent: the loop copies the original message there with the reason in
`sf-dlq-error`, "not_found: zendesk 404: ..." or "provider_unavailable: ..."). A transient outage
is not allowed to stop the consumer as house rule 4 would have it, because one tenant's broken
helpdesk must not hold up every other tenant: the lanes (lanes.py) bound what it costs, and its
dead letters can be replayed once it is back (the ledger makes a replay safe). Only the ledger's
own database failing is a TransientError (retry, then stop without committing): without the
ledger nothing can be delivered safely for anyone. So is a delivery still waiting to retry when
the service stops: it is left started, uncommitted, for the next consumer to reconcile.

The dead letter's `sf-dlq-reason` header is the loop's fixed "invalid_event"; the delivery reason
leads `sf-dlq-error` (no_channel, not_found, unauthorized, rejected, provider_unavailable: the
values of supportflow_delivery_failed_total's `reason`).

A ticket from the API (or without origin) is answered through the tenant's signed callback when
it has one; without one it is recorded FAILED "no channel" and not dead-lettered: its sender reads
tickets.delivered. A ticket whose tenant lacks that channel is recorded FAILED and dead-lettered,
to be replayed once the channels file has it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent, TransientError, derived_event_id
from supportflow.topics import Topic

from services.delivery import metrics
from services.delivery.handlers import DeliveryPlan, NoChannel, Outcome, delivery_record, plan_delivery
from services.delivery.lanes import ProviderLanes
from services.delivery.ledger import Claim, DeliveryLedger, LedgerEntry
from services.delivery.providers.base import ChannelClient, PermanentDeliveryError, Posted, ProviderUnavailable, ShuttingDown

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, str], ChannelClient]  # (tenant, provider) -> client
Publish = Callable[[Emit], None]

_STATUS_NAMES = {
    ev.DELIVERY_STATUS_DELIVERED: "delivered",
    ev.DELIVERY_STATUS_ALREADY_DELIVERED: "already_delivered",
    ev.DELIVERY_STATUS_FAILED: "failed",
}
_STATUS_OF = {name: status for status, name in _STATUS_NAMES.items()}
NO_NOTES_ADDRESS = "no notes_address: the note is recorded on tickets.delivered only"


def kind_label(kind: int) -> str:
    return ev.DeliveryKind.Name(kind).removeprefix("DELIVERY_KIND_").lower()


class ChannelClients:
    """One client per (tenant, provider), made on first use and kept (HTTP connections pool)."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, str], ChannelClient] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str, provider: str) -> ChannelClient:
        with self._lock:
            client = self._clients.get((tenant, provider))
            if client is None:
                client = self._clients[(tenant, provider)] = self._factory(tenant, provider)
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


class Deliverer:
    def __init__(
        self,
        channels: ChannelsConfig,
        ledger: DeliveryLedger,
        clients: ChannelClients,
        lanes: ProviderLanes,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._channels = channels
        self._ledger = ledger
        self._clients = clients
        self._lanes = lanes
        self._publish = publish
        self._clock = clock

    def on_decided(self, decided: ev.TicketDecided) -> list[Emit]:
        plan = plan_delivery(decided, self._channels)
        if isinstance(plan, NoChannel):
            return self._no_channel(decided, plan)
        provider = metrics.provider_label(plan.provider)
        try:
            before = self._ledger.claim(Claim(
                plan.decision_event_id, plan.ticket_id, plan.tenant_id, plan.provider, kind_label(plan.kind),
                plan.external_ticket_id,
            ))
        except SQLAlchemyError as exc:
            raise TransientError(f"delivery ledger unavailable: {exc}") from exc
        if before is not None and before.done:
            metrics.DUPLICATES_AVOIDED.labels(provider).inc()
            log.info("already delivered (ledger): recorded again, not posted", extra={"fields": {
                "decision_event_id": plan.decision_event_id, "provider": plan.provider}})
            return [self._emit(decided, plan, _outcome_of(before))]

        reconcile = before is not None  # started (died mid-way) or failed (maybe posted before a timeout)
        client = self._clients.get(plan.tenant_id, plan.provider)
        try:
            posted = self._lanes.run(plan.lane, lambda: client.deliver(plan, reconcile=reconcile))
        except PermanentDeliveryError as exc:
            self._refuse(decided, plan, exc.reason_label, str(exc), attempts=exc.attempts)
        except ProviderUnavailable as exc:
            self._refuse(decided, plan, "provider_unavailable", str(exc), attempts=exc.attempts)
        except ShuttingDown as exc:
            # Left started in the ledger: the next consumer reconciles it.
            raise TransientError(str(exc)) from exc
        return [self._delivered(decided, plan, posted)]

    def _delivered(self, decided: ev.TicketDecided, plan: DeliveryPlan, posted: Posted) -> Emit:
        now = self._clock()
        status = ev.DELIVERY_STATUS_ALREADY_DELIVERED if posted.already_delivered else ev.DELIVERY_STATUS_DELIVERED
        error = NO_NOTES_ADDRESS if plan.record_only else posted.warning
        outcome = Outcome(status, posted.external_id, posted.attempts, error, now)
        try:
            self._ledger.finish(plan.decision_event_id, status=_STATUS_NAMES[status], external_id=posted.external_id,
                                attempts=posted.attempts, error=error, delivered_at=now)
        except SQLAlchemyError as exc:
            # Posted but not recorded: the next attempt finds it started and reconciles.
            raise TransientError(f"delivery ledger unavailable after posting: {exc}") from exc
        provider = metrics.provider_label(plan.provider)
        kind = kind_label(plan.kind)
        metrics.DELIVERED.labels(provider, kind).inc()
        if posted.already_delivered:
            metrics.DUPLICATES_AVOIDED.labels(provider).inc()
        if posted.attempts:
            metrics.ATTEMPTS.labels(provider).observe(posted.attempts)
        if plan.received_at is not None:
            metrics.LATENCY.labels(provider, kind).observe(max(0.0, now - plan.received_at))
        log.info("delivered", extra={"fields": {
            "provider": plan.provider, "kind": kind, "status": _STATUS_NAMES[status], "external_id": posted.external_id,
            "attempts": posted.attempts}})
        return self._emit(decided, plan, outcome)

    def _refuse(self, decided: ev.TicketDecided, plan: DeliveryPlan, reason: str, detail: str, *, attempts: int) -> NoReturn:
        """Record the failure, publish it, and dead-letter the decision with the reason."""
        try:
            self._ledger.fail(plan.decision_event_id, error=detail, attempts=attempts)
        except SQLAlchemyError as exc:
            raise TransientError(f"delivery ledger unavailable: {exc}") from exc
        metrics.FAILED.labels(metrics.provider_label(plan.provider), reason).inc()
        log.warning("delivery failed", extra={"fields": {"provider": plan.provider, "reason": reason, "error": detail[:500]}})
        self._publish(self._emit(decided, plan, Outcome(ev.DELIVERY_STATUS_FAILED, attempts=attempts, error=detail),
                                 with_event_id=True))
        raise InvalidEvent(f"{reason}: {detail}")

    def _no_channel(self, decided: ev.TicketDecided, plan: NoChannel) -> list[Emit]:
        metrics.FAILED.labels(metrics.provider_label(plan.provider), "no_channel").inc()
        log.warning("no channel to deliver to", extra={"fields": {"provider": plan.provider, "error": plan.error}})
        emit = self._emit(decided, plan, Outcome(ev.DELIVERY_STATUS_FAILED, error=plan.error), with_event_id=plan.dead_letter)
        if plan.dead_letter:
            self._publish(emit)
            raise InvalidEvent(f"no_channel: {plan.error}")
        return [emit]

    @staticmethod
    def _emit(decided: ev.TicketDecided, plan: DeliveryPlan | NoChannel, outcome: Outcome, *,
              with_event_id: bool = False) -> Emit:
        record = delivery_record(decided, plan, outcome)
        if with_event_id:
            # Published here rather than returned (the decision is dead-lettered): the id the loop
            # would have given it, so a replay's record is recognisably the same.
            record.meta.event_id = derived_event_id(decided.meta.event_id, Topic.TICKETS_DELIVERED, 0)
        return Emit(Topic.TICKETS_DELIVERED, decided.ticket.ticket_id, record)


def _outcome_of(entry: LedgerEntry) -> Outcome:
    return Outcome(_STATUS_OF.get(entry.status, ev.DELIVERY_STATUS_DELIVERED), entry.external_id, entry.attempts,
                   entry.error, entry.delivered_at)
