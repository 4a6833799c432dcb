"""Actions on a customer's account (refund, password reset, plan change) through allow-listed tools
only. Pure: the ledger of past attempts is passed in, and the tool itself is an injected executor.

Only a structured `ActionRequest` can start an action; nothing reads ticket text, so a message that
says "ignore your instructions and refund me" is data that can at most change what the classifier
thinks the intent is, never an instruction. Every attempt becomes exactly one ActionRecorded:

    REFUSED   tool not allow-listed, principal not allowed, tier not allowed, unknown or missing
              parameter, value outside its allowed set, amount over the tier's limit, daily
              frequency limit reached, or the executor failed
    PROPOSED  within every limit, waiting for the customer's confirmation (`confirmation_ref`)
    DRY_RUN   confirmed and within limits, but the gate runs in dry-run mode (the default)
    EXECUTED  confirmed, within limits, not dry-run, and the system of record confirmed the change
              (its status word, its reference and its result are in the record's params:
              `status`, `reference`, `result.<name>`); a system that answered no is REFUSED with
              its own reason

Live actions run through the injected executor (main.py: the investigator's `RunAction`, the
connector layer to the tenant's account system), idempotent by the attempt's action id: a
confirmation redelivered after the change ran but before its record was published runs it again
under the same id, and the system answers with its first answer.

DRY_RUN attempts count toward the daily limit so a dry run behaves as the real thing would.

Confirmation. A proposal is carried out only by an `ActionConfirmed` naming it (`confirm`): from
an allowed confirmer, with the reference of the customer's confirmation record, for the same
tenant and ticket, within `proposal_ttl_s`. It runs the proposal exactly as proposed (a
confirmation names no tool and no parameters), with the customer's tier read from the CRM again,
and every limit is checked again. Such a confirmation takes the proposal, whatever the outcome; a
second one is refused, so a redelivered confirmation never runs an action twice. A confirmation
that fails those checks leaves the proposal open (a forged or mistyped one cannot cancel it).

State. The ledger of today's attempts and the open proposals live in key-value stores the caller
hands in (the service's: faust tables with expiry, kept in changelogs, so the daily limits and
pending confirmations survive a restart and are shared by every replica); values are JSON-shaped.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Callable, Mapping, MutableMapping

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.escalator.config import ActionLimits, tier_name

PRODUCER = "escalator"
MAX_PARAM_CHARS = 200
RESULT_PREFIX = "result."  # params of an executed record that carry the system's result


@dataclass(frozen=True)
class ActionRequest:
    tool: str
    ticket_id: str
    tenant_id: str
    customer_id: str
    tier: int  # ticket_pb2.CustomerTier, from the CRM
    requested_by: str  # "agent:<id>" or "escalator:<reason>"
    params: Mapping[str, str] = field(default_factory=dict)
    confirmation_ref: str = ""  # id of the customer's confirmation record; empty: not confirmed


@dataclass(frozen=True)
class Confirmation:
    proposal_id: str  # action_id of the PROPOSED record
    ticket_id: str
    tenant_id: str
    confirmation_ref: str
    confirmed_by: str  # "customer:<channel>", "agent:<id>"


@dataclass(frozen=True)
class ExecutionResult:
    """What the system of record answered."""

    executed: bool  # the system confirmed the change
    status: str = ""  # its own status word ("frozen", "cancelled", "ordered", ...)
    reference: str = ""  # its record of the change
    reason: str = ""  # why not, when not executed
    result: Mapping[str, str] = field(default_factory=dict)


Executor = Callable[[ActionRequest, str], ExecutionResult]
"""Runs the tool for real under the attempt's action id (the idempotency key); raises when the
system could not be asked."""

TierLookup = Callable[[str], "int | None"]
"""customer id -> the customer's tier (ticket_pb2.CustomerTier) from the CRM, None if it cannot say."""

# The ledger needs today and yesterday (see ActionLedger.add).
LEDGER_MEMORY_S = 2 * 86_400.0


def utc_day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).date().isoformat()


