"""The investigator's two requests, free of gRPC: investigate a ticket, run a confirmed action.

`Investigator` holds what outlives a request: the systems file, each tenant's playbooks (read
once, from `tenants_dir/<tenant>/playbooks/`), each tenant's connectors (their HTTP clients and
circuit breakers) and the pool the lookups run on.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.systems import SystemsConfig

from services.investigator import metrics
from services.investigator.connectors import ActionAnswer, TenantConnectors
from services.investigator.connectors.http import http_connectors, seconds
from services.investigator.investigation import Subject, investigate
from services.investigator.playbooks import PlaybookError, TenantPlaybooks, load_playbooks

log = logging.getLogger(__name__)

# The tools services.proto names for RunActionRequest.tool; anything else is refused unasked.
ALLOWED_TOOLS = ("password_reset", "card_freeze", "card_unfreeze", "card_replacement", "transfer_cancel")
MAX_ACTION_ID_CHARS = 200
LOOKUP_THREADS = 32
# Kept back from the deadline for what follows the lookups (settling, encoding, the way back), so
# the answer reaches a caller whose own gRPC deadline is the investigation deadline in time.
ANSWER_MARGIN_S = 0.1
MIN_BUDGET_S = 0.05


@dataclass(frozen=True)
class ActionRequest:
    tenant_id: str
    action_id: str
    tool: str
    customer_id: str
    params: dict[str, str] = field(default_factory=dict)
    ticket_id: str = ""


class InvalidRequest(ValueError):
    """A request that cannot be served as sent; the message says what is wrong."""


class Investigator:
    def __init__(self, systems: SystemsConfig, tenants_dir: Path, *, deadline_s: float) -> None:
        self._systems = systems
        self._tenants_dir = tenants_dir
        self._deadline_s = deadline_s
        self._playbooks: dict[str, TenantPlaybooks] = {}
        self._connectors: dict[str, TenantConnectors] = {}
        self._clients: list = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="investigator-lookup")
        # Built now, not on a tenant's first ticket: HTTP clients (TLS contexts) and playbooks take
        # tens of milliseconds each to set up, which the first investigation's deadline would pay.
        for tenant_id in systems.tenants:
            self.connectors(tenant_id)
            self.playbooks(tenant_id)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for client in self._clients:
            client.close()

    def playbooks(self, tenant_id: str) -> TenantPlaybooks:
        """The tenant's playbooks, read once. A broken file is logged and counted, and the tenant's
        investigations stay empty until it is fixed and the service restarted."""
        with self._lock:
            if tenant_id not in self._playbooks:
                try:
                    self._playbooks[tenant_id] = load_playbooks(self._tenants_dir / tenant_id / "playbooks")
                except (PlaybookError, OSError) as exc:
                    metrics.PLAYBOOK_ERRORS.inc()
                    log.error("playbooks not loaded", extra={"fields": {"tenant": tenant_id, "error": str(exc)}})
                    self._playbooks[tenant_id] = TenantPlaybooks()
            return self._playbooks[tenant_id]

    def connectors(self, tenant_id: str) -> TenantConnectors:
        """The tenant's connected systems; none for a tenant the systems file does not name (whose
        id is then never used as a path either)."""
        systems = self._systems.tenant(tenant_id)
        if systems is None:
            return TenantConnectors()
        with self._lock:
            if tenant_id not in self._connectors:
                connectors, clients = http_connectors(tenant_id, systems)
                self._connectors[tenant_id] = connectors
                self._clients.extend(clients)
            return self._connectors[tenant_id]

    def budget(self, caller_remaining_s: float | None = None) -> float:
        """Time the lookups (or an action) may take: the configured deadline, or what the caller's
        own deadline leaves if that is shorter, less the margin for the answer's way back."""
        limit = self._deadline_s if caller_remaining_s is None else min(self._deadline_s, caller_remaining_s)
        return max(MIN_BUDGET_S, limit - ANSWER_MARGIN_S)

    def investigate(self, subject: Subject, intent: str, *, caller_remaining_s: float | None = None) -> ev.Investigation:
        """The tenant's playbook for the intent (else the archetype) run for the subject; an empty
        investigation (no playbook, no findings) when none applies or the tenant has no connected
        systems."""
        if not subject.tenant_id:
            metrics.INVESTIGATIONS.labels("invalid").inc()
            raise InvalidRequest("ticket.tenant_id is required")
        connectors = self.connectors(subject.tenant_id)
        if not connectors.connected():
            metrics.INVESTIGATIONS.labels("no_systems").inc()
            return ev.Investigation()
        playbook = self.playbooks(subject.tenant_id).for_ticket(intent, subject.archetype)
        if playbook is None:
            metrics.INVESTIGATIONS.labels("no_playbook").inc()
            return ev.Investigation()
        return investigate(playbook, subject, connectors, deadline_s=self.budget(caller_remaining_s),
                           executor=self._executor)

    def run_action(self, request: ActionRequest, *, caller_remaining_s: float | None = None) -> ActionAnswer:
        """One allow-listed action through the tenant's account system, idempotent by action id
        (the system answers a repeated id with its first answer). Executed only when the system
        confirmed it."""
        problem = ""
        if not request.tenant_id:
            problem = "tenant_id is required"
        elif not request.action_id or len(request.action_id) > MAX_ACTION_ID_CHARS:
            problem = f"action_id is required (at most {MAX_ACTION_ID_CHARS} characters): it is the idempotency key"
        elif not request.customer_id:
            problem = "customer_id is required"
        if problem:
            metrics.ACTIONS.labels(_tool_label(request.tool), "invalid").inc()
            raise InvalidRequest(problem)
        tool = _tool_label(request.tool)
        if request.tool not in ALLOWED_TOOLS:
            metrics.ACTIONS.labels(tool, "refused").inc()
            return ActionAnswer(False, reason=f"{request.tool!r} is not an allow-listed action "
                                               f"({', '.join(ALLOWED_TOOLS)})")
        actions = self.connectors(request.tenant_id).actions
        if actions is None:
            metrics.ACTIONS.labels(tool, "refused").inc()
            return ActionAnswer(False, reason="the tenant's account system is not connected")
        budget = self.budget(caller_remaining_s)
        deadline = time.monotonic() + budget
        answer = actions.run_action(request.tool, request.customer_id, dict(request.params),
                                    idempotency_key=request.action_id, deadline=deadline)
        outcome = "executed" if answer.executed else ("failed" if _is_failure(answer.reason) else "refused")
        metrics.ACTIONS.labels(tool, outcome).inc()
        log.info("action %s", outcome, extra={"fields": {
            "tenant": request.tenant_id, "tool": request.tool, "action_id": request.action_id,
            "status": answer.status, "reference": answer.reference, "reason": answer.reason,
            "budget_s": seconds(budget)}})
        return answer


def _tool_label(tool: str) -> str:
    return tool if tool in ALLOWED_TOOLS else "other"


def _is_failure(reason: str) -> bool:
    """The system could not be asked (as against: it answered no)."""
    return reason.startswith(("timed out", "unreachable", "circuit open", "HTTP 5", "HTTP 429", "no time left"))
