"""Drafter metrics. Label values come from fixed sets (listed with each metric)."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import Counter, Histogram

from supportflow.contracts.v1 import ticket_pb2 as tk

DRAFT_STATUSES = {
    tk.DRAFT_STATUS_READY: "ready",
    tk.DRAFT_STATUS_BLOCKED: "blocked",
    tk.DRAFT_STATUS_NO_EVIDENCE: "no_evidence",
}

DRAFTS = Counter(
    "supportflow_drafter_drafts_total",
    "Drafts produced, by generator (offline, claude) and status (ready, blocked, no_evidence, unspecified)",
    ["generator", "status"],
)
POLICY_CLAIMS = Counter(
    "supportflow_drafter_policy_claims_total",
    "Claims checked by the ledgers, by kind (policy_ledger.CLAIM_KINDS, or evidence: an account fact checked "
    "against the investigation's findings) and verified (true, false)",
    ["kind", "verified"],
)
OVERREACH = Counter(
    "supportflow_drafter_overreach_total",
    "Sentences claiming an action that was not executed, rewritten or removed, by action (overreach.ACTION_KINDS)",
    ["action"],
)
CLAUDE_FALLBACKS = Counter(
    "supportflow_drafter_claude_fallbacks_total",
    "Claude drafts that failed and fell back to the offline drafter, by reason "
    "(timeout, overloaded, rate_limited, connection, api_error, malformed)",
    ["reason"],
)
CLAUDE_SKIPPED = Counter(
    "supportflow_drafter_claude_skipped_total",
    "Tickets drafted offline without calling Claude, by reason (no_evidence, prompt_injection)",
    ["reason"],
)
CLAUDE_RETRIES = Counter(
    "supportflow_drafter_claude_retries_total",
    "Retries of a Claude call beyond the SDK's own, by reason (timeout, overloaded, rate_limited, connection)",
    ["reason"],
)
CLAUDE_SECONDS = Histogram(
    "supportflow_drafter_claude_seconds",
    "Time spent drafting with Claude, retries included, by outcome (ok, fallback)",
    ["outcome"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)


def record_draft(draft: tk.Draft, overreach_actions: Iterable[str]) -> None:
    generator = "claude" if draft.generator.startswith("claude") else "offline"
    DRAFTS.labels(generator, DRAFT_STATUSES.get(draft.status, "unspecified")).inc()
    for claim in draft.ledger:
        POLICY_CLAIMS.labels(claim.kind, "true" if claim.verified else "false").inc()
    for action in overreach_actions:
        OVERREACH.labels(action).inc()