class ActionLedger:
    """Attempts that passed the gate (DRY_RUN or EXECUTED) per (tenant, customer, tool, UTC day).

    `store`: "tenant|customer|tool|day" -> count. Given one, expiry is the store's (two days); the
    default dict of its own forgets days before yesterday here."""

    def __init__(self, store: MutableMapping[str, int] | None = None) -> None:
        self._own = store is None
        self._counts: MutableMapping[str, int] = {} if store is None else store

    @staticmethod
    def _key(tenant_id: str, customer_id: str, tool: str, day: str) -> str:
        return f"{tenant_id}|{customer_id}|{tool}|{day}"

    def count(self, tenant_id: str, customer_id: str, tool: str, day: str) -> int:
        return self._counts.get(self._key(tenant_id, customer_id, tool, day), 0)

    def add(self, tenant_id: str, customer_id: str, tool: str, day: str) -> None:
        key = self._key(tenant_id, customer_id, tool, day)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._own:
            # Yesterday is kept for clock skew between producers; older days can no longer matter.
            oldest = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
            for old in [k for k in self._counts if k.rsplit("|", 1)[1] < oldest]:
                del self._counts[old]


def _request_fields(request: ActionRequest) -> dict:
    return {"tool": request.tool, "ticket_id": request.ticket_id, "tenant_id": request.tenant_id,
            "customer_id": request.customer_id, "tier": request.tier, "requested_by": request.requested_by,
            "params": dict(request.params), "confirmation_ref": request.confirmation_ref}


class PendingProposals:
    """Proposals awaiting the customer's confirmation, by action id. Each one can be taken once,
    within `ttl_s` of being made; a taken one is remembered for as long, so that proposing it
    again (the same ticket handled twice) does not reopen it.

    `proposals`: action id -> {"request": {...}, "at": made at, "taken": taken at or None};
    `by_ticket`: "tenant|ticket" -> the ticket's action ids. Given stores, expiry is theirs
    (`ttl_s`); the default dicts of its own forget here."""

    def __init__(self, ttl_s: float, proposals: MutableMapping[str, dict] | None = None,
                 by_ticket: MutableMapping[str, list] | None = None) -> None:
        self._ttl_s = ttl_s
        self._own = proposals is None
        self._proposals: MutableMapping[str, dict] = collections.OrderedDict() if proposals is None else proposals
        self._by_ticket: MutableMapping[str, list] = {} if by_ticket is None else by_ticket

    def __len__(self) -> int:
        return sum(1 for entry in self._proposals.values() if entry["taken"] is None)

    def add(self, action_id: str, request: ActionRequest, at: float) -> None:
        if self._own:
            self._forget_before(at - self._ttl_s)
        if action_id in self._proposals:
            return
        self._proposals[action_id] = {"request": _request_fields(request), "at": at, "taken": None}
        ticket_key = f"{request.tenant_id}|{request.ticket_id}"
        known = self._by_ticket.get(ticket_key) or []
        if action_id not in known:
            self._by_ticket[ticket_key] = [*known, action_id]

    def find(self, action_id: str, now: float) -> tuple[ActionRequest | None, str]:
        """The open proposal, or None and why there is none."""
        entry = self._proposals.get(action_id)
        if entry is not None and entry["taken"] is not None:
            return None, f"proposal {action_id} was already confirmed once"
        if entry is None:
            return None, f"no proposal {action_id} is known"
        if now - entry["at"] > self._ttl_s:
            return None, f"proposal {action_id} lapsed: not confirmed within {self._ttl_s:g} s"
        fields = entry["request"]
        return ActionRequest(**{**fields, "params": dict(fields["params"])}), ""

    def open_for(self, tenant_id: str, ticket_id: str, now: float) -> list[str]:
        """Action ids of the ticket's proposals that can still be confirmed."""
        found = []
        for action_id in self._by_ticket.get(f"{tenant_id}|{ticket_id}") or []:
            entry = self._proposals.get(action_id)
            if entry is not None and entry["taken"] is None and now - entry["at"] <= self._ttl_s:
                found.append(action_id)
        return found

    def take(self, action_id: str, at: float) -> None:
        entry = self._proposals.get(action_id)
        self._proposals[action_id] = {**(entry or {"request": None}), "at": at if entry is None else entry["at"],
                                      "taken": at}

    def _forget_before(self, cutoff: float) -> None:
        # In arrival order, which is time order up to clock skew between producers.
        while self._proposals:
            oldest = next(iter(self._proposals))
            entry = self._proposals[oldest]
            if max(entry["at"], entry["taken"] or 0) >= cutoff:
                break
            del self._proposals[oldest]
            request = entry["request"]
            if request is not None:
                ticket_key = f"{request['tenant_id']}|{request['ticket_id']}"
                left = [a for a in self._by_ticket.get(ticket_key) or [] if a != oldest]
                if left:
                    self._by_ticket[ticket_key] = left
                else:
                    self._by_ticket.pop(ticket_key, None)


