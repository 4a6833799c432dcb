"""Taking an action on a ticket, for the pages and the API alike: find the ticket among the ones
the user may see, ask the handler for the AgentAction (or the refusal), publish it on
agent.actions keyed by ticket id and wait for the broker to acknowledge it, then record it and the
ticket's new status. Nothing is recorded unless the event is on Kafka; an event published but not
recorded (the process died in between) comes back through the consumer, which records it then.

Actions go one at a time in this process, so two approvals of one ticket cannot both find it open.
Replicas sharing one database do not share this lock (see docs/workspace.md, what is left).

A redraft asks the drafter first (Drafter.Draft, with its deadline), outside the lock, then takes
the action only if the ticket's decision is still the one the new draft was made for. A
confirmation also goes to the escalator as an ActionConfirmed on actions.confirmed (published with
the AgentAction, before either is recorded). QA classes are marked on the QA sample, not on a
queued ticket; a rollback publishes a RoutingOverride on routing.overrides."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from supportflow.eventbus import TransientError
from supportflow.observability import ticket_context
from supportflow.topics import Topic

from services.workspace import metrics
from services.workspace.assist import ServiceUnavailable
from services.workspace.auth import LEAD, User
from services.workspace.handlers import (
    ALL_TENANTS,
    CONFIRM_ACTION,
    DECLINE_ACTION,
    QA_SEVERITY,
    REASSIGN,
    REDRAFT,
    ActionRefused,
    ActionRequest,
    action_record,
    agent_action,
    decision_from_json,
    override_row,
    qa_action,
    SENT,
    redraft_request,
    rollback_override,
    ticket_effect,
)
from services.workspace.store import WorkspaceStore

log = logging.getLogger(__name__)


class TicketNotFound(Exception):
    """No such ticket, or not one of the user's tenants: the same answer for both."""


class PublishFailed(Exception):
    """The broker did not acknowledge the action: nothing was recorded, the agent may try again."""


class NotAllowed(Exception):
    """The user's role (or ownership) does not allow this: 403, nothing changes."""


@dataclass(frozen=True)
class Acted:
    ticket_id: str
    action_id: str
    kind: str
    status: str  # the ticket's status after the action


