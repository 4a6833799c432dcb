"""Delivery metrics. Label values come from fixed sets: `provider` is one of PROVIDER_LABELS,
`kind` a DeliveryKind name (reply, note, follow_up), `reason` one of FAILURE_REASONS; for agents'
actions, `action` an AgentActionKind name (approve, edit_and_send, reject, escalate,
flag_context_loss, unspecified) and `outcome` to_post or nothing_to_post."""

from prometheus_client import Counter, Histogram

from supportflow.contracts.v1 import events_pb2 as ev

PROVIDER_LABELS = ("zendesk", "intercom", "freshdesk", "email", "api", "none", "other")
FAILURE_REASONS = (
    "no_channel",  # the ticket came through the API or without an origin, or its tenant has no such channel
    "not_found",  # the provider does not know the ticket (404)
    "unauthorized",  # credentials refused (401, 403)
    "rejected",  # any other 4xx: the provider refused the payload
    "provider_unavailable",  # 5xx, timeouts, connection errors or 429 beyond the retry budget, or the lane's circuit is open
)

DELIVERED = Counter(
    "supportflow_delivery_delivered_total",
    "Decisions whose response is on the ticket's channel (posted now, or found there from an earlier run), by provider and kind",
    ["provider", "kind"],
)
FAILED = Counter(
    "supportflow_delivery_failed_total",
    "Decisions not delivered, by provider and reason (no_channel, not_found, unauthorized, rejected, provider_unavailable)",
    ["provider", "reason"],
)
DUPLICATES_AVOIDED = Counter(
    "supportflow_delivery_duplicates_avoided_total",
    "Posts not made because the decision was already delivered: done in the ledger, or found on the channel by reconciliation",
    ["provider"],
)
ATTEMPTS = Histogram(
    "supportflow_delivery_attempts",
    "Provider calls it took to post one response (1 = first try)",
    ["provider"],
    buckets=(1, 2, 3, 4, 5, 7, 10),
)
LATENCY = Histogram(
    "supportflow_delivery_latency_seconds",
    "Time to first useful response: the gateway received the ticket -> the channel acknowledged the response",
    ["provider", "kind"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
PROVIDER_REQUESTS = Histogram(
    "supportflow_delivery_provider_request_seconds",
    "Calls to the helpdesks and mail servers, by provider and outcome (ok, retryable, refused, error)",
    ["provider", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RETRIES_SCHEDULED = Counter(
    "supportflow_delivery_retries_scheduled_total",
    "Decisions whose first delivery attempt met a transient failure (or an open lane), handed to the retry topic",
    ["provider"],
)
CIRCUIT_OPENED = Counter(
    "supportflow_delivery_circuit_opened_total",
    "Times a (tenant, provider) lane stopped calling its provider after a delivery ran out of retries",
    ["provider"],
)
AGENT_ACTIONS = Counter(
    "supportflow_delivery_agent_actions_total",
    "Agents' actions read from agent.actions, by action and whether they have something to post (to_post: approve, "
    "edit_and_send, escalate) or not (nothing_to_post: reject, flag_context_loss); their deliveries are counted with "
    "the decisions' above",
    ["action", "outcome"],
)

ACTION_RESULTS = Counter(
    "supportflow_delivery_action_results_total",
    "Executed actions read from actions.recorded, by outcome (to_post: told to the customer on the ticket's channel; "
    "no_channel: no decision was ever delivered on the ticket, dead-lettered); their deliveries are counted above",
    ["outcome"],
)


def provider_label(provider: str) -> str:
    return provider if provider in PROVIDER_LABELS else "other"


def action_label(kind: int) -> str:
    try:
        return ev.AgentActionKind.Name(kind).removeprefix("AGENT_ACTION_KIND_").lower()
    except ValueError:
        return "unspecified"