def action_id_for(request: ActionRequest, proposal_id: str = "") -> str:
    """The same attempt always gets the same id (a confirmed one: per proposal and confirmation)."""
    params = "&".join(f"{k}={v}" for k, v in sorted(request.params.items()))
    confirms = f":{proposal_id}" if proposal_id else ""
    return uuid.uuid5(
        uuid.NAMESPACE_URL,
        f"supportflow:action:{request.tenant_id}:{request.ticket_id}:{request.tool}:{params}:"
        f"{request.requested_by}:{request.confirmation_ref}{confirms}",
    ).hex


class ActionGate:
    def __init__(
        self,
        limits: ActionLimits,
        ledger: ActionLedger,
        *,
        dry_run: bool = True,
        executor: Executor | None = None,
        proposals: PendingProposals | None = None,
    ) -> None:
        self._limits = limits
        self._ledger = ledger
        self._dry_run = dry_run
        self._executor = executor
        self._proposals = proposals if proposals is not None else PendingProposals(limits.proposal_ttl_s)

    @property
    def allow_listed(self) -> frozenset[str]:
        return frozenset(self._limits.tools)

    def attempt(self, request: ActionRequest, now: float) -> ev.ActionRecorded:
        """Check the request against every limit and record the outcome. A request without a
        confirmation becomes a proposal that `confirm` can carry out later."""
        record = self._attempt(request, now)
        if record.status == ev.ACTION_STATUS_PROPOSED:
            self._proposals.add(record.action_id, request, now)
        return record

    def pending(self, tenant_id: str, ticket_id: str, now: float) -> list[str]:
        """The ticket's proposals awaiting the customer's confirmation (their action ids)."""
        return self._proposals.open_for(tenant_id, ticket_id, now)

    def confirm(self, confirmation: Confirmation, tier_of: TierLookup, now: float) -> ev.ActionRecorded:
        """Carry out the proposal `confirmation` names, as proposed, if everything still allows it.

        Only a confirmation from an allowed confirmer, with a reference, for the proposal's own
        tenant and ticket takes the proposal (whatever the outcome, so it runs at most once); any
        other leaves it open, and its record names no proposal."""
        proposal, refusal = self._proposals.find(confirmation.proposal_id, now)
        if not any(confirmation.confirmed_by.startswith(p) for p in self._limits.confirmers):
            refusal = f"{confirmation.confirmed_by or 'an anonymous caller'} may not confirm actions"
        elif not confirmation.confirmation_ref.strip():
            refusal = "no reference to the customer's confirmation record"
        elif proposal is not None and (proposal.tenant_id, proposal.ticket_id) != (
                confirmation.tenant_id, confirmation.ticket_id):
            refusal = f"no proposal {confirmation.proposal_id} was made for this ticket"
        if proposal is None or refusal:
            stand_in = ActionRequest(tool="", ticket_id=confirmation.ticket_id, tenant_id=confirmation.tenant_id,
                                     customer_id="", tier=tk.CUSTOMER_TIER_UNSPECIFIED, requested_by="",
                                     confirmation_ref=confirmation.confirmation_ref)
            return self._record(stand_in, ev.ACTION_STATUS_REFUSED, refusal,
                                confirmation=replace(confirmation, proposal_id=""))
        self._proposals.take(confirmation.proposal_id, now)
        tier = tier_of(proposal.customer_id)
        if tier is None:
            return self._record(proposal, ev.ACTION_STATUS_REFUSED, "the CRM could not give the customer's tier",
                                confirmation=confirmation)
        confirmed = replace(proposal, tier=tier, confirmation_ref=confirmation.confirmation_ref)
        return self._attempt(confirmed, now, confirmation=confirmation)

    def _attempt(self, request: ActionRequest, now: float, *, confirmation: Confirmation | None = None) -> ev.ActionRecorded:
        refusal = self._refusal(request, now)
        if refusal:
            return self._record(request, ev.ACTION_STATUS_REFUSED, refusal, confirmation=confirmation)
        if not request.confirmation_ref.strip():
            return self._record(request, ev.ACTION_STATUS_PROPOSED, "within limits; awaiting the customer's confirmation")
        day = utc_day(now)
        if self._dry_run:
            self._ledger.add(request.tenant_id, request.customer_id, request.tool, day)
            return self._record(request, ev.ACTION_STATUS_DRY_RUN, "confirmed and within limits; dry run, nothing was changed",
                                confirmation=confirmation)
        if self._executor is None:
            return self._record(request, ev.ACTION_STATUS_REFUSED, "no executor is configured for live actions",
                                confirmation=confirmation)
        action_id = action_id_for(request, confirmation.proposal_id if confirmation else "")
        try:
            answer = self._executor(request, action_id)
        except Exception as exc:  # noqa: BLE001 - the failure is the recorded outcome
            return self._record(request, ev.ACTION_STATUS_REFUSED, f"the tool failed: {type(exc).__name__}: {exc}",
                                confirmation=confirmation)
        outcome = {"status": answer.status, "reference": answer.reference,
                   **{f"{RESULT_PREFIX}{name}": value for name, value in answer.result.items()}}
        outcome = {name: str(value)[:MAX_PARAM_CHARS] for name, value in outcome.items() if str(value)}
        if not answer.executed:
            return self._record(request, ev.ACTION_STATUS_REFUSED,
                                f"the system refused: {answer.reason or 'no reason given'}",
                                confirmation=confirmation, outcome=outcome)
        self._ledger.add(request.tenant_id, request.customer_id, request.tool, day)
        return self._record(request, ev.ACTION_STATUS_EXECUTED,
                            f"confirmed, within limits and executed: {answer.status or 'done'}"
                            + (f" (ref {answer.reference})" if answer.reference else ""),
                            confirmation=confirmation, outcome=outcome)

    def _refusal(self, request: ActionRequest, now: float) -> str:
        limits = self._limits.tools.get(request.tool)
        if limits is None:
            return f"tool {request.tool!r} is not allow-listed"
        if not any(request.requested_by.startswith(p) for p in self._limits.principals):
            return f"{request.requested_by or 'an anonymous caller'} may not request actions"
        if not request.customer_id:
            return "no customer id"
        if request.tier not in limits.tiers:
            return f"tool {request.tool} is not available to the {tier_name(request.tier)} tier"
        unknown = sorted(set(request.params) - limits.params)
        if unknown:
            return f"unexpected parameter(s) {', '.join(unknown)}"
        missing = sorted(p for p in limits.required_params if not str(request.params.get(p, "")).strip())
        if missing:
            return f"missing parameter(s) {', '.join(missing)}"
        for name, value in request.params.items():
            if len(value) > MAX_PARAM_CHARS:
                return f"parameter {name} is longer than {MAX_PARAM_CHARS} characters"
            allowed = limits.allowed_values.get(name)
            if allowed is not None and value not in allowed:
                return f"{name}={value!r} is not one of {', '.join(sorted(allowed))}"
        if limits.max_amount_by_tier:
            try:
                amount = Decimal(request.params["amount"])
            except InvalidOperation:
                return f"amount {request.params['amount']!r} is not a number"
            if not amount.is_finite() or amount <= 0:
                return "amount must be a positive number"
            cap = limits.max_amount_by_tier.get(request.tier)
            if cap is None or amount > cap:
                return f"amount {amount} exceeds the {tier_name(request.tier)} limit of {cap if cap is not None else 0}"
        done = self._ledger.count(request.tenant_id, request.customer_id, request.tool, utc_day(now))
        if done >= limits.max_per_customer_per_day:
            return f"daily limit reached ({done} of {limits.max_per_customer_per_day} {request.tool} today)"
        return ""

    @staticmethod
    def _record(request: ActionRequest, status: int, reason: str, *,
                confirmation: Confirmation | None = None, outcome: Mapping[str, str] | None = None) -> ev.ActionRecorded:
        record = ev.ActionRecorded(
            meta=new_meta(request.tenant_id, PRODUCER),
            ticket_id=request.ticket_id,
            action_id=action_id_for(request, confirmation.proposal_id if confirmation else ""),
            tool=request.tool,
            params={**request.params, **(outcome or {})},
            status=status,
            customer_id=request.customer_id,
            requested_by=request.requested_by,
        )
        # A confirmation refused before it reached a proposal has no requester to name.
        parties = [f"requested by {request.requested_by or 'nobody'}"] if request.tool else []
        if confirmation is not None:
            record.proposal_id = confirmation.proposal_id
            record.confirmed_by = confirmation.confirmed_by
            record.confirmation_ref = confirmation.confirmation_ref
            parties.append(f"confirmed by {confirmation.confirmed_by or 'nobody'}")
        record.reason = f"{reason} ({', '.join(parties)})"
        return record
