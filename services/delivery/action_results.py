"""The customer hears the result of an action once the tenant's system confirmed it: an
ActionRecorded EXECUTED (actions.recorded) becomes a short public message on the ticket's own
channel ("Your card ending 1234 is now frozen (ref chg-81)."). Pure: the wording is data
(action_messages.yaml), the ticket's channel comes from the ledger (the origin of a decision
delivered earlier on the same ticket).

Only EXECUTED records are posted: a proposal, a dry run or a refusal changed nothing the customer
should be told about, so nothing here can say an action ran when it did not. The message is
delivered as a decision whose event id is the action's action_id: the ledger's key, so one message
per action whatever is redelivered, through the same reconciliation and retry topic as the rest.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent

MESSAGES_FILE = "action_messages.yaml"
RESULT_PREFIX = "result."  # the escalator's params carrying the system's result
ACTION_PRODUCER = "escalator:action"  # meta.producer of a decision built from an executed action


class ActionMessagesError(ValueError):
    """The wordings file is unusable; raised at start-up."""


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class ActionMessages:
    default: tuple[str, ...]
    tools: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path | None = None) -> "ActionMessages":
        where = str(path) if path else MESSAGES_FILE
        try:
            text = Path(path).read_text(encoding="utf-8") if path else \
                resources.files(__package__).joinpath(MESSAGES_FILE).read_text(encoding="utf-8")
            data: Any = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as exc:
            raise ActionMessagesError(f"cannot read {where}: {exc}") from exc

        def wordings(value: Any, name: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ActionMessagesError(f"{where}: {name} must be a non-empty list of wordings")
            for wording in value:
                try:
                    _placeholders(wording)
                except ValueError as exc:
                    raise ActionMessagesError(f"{where}: {name}: {wording!r}: {exc}") from exc
            return tuple(value)

        if not isinstance(data, dict):
            raise ActionMessagesError(f"{where}: expected `default` and `tools`")
        tools = data.get("tools") or {}
        if not isinstance(tools, dict):
            raise ActionMessagesError(f"{where}: `tools` must map tool names to wordings")
        default = wordings(data.get("default"), "default")
        if not any(not _placeholders(w) - {"status"} for w in default):
            raise ActionMessagesError(f"{where}: `default` needs a wording that uses at most {{status}}")
        return cls(default, {str(tool): wordings(value, f"tools.{tool}") for tool, value in tools.items()})

    def text(self, record: ev.ActionRecorded) -> str:
        values = {name.removeprefix(RESULT_PREFIX): value for name, value in record.params.items() if value.strip()}
        values.setdefault("status", "done")
        for wording in (*self.tools.get(record.tool, ()), *self.default):
            if _placeholders(wording) <= values.keys():
                return wording.format(**values)
        raise InvalidEvent(f"no wording fits the result of {record.tool or 'an action'}")  # the load check prevents it


def stored_ticket(ticket: tk.Ticket) -> tk.Ticket:
    """What delivery keeps of a ticket to post on its channel later: where it came from, not what it says."""
    return tk.Ticket(ticket_id=ticket.ticket_id, tenant_id=ticket.tenant_id, channel=ticket.channel,
                     customer_id=ticket.customer_id, subject=ticket.subject, origin=ticket.origin)


def decision_from_executed_action(record: ev.ActionRecorded, ticket: tk.Ticket, messages: ActionMessages) -> ev.TicketDecided:
    """The public message for an executed action, as a decision keyed by its action id."""
    if record.status != ev.ACTION_STATUS_EXECUTED:
        raise ValueError("only an executed action is told to the customer")
    if not record.action_id:
        raise InvalidEvent("executed action without an action_id")
    decided = ev.TicketDecided(
        meta=ev.EventMeta(event_id=record.action_id, tenant_id=ticket.tenant_id or record.meta.tenant_id,
                          schema_version=record.meta.schema_version, producer=ACTION_PRODUCER),
        ticket=ticket,
        decision=ev.DECISION_RESPOND,
        reason=f"{record.tool} executed and confirmed by the system",
        draft=tk.Draft(text=messages.text(record), status=tk.DRAFT_STATUS_READY, generator="action_result"),
    )
    if record.meta.HasField("occurred_at"):
        decided.meta.occurred_at.CopyFrom(record.meta.occurred_at)
    return decided
