"""Delivers one decision: plan it (handlers.py), check and claim it in the ledger, post it through
its (tenant, provider) lane, record it. Two passes, each a Deliverer with its own clients and lanes
(main.py): the first attempt (`on_decided`, called by the consumer of the decision topics) and the
retry (`on_retry`, called by the consumer of tickets.delivery_retries). The ConsumerLoops call them
from their worker threads, one ticket per thread.

Executed actions (`on_action_recorded`, actions.recorded, read by the first attempts' loop) are told
to the customer the same way: action_results.py makes a decision of each EXECUTED record, keyed by
its action_id, posted on the channel the ticket's decisions went to (the ledger keeps each ticket's
origin when its first decision is delivered).

Agents' actions from the workspace (`on_action`, agent.actions, read by the first attempts' loop)
are delivered as decisions: handlers.decision_from_action makes one of each action that posts
something, keyed by its action_id, so everything below holds for them too, once per action.

Once per decision: the ledger is checked first (done: nothing is posted; the DeliveryRecorded is
published again from the ledger, with the same derived event id, in case the process died before
it reached Kafka), the decision is marked started before posting and done once the provider
acknowledged. Found started (or failed), the thread is read back first and a message with the same
text is recorded ALREADY_DELIVERED instead of posting it again (mail cannot be read back: it is
re-sent with the same Message-ID). A decision has one DeliveryRecorded event id, derived from its
own event id, whichever pass records it.

Failures. A first attempt makes few calls (a short retry policy). When the provider stays
unavailable through them, or its lane's circuit is open, the decision is not recorded: it goes to
tickets.delivery_retries as a DeliveryRetry (the whole decision, the calls made, the error, and
`retry_at`: a fixed delay, longer when the provider's Retry-After asked for more), its ledger row
stays started, and the first attempt's batch is committed; `supportflow_delivery_retries_scheduled_total`
counts it. The retry waits until `retry_at`, then delivers the decision with the full retry policy,
always reading the thread back first (the first attempt may have posted before it failed), so it
never posts twice. A permanent refusal (a 4xx) on either pass, and a retry that stays unavailable
through every attempt, are handled alike: the ledger marks the decision failed, a DeliveryRecorded
FAILED with the provider's reason is published, and the message being handled goes to its topic's
dead-letter twin (InvalidEvent: the loop copies it there with the reason in `sf-dlq-error`,
"not_found: zendesk 404: ..." or "provider_unavailable: ..."): the decision itself from a first
attempt, the DeliveryRetry carrying it from a retry (tickets.delivery_retries.dlq). A transient
outage is not allowed to stop a consumer as house rule 4 would have it, because one tenant's broken
helpdesk must not hold up every other tenant: the lanes (lanes.py) bound what it costs, and its dead
letters can be replayed once it is back (the ledger makes a replay safe). Only the ledger's own
database failing is a TransientError (retry, then stop without committing): without the ledger
nothing can be delivered safely for anyone. So is a delivery waiting to retry (between calls, or
until `retry_at`) when the service stops: it is left started, uncommitted, for the next consumer to
reconcile.

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
from dataclasses import dataclass
from typing import Callable, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import Emit, InvalidEvent, TransientError, derived_event_id
from supportflow.timestamps import seconds_of
from supportflow.topics import Topic

from services.delivery import metrics
from services.delivery.action_results import ActionMessages, decision_from_executed_action, stored_ticket
from services.delivery.handlers import (DeliveryPlan, NoChannel, Outcome, decision_from_action, delivery_record,
                                       delivery_retry, plan_delivery)
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


@dataclass(frozen=True)
class RetryLater:
    """How a first attempt hands a transient failure to the retry topic."""

    delay_s: float  # the least wait before the retry calls the provider again
    max_delay_s: float  # a longer Retry-After is not waited for: the retry's policy would refuse it anyway

    def delay(self, unavailable: ProviderUnavailable) -> float:
        return max(self.delay_s, min(unavailable.retry_after or 0.0, self.max_delay_s))


class Deliverer:
    """`retry_later` set: a first attempt's Deliverer, which hands transient failures to the retry
    topic; unset: a Deliverer that records them FAILED and dead-letters them (the retry pass)."""

    def __init__(
        self,
        channels: ChannelsConfig,
        ledger: DeliveryLedger,
        clients: ChannelClients,
        lanes: ProviderLanes,
        publish: Publish,
        *,
        retry_later: RetryLater | None = None,
        wait: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        action_messages: ActionMessages | None = None,
    ) -> None:
        self._channels = channels
        self._ledger = ledger
        self._clients = clients
        self._lanes = lanes
        self._publish = publish
        self._retry_later = retry_later
        self._wait = wait  # until a retry's time; main.py's ends it (ShuttingDown) when the service stops
        self._clock = clock
        self._action_messages = action_messages if action_messages is not None else ActionMessages.load()

    def on_decided(self, decided: ev.TicketDecided) -> list[Emit]:
        """A first attempt: the DeliveryRecorded, or the DeliveryRetry of a transient failure."""
        self._remember_ticket(decided)
        return self._deliver(decided, prior_attempts=0, retry_later=self._retry_later, reconcile=False)

    def on_action(self, action: ev.AgentAction) -> list[Emit]:
        """A first attempt at an agent's action (read with the decisions, by the same loop): an
        approval or an edit posts the agent's reply, an escalation its note, and a rejection or a
        context-loss flag nothing. Delivered as the decision `decision_from_action` makes of it,
        whose event id is the action's action_id: the ledger's key, and what its DeliveryRecorded
        id is derived from. That record is published here rather than returned, since the loop
        would derive the id of what is returned from the AgentAction's own event id, and an
        action keeps one record id whichever pass records it; a DeliveryRetry is returned."""
        decided = decision_from_action(action)
        metrics.AGENT_ACTIONS.labels(metrics.action_label(action.kind), "to_post" if decided else "nothing_to_post").inc()
        if decided is None:
            return []
        handed_on = []
        for emit in self._deliver(decided, prior_attempts=0, retry_later=self._retry_later, reconcile=False):
            if emit.topic is Topic.TICKETS_DELIVERED:
                self._publish(emit)
            else:
                handed_on.append(emit)
        return handed_on

    def on_action_recorded(self, record: ev.ActionRecorded) -> list[Emit]:
        """A first attempt at telling the customer the result of an action the system confirmed
        (action_results.py): nothing for a record that is not EXECUTED; posted on the channel of
        the ticket's earlier decisions, once per action_id. Its DeliveryRecorded is published here
        (as for an agent's action), a DeliveryRetry returned. A ticket this service never delivered
        on has no known channel: dead-lettered with the reason, to be replayed."""
        if record.status != ev.ACTION_STATUS_EXECUTED:
            return []
        stored = self._ledger_ticket(record.ticket_id)
        if stored is None:
            metrics.ACTION_RESULTS.labels("no_channel").inc()
            raise InvalidEvent(f"no_channel: nothing was delivered on ticket {record.ticket_id or '(none)'}, "
                               "so its channel is unknown")
        metrics.ACTION_RESULTS.labels("to_post").inc()
        decided = decision_from_executed_action(record, stored, self._action_messages)
        handed_on = []
        for emit in self._deliver(decided, prior_attempts=0, retry_later=self._retry_later, reconcile=False):
            if emit.topic is Topic.TICKETS_DELIVERED:
                self._publish(emit)
            else:
                handed_on.append(emit)
        return handed_on

    def _ledger_ticket(self, ticket_id: str) -> tk.Ticket | None:
        try:
            payload = self._ledger.ticket(ticket_id) if ticket_id else None
        except SQLAlchemyError as exc:
            raise TransientError(f"delivery ledger unavailable: {exc}") from exc
        return tk.Ticket.FromString(payload) if payload is not None else None

    def _remember_ticket(self, decided: ev.TicketDecided) -> None:
        ticket = decided.ticket
        if not ticket.ticket_id or not ticket.HasField("origin"):
            return
        try:
            self._ledger.remember_ticket(ticket.ticket_id, ticket.tenant_id or decided.meta.tenant_id,
                                         stored_ticket(ticket).SerializeToString())
        except SQLAlchemyError as exc:
            raise TransientError(f"delivery ledger unavailable: {exc}") from exc

    def on_retry(self, retry: ev.DeliveryRetry) -> list[Emit]:
        """A retry, once its time has come. Its DeliveryRecorded is published here rather than
        returned: the loop would derive the id of what is returned from the retry's event id, and a
        decision keeps the one record id whichever pass delivers it."""
        if not retry.HasField("decision"):
            raise InvalidEvent("delivery retry without a decision")
        retry_at = seconds_of(retry.retry_at)
        if retry_at is not None and retry_at > self._clock():
            try:
                self._wait(retry_at - self._clock())
            except ShuttingDown as exc:
                raise TransientError(str(exc)) from exc  # uncommitted: the next consumer retries it
        for emit in self._deliver(retry.decision, prior_attempts=retry.attempts, retry_later=None, reconcile=True):
            self._publish(emit)
        return []

    def _deliver(self, decided: ev.TicketDecided, *, prior_attempts: int, retry_later: RetryLater | None,
                 reconcile: bool) -> list[Emit]:
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

        # Started (died mid-way, or a first attempt that failed) or failed (maybe posted before a
        # timeout): read the thread back before posting.
        reconcile = reconcile or before is not None
        client = self._clients.get(plan.tenant_id, plan.provider)
        try:
            posted = self._lanes.run(plan.lane, lambda: client.deliver(plan, reconcile=reconcile))
        except PermanentDeliveryError as exc:
            self._refuse(decided, plan, exc.reason_label, str(exc), attempts=prior_attempts + exc.attempts)
        except ProviderUnavailable as exc:
            if retry_later is not None:
                return [self._schedule_retry(decided, plan, exc, retry_later)]
            self._refuse(decided, plan, "provider_unavailable", str(exc), attempts=prior_attempts + exc.attempts)
        except ShuttingDown as exc:
            # Left started in the ledger: the next consumer reconciles it.
            raise TransientError(str(exc)) from exc
        return [self._delivered(decided, plan, posted, prior_attempts)]

    def _schedule_retry(self, decided: ev.TicketDecided, plan: DeliveryPlan, unavailable: ProviderUnavailable,
                        retry_later: RetryLater) -> Emit:
        """Left started in the ledger: the retry reads the thread back before posting."""
        delay_s = retry_later.delay(unavailable)
        metrics.RETRIES_SCHEDULED.labels(metrics.provider_label(plan.provider)).inc()
        log.info("delivery to be retried", extra={"fields": {
            "provider": plan.provider, "attempts": unavailable.attempts, "retry_in_s": round(delay_s, 1),
            "error": str(unavailable)[:300]}})
        retry = delivery_retry(decided, attempts=unavailable.attempts, error=str(unavailable),
                               retry_at=self._clock() + delay_s)
        return Emit(Topic.DELIVERY_RETRIES, plan.ticket_id, retry)

    def _delivered(self, decided: ev.TicketDecided, plan: DeliveryPlan, posted: Posted, prior_attempts: int) -> Emit:
        now = self._clock()
        status = ev.DELIVERY_STATUS_ALREADY_DELIVERED if posted.already_delivered else ev.DELIVERY_STATUS_DELIVERED
        error = NO_NOTES_ADDRESS if plan.record_only else posted.warning
        attempts = prior_attempts + posted.attempts  # the first attempt's calls, if this is its retry
        outcome = Outcome(status, posted.external_id, attempts, error, now)
        try:
            self._ledger.finish(plan.decision_event_id, status=_STATUS_NAMES[status], external_id=posted.external_id,
                                attempts=attempts, error=error, delivered_at=now)
        except SQLAlchemyError as exc:
            # Posted but not recorded: the next attempt finds it started and reconciles.
            raise TransientError(f"delivery ledger unavailable after posting: {exc}") from exc
        provider = metrics.provider_label(plan.provider)
        kind = kind_label(plan.kind)
        metrics.DELIVERED.labels(provider, kind).inc()
        if posted.already_delivered:
            metrics.DUPLICATES_AVOIDED.labels(provider).inc()
        if posted.attempts:
            metrics.ATTEMPTS.labels(provider).observe(attempts)
        if plan.received_at is not None:
            metrics.LATENCY.labels(provider, kind).observe(max(0.0, now - plan.received_at))
        log.info("delivered", extra={"fields": {
            "provider": plan.provider, "kind": kind, "status": _STATUS_NAMES[status], "external_id": posted.external_id,
            "attempts": attempts}})
        return self._emit(decided, plan, outcome)

    def _refuse(self, decided: ev.TicketDecided, plan: DeliveryPlan, reason: str, detail: str, *, attempts: int) -> NoReturn:
        """Record the failure, publish it, and dead-letter what is being handled with the reason."""
        try:
            self._ledger.fail(plan.decision_event_id, error=detail, attempts=attempts)
        except SQLAlchemyError as exc:
            raise TransientError(f"delivery ledger unavailable: {exc}") from exc
        metrics.FAILED.labels(metrics.provider_label(plan.provider), reason).inc()
        log.warning("delivery failed", extra={"fields": {"provider": plan.provider, "reason": reason, "error": detail[:500]}})
        self._publish(self._emit(decided, plan, Outcome(ev.DELIVERY_STATUS_FAILED, attempts=attempts, error=detail)))
        raise InvalidEvent(f"{reason}: {detail}")

    def _no_channel(self, decided: ev.TicketDecided, plan: NoChannel) -> list[Emit]:
        metrics.FAILED.labels(metrics.provider_label(plan.provider), "no_channel").inc()
        log.warning("no channel to deliver to", extra={"fields": {"provider": plan.provider, "error": plan.error}})
        emit = self._emit(decided, plan, Outcome(ev.DELIVERY_STATUS_FAILED, error=plan.error))
        if plan.dead_letter:
            self._publish(emit)
            raise InvalidEvent(f"no_channel: {plan.error}")
        return [emit]

    @staticmethod
    def _emit(decided: ev.TicketDecided, plan: DeliveryPlan | NoChannel, outcome: Outcome) -> Emit:
        record = delivery_record(decided, plan, outcome)
        # The one record id of this decision, whichever pass records it and whether it is returned
        # (a first attempt's: the id the loop gives it too) or published here (a dead letter's, a
        # retry's), so a repeat is recognisably the same.
        record.meta.event_id = derived_event_id(decided.meta.event_id, Topic.TICKETS_DELIVERED, 0)
        return Emit(Topic.TICKETS_DELIVERED, decided.ticket.ticket_id, record)


def _outcome_of(entry: LedgerEntry) -> Outcome:
    return Outcome(_STATUS_OF.get(entry.status, ev.DELIVERY_STATUS_DELIVERED), entry.external_id, entry.attempts,
                   entry.error, entry.delivered_at)