class ActionDesk:
    def __init__(self, store: WorkspaceStore, publisher, clock=time.time, *, drafter=None,  # noqa: ANN001
                 rollback_owners: dict[str, str] | None = None) -> None:
        self._store = store
        self._publisher = publisher  # publish(topic, key, event) and flush(): EventPublisher
        self._clock = clock
        self._drafter = drafter  # draft(DraftRequest) -> Draft, raising ServiceUnavailable: DrafterClient
        self._rollback_owners = dict(rollback_owners or {})
        self._lock = threading.Lock()

    def act(self, user: User, ticket_id: str, request: ActionRequest, address: str = "") -> Acted:
        """Raises TicketNotFound, ActionRefused or PublishFailed, each changing nothing."""
        with ticket_context(ticket_id):
            new_draft, drafted_for = None, ""
            if request.kind == REDRAFT:
                new_draft, drafted_for = self._new_draft(user, ticket_id, request)
            with self._lock:
                row = self._store.ticket(ticket_id, user.grant)
                if row is None:
                    raise TicketNotFound(ticket_id)
                if drafted_for and row["decision_event_id"] != drafted_for:
                    raise ActionRefused(409, "the ticket changed while the drafter was writing: ask again")
                decided = decision_from_json(row["decision"])
                context: dict = {}
                if request.kind == REASSIGN:
                    context["assignees"] = frozenset(self._store.usernames_granted(row["tenant"]))
                elif request.kind in (CONFIRM_ACTION, DECLINE_ACTION):
                    context["proposal"] = self._store.proposal(ticket_id, request.proposal_id.strip())
                elif request.kind == REDRAFT:
                    # The shown draft may itself be a redraft made meanwhile: this one replaces it.
                    context["new_draft"] = new_draft
                outcome = agent_action(request, decided, row["status"], user.username, **context)
                extra = [(Topic.ACTIONS_CONFIRMED, outcome.confirmation)] if outcome.confirmation is not None else []
                self._publish([(Topic.AGENT_ACTIONS, outcome.event), *extra], ticket_id, request.kind)
                record = action_record(outcome.event, self._clock())
                self._store.record_action(record, ticket_effect(outcome.event), address=address)
                metrics.ACTIONS.labels(request.kind).inc()
                log.info("agent action", extra={"fields": {"kind": request.kind, "agent": user.agent,
                                                           "action_id": record.action_id}})
                return Acted(ticket_id, record.action_id, request.kind, outcome.new_status or row["status"])

    def _new_draft(self, user: User, ticket_id: str, request: ActionRequest):  # noqa: ANN202
        """The drafter's new draft for the ticket as it stands, and the decision it was made for."""
        row = self._store.ticket(ticket_id, user.grant)
        if row is None:
            raise TicketNotFound(ticket_id)
        decided = decision_from_json(row["decision"])
        # The refusals that need no drafter come first: a sent ticket or no instruction asks nothing.
        if row["status"] == SENT:
            raise ActionRefused(409, "this ticket's reply was already sent: it is sent once")
        if not request.note.strip():
            raise ActionRefused(422, "say what the new draft should do differently")
        if self._drafter is None:
            raise ActionRefused(503, "no drafter is configured for this workspace")
        try:
            draft = self._drafter.draft(redraft_request(decided, request.note, user.username))
        except ServiceUnavailable as exc:
            log.warning("redraft failed", extra={"fields": {"error": str(exc)}})
            raise ActionRefused(503, "the drafter did not answer in time: the draft shown stays; try again") from exc
        outcome = "refused" if (not draft.text.strip() or draft.block_reason) else "ok"
        metrics.REDRAFTS.labels(outcome).inc()
        return draft, row["decision_event_id"]

    def mark_qa(self, user: User, ticket_id: str, qa_class: str, note: str = "", address: str = "") -> Acted:
        """Mark a QA sample's severity class (leads and above). Raises NotAllowed, TicketNotFound
        (no such sample among the user's tenants), ActionRefused or PublishFailed."""
        if not user.may(LEAD):
            raise NotAllowed("QA samples are reviewed by leads")
        with ticket_context(ticket_id), self._lock:
            sample = self._store.qa_sample(ticket_id, user.grant)
            if sample is None:
                raise TicketNotFound(ticket_id)
            event = qa_action(decision_from_json(sample["decision"]), qa_class, note, user.username,
                              already=sample["qa_class"])
            self._publish([(Topic.AGENT_ACTIONS, event)], ticket_id, QA_SEVERITY)
            record = action_record(event, self._clock())
            self._store.record_action(record, ticket_effect(event), address=address)
            metrics.ACTIONS.labels(QA_SEVERITY).inc()
            return Acted(ticket_id, record.action_id, QA_SEVERITY, qa_class)

    def rollback_owner(self, archetype: str) -> str:
        return self._rollback_owners.get(archetype, "")

    @property
    def rollback_owners(self) -> dict[str, str]:
        return dict(self._rollback_owners)

    def roll_back(self, user: User, archetype: str, tenant: str, reason: str, address: str = "") -> dict:
        """Pull `archetype` back to draft-for-review for `tenant` ("*": every tenant, for a user
        granted every tenant): only its named owner, a lead or admin, may. Returns the override's
        audit row. Raises NotAllowed, ActionRefused or PublishFailed."""
        owner = self._rollback_owners.get(archetype, "")
        if not user.may(LEAD) or not owner or owner != user.username:
            metrics.ROLE_REFUSALS.labels("rollback").inc()
            self._store.audit(user.agent, "refused", detail=f"rollback of {archetype}: not its owner ({owner or 'none'})",
                              address=address)
            raise NotAllowed(f"only the rollback owner of {archetype} ({owner or 'nobody is named'}) may roll it back")
        if tenant == ALL_TENANTS and user.grant is not None:
            raise NotAllowed("only a user granted every tenant may roll back for every tenant")
        if tenant != ALL_TENANTS and not user.sees(tenant):
            raise NotAllowed(f"{tenant} is not one of your tenants")
        override = rollback_override(archetype, tenant, reason, user.username)
        # RoutingOverride is keyed by archetype, so that one archetype's overrides stay in order.
        self._publish([(Topic.ROUTING_OVERRIDES, override)], archetype, "rollback")
        row = override_row(override, self._clock())
        self._store.add_override(row)
        self._store.audit(user.agent, "rollback", detail=f"{archetype} for {tenant} back to draft_for_review: {row['reason']}",
                          address=address)
        metrics.ADMIN_CHANGES_DONE.labels("rollback").inc()
        log.info("rollback", extra={"fields": {"archetype": archetype, "tenant": tenant, "by": user.agent,
                                               "override_id": row["override_id"]}})
        return row

    def _publish(self, events: list, key: str, kind: str) -> None:  # noqa: ANN001
        try:
            for topic, event in events:
                self._publisher.publish(topic, key, event)
            self._publisher.flush()
        except (TransientError, BufferError) as exc:
            log.error("workspace event not published", extra={"fields": {"kind": kind, "error": str(exc)}})
            raise PublishFailed(str(exc)) from exc


__all__ = ["ActionDesk", "Acted", "NotAllowed", "PublishFailed", "TicketNotFound"]
