"""Taking an action on a ticket, for the pages and the API alike: find the ticket among the ones
the user may see, ask the handler for the AgentAction (or the refusal), publish it on
agent.actions keyed by ticket id and wait for the broker to acknowledge it, then record it and the
ticket's new status. Nothing is recorded unless the event is on Kafka; an event published but not
recorded (the process died in between) comes back through the consumer, which records it then.

Actions go one at a time in this process, so two approvals of one ticket cannot both find it open.
Replicas sharing one database do not share this lock (see docs/workspace.md, what is left)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from supportflow.eventbus import TransientError
from supportflow.observability import ticket_context
from supportflow.topics import Topic

from services.workspace import metrics
from services.workspace.auth import User
from services.workspace.handlers import ActionRequest, action_record, agent_action, decision_from_json
from services.workspace.store import WorkspaceStore

log = logging.getLogger(__name__)


class TicketNotFound(Exception):
    """No such ticket, or not one of the user's tenants: the same answer for both."""


class PublishFailed(Exception):
    """The broker did not acknowledge the action: nothing was recorded, the agent may try again."""


@dataclass(frozen=True)
class Acted:
    ticket_id: str
    action_id: str
    kind: str
    status: str  # the ticket's status after the action


class ActionDesk:
    def __init__(self, store: WorkspaceStore, publisher, clock=time.time) -> None:  # noqa: ANN001
        self._store = store
        self._publisher = publisher  # publish(topic, key, event) and flush(): EventPublisher
        self._clock = clock
        self._lock = threading.Lock()

    def act(self, user: User, ticket_id: str, request: ActionRequest, address: str = "") -> Acted:
        """Raises TicketNotFound, ActionRefused or PublishFailed, each changing nothing."""
        with ticket_context(ticket_id), self._lock:
            row = self._store.ticket(ticket_id, user.grant)
            if row is None:
                raise TicketNotFound(ticket_id)
            decided = decision_from_json(row["decision"])
            outcome = agent_action(request, decided, row["status"], user.username)
            try:
                self._publisher.publish(Topic.AGENT_ACTIONS, ticket_id, outcome.event)
                self._publisher.flush()
            except (TransientError, BufferError) as exc:
                log.error("agent action not published", extra={"fields": {"kind": request.kind, "error": str(exc)}})
                raise PublishFailed(str(exc)) from exc
            record = action_record(outcome.event, self._clock())
            self._store.record_action(record, outcome.new_status, address=address)
            metrics.ACTIONS.labels(request.kind).inc()
            log.info("agent action", extra={"fields": {"kind": request.kind, "agent": user.agent,
                                                       "action_id": record.action_id}})
            return Acted(ticket_id, record.action_id, request.kind, outcome.new_status or row["status"])


__all__ = ["ActionDesk", "Acted", "PublishFailed", "TicketNotFound"]
